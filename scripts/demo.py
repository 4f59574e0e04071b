"""Run the app locally for a demo: `make demo` (or `python scripts/demo.py --help`).

1. Reads `.env` (real environment variables win) and fills in development defaults
   (DEBUG on, no HTTPS redirect, no secure-only cookies) for anything not set there.
2. Checks that its ports are free, and stops with a clear message if one is taken (another
   `make demo` still running?), before it changes anything.
3. Without a VAPI_API_KEY, starts the Vapi emulator on --emulator-port with its demo data and
   points the app at it (VAPI_API_KEY=demo-key, VAPI_BASE_URL=http://127.0.0.1:PORT). The emulator
   keeps its data in memory only, so the demo's own database (demo.sqlite3, beside .env.demo) is
   reset with it at every start: both begin from the same state. With a real VAPI_API_KEY nothing
   is reset and the usual database (DATABASE_URL, by default db.sqlite3) is used.
4. Writes what it decided to .env.demo (DEMO_ENV_FILE), where manage.py finds it: CLI commands in
   another terminal reach the same database and emulator. manage.py reads .env.demo only while
   neither the environment nor .env sets VAPI_API_KEY (see globalvoice/settings.py).
5. Migrates, creates or updates the superuser `admin` (its password is made once and kept in
   .venv/demo-admin-password) and the API user `alice` (README's examples), starts the app and,
   once it answers, prints the banner. Stops everything on Ctrl-C, and stops with a message if
   the emulator or the app dies.
"""

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
MANAGE = [sys.executable, str(BASE_DIR / "manage.py")]
PASSWORD_FILE = BASE_DIR / ".venv" / "demo-admin-password"
ADMIN_USERNAME = "admin"
API_USERNAME = "alice"
EMULATOR_API_KEY = "demo-key"
DEMO_DATABASE_NAME = "demo.sqlite3"

# Plain-HTTP development defaults; `.env` or the real environment may say otherwise.
DEV_DEFAULTS = {
    "DEBUG": "true",
    "SECURE_SSL_REDIRECT": "false",
    "SESSION_COOKIE_SECURE": "false",
    "CSRF_COOKIE_SECURE": "false",
    "SECURE_HSTS_SECONDS": "0",
}

ENSURE_USERS = """
import os
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
User = get_user_model()
user, created = User.objects.get_or_create(username=os.environ["DEMO_ADMIN_USERNAME"], defaults={"email": "admin@example.com"})
user.is_staff = user.is_superuser = user.is_active = True
user.set_password(os.environ["DEMO_ADMIN_PASSWORD"])
user.save()
token, _ = Token.objects.get_or_create(user=user)
# The README's API user: manages agents and phone numbers and runs syncs, no admin access.
alice, _ = User.objects.get_or_create(username=os.environ["DEMO_API_USERNAME"], defaults={"email": "alice@example.com"})
alice.set_unusable_password()
alice.save()
alice.user_permissions.set(Permission.objects.filter(
    content_type__app_label__in=["agents", "phonenumbers_app"]) | Permission.objects.filter(codename="run_sync"))
print("created" if created else "updated", token.key)
"""


def log(message: str) -> None:
    print(f"[demo] {message}", flush=True)


class DemoError(Exception):
    """Stops the demo with this message (and exit status 1)."""


def demo_env_file() -> Path:
    return Path(os.environ.get("DEMO_ENV_FILE") or BASE_DIR / ".env.demo")


def load_environment() -> tuple[dict, set]:
    """os.environ plus `.env` (the environment wins), plus the development defaults.
    Also returns the names the demo filled in itself (what .env.demo records)."""
    import environ  # installed with the app's requirements

    env_file = os.environ.get("ENV_FILE", str(BASE_DIR / ".env"))
    if env_file and Path(env_file).is_file():
        environ.Env.read_env(env_file, overwrite=False)
        log(f"read settings from {env_file}")
    env = dict(os.environ)
    filled = set()
    for name, value in DEV_DEFAULTS.items():
        if name not in env:
            env[name] = value
            filled.add(name)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # The children read exactly this environment, never an older .env.demo.
    env["DEMO_ENV_FILE"] = ""
    return env, filled


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


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (what runserver and the emulator will try)."""
    bind_host = "" if host in ("0.0.0.0", "") else host
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no obstacle
        try:
            probe.bind((bind_host, port))
        except OSError:
            return False
    return True


def check_ports(ports: dict[str, tuple[str, int]]) -> None:
    taken = [f"{what} port {port} ({host})" for what, (host, port) in ports.items() if not port_free(host, port)]
    if taken:
        raise DemoError(
            f"{' and '.join(taken)} {'is' if len(taken) == 1 else 'are'} already in use: is another `make demo` "
            "still running? Stop it (Ctrl-C in its terminal), or choose other ports, e.g. "
            "`make demo PORT=9000 EMULATOR_PORT=9765`."
        )


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> bool:
    """True once something answers on the port; False if the process ended or the time ran out."""
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


def start_emulator(env: dict, port: int) -> subprocess.Popen:
    cmd = [*MANAGE, "vapi_emulator", "--port", str(port), "--seed", "demo", "--api-key", EMULATOR_API_KEY]
    process = subprocess.Popen(cmd, cwd=BASE_DIR, env=env, stdin=subprocess.DEVNULL)
    log(f"starting the Vapi emulator on 127.0.0.1:{port} (pid {process.pid})")
    if not wait_for_port(port, process):
        stop(process, "the Vapi emulator")
        raise DemoError(f"the Vapi emulator did not start on port {port} (its output is above).")
    return process


def reset_demo_database(path: Path) -> None:
    """The emulator starts from its demo data: so does the database it is synced with."""
    removed = False
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if candidate.exists():
            candidate.unlink()
            removed = True
    if removed:
        log(f"reset {path.name}: the emulator starts from its demo data, and the demo database with it")


def write_demo_env(path: Path, values: dict) -> None:
    lines = [
        f"# Written by `make demo` at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC: the settings of the demo, so that",
        "# manage.py in another terminal reaches the same database and Vapi emulator. manage.py reads this",
        "# file only while neither the environment nor .env sets VAPI_API_KEY, and each value only when",
        "# they leave it unset. Delete it to stop using the demo's settings.",
        *(f"{name}={value}" for name, value in values.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    log(f"wrote the demo's settings to {path} (manage.py reads them from another terminal)")


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


def print_banner(host: str, port: int, password: str, token: str, emulator_port: int | None, vapi_url: str,
                 env_file: Path | None) -> None:
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
    ]
    if env_file is not None:
        lines.append(f"  CLI              .venv/bin/python manage.py vapi_sync status   (in another terminal; reads {env_file.name})")
    lines += ["", "Press Ctrl-C to stop.", ""]
    print("\n".join(lines), flush=True)


def supervise(server: subprocess.Popen, emulator: subprocess.Popen | None) -> int:
    """Wait until the app stops; if the emulator dies first, stop the app too and say why."""
    while True:
        code = server.poll()
        if code is not None:
            if code:
                log(f"the app stopped unexpectedly (exit status {code}; its output is above)")
            return code
        if emulator is not None and (code := emulator.poll()) is not None:
            log(f"the Vapi emulator stopped unexpectedly (exit status {code}); stopping the demo, since the app "
                "cannot reach Vapi without it. Run `make demo` again to start both afresh.")
            return 1
        time.sleep(0.5)


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

    env, filled = load_environment()
    if "ALLOWED_HOSTS" not in env:
        env["ALLOWED_HOSTS"] = allowed_hosts_for(args.host)
        filled.add("ALLOWED_HOSTS")
    use_emulator = not env.get("VAPI_API_KEY")
    env_file = demo_env_file()

    emulator = None
    server = None
    try:
        ports = {"the app's": (args.host, args.port)}
        if use_emulator:
            ports["the Vapi emulator's"] = ("127.0.0.1", args.emulator_port)
        check_ports(ports)

        emulator_port = None
        if use_emulator:
            if env.get("DATABASE_URL"):
                log("note: DATABASE_URL is set, so that database is kept while the emulator starts from its demo "
                    "data; a sync may then plan to change what an earlier demo created.")
            else:
                database = env_file.parent / DEMO_DATABASE_NAME
                reset_demo_database(database)
                env["DATABASE_URL"] = f"sqlite:///{database}"
                filled.add("DATABASE_URL")
            emulator = start_emulator(env, args.emulator_port)
            emulator_port = args.emulator_port
            env["VAPI_API_KEY"] = EMULATOR_API_KEY
            env["VAPI_BASE_URL"] = f"http://127.0.0.1:{args.emulator_port}"
            write_demo_env(env_file, {name: env[name] for name in (*sorted(filled), "VAPI_API_KEY", "VAPI_BASE_URL")})
        else:
            log(f"using Vapi at {env.get('VAPI_BASE_URL') or 'https://api.vapi.ai'} (VAPI_API_KEY is set)")
            if env_file.is_file():
                env_file.unlink()  # manage.py would ignore it anyway: a real key is set
            if not env.get("SECRET_KEY") and "DEBUG" in filled:
                log("note: manage.py in another terminal reads .env only: add DEBUG=true (development) or a "
                    "SECRET_KEY there for it to start.")

        log("migrating the database")
        manage(env, "migrate", "--noinput", "-v", "0")
        if env.get("DEBUG", "").lower() not in ("1", "true", "yes", "on", "y", "t"):
            log("DEBUG is off: collecting static files")
            manage(env, "collectstatic", "--noinput", capture=True)

        password = admin_password()
        result = manage(
            {**env, "DEMO_ADMIN_USERNAME": ADMIN_USERNAME, "DEMO_ADMIN_PASSWORD": password, "DEMO_API_USERNAME": API_USERNAME},
            "shell",
            "--no-imports",
            "-c",
            ENSURE_USERS,
            capture=True,
        )
        state, token = result.stdout.strip().splitlines()[-1].split()
        log(f"{state} the superuser '{ADMIN_USERNAME}' (password kept in {PASSWORD_FILE.relative_to(BASE_DIR)}) "
            f"and the API user '{API_USERNAME}'")

        server = subprocess.Popen(
            [*MANAGE, "runserver", f"{args.host}:{args.port}", "--noreload"],
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        if not wait_for_port(args.port, server):
            raise DemoError(f"the app did not start on port {args.port} (its output is above).")
        vapi_url = env.get("VAPI_BASE_URL") or "https://api.vapi.ai"
        print_banner(args.host, args.port, password, token, emulator_port, vapi_url, env_file if use_emulator else None)
        return supervise(server, emulator)
    except KeyboardInterrupt:
        log("stopping")
        return 0
    except DemoError as exc:
        log(f"cannot run the demo: {exc}")
        return 1
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
