"""A web process killed in the middle of a run it started (no broker: the run is one of its threads).

gunicorn runs as the Procfile's web line says, on the test database (a file on SQLite, test_<name> on
PostgreSQL; the test commits), against the Vapi emulator served over HTTP by a thread of the test
process. The process is SIGKILLed mid-export, as an OOM kill or a crash would: the run is then marked
`interrupted` (not left `running`) once its lease runs out, and the next run finishes the work with
no assistant created twice.
"""

import os
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from django.db import connection
from django.test import Client

from agents.models import Agent
from vapisync import mapping
from vapisync.client import VapiClient
from vapisync.models import Direction, RunStatus, SyncRun
from vapisync.services.runs import sync_run_start
from vapisync.tests.factories import emulator_served

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "killed-web-test-key"
AGENTS = 40
LEASE_SECONDS = 3


def wait_until(condition, *, timeout: float, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    return condition()


@pytest.fixture
def served_emulator():
    with emulator_served(api_key=API_KEY, random_seed=5) as served:
        yield served


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        if connection.is_in_memory_db():
            pytest.skip("The web process needs a test database it can open: a file or PostgreSQL, not memory.")
        return f"sqlite:///{db['NAME']}"
    credentials = quote(db["USER"] or "") + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def web(served_emulator, tmp_path):
    """The Procfile's web command, in its own process group; yields (base URL, the Popen)."""
    _, vapi_url = served_emulator
    line = next(l for l in (ROOT / "Procfile").read_text().splitlines() if l.startswith("web:"))
    port = _free_port()
    bin_dir = Path(os.sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VAPI_", "CELERY_", "DATABASE_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="globalvoice.settings", ENV_FILE="", SECRET_KEY="killed-web-test-secret", DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1", SECURE_SSL_REDIRECT="false", SECURE_HSTS_SECONDS="0",
        STATICFILES_BACKEND="django.contrib.staticfiles.storage.StaticFilesStorage", WHITENOISE_USE_FINDERS="true",
        DATABASE_URL=_database_url(), CELERY_BROKER_URL="", VAPI_API_KEY=API_KEY, VAPI_BASE_URL=vapi_url,
        VAPI_RATE_LIMIT="0", VAPI_MAX_CONCURRENCY="1", VAPI_SYNC_LOCK_TTL=os.environ.get("TEST_LEASE", str(LEASE_SECONDS)),
        PORT=str(port), WEB_CONCURRENCY="1", PATH=f"{bin_dir}:{env.get('PATH', '')}", PYTHONUNBUFFERED="1",
    )
    log = open(tmp_path / "web.log", "wb")
    process = subprocess.Popen(["sh", "-c", "exec " + line.split(":", 1)[1].strip()], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    base = f"http://127.0.0.1:{port}"

    def healthy():
        assert process.poll() is None, (tmp_path / "web.log").read_text()[-3000:]
        try:
            return requests.get(f"{base}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        assert wait_until(healthy, timeout=60, every=0.2), (tmp_path / "web.log").read_text()[-3000:]
        yield base, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_web_process_killed_mid_run_leaves_an_interrupted_run_and_the_next_run_finishes(
        served_emulator, web, staff_user, settings):
    from rest_framework.authtoken.models import Token

    emulator, vapi_url = served_emulator
    base, process = web
    settings.VAPI_SYNC_LOCK_TTL = LEASE_SECONDS
    settings.VAPI_BASE_URL, settings.VAPI_API_KEY = vapi_url, API_KEY
    agents = Agent.objects.bulk_create([Agent(name=f"Agent {i:02d}") for i in range(AGENTS)])
    emulator.latency_ms = 100  # one create at a time: the export takes about 4 s
    token = Token.objects.create(user=staff_user).key

    started = time.monotonic()
    response = requests.post(f"{base}/api/vapi-sync/agents/to-vapi", json={}, timeout=10,
                             headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 202, response.text[:500]
    assert time.monotonic() - started < 2
    run_id = response.json()["id"]

    assert wait_until(lambda: emulator.counts["POST /assistant"] >= 5, timeout=30)
    os.killpg(process.pid, signal.SIGKILL)  # the web process and the run's thread with it
    process.wait(timeout=10)
    created_by_the_dead_run = len(emulator.assistants)
    assert 5 <= created_by_the_dead_run < AGENTS
    assert SyncRun.objects.get(pk=run_id).status == RunStatus.RUNNING  # what it left behind

    # The page and the API never show it running once its lease has run out.
    page = Client()
    page.force_login(staff_user)

    def interrupted():
        body = page.get("/api/vapi-sync/status").json()
        return body["active_run"] is None and SyncRun.objects.get(pk=run_id).status == RunStatus.INTERRUPTED

    assert wait_until(interrupted, timeout=LEASE_SECONDS + 20, every=0.25)
    dead = SyncRun.objects.get(pk=run_id)
    assert "process running it stopped" in dead.message and dead.finished_at

    # The next run picks up the work: every agent in Vapi exactly once.
    client = VapiClient(api_key=API_KEY, base_url=vapi_url)
    after = sync_run_start(direction=Direction.EXPORT, resources=["assistants"], trigger="admin", client=client)
    assert after.status == RunStatus.SUCCEEDED, after.errors
    assert len(emulator.assistants) == AGENTS
    markers = [doc["metadata"][mapping.MARKER_KEY] for doc in emulator.assistants.values()]
    assert sorted(markers) == sorted(str(a.uuid) for a in agents)
    assert Agent.objects.filter(vapi_assistant_id__isnull=True).count() == 0


@pytest.fixture
def long_lease(monkeypatch):
    monkeypatch.setenv("TEST_LEASE", "600")


def test_web_process_stopped_for_a_deploy_leaves_no_run_running(long_lease, served_emulator, web, staff_user, settings):
    """SIGTERM (a restart, a deploy): the exiting process lets the Vapi requests already handed out
    finish, records its run as ended (finished, or interrupted when more was left) and frees the lease,
    so the next run starts at once instead of after the 10-minute lease."""
    from rest_framework.authtoken.models import Token

    emulator, vapi_url = served_emulator
    base, process = web
    settings.VAPI_BASE_URL, settings.VAPI_API_KEY = vapi_url, API_KEY
    agents = Agent.objects.bulk_create([Agent(name=f"Agent {i:02d}") for i in range(AGENTS)])
    emulator.latency_ms = 100
    token = Token.objects.create(user=staff_user).key
    response = requests.post(f"{base}/api/vapi-sync/agents/to-vapi", json={}, timeout=10,
                             headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 202, response.text[:500]
    run_id = response.json()["id"]
    assert wait_until(lambda: emulator.counts["POST /assistant"] >= 5, timeout=30)

    process.send_signal(signal.SIGTERM)  # gunicorn's graceful stop
    process.wait(timeout=60)

    run = SyncRun.objects.get(pk=run_id)
    assert run.status != RunStatus.RUNNING and run.finished_at  # nothing waits for the lease to expire
    if run.status == RunStatus.INTERRUPTED:
        assert "restart or a deploy" in run.message
    after = sync_run_start(direction=Direction.EXPORT, resources=["assistants"], trigger="admin",
                           client=VapiClient(api_key=API_KEY, base_url=vapi_url))
    assert after.status == RunStatus.SUCCEEDED, after.errors
    assert len(emulator.assistants) == AGENTS
    assert sorted(d["metadata"][mapping.MARKER_KEY] for d in emulator.assistants.values()) == sorted(str(a.uuid) for a in agents)
