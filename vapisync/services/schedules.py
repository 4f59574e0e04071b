"""Scheduled runs and the schedules that start them (django-celery-beat).

Beat starts the tasks in `DEFAULT_SCHEDULES` (installed by `migrate` and `manage.py
setup_periodic_tasks`, editable in the admin): a delta import every 5 minutes, a full sync every
night, the outbox's reconciler every minute. Their runs have the trigger "schedule" and do nothing
without VAPI_API_KEY.
"""

from __future__ import annotations

import logging

from django.apps import apps as django_apps
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from vapisync.exceptions import SyncAlreadyRunning
from vapisync.models import Direction, RunStatus, SyncRun, Trigger
from vapisync.services.dispatch import RetryLater, vapi_ready
from vapisync.services.runs import sync_run_start

logger = logging.getLogger(__name__)


def scheduled_import() -> SyncRun | None:
    """Delta import (what changed in Vapi since the last one); trigger "schedule". Skipped while
    another run holds the lock: the next one is minutes away."""
    return _scheduled_run(direction=Direction.IMPORT, delta=True, wait_for_lock=False)


def scheduled_full_sync() -> SyncRun | None:
    """Full two-way reconciliation, including deletion detection; trigger "schedule". Retried
    later (RetryLater) while another run holds the lock."""
    return _scheduled_run(direction=Direction.FULL, wait_for_lock=True)


def _scheduled_run(*, wait_for_lock: bool, **kwargs) -> SyncRun | None:
    if not vapi_ready():
        return None
    try:
        run = sync_run_start(trigger=Trigger.SCHEDULE, **kwargs)
    except SyncAlreadyRunning as exc:
        if wait_for_lock:
            raise RetryLater(str(exc)) from exc
        logger.info("Scheduled %s skipped: %s", kwargs["direction"], exc)
        return None
    if run.status == RunStatus.FAILED and run.errors and all(e.get("retryable") for e in run.errors):
        raise RetryLater(run.message or "Vapi was unavailable")
    return run


# name -> (task, schedule). Editable in the admin (Periodic tasks) once installed.
DEFAULT_SCHEDULES = {
    "Vapi sync: delta import": (
        "vapisync.tasks.scheduled_import_task", {"every": 5, "period": "minutes"},
        "Imports what changed in Vapi since the last import.",
    ),
    "Vapi sync: nightly full sync": (
        "vapisync.tasks.scheduled_full_sync_task", {"minute": "0", "hour": "3"},
        "Full two-way sync, including deletions made in Vapi (03:00, TIME_ZONE).",
    ),
    "Vapi sync: reconcile pending changes": (
        "vapisync.tasks.pending_reconcile_task", {"every": 1, "period": "minutes"},
        "Pushes changes still pending (Vapi or the worker was down) and processes waiting webhook events.",
    ),
}


def periodic_tasks_setup(*, reset: bool = False, apps=None) -> dict[str, str]:
    """Install the default schedules; a schedule that exists is left as the admin edited it unless
    `reset`. `apps` is a migration's app registry (historical models). Returns name -> what happened."""
    apps = apps or django_apps
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    done = {}
    with transaction.atomic():
        for name, (task, schedule, description) in DEFAULT_SCHEDULES.items():
            existing = PeriodicTask.objects.filter(name=name).first()
            if existing is not None and not reset:
                done[name] = "kept"
                continue
            if "every" in schedule:
                interval, _ = IntervalSchedule.objects.get_or_create(**schedule)
                kinds = {"interval": interval, "crontab": None}
            else:
                crontab, _ = CrontabSchedule.objects.get_or_create(
                    day_of_week="*", day_of_month="*", month_of_year="*", timezone=settings.TIME_ZONE, **schedule)
                kinds = {"interval": None, "crontab": crontab}
            values = {"task": task, "description": description, "enabled": True, "args": "[]", "kwargs": "{}", "one_off": False,
                      "solar": None, "clocked": None, **kinds}
            PeriodicTask.objects.update_or_create(name=name, defaults=values)
            done[name] = "reset" if existing is not None else "created"
        # Tell a running beat (DatabaseScheduler) to reload; historical models skip the model's signals.
        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})
    return done
