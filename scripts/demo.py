"""Run the app locally for a demo: `make demo` (or `python scripts/demo.py --help`).

1. Reads `.env` (real environment variables win) and fills in development defaults
   (DEBUG on, no HTTPS redirect, no secure-only cookies) for anything not set there.
2. Without a VAPI_API_KEY, starts the Vapi emulator on --emulator-port and points the app
   at it (VAPI_API_KEY=demo-key, VAPI_BASE_URL=http://127.0.0.1:PORT).
3. Migrates the database, creates or updates the superuser `admin` (its password is made
   once and kept in .venv/demo-admin-password) and prints its API token.
4. Serves the app on --host:--port until Ctrl-C, then stops the emulator.
"""

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
MANAGE = [sys.executable, str(BASE_DIR / "manage.py")]
PASSWORD_FILE = BASE_DIR / ".venv" / "demo-admin-password"
ADMIN_USERNAME = "admin"
EMULATOR_API_KEY = "demo-key"

# Plain-HTTP development defaults; `.env` or the real environment may say otherwise.
DEV_DEFAULTS = {
    "DEBUG": "true",
    "SECURE_SSL_REDIRECT": "false",
    "SESSION_COOKIE_SECURE": "false",
    "CSRF_COOKIE_SECURE": "false",
    "SECURE_HSTS_SECONDS": "0",
}

ENSURE_ADMIN = """
import os
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
User = get_user_model()
user, created = User.objects.get_or_create(username=os.environ["DEMO_ADMIN_USERNAME"], defaults={"email": "admin@example.com"})
user.is_staff = user.is_superuser = user.is_active = True
user.set_password(os.environ["DEMO_ADMIN_PASSWORD"])
user.save()
token, _ = Token.objects.get_or_create(user=user)
print("created" if created else "updated", token.key)
"""


def log(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def load_environment() -> dict:
    """os.environ plus `.env` (the environment wins), plus the development defaults."""
    import environ  # installed with the app's requirements

    env_file = os.environ.get("ENV_FILE", str(BASE_DIR / ".env"))
    if env_file and Path(env_file).is_file():
        environ.Env.read_env(env_file, overwrite=False)
        log(f"read settings from {env_file}")
    env = dict(os.environ)
    for name, value in DEV_DEFAULTS.items():
        env.setdefault(name, value)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def allowed_hosts_for(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "*"
    return ",".join(dict.fromkeys(["127.0.0.1", "localhost", "[::1]", host]))


def display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def admin_password() -> str:
    if PASSWORD_FILE.is_file():
        password = PASSWORD_FILE.read_text().strip()
        if password:
            return password
    password = secrets.token_urlsafe(12)
    PASSWORD_FILE.parent.mkdir(parents=True, exist_ok=True)
    PASSWORD_FILE.write_text(password + "\n")
    PASSWORD_FILE.chmod(0o600)
    return password


def manage(env: dict, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*MANAGE, *args], cwd=BASE_DIR, env=env, check=True, text=True, capture_output=capture, stdin=subprocess.DEVNULL
    )


def command_exists(env: dict, name: str) -> bool:
    result = subprocess.run(
        [*MANAGE, "help", name], cwd=BASE_DIR, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    return result.returncode == 0


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def port_in_use(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start_emulator(env: dict, port: int) -> subprocess.Popen | None:
    """Start `manage.py vapi_emulator`; None (with a warning) if it cannot run."""
    if not command_exists(env, "vapi_emulator"):
        log("WARNING: the vapi_emulator command is not available; continuing without Vapi.")
        return None
    if port_in_use(port):
        log(f"WARNING: port {port} is already taken (an emulator from an earlier run?); continuing without starting one.")
        return None
    cmd = [*MANAGE, "vapi_emulator", "--port", str(port), "--seed", "demo", "--api-key", EMULATOR_API_KEY]
    log(f"starting the Vapi emulator on 127.0.0.1:{port}")
    process = subprocess.Popen(cmd, cwd=BASE_DIR, env=env, stdin=subprocess.DEVNULL)
    if not wait_for_port(port, process):
        log("WARNING: the Vapi emulator did not start; continuing without Vapi.")
        stop(process, "Vapi emulator")
        return None
    return process


def stop(process: subprocess.Popen | None, name: str) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        log(f"{name} did not stop; killing it")
        process.kill()
        process.wait()


def print_banner(host: str, port: int, password: str, token: str, emulator_port: int | None, vapi_url: str) -> None:
    base = f"http://{display_host(host)}:{port}"
    lines = [
        "",
        "GlobalVoice Vapi Sync is running.",
        f"  Admin            {base}/admin/",
        f"  Vapi Sync page   {base}/admin/vapisync/sync/",
        f"  API docs         {base}/api/docs/",
        f"  OpenAPI schema   {base}/api/schema/",
        "",
        f"  Login            {ADMIN_USERNAME} / {password}",
        f"  API token        {token}",
        f'  Try              curl -H "Authorization: Bearer {token}" {base}/api/agents/',
        "",
        f"  Vapi             {vapi_url}"
        + (f" (the emulator on port {emulator_port}, key {EMULATOR_API_KEY})" if emulator_port else ""),
        "",
        "Press Ctrl-C to stop.",
        "",
    ]
    print("\n".join(lines), flush=True)


def _interrupt(signum, frame):
    """Treat SIGTERM like Ctrl-C, so the children are stopped on the way out."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--emulator-port", type=int, default=8765)
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _interrupt)

    env = load_environment()
    env.setdefault("ALLOWED_HOSTS", allowed_hosts_for(args.host))

    emulator = None
    server = None
    try:
        emulator_port = None
        if env.get("VAPI_API_KEY"):
            log(f"using Vapi at {env.get('VAPI_BASE_URL') or 'https://api.vapi.ai'} (VAPI_API_KEY is set)")
        else:
            emulator = start_emulator(env, args.emulator_port)
            if emulator is not None:
                emulator_port = args.emulator_port
                env["VAPI_API_KEY"] = EMULATOR_API_KEY
                env["VAPI_BASE_URL"] = f"http://127.0.0.1:{args.emulator_port}"

        log("migrating the database")
        manage(env, "migrate", "--noinput")
        if env.get("DEBUG", "").lower() not in ("1", "true", "yes", "on", "y", "t"):
            log("DEBUG is off: collecting static files")
            manage(env, "collectstatic", "--noinput", capture=True)

        password = admin_password()
        result = manage(
            {**env, "DEMO_ADMIN_USERNAME": ADMIN_USERNAME, "DEMO_ADMIN_PASSWORD": password},
            "shell",
            "--no-imports",
            "-c",
            ENSURE_ADMIN,
            capture=True,
        )
        state, token = result.stdout.strip().splitlines()[-1].split()
        log(f"{state} the superuser '{ADMIN_USERNAME}' (password kept in {PASSWORD_FILE.relative_to(BASE_DIR)})")

        vapi_url = env.get("VAPI_BASE_URL") or "https://api.vapi.ai"
        if not env.get("VAPI_API_KEY"):
            vapi_url = "not configured (set VAPI_API_KEY in .env)"
        print_banner(args.host, args.port, password, token, emulator_port, vapi_url)

        server = subprocess.Popen(
            [*MANAGE, "runserver", f"{args.host}:{args.port}", "--noreload"],
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        return server.wait()
    except KeyboardInterrupt:
        log("stopping")
        return 0
    except subprocess.CalledProcessError as exc:
        output = (exc.stderr or "") + (exc.stdout or "")
        if output:
            print(output, file=sys.stderr)
        log(f"failed: {' '.join(map(str, exc.cmd[1:3]))} exited with {exc.returncode}")
        return exc.returncode or 1
    finally:
        stop(server, "the server")
        stop(emulator, "the Vapi emulator")


if __name__ == "__main__":
    sys.exit(main())
