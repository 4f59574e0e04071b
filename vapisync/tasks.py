"""Celery tasks: each calls one service and stops. Services hand work to them by name through
`vapisync.services.dispatch`, which also decides whether a task runs here or in a worker.

All are idempotent and acknowledged late, so a worker killed mid-task leaves its message to be
delivered again and a second delivery changes nothing. Tasks that can meet a failure that passes
(Vapi unavailable or rate limited, the sync lock held by another run) retry with exponential
backoff and jitter; a payload Vapi rejects is never retried: the record shows the error.

Without a broker (CELERY_BROKER_URL unset) the tasks run in-process right after the transaction
commits. Nothing is retried inline there: what is left stays in the outbox (pending records,
unprocessed webhook events) and is taken by the sweep that follows every run, or by the reconciler.
"""

import logging

from celery import shared_task

from vapisync.conf import vapi_settings
from vapisync.exceptions import VapiRateLimited, VapiUnavailable
from vapisync.services.deletions import assistants_delete_automatic
from vapisync.services.dispatch import Outcome, RetryLater, in_process
from vapisync.services.outbox_drain import automatic_sweep, pending_push, pending_reconcile
from vapisync.services.runs import runs_reap_interrupted, sync_run_execute
from vapisync.services.schedules import scheduled_full_sync, scheduled_import
from vapisync.services.status import status_snapshot_refresh
from vapisync.services.webhooks import webhook_events_process

logger = logging.getLogger(__name__)

RETRYING = {
    "acks_late": True,
    "autoretry_for": (RetryLater, VapiUnavailable, VapiRateLimited),
    "retry_backoff": 5,  # seconds; doubles per retry, full jitter
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 8,  # then the reconciler takes over
}


def _in_process(task) -> bool:
    return bool(task.request.is_eager) or in_process()


def _settle(task, outcome: Outcome, what: str) -> dict:
    """Retry through Celery when a worker runs the task and what is left may pass; else report."""
    reason = outcome.retry_reason
    if reason and not _in_process(task):
        raise RetryLater(f"{what}: {reason}")
    if reason:
        logger.info("%s: %s; left pending for the next sweep or the reconciler", what, reason)
    return {"runs": [run.pk for run in outcome.runs], "left": reason}


@shared_task(bind=True, acks_late=True)
def sync_run_execute_task(self, run_id: int) -> str:
    """Execute a queued run (API/admin with a worker). Safe twice: a finished run is left as it is."""
    return sync_run_execute(run_id=run_id).status


@shared_task(bind=True, **RETRYING)
def pending_push_task(self, local_ids: dict | None = None, then_webhook_events: bool = True) -> dict:
    """Drain the outbox after a save: every pending record, including this task's own `local_ids`."""
    return _settle(self, pending_push(local_ids=local_ids, then_webhook_events=then_webhook_events), "Automatic push")


@shared_task(bind=True, acks_late=True)
def automatic_sweep_task(self) -> dict:
    """After a run started elsewhere: push what was saved while it held the lock, process waiting
    webhook events. Not retried: the reconciler comes by every minute."""
    outcome = automatic_sweep()
    return {"runs": [run.pk for run in outcome.runs], "left": outcome.retry_reason}


@shared_task(bind=True, acks_late=True)
def pending_reconcile_task(self, older_than: float | None = None) -> dict:
    """Periodic (every minute): push what is still pending, process waiting webhook events."""
    outcome = pending_reconcile(older_than=older_than)
    return {"runs": [run.pk for run in outcome.runs], "left": outcome.retry_reason}


@shared_task(bind=True, **{**RETRYING, "max_retries": 2})
def scheduled_import_task(self) -> int | None:
    """Periodic (every 5 minutes): delta import. Does nothing without VAPI_API_KEY."""
    try:
        run = scheduled_import()
    except RetryLater:
        if _in_process(self):
            return None
        raise
    return run.pk if run else None


@shared_task(bind=True, **{**RETRYING, "retry_backoff": 30})
def scheduled_full_sync_task(self) -> int | None:
    """Periodic (nightly): full two-way sync. Does nothing without VAPI_API_KEY."""
    try:
        run = scheduled_full_sync()
    except RetryLater:
        if _in_process(self):
            return None
        raise
    return run.pk if run else None


@shared_task(bind=True, **{**RETRYING, "retry_backoff": 2, "retry_backoff_max": 300})
def webhook_events_process_task(self) -> dict:
    """Refresh from Vapi what the waiting webhook events name, in one selective import run."""
    return _settle(self, webhook_events_process(), "Webhook refresh")


@shared_task(bind=True, **RETRYING)
def assistants_delete_task(self, vapi_ids: list[str]) -> dict:
    """Delete in Vapi the assistants of agents deleted here (VAPI_SYNC_DELETE_REMOTE on)."""
    return _settle(self, assistants_delete_automatic(vapi_ids=vapi_ids), "Deleting assistants in Vapi")


@shared_task(bind=True, acks_late=True)
def status_snapshot_refresh_task(self) -> str | None:
    """Periodic (every 10 minutes, with a worker): compare both sides and store the status the page
    and `GET status` show. Not retried: a failure is stored as the status's error, shown with its time."""
    runs_reap_interrupted()
    if not vapi_settings().configured:
        return None
    snapshot = status_snapshot_refresh(source="schedule")
    return snapshot.vapi_error or "ok"
