"""The stored sync status: what Vapi holds and what a full sync would do, computed now and then
and kept in `SyncStatusSnapshot`, so viewing the status never waits on Vapi.

Refreshed by the runs that read all of Vapi (`status_snapshot_after_run`, called when a run
finishes), by the periodic status check when there is a worker (`status_snapshot_refresh_task`)
and on demand ("Check now" on the page, `GET status?refresh=true`, `manage.py vapi_sync status`).
The database side is never stored: the selectors count it live.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from vapisync.conf import vapi_settings
from vapisync.exceptions import VapiNotConfigured, VapiSyncError
from vapisync.models import Direction, RunStatus, SyncRun, SyncStatusSnapshot, Trigger
from vapisync.services.clients import sync_client
from vapisync.services.history import Recorder
from vapisync.services.plan import RunOptions
from vapisync.services.resource_syncs import RESOURCE_ORDER, RESOURCE_SYNCS

logger = logging.getLogger(__name__)

KEY = "status"
DRIFT_KEYS = ("created", "updated", "deleted", "conflicts", "skipped")
# Runs that read all of Vapi and are started by a person or the nightly schedule: worth a fresh status after.
_REFRESH_AFTER = {Direction.IMPORT, Direction.EXPORT, Direction.FULL}
_REFRESH_TRIGGERS = {Trigger.API, Trigger.ADMIN, Trigger.CLI, Trigger.SCHEDULE}


def status_max_age() -> timedelta:
    return timedelta(seconds=float(getattr(settings, "VAPI_SYNC_STATUS_MAX_AGE", 900.0)))


def status_snapshot_get() -> SyncStatusSnapshot | None:
    return SyncStatusSnapshot.objects.filter(key=KEY).first()


def status_snapshot_refresh(*, client=None, interactive: bool = False, source: str = "check",
                            run: SyncRun | None = None) -> SyncStatusSnapshot:
    """Compare both sides now (a dry run of a full sync: Vapi is listed, nothing is changed) and store it.

    `interactive` (a person waits): short timeouts, no retries, fail fast while Vapi is known to be
    unreachable. A Vapi error is stored as the snapshot's error, keeping the last good figures; raises
    only VapiNotConfigured."""
    if not vapi_settings().configured:
        raise VapiNotConfigured()
    resources = {}
    try:
        client = client or sync_client(interactive=interactive)
        options = RunOptions(pull=True, push=True, dry_run=True, policy=vapi_settings().conflict_policy)
        for resource in RESOURCE_ORDER:
            recorder = Recorder(None, dry_run=True)
            sync = RESOURCE_SYNCS[resource](client=client, options=options, recorder=recorder)
            sync.run()
            counts = recorder.counts[resource]
            resources[resource] = {"vapi": sync.remote_count, "would_change": {k: counts.get(k, 0) for k in DRIFT_KEYS}}
    except VapiSyncError as exc:
        logger.info("Sync status check failed: %s", exc)
        return status_snapshot_error(str(exc))
    return status_snapshot_store(resources=resources, source=source, run=run)


def status_snapshot_store(*, resources: dict, source: str = "run", run: SyncRun | None = None) -> SyncStatusSnapshot:
    """Store what a run or a check saw: {resource: {"vapi": count, "would_change": {created, updated, ...}}}.

    Resources not given keep their stored figures. The engine may call this with what a run listed."""
    now = timezone.now()
    with transaction.atomic():
        snapshot, _ = SyncStatusSnapshot.objects.select_for_update().get_or_create(key=KEY)
        merged = dict(snapshot.resources or {})
        for resource, entry in resources.items():
            merged[resource] = {"vapi": entry.get("vapi"), "would_change": dict(entry.get("would_change") or {}),
                                "computed_at": now.isoformat()}
        snapshot.resources = merged
        snapshot.computed_at, snapshot.source, snapshot.run = now, source, run
        snapshot.vapi_ok_at, snapshot.vapi_error = now, ""
        snapshot.save()
    return snapshot


def status_snapshot_error(message: str) -> SyncStatusSnapshot:
    """Record that Vapi could not be read, keeping the last good figures (and their age)."""
    with transaction.atomic():
        snapshot, _ = SyncStatusSnapshot.objects.select_for_update().get_or_create(key=KEY)
        snapshot.vapi_error, snapshot.vapi_error_at = message[:2000], timezone.now()
        snapshot.save(update_fields=["vapi_error", "vapi_error_at"])
    return snapshot


def status_snapshot_after_run(run: SyncRun) -> None:
    """Called as a run finishes (its outcome known, not yet saved): refresh the stored status after a
    run that read all of Vapi, so whoever sees the run finished also sees the status it left.

    Automatic runs (a saved record, a webhook, delta imports) touch a few records and are frequent;
    they leave the snapshot as it is rather than list all of Vapi each time. Never raises."""
    if not status_snapshot_wanted_after(run):
        return
    try:
        status_snapshot_refresh(source="run", run=run)
    except Exception:  # the run is recorded; a stale status is shown with its age
        logger.warning("Refreshing the sync status after run %s failed", run.pk, exc_info=True)


def status_snapshot_wanted_after(run: SyncRun) -> bool:
    return not (
        run.dry_run
        or run.status in (RunStatus.FAILED, RunStatus.INTERRUPTED)
        or run.direction not in _REFRESH_AFTER
        or run.trigger not in _REFRESH_TRIGGERS
        or run.delta
        or any((run.selection or {}).get("local_ids", {}).values())
        or any((run.selection or {}).get("vapi_ids", {}).values())
    )
