"""Runs outside the request, ghost runs, failing fast when Vapi is down, the stored status, progress.

The in-process emulator answers through `responses`, which patches requests for every thread, so a
run in a real background thread talks to it too. Tests of the real thread use a transactional
database (the thread has its own connection) and wait with `background_join()`, never a sleep.
"""

import json
import socket
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from agents.models import Agent
from vapisync.breaker import CircuitBreaker, circuit_breaker
from vapisync.client import VapiClient
from vapisync.exceptions import VapiUnavailable
from vapisync.models import Direction, RunStatus, SyncLock, SyncRun, SyncStatusSnapshot
from vapisync.services.background import background_join, background_running
from vapisync.services.runs import runs_reap_interrupted, sync_run_create, sync_run_execute, sync_run_start

from .factories import make_assistant

pytestmark = pytest.mark.django_db

BASE = "/api/vapi-sync/"
PAGE = "/admin/vapisync/sync/"


@pytest.fixture
def threads(settings):
    """Runs in a real background thread of this process, as in production without a broker."""
    settings.VAPI_SYNC_BACKGROUND = "thread"
    yield
    assert background_join(timeout=60), f"still running: {background_running()}"


@pytest.fixture
def api(staff_api):
    return staff_api


def unreachable_vapi(settings, **overrides):
    """A Vapi base URL whose socket accepts connections and never answers (a hung load balancer)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # the kernel completes handshakes; nobody ever reads or answers
    settings.VAPI_BASE_URL = f"http://127.0.0.1:{listener.getsockname()[1]}"
    for name, value in overrides.items():
        setattr(settings, name, value)
    return listener


def refused_vapi(settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.VAPI_BASE_URL = f"http://127.0.0.1:{port}"  # closed again: connections are refused


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


# --- Runs never live inside the request ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_api_export_answers_202_at_once_and_finishes_in_a_background_thread(emulator, api, threads, settings):
    Agent.objects.bulk_create([Agent(name=f"Agent {i}") for i in range(30)])
    settings.VAPI_MAX_CONCURRENCY = 1
    emulator.latency_ms = 60  # one create at a time: the export takes about 2 s; the request must not

    response, elapsed = timed(lambda: api.post(BASE + "agents/to-vapi", {}, format="json"))

    assert response.status_code == 202, response.content
    assert elapsed < 1.0, f"the request waited {elapsed:.1f} s for the run"
    assert response["Location"] == response.json()["url"]
    run = SyncRun.objects.get(pk=response.json()["id"])
    assert run.status in (RunStatus.QUEUED, RunStatus.RUNNING)

    assert background_join(timeout=60)
    polled = api.get(response["Location"]).json()
    assert polled["status"] == "succeeded" and polled["counts"]["agents"]["created"] == 30
    assert polled["progress"]["phase"] == "finished" and polled["progress"]["percent"] == 100.0
    assert len(emulator.assistants) == 30


@pytest.mark.django_db(transaction=True)
def test_admin_button_returns_at_once_and_the_page_follows_the_run(emulator, client, staff_user, threads, settings):
    client.force_login(staff_user)
    Agent.objects.bulk_create([Agent(name=f"Agent {i}") for i in range(30)])
    settings.VAPI_MAX_CONCURRENCY = 1
    emulator.latency_ms = 60  # about 2 s of creates

    response, elapsed = timed(lambda: client.post(PAGE + "run/", {"operation": "export_agents"}))

    run = SyncRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"{PAGE}?run={run.pk}#progress"
    assert elapsed < 1.0, f"the request waited {elapsed:.1f} s for the run"
    live = client.get(f"{PAGE}runs/{run.pk}.json").json()
    assert live["id"] == run.pk and live["what"] == "Export of agents to Vapi" and live["active"] is True

    assert background_join(timeout=60)
    done = client.get(f"{PAGE}runs/{run.pk}.json").json()
    assert done["status"] == "succeeded" and done["active"] is False
    assert done["counts"]["assistants"]["created"] == 30


def test_dry_runs_still_answer_inline(emulator, staff_api):
    make_assistant(emulator, "Remote")
    response = staff_api.post(BASE + "full", {"dry_run": True}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "succeeded"
    assert response.json()["counts"]["agents"]["created"] == 1


def test_the_command_line_runs_in_the_foreground(emulator, capsys):
    make_assistant(emulator, "Remote")
    call_command("vapi_sync", "import", "--json")
    run = json.loads(capsys.readouterr().out)
    assert run["status"] == "succeeded" and run["counts"]["agents"]["created"] == 1


# --- No ghost runs ----------------------------------------------------------------------------------------


def _as_if_its_process_died(run: SyncRun, seconds_ago: float) -> None:
    """What a process killed mid-run leaves: the run 'running', its last heartbeat and lease in the past."""
    then = timezone.now() - timedelta(seconds=seconds_ago)
    SyncRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, started_at=then, heartbeat_at=then)
    SyncLock.objects.filter(owner=f"run:{run.pk}").update(expires_at=then + timedelta(seconds=1))


def test_a_run_whose_process_died_is_interrupted_on_the_next_status_read(emulator, staff_api, settings):
    settings.VAPI_SYNC_LOCK_TTL = 30
    run = sync_run_create(direction=Direction.EXPORT, trigger="api")
    _as_if_its_process_died(run, seconds_ago=31)

    body = staff_api.get(BASE + "status").json()

    run.refresh_from_db()
    assert run.status == RunStatus.INTERRUPTED and body["active_run"] is None
    assert "process running it stopped" in run.message and "its lease expired" in run.message
    assert run.finished_at is not None and run.progress["phase"] == "interrupted"


def test_a_live_run_is_never_taken_for_a_dead_one(emulator, settings):
    settings.VAPI_SYNC_LOCK_TTL = 30
    run = sync_run_create(direction=Direction.EXPORT, trigger="api")
    SyncRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, heartbeat_at=timezone.now())
    assert runs_reap_interrupted() == 0
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_an_abandoned_preview_is_interrupted_after_the_lease_time(emulator, settings):
    settings.VAPI_SYNC_LOCK_TTL = 30
    preview = SyncRun.objects.create(direction=Direction.FULL, trigger="api", dry_run=True, status=RunStatus.RUNNING,
                                     heartbeat_at=timezone.now() - timedelta(seconds=31))
    assert runs_reap_interrupted() == 1
    preview.refresh_from_db()
    assert preview.status == RunStatus.INTERRUPTED


def test_the_run_after_an_interrupted_one_finishes_its_work_without_duplicates(emulator, client, staff_user, settings):
    """The dead run had created some assistants and not recorded them; the next run adopts them."""
    settings.VAPI_SYNC_LOCK_TTL = 30
    client.force_login(staff_user)
    agents = Agent.objects.bulk_create([Agent(name=f"Agent {i}") for i in range(12)])
    # The dead process got 5 creates through to Vapi, then died before recording anything.
    dead = sync_run_create(direction=Direction.EXPORT, trigger="admin")
    from vapisync import mapping

    for agent in Agent.objects.order_by("pk")[:5]:  # what its POSTs carried
        emulator.add_assistant(**mapping.assistant_create_payload(mapping.agent_fields(agent), marker=str(agent.uuid)))
    _as_if_its_process_died(dead, seconds_ago=31)

    page = client.get(PAGE)
    assert page.status_code == 200 and page.context["active_run"] is None
    dead.refresh_from_db()
    assert dead.status == RunStatus.INTERRUPTED

    client.post(PAGE + "run/", {"operation": "export_agents"})

    after = SyncRun.objects.exclude(pk=dead.pk).get()
    assert after.status == RunStatus.SUCCEEDED, after.errors
    assert len(emulator.assistants) == 12  # the 5 made by the dead run were found, not made again
    markers = [a["metadata"][mapping.MARKER_KEY] for a in emulator.assistants.values()]
    assert sorted(markers) == sorted(str(a.uuid) for a in agents)
    assert all(a.vapi_assistant_id for a in Agent.objects.all()), list(Agent.objects.values("name", "vapi_assistant_id", "sync_status"))


# --- Failing fast when Vapi is down ----------------------------------------------------------------------


def test_circuit_breaker_opens_after_failures_and_closes_on_an_answer():
    now = [100.0]
    breaker = CircuitBreaker("http://vapi.example", failures=2, clock=lambda: now[0])
    breaker.check("GET", "/assistant")  # closed
    breaker.record_failure("refused", cooldown=30)
    breaker.check("GET", "/assistant")  # one failure is not an outage
    breaker.record_failure("refused again", cooldown=30)
    with pytest.raises(VapiUnavailable) as raised:
        breaker.check("GET", "/assistant")
    assert "unreachable" in str(raised.value) and "refused again" in str(raised.value) and "was not sent" in str(raised.value)
    now[0] += 31  # the cooldown is over: the next call goes through as a probe
    breaker.check("GET", "/assistant")
    breaker.record_success()
    assert breaker.state()["open"] is False and breaker.state()["last_success_at"] is not None


def test_fail_fast_clients_stop_trying_and_patient_clients_keep_retrying(settings):
    refused_vapi(settings)
    interactive = VapiClient.from_settings(interactive=True)
    assert interactive.fail_fast and interactive.max_retries == 0
    for _ in range(2):
        with pytest.raises(VapiUnavailable, match="Could not connect"):
            interactive.ping()
    (_, elapsed) = timed(lambda: pytest.raises(VapiUnavailable, interactive.ping))
    assert circuit_breaker(settings.VAPI_BASE_URL).is_open() and elapsed < 0.5
    sent_before = interactive.stats["requests"]
    with pytest.raises(VapiUnavailable, match="unreachable"):
        interactive.ping()
    assert interactive.stats["requests"] == sent_before  # nothing was sent

    patient = VapiClient.from_settings(max_retries=2, max_retry_wait=60, sleep=lambda s: None)
    with pytest.raises(VapiUnavailable, match="Could not connect"):
        patient.ping()
    assert patient.stats["requests"] == 3  # a background run is not stopped by the breaker


@pytest.mark.django_db
def test_with_vapi_hanging_the_page_and_status_answer_fast_with_a_banner(client, staff_user, api, settings):
    listener = unreachable_vapi(settings, VAPI_INTERACTIVE_TIMEOUT=1.0, VAPI_TIMEOUT_READ=30.0)
    client.force_login(staff_user)
    SyncStatusSnapshot.objects.create(resources={"assistants": {"vapi": 3, "would_change": {}}}, source="run",
                                      computed_at=timezone.now() - timedelta(hours=2),
                                      vapi_ok_at=timezone.now() - timedelta(hours=2))
    try:
        for _ in range(3):  # today each of these waited 30 s or more
            page, page_s = timed(lambda: client.get(PAGE))
            status, status_s = timed(lambda: api.get(BASE + "status"))
            assert page.status_code == 200 and status.status_code == 200
            assert page_s < 5 and status_s < 5, (page_s, status_s)
            assert status.json()["agents"]["vapi"] == 3 and status.json()["snapshot"]["fresh"] is False

        for _ in range(3):  # a person asks to compare now: a few seconds at most, then at once
            checked, checked_s = timed(lambda: api.get(BASE + "status?refresh=true"))
            assert checked.status_code == 200 and checked_s < 5, checked_s
        body = checked.json()
        assert "unreachable" in body["vapi_error"] or "did not answer" in body["vapi_error"]
        assert body["vapi_last_ok_at"] and body["agents"]["vapi"] == 3  # the last good figures, with their time

        page, page_s = timed(lambda: client.get(PAGE))
        html = page.content.decode()
        assert page_s < 5 and "Vapi could not be reached." in html and "Last successful contact:" in html
        assert "2 hours ago" in html or "hours ago" in html

        health, health_s = timed(lambda: api.get(BASE + "health"))
        assert health.status_code == 503 and health_s < 5
    finally:
        listener.close()


@pytest.mark.django_db
def test_with_vapi_down_the_page_and_status_answer_fast(emulator, client, staff_user, api):
    client.force_login(staff_user)
    emulator.down = True
    for call in (lambda: client.get(PAGE), lambda: api.get(BASE + "status"), lambda: api.get(BASE + "status?refresh=true"),
                 lambda: client.post(PAGE + "check/", follow=True)):
        response, elapsed = timed(call)
        assert response.status_code == 200 and elapsed < 5, elapsed
    assert emulator.counts["GET /assistant"] == 2  # one attempt per check asked for, no retries, no backoff


# --- Status from the stored snapshot ----------------------------------------------------------------------


@pytest.mark.django_db
def test_status_and_page_make_no_vapi_request_when_the_snapshot_is_fresh(emulator, client, staff_user, api):
    client.force_login(staff_user)
    make_assistant(emulator, "Remote")
    Agent.objects.create(name="Local")
    assert api.get(BASE + "status?refresh=true").json()["agents"]["vapi"] == 1
    emulator.reset_counters()

    for _ in range(5):
        body = api.get(BASE + "status").json()
        client.get(PAGE)
        client.get(PAGE + "status.json")
    assert emulator.counts == {}
    assert body["snapshot"]["fresh"] is True and body["snapshot"]["source"] == "check"
    assert body["agents"]["would_change"]["created"] == 2  # one each way: the plan was stored

    # Database counts are live: a new agent shows at once, without asking Vapi.
    Agent.objects.create(name="Another")
    assert api.get(BASE + "status").json()["agents"]["database"] == 2 and emulator.counts == {}


@pytest.mark.django_db
def test_a_full_run_stores_the_status_and_automatic_runs_do_not_list_vapi(emulator, staff_api):
    make_assistant(emulator, "Remote")
    response = staff_api.post(BASE + "full", {}, format="json")
    run_id = response.json()["id"]
    snapshot = SyncStatusSnapshot.objects.get()
    assert snapshot.run_id == run_id and snapshot.source == "run"
    assert snapshot.resources["assistants"]["vapi"] == 1
    assert snapshot.resources["assistants"]["would_change"]["created"] == 0

    selective = sync_run_start(direction=Direction.EXPORT, trigger="signal",
                               local_ids={"assistants": [Agent.objects.get().pk]})
    assert selective.status == RunStatus.SUCCEEDED
    assert SyncStatusSnapshot.objects.get().run_id == run_id  # not refreshed by a one-record push


@pytest.mark.django_db
def test_refresh_needs_the_run_permission_and_is_throttled(emulator, settings, bearer_client):
    from django.contrib.auth.models import Permission, User

    viewer = User.objects.create_user("viewer")
    viewer.user_permissions.add(Permission.objects.get(codename="view_syncrun"))
    client = bearer_client(viewer)
    assert client.get(BASE + "status").status_code == 200
    assert client.get(BASE + "status?refresh=true").status_code == 403

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"vapi_sync": "2/minute"}}
    runner = User.objects.create_user("runner")
    runner.user_permissions.add(Permission.objects.get(codename="run_sync"))  # staff status alone is not enough
    client = bearer_client(runner)
    assert [client.get(BASE + "status?refresh=true").status_code for _ in range(3)] == [200, 200, 429]
    assert client.get(BASE + "status").status_code == 200  # reading the stored status is never throttled
    assert emulator.counts["GET /assistant"] == 2


# --- Progress per record ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_progress_reaches_the_total_with_phase_and_time_left(emulator):
    from vapisync.services.runs import _Progress

    run = sync_run_create(direction=Direction.EXPORT, trigger="cli")
    seen = []
    progress = _Progress(run, listener=seen.append)
    progress(phase="assistants: reading Vapi")
    progress(phase="assistants: applying", total=4, checked=10, done=0)
    for done in range(1, 5):
        progress(done=done)
    assert [s.get("done") for s in seen[-4:]] == [1, 2, 3, 4]
    assert seen[-1]["percent"] == 100.0 and seen[-1]["eta_seconds"] == 0 and seen[-1]["checked"] == 10
    assert "percent" not in seen[0] and seen[1]["percent"] == 0.0
    assert 0 < seen[-3]["percent"] < 100 and "eta_seconds" in seen[-3]
    run.refresh_from_db()
    assert run.progress["phase"] == "assistants: applying" and run.progress["total"] == 4

    sync_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.progress["phase"] == "finished" and "eta_seconds" not in run.progress
