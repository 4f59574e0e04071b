"""The production stack on this machine, for the end-to-end suites.

    PostgreSQL  a fresh database e2e_<random> on 127.0.0.1:5432, dropped at the end
    Redis       a dedicated database number (E2E_REDIS_DB, default 14), flushed at start
    emulator    bench/emulator_server.py --control, a separate HTTP server standing in for Vapi
    gunicorn    globalvoice.wsgi with DEBUG off (production settings, plain HTTP on loopback)
    celery      a real `celery -A globalvoice worker` and `celery -A globalvoice beat`

Every process runs in its own process group, writes its log to a file under the stack's
temporary directory, and is stopped (SIGTERM, then SIGKILL) by `Stack.stop()`, which also
drops the database. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent
PG_ADMIN_URL = os.environ.get("E2E_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_DB = int(os.environ.get("E2E_REDIS_DB", "14"))
START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
# The tables the suites wipe between tests; Django's own and django-celery-beat's stay.
APP_TABLE_PREFIXES = ("agents_", "phonenumbers_app_", "vapisync_")


class StackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, *, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value; StackError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)
    raise StackError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


# --- Services this machine provides ----------------------------------------------------


def ensure_postgres() -> None:
    def up():
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2) as conn:
            conn.execute("select 1")
        return True

    try:
        up()
        return
    except psycopg.Error:
        pass
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if versions:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
                       timeout=60, check=False, capture_output=True)
    wait_until(up, timeout=60, interval=1, what="PostgreSQL on 127.0.0.1:5432")


def redis_command(*args: str, db: int = REDIS_DB, timeout: float = 5.0) -> str:
    out = subprocess.run(["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "-n", str(db), *args],
                         capture_output=True, text=True, timeout=timeout)
    return out.stdout.strip()


def ensure_redis() -> None:
    if redis_command("ping", db=0) == "PONG":
        return
    os.makedirs("/var/lib/redis", exist_ok=True)
    os.makedirs("/var/log/redis", exist_ok=True)
    subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", str(REDIS_PORT),
                    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"],
                   timeout=30, check=False)
    wait_until(lambda: redis_command("ping", db=0) == "PONG", timeout=30, interval=0.5, what="Redis on 127.0.0.1:6379")


# --- Processes -------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)  # its own process group: the process and its children
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.alive:
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.signal_group(signal.SIGKILL)  # stragglers (a worker's children) too
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class User:
    username: str
    password: str
    token: str


@dataclass
class Stack:
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="globalvoice-e2e-")))
    db_name: str = field(default_factory=lambda: f"e2e_{secrets.token_hex(4)}")
    procs: dict[str, Proc] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    api_key: str = field(default_factory=lambda: "vk-e2e-" + secrets.token_hex(16))
    webhook_secret: str = field(default_factory=lambda: "whs-e2e-" + secrets.token_hex(16))
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(50))
    password: str = field(default_factory=lambda: "pw-" + secrets.token_urlsafe(12))
    web_port: int = 0
    emulator_port: int = 0
    db_created: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    runs_started: int = 0
    responses_scanned: int = 0
    leaks: list[str] = field(default_factory=list)  # responses that carried the API key or webhook secret

    @property
    def secrets(self) -> dict[str, str]:
        return {"VAPI_API_KEY": self.api_key, "VAPI_WEBHOOK_SECRET": self.webhook_secret}

    def scan_response(self, resp: requests.Response) -> None:
        """Every response the suites receive is searched for the two secrets."""
        self.scan_body(f"{resp.request.method} {resp.request.url}", resp.status_code, resp.content, resp.headers)

    def scan_body(self, what: str, status: int, content: bytes, headers) -> None:
        self.responses_scanned += 1
        haystack = (content or b"").decode("utf-8", "replace") + "\n" + "\n".join(f"{k}: {v}" for k, v in headers.items())
        for name, value in self.secrets.items():
            if value in haystack:
                self.leaks.append(f"{name} in the response to {what} ({status})")

    # -- layout ------------------------------------------------------------------------
    @property
    def logs(self) -> Path:
        path = self.workdir / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:5432/{self.db_name}"

    @property
    def broker_url(self) -> str:
        return f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VAPI_", "CELERY_", "DATABASE_"))}
        env.update(
            DJANGO_SETTINGS_MODULE="globalvoice.settings",
            ENV_FILE="",  # no .env: only what is set here
            PYTHONUNBUFFERED="1",
            DEBUG="false",
            SECRET_KEY=self.secret_key,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            SECURE_SSL_REDIRECT="false",
            SESSION_COOKIE_SECURE="false",
            CSRF_COOKIE_SECURE="false",
            SECURE_HSTS_SECONDS="0",
            # Admin assets straight from the apps: no collectstatic into the working tree.
            STATICFILES_BACKEND="django.contrib.staticfiles.storage.StaticFilesStorage",
            WHITENOISE_USE_FINDERS="true",
            DATABASE_URL=self.database_url,
            CELERY_BROKER_URL=self.broker_url,
            VAPI_API_KEY=self.api_key,
            VAPI_BASE_URL=self.emulator_url,
            VAPI_WEBHOOK_SECRET=self.webhook_secret,
            # Client pacing above the emulator's 40 rps limit in the fault test, so 429s really happen.
            VAPI_RATE_LIMIT=os.environ.get("E2E_VAPI_RATE_LIMIT", "60"),
            VAPI_MAX_RETRY_WAIT="10",
            # How long a killed worker's run keeps the sync lock (default 600 s): the documented knob,
            # lowered so the worker-kill test recovers within the suite's time budget.
            VAPI_SYNC_LOCK_TTL=os.environ.get("E2E_VAPI_SYNC_LOCK_TTL", "60"),
            LOG_LEVEL="INFO",
        )
        env.update(overrides)
        return env

    # -- start -------------------------------------------------------------------------
    def start(self) -> Stack:
        started = time.monotonic()
        ensure_postgres()
        ensure_redis()
        redis_command("flushdb")
        self._create_database()
        self._manage("migrate", "--noinput", timeout=240)
        self._create_users()
        self.start_emulator()
        self.start_web()
        self.start_worker()
        self.start_beat()
        self.timings["start"] = round(time.monotonic() - started, 1)
        return self

    def _create_database(self) -> None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self.db_created = True

    def _manage(self, *args: str, timeout: float = 120, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
        name = "manage-" + re.sub(r"[^a-z0-9]+", "-", args[0].lower())
        log = self.logs / f"{name}.log"
        result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env or self.env(),
                                capture_output=True, text=True, timeout=timeout)
        with log.open("a") as fh:
            fh.write(f"$ manage.py {' '.join(args)}\n{result.stdout}\n{result.stderr}\n")
        if check and result.returncode != 0:
            raise StackError(f"manage.py {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
        return result

    def manage(self, *args: str, timeout: float = 120, env: dict | None = None, check: bool = False):
        """Run a management command against the stack's database (used by tests)."""
        return self._manage(*args, timeout=timeout, env=env, check=check)

    USERS_SCRIPT = """
import json, os
from django.contrib.auth.models import Permission, User
from rest_framework.authtoken.models import Token
password = os.environ["E2E_PASSWORD"]
roles = {
    "plain": {},
    "runner": {"perms": ["vapisync.run_sync"]},
    "staff": {"is_staff": True},
    "staffrunner": {"is_staff": True, "perms": ["vapisync.run_sync"]},
    "admin": {"is_staff": True, "is_superuser": True},
    "loader": {"is_staff": True, "is_superuser": True},
}
roles.update({f"fuzzer{i}": {"is_staff": True, "is_superuser": True} for i in range(10)})
out = {}
for name, role in roles.items():
    user = User.objects.create_user(f"e2e-{name}", f"{name}@example.com", password,
                                    is_staff=role.get("is_staff", False), is_superuser=role.get("is_superuser", False))
    for perm in role.get("perms", []):
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    out[name] = {"username": user.username, "token": Token.objects.create(user=user).key}
print("E2E-USERS " + json.dumps(out))
"""

    def _create_users(self) -> None:
        result = self._manage("shell", "-c", self.USERS_SCRIPT, env=self.env(E2E_PASSWORD=self.password))
        line = next(l for l in result.stdout.splitlines() if l.startswith("E2E-USERS "))
        for role, data in json.loads(line.split(" ", 1)[1]).items():
            self.users[role] = User(username=data["username"], password=self.password, token=data["token"])

    def _spawn(self, name: str, args: list[str], env: dict | None = None) -> Proc:
        log = self.logs / f"{name}.log"
        fh = log.open("ab")
        popen = subprocess.Popen(args, cwd=ROOT, env=env or self.env(), stdout=fh, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        fh.close()
        proc = Proc(name=name, popen=popen, log=log)
        self.procs[name] = proc
        return proc

    def _wait_log(self, proc: Proc, pattern: str, *, timeout: float = START_TIMEOUT, since: int = 0) -> re.Match:
        regex = re.compile(pattern)

        def found():
            if not proc.alive:
                raise StackError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.text()[-4000:]}")
            return regex.search(proc.text()[since:])

        try:
            return wait_until(found, timeout=timeout, interval=0.2, what=f"{proc.name} to log {pattern!r}")
        except StackError as exc:
            raise StackError(f"{exc}\n--- {proc.name} log ---\n{proc.text()[-4000:]}") from None

    def start_emulator(self) -> None:
        proc = self._spawn("emulator", [PYTHON, str(ROOT / "bench" / "emulator_server.py"), "--control", "--port", "0",
                                        "--api-key", self.api_key, "--assistants", "0", "--phones", "0"])
        match = self._wait_log(proc, r"ready http://127\.0\.0\.1:(\d+)", timeout=60)
        self.emulator_port = int(match.group(1))

    def start_web(self) -> None:
        self.web_port = self.web_port or free_port()
        proc = self._spawn("gunicorn", [
            str(BIN / "gunicorn"), "globalvoice.wsgi", "--bind", f"127.0.0.1:{self.web_port}",
            "--worker-class", "gthread", "--workers", "2", "--threads", "8", "--timeout", "120",
            "--graceful-timeout", "10", "--access-logfile", "-", "--error-logfile", "-", "--no-control-socket",
        ])
        wait_until(lambda: proc.alive and requests.get(f"{self.base_url}/healthz", timeout=2).status_code == 200,
                   timeout=START_TIMEOUT, what=f"gunicorn on {self.base_url}/healthz")

    def start_worker(self) -> Proc:
        previous = self.procs.get("worker")
        since = 0
        if previous is not None:
            since = len(previous.text())
        proc = self._spawn("worker", [
            str(BIN / "celery"), "-A", "globalvoice", "worker", "--loglevel", "INFO", "--concurrency", "2",
            "--pool", "prefork", "--hostname", f"e2e-{self.db_name}@%h", "--without-gossip", "--without-mingle",
        ])
        self._wait_log(proc, r"\S+@\S+ ready\.", since=since)
        return proc

    def kill_worker(self) -> None:
        """SIGKILL the worker and its pool processes, as a crash or an OOM kill would."""
        self.procs["worker"].kill()

    def start_beat(self) -> Proc:
        proc = self._spawn("beat", [
            str(BIN / "celery"), "-A", "globalvoice", "beat", "--loglevel", "INFO",
            "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
            "--pidfile", str(self.workdir / "beat.pid"), "--max-interval", "2",
        ])
        self._wait_log(proc, r"beat: Starting|Scheduler: Sending|DatabaseScheduler")
        return proc

    # -- stop --------------------------------------------------------------------------
    def stop(self) -> None:
        for name in ("beat", "worker", "gunicorn", "emulator"):
            proc = self.procs.get(name)
            if proc is not None:
                proc.stop()
        if self.db_created:
            try:
                with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
                self.db_created = False
            except psycopg.Error as exc:
                print(f"e2e: could not drop database {self.db_name}: {exc}", file=sys.stderr)
        try:
            redis_command("flushdb")
        except Exception:
            pass

    def remove_workdir(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tails(self, chars: int = 4000) -> str:
        parts = []
        for path in sorted(p for p in self.logs.glob("*.log") if not p.name.startswith("manage-")):
            text = path.read_text(errors="replace")
            parts.append(f"--- {path.name} (last {min(chars, len(text))} of {len(text)} chars) ---\n{text[-chars:]}")
        return "\n".join(parts)

    def all_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))

    # -- HTTP helpers ------------------------------------------------------------------
    def session(self, role: str | None = "admin") -> requests.Session:
        """A requests session for the API: Bearer token of `role`, or anonymous with None."""
        s = requests.Session()
        s.headers["Accept"] = "application/json"
        if role is not None:
            s.headers["Authorization"] = f"Bearer {self.users[role].token}"
        return _BaseUrlSession.wrap(s, self)

    def browser(self) -> requests.Session:
        """A cookie-keeping session with no credentials, as a fresh browser."""
        return _BaseUrlSession.wrap(requests.Session(), self)

    def admin_login(self, role: str = "admin") -> requests.Session:
        """A logged-in admin session (cookie + CSRF), as a browser would hold."""
        s = self.browser()
        page = s.get("/admin/login/", timeout=30)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        user = self.users[role]
        resp = s.post("/admin/login/?next=/admin/", data={"csrfmiddlewaretoken": token, "username": user.username,
                                                          "password": user.password, "next": "/admin/"},
                      headers={"Referer": f"{self.base_url}/admin/login/"}, timeout=30, allow_redirects=False)
        if resp.status_code != 302:
            raise StackError(f"admin login as {role} failed: {resp.status_code}")
        return s

    # -- emulator control --------------------------------------------------------------
    def emu(self, path: str, payload: dict | None = None, timeout: float = 60) -> dict:
        url = f"{self.emulator_url}{path}"
        resp = requests.post(url, json=payload or {}, timeout=timeout) if payload is not None else requests.get(url, timeout=timeout)
        resp.raise_for_status()
        return resp.json()

    def emu_state(self) -> dict:
        return self.emu("/__state")

    def emu_faults(self, **faults) -> dict:
        return self.emu("/__control", faults)

    def emu_clear_faults(self) -> dict:
        return self.emu_faults(error_rate=0.0, latency_ms=0, rate_limit=None, down=False, fail_writes=False)

    # -- database helpers --------------------------------------------------------------
    @contextmanager
    def db(self):
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
            yield conn

    def sql(self, query: str, params: tuple | dict | None = None) -> list[tuple]:
        with self.db() as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def scalar(self, query: str, params=None):
        rows = self.sql(query, params)
        return rows[0][0] if rows else None

    def database_leaks(self) -> list[str]:
        """The secrets found anywhere in the database (a data-only pg_dump of every table)."""
        dump = subprocess.run(["pg_dump", "--data-only", "--no-owner", "-h", "127.0.0.1", "-U", "postgres", self.db_name],
                              capture_output=True, text=True, timeout=120)
        if dump.returncode != 0:
            raise StackError(f"pg_dump failed: {dump.stderr[-2000:]}")
        found = []
        for name, value in self.secrets.items():
            for line in dump.stdout.splitlines():
                if value in line:
                    found.append(f"{name} in the database: {line[:200].replace(value, '<' + name + '>')}")
        return found

    def log_leaks(self) -> list[str]:
        found = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace")
            for name, value in self.secrets.items():
                if value in text:
                    line = next(l for l in text.splitlines() if value in l)
                    found.append(f"{name} in {path.name}: {line[:200].replace(value, '<' + name + '>')}")
        return found

    def queue_depth(self) -> int:
        """Messages waiting in the broker plus messages taken but not yet acknowledged (acks_late)."""
        total = 0
        for key in redis_command("--scan", "--pattern", "celery*").split():
            kind = redis_command("type", key)
            if kind == "list":
                total += int(redis_command("llen", key) or 0)
        total += int(redis_command("hlen", "unacked") or 0)
        return total

    def wait_idle(self, timeout: float = 120, quiet_for: float = 1.5) -> None:
        """Until the broker is empty, nothing is acknowledged-pending and no run is active, for `quiet_for` seconds."""
        quiet_since = [None]

        def idle():
            busy = self.queue_depth() or self.scalar(
                "select count(*) from vapisync_syncrun where status in ('queued', 'running')")
            if busy:
                quiet_since[0] = None
                return False
            quiet_since[0] = quiet_since[0] or time.monotonic()
            return time.monotonic() - quiet_since[0] >= quiet_for

        wait_until(idle, timeout=timeout, interval=0.3, what="the worker to go idle")

    def reset(self) -> None:
        """An empty application state for the next test: no agents, numbers, runs, queued tasks or Vapi data.

        Gives the worker a moment to finish, then stops it hard, empties the broker (queued and
        unacknowledged tasks, retries waiting for their countdown), the app tables and the
        emulator, and starts a new worker: nothing an earlier test queued can reach the next one.
        """
        started = time.monotonic()
        self.emu_clear_faults()
        try:
            self.wait_idle(timeout=20, quiet_for=0.5)
        except StackError:
            pass
        self.procs["worker"].kill()
        redis_command("flushdb")
        tables = [name for (name,) in self.sql(
            "select tablename from pg_tables where schemaname = 'public'") if name.startswith(APP_TABLE_PREFIXES)]
        with self.db() as conn:
            conn.execute("set lock_timeout = '20s'")
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
        self.emu("/__reset", {})
        self.start_worker()
        self.timings["last_reset"] = round(time.monotonic() - started, 1)


class _BaseUrlSession(requests.Session):
    """requests.Session that prefixes relative URLs with the stack's base URL, sets a default
    timeout and has every response scanned for secrets (Stack.scan_response)."""

    stack: Stack | None = None

    @classmethod
    def wrap(cls, session: requests.Session, stack: Stack) -> _BaseUrlSession:
        session.__class__ = cls
        session.stack = stack
        return session

    def request(self, method, url, *args, **kwargs):
        if url.startswith("/"):
            url = self.stack.base_url + url
        kwargs.setdefault("timeout", 60)
        resp = super().request(method, url, *args, **kwargs)
        self.stack.scan_response(resp)
        return resp
