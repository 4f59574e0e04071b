"""The outbox: records waiting for Vapi, marked by a person's save and settled after every run.

A person's save of an agent, or of a linked phone number's name or agent, marks the record
`pending` in the same statement (`sync_status` is the durable outbox entry) and asks for one drain
once the transaction commits (`vapisync.services.outbox_drain.pending_push`, through a task). Ten
rapid saves therefore end in a push of the latest state, a drain that finds nothing pending does
nothing, and pushing an already pushed version changes nothing (the engine compares with the
baseline). Writes made by the sync itself (`sync_writes()`) never mark.

After every run (`run_settle`, called by the run's finish or by the drain that started it):
  - a push that failed with a retryable error (Vapi down, rate limited) goes back to `pending`
    with the reason in `sync_error`, for the reconciler; a payload Vapi rejects stays `error`;
  - a save that landed while the run was busy with the same record can have had its marker
    overwritten by the run's bookkeeping: records saved since the run started whose content no
    longer matches their baseline are marked pending again.
A run started elsewhere (API, admin, command, schedule) then sweeps the outbox if anything waits
(`run_finished`): saves that found the sync lock busy while it ran are pushed now.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from globalvoice.tracking import SyncStatus
from vapisync.models import Direction, Resource, RunStatus, SyncRun, WebhookEvent
from vapisync.resources import REGISTRY
from vapisync.services import dispatch

logger = logging.getLogger(__name__)

# Columns only the sync writes (a person's save keeps the stored values).
SYNC_COLUMNS = {
    resource: (spec.vapi_id_field, "sync_status", "sync_error", "last_synced_at") for resource, spec in REGISTRY.items()
}
PUSH_DIRECTIONS = (Direction.EXPORT, Direction.FULL, Direction.RESOLVE)
MAX_ERROR_LENGTH = 2000


# --- Marking: called by the save receivers ------------------------------------------------------


def pending_prepare(*, resource: str, instance, update_fields) -> None:
    """Before a person's save: decide whether it must reach Vapi and, if so, write the outbox
    marker in the same statement. Remembers the decision on the instance for `pending_commit`.

    The sync owns the bookkeeping columns (Vapi id, status, error, last sync): a person's save, maybe
    of an instance loaded before a push linked it, keeps what is stored instead of writing it back."""
    spec = REGISTRY[resource]
    tracked = spec.tracked_fields
    instance._vapisync_push = False
    if update_fields is not None and not set(update_fields) & {*tracked, "agent", *SYNC_COLUMNS[resource]}:
        return
    previous = None
    if instance.pk is not None and not instance._state.adding:
        previous = spec.model.objects.filter(pk=instance.pk).values(*tracked, *SYNC_COLUMNS[resource]).first()
    if previous is None:  # a new record
        # Numbers are bought in Vapi's dashboard: a local one is linked by an import, never pushed.
        # A caller that creates a record with a status of its own (fixtures, scripts) knows what it does.
        instance._vapisync_push = resource == Resource.ASSISTANTS and instance.sync_status == SyncStatus.LOCAL_ONLY
    else:
        for name in SYNC_COLUMNS[resource]:
            setattr(instance, name, previous[name])
        instance._vapisync_push = _change_wants_push(resource=resource, instance=instance, previous=previous)
    if instance._vapisync_push and update_fields is None:
        instance.sync_status, instance.sync_error = SyncStatus.PENDING, ""


def pending_commit(*, resource: str, instance, update_fields) -> None:
    """After a person's save: complete the marker if the statement could not carry it, and ask for
    a drain once the transaction commits (nothing is sent if it rolls back)."""
    if not instance.__dict__.pop("_vapisync_push", False):
        return
    if update_fields is not None:  # save(update_fields=...) did not write the status columns
        REGISTRY[resource].model.objects.filter(pk=instance.pk).update(sync_status=SyncStatus.PENDING, sync_error="")
        instance.sync_status, instance.sync_error = SyncStatus.PENDING, ""
    pending_push_on_commit()


def pending_push_on_commit() -> None:
    """One drain of the outbox once the transaction commits, however many saves it holds."""
    dispatch.on_commit_once("push", lambda _: dispatch.task_send(dispatch.PUSH_TASK))


def _change_wants_push(*, resource: str, instance, previous: dict) -> bool:
    status = previous["sync_status"]
    if status == SyncStatus.DELETED_REMOTELY:
        return False  # stays so until a person pushes it explicitly (re-creating it in Vapi)
    if resource == Resource.PHONE_NUMBERS and not previous["vapi_phone_id"]:
        return False
    if any(getattr(instance, name) != previous[name] for name in REGISTRY[resource].tracked_fields):
        return True
    # Saving unchanged is a natural "try again" for a record that never reached Vapi or failed.
    return status in (SyncStatus.LOCAL_ONLY, SyncStatus.ERROR, SyncStatus.PENDING)


# --- What waits ---------------------------------------------------------------------------------


def fresh_pending_exists() -> bool:
    """Records marked by a save and not attempted yet (no error)."""
    return any(
        spec.model.objects.filter(sync_status=SyncStatus.PENDING, sync_error="").exists() for spec in REGISTRY.values()
    )


def outbox_waiting() -> bool:
    return fresh_pending_exists() or WebhookEvent.objects.filter(processed_at__isnull=True).exists()


# --- After every run ------------------------------------------------------------------------------


def run_finished(run: SyncRun) -> None:
    """After a run started elsewhere (API, admin, command, schedule) finished and committed: settle
    it, then sweep the outbox if anything waits (records saved while it held the lock, webhook events)."""
    if run.dry_run:
        return
    run_settle(run)
    if outbox_waiting():
        dispatch.task_send(dispatch.SWEEP_TASK)


def run_settle(run: SyncRun) -> list[str]:
    """Put back in the outbox what a finished run failed to push for a reason that may pass. (What
    was saved while it ran is still pending: every status the run writes is a compare-and-set on the
    version it read, see vapisync.services.apply_local.) Returns the retryable failure messages."""
    if run.dry_run or run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
        return []
    return _requeue_retryable_failures(run) if run.direction in PUSH_DIRECTIONS else []


def _requeue_retryable_failures(run: SyncRun) -> list[str]:
    failed = defaultdict(set)
    messages, whole = [], {}
    for error in run.errors or []:
        retryable = error.get("retryable", True)  # a crash is not a verdict on the payload
        resource = error.get("resource")
        if error.get("local_id") is not None and resource in REGISTRY:
            if retryable:
                failed[resource].add(error["local_id"])
                messages.append(error.get("message", ""))
        elif resource in REGISTRY or resource is None:
            # Vapi unusable for a whole resource (or the run crashed): nothing selected was attempted.
            for r in [resource] if resource else run.resources:
                whole.setdefault(r, (error.get("message", ""), retryable))
            if retryable:
                messages.append(error.get("message", ""))
    for resource, ids in failed.items():
        REGISTRY[resource].model.objects.filter(pk__in=ids, sync_status=SyncStatus.ERROR).update(
            sync_status=SyncStatus.PENDING)
    selected = (run.selection or {}).get("local_ids") or {}
    for resource, (message, retryable) in whole.items():
        rows = REGISTRY[resource].model.objects.filter(sync_status=SyncStatus.PENDING, sync_error="")
        if selected.get(resource):
            rows = rows.filter(pk__in=selected[resource])
        elif run.selection.get("vapi_ids"):
            continue
        rows.filter(updated_at__lt=run.started_at or run.created_at).update(
            sync_status=SyncStatus.PENDING if retryable else SyncStatus.ERROR, sync_error=message[:MAX_ERROR_LENGTH])
    return messages
