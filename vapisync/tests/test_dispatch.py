"""How automatic work is handed on (vapisync.services.dispatch): by task name, once per transaction,
and a finished run's follow-up comes from the run itself. Vapi is the emulator; no broker (in-process)."""

import pytest
from django.db import transaction

from agents.models import Agent
from globalvoice.celery import app as celery_app
from globalvoice.tracking import SyncStatus
from vapisync.models import Direction, SyncRun, Trigger
from vapisync.services import dispatch
from vapisync.services.outbox_drain import pending_push
from vapisync.services.runs import sync_run_create, sync_run_execute
from vapisync.services.schedules import DEFAULT_SCHEDULES

pytestmark = pytest.mark.django_db


def test_every_task_the_services_and_schedules_name_is_registered():
    celery_app.loader.import_default_modules()  # as a worker does on start, and dispatch when it first sends
    names = {*dispatch.TASKS, *(task for task, _, _ in DEFAULT_SCHEDULES.values())}
    assert names - set(celery_app.tasks) == set()


def test_a_save_in_a_rolled_back_savepoint_does_not_swallow_the_next_saves_drain(
        emulator, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic():
            Agent.objects.create(name="Rolled back")
            raise RuntimeError("rollback")
        kept = Agent.objects.create(name="Kept")
        kept.name = "Kept, renamed"
        kept.save()
    assert len(callbacks) == 1  # the first save's callback went with its savepoint; one for the rest
    kept.refresh_from_db()
    assert kept.sync_status == SyncStatus.SYNCED
    assert [a["name"] for a in emulator.assistants.values()] == ["Kept, renamed"]


def test_a_drain_that_finds_nothing_pending_makes_no_run(emulator):
    assert pending_push().runs == []
    assert not SyncRun.objects.exists() and emulator.counts == {}


def test_the_drains_own_runs_do_not_start_another_sweep(emulator, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        Agent.objects.create(name="Pushed")
    with django_capture_on_commit_callbacks() as after_drain:
        Agent.objects.filter(name="Pushed").update(sync_status=SyncStatus.PENDING)
        assert len(pending_push().runs) == 1
    assert after_drain == []  # the drain settled its run itself; nothing waits for the commit


def test_a_run_started_elsewhere_settles_and_sweeps_once_it_commits(emulator, django_capture_on_commit_callbacks):
    busy = sync_run_create(direction=Direction.IMPORT, trigger=Trigger.API)
    with django_capture_on_commit_callbacks(execute=True):
        agent = Agent.objects.create(name="Saved meanwhile")  # the lock is busy: stays pending
    assert Agent.objects.get(pk=agent.pk).sync_status == SyncStatus.PENDING
    with django_capture_on_commit_callbacks() as after_run:
        sync_run_execute(run_id=busy.pk)
    assert len(after_run) == 1 and Agent.objects.get(pk=agent.pk).sync_status == SyncStatus.PENDING
    after_run[0]()  # the commit: the run's own follow-up sweeps the outbox
    assert Agent.objects.get(pk=agent.pk).sync_status == SyncStatus.SYNCED
    assert SyncRun.objects.filter(trigger=Trigger.SIGNAL, direction=Direction.EXPORT).count() == 1
