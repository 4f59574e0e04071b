"""Automatic sync through this machine's Redis and a real `celery -A globalvoice worker` process.

The worker is a subprocess using the test database (a file on SQLite, test_<name> on PostgreSQL;
the tests commit, `transaction=True`) and the Vapi emulator served over real HTTP by a thread of
the test process. Skipped only where no Redis answers on 127.0.0.1:6379.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection
from django.db.models import Count
from kombu import pools as kombu_pools

from agents.models import Agent
from globalvoice.celery import app as celery_app
from globalvoice.tracking import SyncStatus
from vapisync import mapping
from vapisync.models import SyncRun, Trigger
from vapisync.tasks import pending_reconcile_task
from vapisync.tests.factories import emulator_served

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 12
API_KEY = "worker-test-key"
BURST = 50


@pytest.fixture
def redis_url():
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis does not answer on {REDIS_HOST}:{REDIS_PORT} ({exc}); the worker tests need it.")
    queue = f"globalvoice-test-{uuid.uuid4().hex[:12]}"
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}", queue
    finally:
        # Our queue, its bindings and any message a killed worker left unacknowledged.
        for key in client.scan_iter(match=f"*{queue}*"):
            client.delete(key)
        for tag, raw in client.hgetall("unacked").items():
            if queue.encode() in raw:
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
        client.close()


@pytest.fixture
def served_emulator():
    with emulator_served(api_key=API_KEY, random_seed=11) as served:
        yield served


@pytest.fixture
def broker(redis_url, settings):
    """This process enqueues to Redis (not eager) while the test runs."""
    url, queue = redis_url
    saved = {k: celery_app.conf[k] for k in ("broker_url", "task_always_eager", "task_default_queue")}
    settings.CELERY_BROKER_URL = url
    celery_app.conf.update(broker_url=url, task_always_eager=False, task_default_queue=queue)
    celery_app._pool, celery_app.amqp._producer_pool = None, None
    try:
        yield url, queue
    finally:
        celery_app.conf.update(saved)
        celery_app._pool, celery_app.amqp._producer_pool = None, None
        kombu_pools.reset()  # close this test's broker connections; the next test makes its own


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        if connection.is_in_memory_db():
            pytest.skip("The worker needs a test database it can open: a file or PostgreSQL, not memory.")
        return f"sqlite:///{db['NAME']}"
    credentials = quote(db["USER"] or "") + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    """`celery -A globalvoice worker` in its own process group (killed as a whole, like a container)."""

    def __init__(self, env: dict, log_dir: Path, queue: str):
        self.env, self.log_dir, self.queue = env, log_dir, queue
        self.process = None
        self.log_path = None
        self.starts = 0

    def start(self, timeout: float = 45) -> None:
        self.starts += 1
        self.log_path = self.log_dir / f"worker-{self.starts}.log"
        log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "globalvoice", "worker", "--loglevel", "INFO", "--pool", "prefork",
             "--concurrency", "2", "-Q", self.queue, "-n", f"{self.queue}-{self.starts}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the worker exited ({self.process.returncode}):\n{self.log()}")
            if " ready." in self.log_path.read_text():
                return
            time.sleep(0.2)
        raise AssertionError(f"the worker was not ready within {timeout}s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL to the whole process group: no warm shutdown, no acknowledgement, no cleanup."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=10)

    def log(self) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-60:]) if self.log_path else ""


@pytest.fixture
def worker(broker, served_emulator, transactional_db, tmp_path):
    url, queue = broker
    emulator, base_url = served_emulator
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "vapisync.tests.worker_settings", "ENV_FILE": "", "SECRET_KEY": "worker-test-secret",
        "DATABASE_URL": _database_url(), "CELERY_BROKER_URL": url, "GLOBALVOICE_TEST_QUEUE": queue,
        "VAPI_API_KEY": API_KEY, "VAPI_BASE_URL": base_url, "VAPI_RATE_LIMIT": "0", "VAPI_SYNC_LOCK_TTL": "8",
        "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1",
    }
    env.pop("TEST_VAPI_API_KEY", None)
    handle = Worker(env, tmp_path, queue)
    try:
        yield handle
    finally:
        handle.kill()  # before the database is flushed


def wait_until(condition, *, timeout: float, every: float = 0.25, on_tick=None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if on_tick is not None:
            on_tick()
        time.sleep(every)
    return condition()


def all_synced() -> bool:
    return Agent.objects.filter(sync_status=SyncStatus.SYNCED).count() == BURST


def assert_each_pushed_exactly_once(emulator, worker) -> None:
    state = dict(Agent.objects.values_list("sync_status").annotate(n=Count("id")))
    assert all_synced(), f"agents by status: {state}\n{worker.log()}"
    assert emulator.counts["POST /assistant"] == BURST, dict(emulator.counts)
    markers = [doc.get("metadata", {}).get(mapping.MARKER_KEY) for doc in emulator.assistants.values()]
    assert len(markers) == len(set(markers)) == BURST
    assert set(markers) == {str(u) for u in Agent.objects.values_list("uuid", flat=True)}
    for agent in Agent.objects.all():
        assert emulator.assistants[agent.vapi_assistant_id]["name"] == agent.name
    assert set(SyncRun.objects.values_list("trigger", flat=True)) <= {Trigger.SIGNAL, Trigger.SCHEDULE}


def test_burst_of_saves_reaches_vapi_exactly_once(worker, served_emulator):
    emulator, _ = served_emulator
    worker.start()
    started = time.monotonic()
    for i in range(BURST):
        Agent.objects.create(name=f"Burst {i:02d}", first_message=f"Hello {i}")  # each commits, then enqueues

    assert wait_until(all_synced, timeout=60), worker.log()
    elapsed = time.monotonic() - started
    time.sleep(1.5)  # a run still in flight must not create anything more
    assert_each_pushed_exactly_once(emulator, worker)
    runs = SyncRun.objects.filter(trigger=Trigger.SIGNAL).count()
    assert 1 <= runs < BURST  # saves that came in while a run was busy were coalesced
    print(f"{BURST} saves pushed by the worker in {elapsed:.1f}s over {runs} runs")


def test_worker_killed_mid_burst_still_pushes_each_agent_exactly_once(worker, served_emulator):
    emulator, _ = served_emulator
    emulator.latency_ms = 25  # runs take a while, so the kill lands in the middle of one
    worker.start()
    for i in range(BURST):
        Agent.objects.create(name=f"Burst {i:02d}", first_message=f"Hello {i}")
        if i == BURST // 2:
            wait_until(lambda: emulator.counts["POST /assistant"] > 0, timeout=20, every=0.02)
            worker.kill()
            killed_after = emulator.counts["POST /assistant"]
    worker.start()

    # What beat would do every minute: the reconciler picks up what the killed worker left.
    last_sent = [0.0]

    def reconcile_now_and_then():
        if time.monotonic() - last_sent[0] > 3:
            last_sent[0] = time.monotonic()
            pending_reconcile_task.apply_async(kwargs={"older_than": 0})

    assert wait_until(all_synced, timeout=70, on_tick=reconcile_now_and_then), worker.log()
    time.sleep(1.5)  # a run still in flight must not create anything more
    assert_each_pushed_exactly_once(emulator, worker)
    adopted = worker.log_path.read_text().count("created by an interrupted push")
    print(f"killed after {killed_after} POSTs; {adopted} agent(s) linked to the copy the killed worker had created")
