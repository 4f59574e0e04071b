"""Automatic sync without a broker (tasks run in-process after commit), against the Vapi emulator.

Saves through the API, the admin and the ORM each push once after commit; rollbacks and imports
push nothing; failures stay pending until the reconciler gets them through; schedules.
"""

import logging

import pytest
from django.core.management import call_command
from django.db import transaction
from django_celery_beat.models import PeriodicTask

from agents.models import Agent
from globalvoice.tracking import SyncStatus
from phonenumbers_app.models import PhoneNumber
from vapisync import mapping
from vapisync.context import sync_writes
from vapisync.models import Direction, RunStatus, SyncRecord, SyncRun, Trigger
from vapisync.services import dispatch, outbox_drain, schedules
from vapisync.services.locks import lock_acquire, lock_release
from vapisync.services.runs import sync_run_create, sync_run_execute, sync_run_start
from vapisync.services.seams import seam_inject
from vapisync.tasks import (
    pending_push_task,
    pending_reconcile_task,
    scheduled_full_sync_task,
    scheduled_import_task,
)

from .factories import make_assistant

pytestmark = pytest.mark.django_db

AGENT_FORM = {
    "name": "From admin",
    "first_message": "Hello from the admin",
    "system_prompt": "Be brief.",
    "model_provider": "openai",
    "model": "gpt-4o",
    "voice_provider": "vapi",
    "voice_id": "Elliot",
}


def writes(emulator) -> int:
    return sum(n for route, n in emulator.counts.items() if not route.startswith("GET"))


def assert_pushed_once(emulator, agent: Agent) -> None:
    agent.refresh_from_db()
    assert emulator.counts["POST /assistant"] == 1
    assert agent.sync_status == SyncStatus.SYNCED, agent.sync_error
    remote = emulator.assistants[agent.vapi_assistant_id]
    assert remote["metadata"][mapping.MARKER_KEY] == str(agent.uuid)
    assert remote["name"] == agent.name
    run = SyncRun.objects.get(trigger=Trigger.SIGNAL)
    assert run.direction == Direction.EXPORT and run.status == RunStatus.SUCCEEDED
    assert run.selection["local_ids"] == {"assistants": [agent.pk]}


# --- Saves push once, after commit ----------------------------------------------------------------


def test_api_save_pushes_once_after_commit(emulator, staff_api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = staff_api.post("/api/agents/", {"name": "From API", "first_message": "Hi"}, format="json")
        assert emulator.counts == {}  # nothing is sent before the commit
    assert response.status_code == 201, response.content
    assert response.json()["sync_status"] == SyncStatus.PENDING
    assert len(callbacks) == 1
    assert_pushed_once(emulator, Agent.objects.get(name="From API"))


def test_admin_form_save_pushes_once_after_commit(emulator, client, staff_user, django_capture_on_commit_callbacks):
    client.force_login(staff_user)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post("/admin/agents/agent/add/", AGENT_FORM)
    assert response.status_code == 302, response.content.decode()[:1000]
    assert len(callbacks) == 1
    agent = Agent.objects.get(name="From admin")
    assert_pushed_once(emulator, agent)
    assert emulator.assistants[agent.vapi_assistant_id]["firstMessage"] == "Hello from the admin"


@pytest.mark.django_db(transaction=True)
def test_orm_save_pushes_once_after_the_real_commit(emulator):
    with transaction.atomic():
        agent = Agent.objects.create(name="From ORM", system_prompt="Greet callers.")
        assert Agent.objects.get(pk=agent.pk).sync_status == SyncStatus.PENDING  # the outbox marker
        assert emulator.counts == {}
    assert_pushed_once(emulator, agent)


@pytest.mark.django_db(transaction=True)
def test_rolled_back_transaction_pushes_nothing(emulator):
    with pytest.raises(RuntimeError), transaction.atomic():
        Agent.objects.create(name="Never committed")
        raise RuntimeError("rollback")
    assert emulator.counts == {}
    assert not Agent.objects.exists() and not SyncRun.objects.exists()


def test_rolled_back_savepoint_pushes_only_what_was_kept(emulator, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        kept = Agent.objects.create(name="Kept")
        with pytest.raises(RuntimeError), transaction.atomic():
            Agent.objects.create(name="Rolled back")
            raise RuntimeError("rollback")
    assert_pushed_once(emulator, kept)
    assert [a["name"] for a in emulator.assistants.values()] == ["Kept"]


def test_rapid_saves_in_one_transaction_push_the_latest_state_once(emulator, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        agent = Agent.objects.create(name="Draft 0")
        for i in range(1, 10):
            agent.name = f"Draft {i}"
            agent.save()
    assert len(callbacks) == 1  # one task per transaction, carrying every saved id
    assert_pushed_once(emulator, agent)
    assert emulator.assistants[agent.vapi_assistant_id]["name"] == "Draft 9"
    assert writes(emulator) == 1


@pytest.mark.django_db(transaction=True)
def test_rapid_saves_each_push_the_latest_state_and_nothing_twice(emulator):
    agent = Agent.objects.create(name="Edit 0")
    for i in range(1, 10):
        agent.first_message = f"Version {i}"
        agent.save()
    agent.save()  # unchanged: nothing to push
    agent.refresh_from_db()
    remote = emulator.assistants[agent.vapi_assistant_id]
    assert remote["firstMessage"] == "Version 9" and agent.sync_status == SyncStatus.SYNCED
    assert emulator.counts["POST /assistant"] == 1 and len(emulator.assistants) == 1
    assert emulator.counts["PATCH /assistant/{id}"] == 9
    assert SyncRun.objects.filter(trigger=Trigger.SIGNAL).count() == 10


@pytest.mark.django_db(transaction=True)
def test_saving_an_instance_loaded_before_the_push_keeps_the_link(emulator):
    agent = Agent.objects.create(name="Stale")  # pushed after commit; this instance never saw the Vapi id
    assert agent.vapi_assistant_id is None
    agent.name = "Stale, renamed"
    agent.save()
    agent.refresh_from_db()
    assert emulator.counts["POST /assistant"] == 1 and len(emulator.assistants) == 1
    assert emulator.assistants[agent.vapi_assistant_id]["name"] == "Stale, renamed"
    assert agent.sync_status == SyncStatus.SYNCED


def test_pushing_an_already_pushed_version_writes_nothing(emulator, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        agent = Agent.objects.create(name="Once")
    emulator.reset_counters()
    Agent.objects.filter(pk=agent.pk).update(sync_status=SyncStatus.PENDING)  # e.g. a task delivered twice
    pending_push_task(local_ids={"assistants": [agent.pk]})
    pending_push_task(local_ids={"assistants": [agent.pk]})
    agent.refresh_from_db()
    assert agent.sync_status == SyncStatus.SYNCED
    assert writes(emulator) == 0
    assert SyncRun.objects.filter(trigger=Trigger.SIGNAL).count() == 2  # the second task found nothing pending


def test_unchanged_save_of_a_synced_agent_marks_nothing(emulator, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        agent = Agent.objects.create(name="Stable")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        Agent.objects.get(pk=agent.pk).save()
    assert callbacks == []
    assert Agent.objects.get(pk=agent.pk).sync_status == SyncStatus.SYNCED


# --- No echo ---------------------------------------------------------------------------------------


def test_import_pushes_nothing(emulator, vapi_client, django_capture_on_commit_callbacks):
    support = make_assistant(emulator, "Support")
    make_assistant(emulator, "Sales")
    emulator.add_phone_number(provider="vapi", number="+16826269224", name="Main", assistantId=support["id"])

    with django_capture_on_commit_callbacks(execute=True):
        run = sync_run_start(direction=Direction.IMPORT, trigger=Trigger.CLI, client=vapi_client)

    assert run.status == RunStatus.SUCCEEDED, run.errors
    assert Agent.objects.count() == 2 and PhoneNumber.objects.count() == 1
    assert set(Agent.objects.values_list("sync_status", flat=True)) == {SyncStatus.SYNCED}
    assert writes(emulator) == 0
    assert list(SyncRun.objects.values_list("trigger", flat=True)) == [Trigger.CLI]


def test_writes_made_by_the_sync_are_not_marked(emulator, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks, sync_writes():
        agent = Agent.objects.create(name="Imported")
        agent.name = "Imported, renamed"
        agent.save()
    assert callbacks == []
    assert Agent.objects.get(pk=agent.pk).sync_status == SyncStatus.LOCAL_ONLY
    assert emulator.counts == {}


def test_fixture_loading_is_not_marked(emulator, tmp_path, django_capture_on_commit_callbacks):
    fixture = tmp_path / "agents.json"
    fixture.write_text('[{"model": "agents.agent", "pk": 7, "fields": {"name": "Fixture", '
                       '"uuid": "6f1c1f0e-7d25-4c11-9d7c-6d1d3c1b2a01", "created_at": "2026-01-01T00:00:00Z", '
                       '"updated_at": "2026-01-01T00:00:00Z"}}]')
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        call_command("loaddata", str(fixture), verbosity=0)
    assert callbacks == [] and Agent.objects.get(pk=7).sync_status == SyncStatus.LOCAL_ONLY


# --- Nothing lost -------------------------------------------------------------------------------


def test_vapi_down_keeps_the_change_pending_and_the_reconciler_pushes_it(emulator, django_capture_on_commit_callbacks):
    emulator.fail_writes = True
    with django_capture_on_commit_callbacks(execute=True):
        agent = Agent.objects.create(name="During outage")

    agent.refresh_from_db()
    assert agent.sync_status == SyncStatus.PENDING and agent.vapi_assistant_id is None
    assert "503" in agent.sync_error or "navailable" in agent.sync_error
    failed = SyncRun.objects.get(trigger=Trigger.SIGNAL)
    assert failed.status in (RunStatus.FAILED, RunStatus.PARTIAL)
    assert [e["retryable"] for e in failed.errors] == [True]
    assert emulator.assistants == {}

    pending_reconcile_task(older_than=0)  # still down: the attempt is recorded, the change kept
    agent.refresh_from_db()
    assert agent.sync_status == SyncStatus.PENDING
    retried = SyncRun.objects.get(trigger=Trigger.SCHEDULE)
    assert retried.errors and retried.errors[0]["retryable"] is True

    emulator.fail_writes = False
    emulator.reset_counters()
    pending_reconcile_task(older_than=0)

    agent.refresh_from_db()
    assert agent.sync_status == SyncStatus.SYNCED and agent.sync_error == ""
    assert emulator.counts["POST /assistant"] == 1 and len(emulator.assistants) == 1
    assert emulator.assistants[agent.vapi_assistant_id]["metadata"][mapping.MARKER_KEY] == str(agent.uuid)
    assert SyncRun.objects.filter(trigger=Trigger.SCHEDULE, status=RunStatus.SUCCEEDED).count() == 1
    pending_reconcile_task(older_than=0)  # nothing left: no further run, no write
    assert SyncRun.objects.filter(trigger=Trigger.SCHEDULE).count() == 2 and emulator.counts["POST /assistant"] == 1


def test_reconciler_leaves_recent_changes_to_their_own_task(emulator):
    with sync_writes():
        agent = Agent.objects.create(name="Just saved", sync_status=SyncStatus.PENDING)
    pending_reconcile_task()  # default VAPI_SYNC_RECONCILE_AFTER (60 s)
    assert not SyncRun.objects.exists() and Agent.objects.get(pk=agent.pk).sync_status == SyncStatus.PENDING
    pending_reconcile_task(older_than=0)
    assert Agent.objects.get(pk=agent.pk).sync_status == SyncStatus.SYNCED


def test_rejected_payload_is_an_error_and_never_retried(emulator, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        agent = Agent.objects.create(name="Bad voice", voice_provider="no-such-provider")
    agent.refresh_from_db()
    assert agent.sync_status == SyncStatus.ERROR and agent.sync_error
    assert SyncRun.objects.get(trigger=Trigger.SIGNAL).errors[0]["retryable"] is False
    attempts = emulator.counts["POST /assistant"]
    pending_reconcile_task(older_than=0)
    assert emulator.counts["POST /assistant"] == attempts and not SyncRun.objects.filter(trigger=Trigger.SCHEDULE).exists()

    with django_capture_on_commit_callbacks(execute=True):  # the person fixes it: pushed at once
        agent.voice_provider = "vapi"
        agent.save()
    assert Agent.objects.get(pk=agent.pk).sync_status == SyncStatus.SYNCED


def test_save_while_another_run_holds_the_lock_is_pushed_when_it_finishes(emulator, django_capture_on_commit_callbacks):
    busy = sync_run_create(direction=Direction.IMPORT, trigger=Trigger.API)  # holds the sync lock
    with django_capture_on_commit_callbacks(execute=True):
        agent = Agent.objects.create(name="Saved meanwhile")
    agent.refresh_from_db()
    assert agent.sync_status == SyncStatus.PENDING and agent.sync_error == ""
    assert emulator.counts["POST /assistant"] == 0

    with django_capture_on_commit_callbacks(execute=True):
        sync_run_execute(run_id=busy.pk)  # finishing sweeps the outbox

    assert_pushed_once(emulator, agent)


def test_push_interrupted_after_vapi_created_it_adopts_the_copy(emulator, django_capture_on_commit_callbacks):
    """A worker killed between Vapi's answer to the POST and the database write."""
    with sync_writes():
        agent = Agent.objects.create(name="Interrupted", first_message="Hi", sync_status=SyncStatus.PENDING)
    SyncRun.objects.create(direction=Direction.EXPORT, trigger=Trigger.SIGNAL, status=RunStatus.RUNNING,
                           selection={"local_ids": {"assistants": [agent.pk]}})
    emulator.add_assistant(**mapping.assistant_create_payload(mapping.agent_fields(agent), marker=str(agent.uuid)))
    lost = next(iter(emulator.assistants))

    outcome = outbox_drain.pending_push()

    agent.refresh_from_db()
    assert agent.vapi_assistant_id == lost and agent.sync_status == SyncStatus.SYNCED
    assert emulator.counts["POST /assistant"] == 0 and len(emulator.assistants) == 1
    assert outcome.runs[0].status == RunStatus.SUCCEEDED


def test_rename_saved_while_the_run_pushes_the_record_stays_pending_and_is_pushed(emulator, vapi_client):
    """The run's "synced" write is a compare-and-set on the version it pushed: a rename saved while
    the push was under way keeps its pending marker (no sweep after the run is needed to restore it)."""
    agent = Agent.objects.create(name="Original")
    sync_run_start(direction=Direction.EXPORT, trigger=Trigger.CLI, client=vapi_client)
    agent.refresh_from_db()
    agent.name = "Edited"
    agent.save()

    def rename(**_):
        person = Agent.objects.get(pk=agent.pk)
        person.name = "Renamed meanwhile"
        person.save()

    with seam_inject("remote_chunk", rename, once=True):
        sync_run_start(direction=Direction.EXPORT, trigger=Trigger.CLI, client=vapi_client)

    agent.refresh_from_db()
    assert agent.sync_status == SyncStatus.PENDING
    assert emulator.assistants[agent.vapi_assistant_id]["name"] == "Edited"
    pending_push_task()
    assert emulator.assistants[agent.vapi_assistant_id]["name"] == "Renamed meanwhile"
    assert Agent.objects.get(pk=agent.pk).sync_status == SyncStatus.SYNCED


def test_vapi_side_change_on_another_field_is_merged_after_the_push(emulator, vapi_client, django_capture_on_commit_callbacks):
    remote = make_assistant(emulator, "Support")
    sync_run_start(direction=Direction.IMPORT, trigger=Trigger.CLI, client=vapi_client)
    emulator.edit_assistant(remote["id"], name="Renamed in Vapi")
    agent = Agent.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        agent.first_message = "Edited here"
        agent.save()

    agent.refresh_from_db()
    assert agent.sync_status == SyncStatus.SYNCED, agent.sync_error
    assert agent.name == "Renamed in Vapi" and emulator.assistants[remote["id"]]["firstMessage"] == "Edited here"
    triggers = list(SyncRun.objects.filter(trigger=Trigger.SIGNAL).order_by("id").values_list("direction", flat=True))
    assert triggers == [Direction.EXPORT, Direction.IMPORT]


# --- Phone numbers ------------------------------------------------------------------------------


def _imported(emulator, vapi_client):
    first = make_assistant(emulator, "First")
    second = make_assistant(emulator, "Second")
    phone = emulator.add_phone_number(provider="vapi", number="+16826269224", name="Main", assistantId=first["id"])
    sync_run_start(direction=Direction.IMPORT, trigger=Trigger.CLI, client=vapi_client)
    return first, second, phone


def test_phone_agent_change_and_rename_are_pushed(emulator, vapi_client, django_capture_on_commit_callbacks):
    _, second, remote = _imported(emulator, vapi_client)
    phone = PhoneNumber.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        phone.agent = Agent.objects.get(vapi_assistant_id=second["id"])
        phone.name = "Main line"
        phone.save()
    assert emulator.phone_numbers[remote["id"]]["assistantId"] == second["id"]
    assert emulator.phone_numbers[remote["id"]]["name"] == "Main line"
    assert PhoneNumber.objects.get().sync_status == SyncStatus.SYNCED
    assert emulator.counts["PATCH /phone-number/{id}"] == 1


def test_phone_routed_to_a_new_agent_waits_for_the_agent_to_exist_in_vapi(emulator, vapi_client, django_capture_on_commit_callbacks):
    _, _, remote = _imported(emulator, vapi_client)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        agent = Agent.objects.create(name="Brand new")
        phone = PhoneNumber.objects.get()
        phone.agent = agent
        phone.save()
    agent.refresh_from_db()
    assert agent.vapi_assistant_id and emulator.phone_numbers[remote["id"]]["assistantId"] == agent.vapi_assistant_id
    assert PhoneNumber.objects.get().sync_status == SyncStatus.SYNCED
    # The number never went through Vapi without its assistant.
    assert emulator.counts["PATCH /phone-number/{id}"] == 1


def test_unlinked_or_untouched_phone_numbers_are_not_marked(emulator, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        phone = PhoneNumber.objects.create(number="+16826269224", name="Local only")
        phone.name = "Still local"
        phone.save()
    assert callbacks == [] and PhoneNumber.objects.get().sync_status == SyncStatus.LOCAL_ONLY


# --- Deleting -------------------------------------------------------------------------------------


def test_agent_deletion_deletes_the_assistant_when_enabled(emulator, vapi_client, settings, django_capture_on_commit_callbacks):
    remote = make_assistant(emulator, "Retired")
    sync_run_start(direction=Direction.IMPORT, trigger=Trigger.CLI, client=vapi_client)
    settings.VAPI_SYNC_DELETE_REMOTE = True
    with django_capture_on_commit_callbacks(execute=True):
        Agent.objects.get().delete()
    assert remote["id"] not in emulator.assistants
    run = SyncRun.objects.get(trigger=Trigger.SIGNAL)
    assert run.direction == Direction.DELETE and run.status == RunStatus.SUCCEEDED
    assert SyncRecord.objects.get(vapi_id=remote["id"]).remote_deleted_at is not None


def test_agent_deletion_keeps_the_assistant_by_default(emulator, vapi_client, django_capture_on_commit_callbacks):
    remote = make_assistant(emulator, "Kept in Vapi")
    sync_run_start(direction=Direction.IMPORT, trigger=Trigger.CLI, client=vapi_client)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        Agent.objects.get().delete()
    assert callbacks == [] and remote["id"] in emulator.assistants and writes(emulator) == 0


# --- Schedules ------------------------------------------------------------------------------------


def test_scheduled_tasks_do_nothing_without_an_api_key(emulator, settings, caplog, monkeypatch):
    settings.VAPI_API_KEY = ""
    monkeypatch.setattr(dispatch, "_not_configured_logged", False)
    with caplog.at_level(logging.INFO, logger="vapisync.services.dispatch"):
        assert scheduled_import_task() is None
        assert scheduled_full_sync_task() is None
        assert pending_reconcile_task(older_than=0)["runs"] == []
    assert not SyncRun.objects.exists() and emulator.counts == {}
    assert caplog.text.count("VAPI_API_KEY is not set") == 1


def test_scheduled_delta_import_and_nightly_full_sync(emulator):
    make_assistant(emulator, "Scheduled")
    first = SyncRun.objects.get(pk=scheduled_import_task())
    assert (first.direction, first.delta, first.trigger, first.status) == (
        Direction.IMPORT, True, Trigger.SCHEDULE, RunStatus.SUCCEEDED)
    assert Agent.objects.filter(name="Scheduled").exists()
    full = SyncRun.objects.get(pk=scheduled_full_sync_task())
    assert (full.direction, full.trigger, full.status) == (Direction.FULL, Trigger.SCHEDULE, RunStatus.SUCCEEDED)


def test_scheduled_import_skips_while_another_run_holds_the_lock(emulator):
    assert lock_acquire(owner="run:999999")
    try:
        assert scheduled_import_task() is None
        assert scheduled_full_sync_task() is None  # in-process: left for the next night
    finally:
        lock_release(owner="run:999999")
    assert not SyncRun.objects.exists()


def test_migrate_installed_the_default_schedules_and_the_command_keeps_admin_edits():
    expected = {name: task for name, (task, _, _) in schedules.DEFAULT_SCHEDULES.items()}
    assert dict(PeriodicTask.objects.filter(name__in=expected).values_list("name", "task")) == expected
    delta = PeriodicTask.objects.get(task="vapisync.tasks.scheduled_import_task")
    assert (delta.interval.every, delta.interval.period) == (5, "minutes")
    nightly = PeriodicTask.objects.get(task="vapisync.tasks.scheduled_full_sync_task")
    assert (nightly.crontab.hour, nightly.crontab.minute) == ("3", "0")

    delta.enabled = False  # edited in the admin
    delta.save()
    call_command("setup_periodic_tasks", verbosity=0)
    assert PeriodicTask.objects.get(pk=delta.pk).enabled is False
    PeriodicTask.objects.filter(task="vapisync.tasks.pending_reconcile_task").delete()
    call_command("setup_periodic_tasks", verbosity=0)
    assert PeriodicTask.objects.filter(task="vapisync.tasks.pending_reconcile_task", enabled=True).count() == 1
    call_command("setup_periodic_tasks", "--reset", verbosity=0)
    assert PeriodicTask.objects.get(pk=delta.pk).enabled is True
    assert PeriodicTask.objects.filter(name__in=expected).count() == 3
