"""Read-only database queries: sync status (database counted now, Vapi from the stored status), run history,
conflicts. Nothing here sends a request to Vapi; what does is a service (the health check: services/health.py)."""

from __future__ import annotations

from django.db.models import Count
from django.utils import timezone

from globalvoice.tracking import SyncStatus
from vapisync.breaker import circuit_breaker
from vapisync.conf import vapi_settings
from vapisync.models import ACTIVE_STATUSES, SyncRecord, SyncRun
from vapisync.resources import REGISTRY, RESOURCE_ORDER, resource_spec
from vapisync.services.status import status_max_age, status_snapshot_get


def _local_counts(resource: str) -> dict:
    model = resource_spec(resource).model
    by_status = dict(model.objects.values_list("sync_status").annotate(n=Count("id")).order_by())
    tombstones = SyncRecord.objects.filter(
        resource=resource, local_deleted_at__isnull=False, remote_deleted_at__isnull=True
    ).count()
    return {
        "database": sum(by_status.values()),
        "pending": by_status.get(SyncStatus.PENDING, 0),
        "not_synced": by_status.get(SyncStatus.LOCAL_ONLY, 0),
        "errors": by_status.get(SyncStatus.ERROR, 0),
        "conflicts": by_status.get(SyncStatus.CONFLICT, 0),
        "deleted_in_vapi": by_status.get(SyncStatus.DELETED_REMOTELY, 0),
        "deleted_locally_still_in_vapi": tombstones,
    }


def sync_status_get(*, check_remote: bool = True) -> dict:
    """Counts on both sides plus what a full sync would do (a plan, nothing applied).

    The database side is counted now; the Vapi side comes from the stored status (see
    vapisync.services.status), so this never sends a request to Vapi. `snapshot` says when it was
    computed and whether it is still fresh; `vapi_error` is the last check's error, or the client's
    while Vapi is known to be unreachable. `check_remote=False` leaves the Vapi side out."""
    conf = vapi_settings()
    now = timezone.now()
    status = {"timestamp": now.isoformat(), "configured": conf.configured, "vapi_error": None,
              "vapi_error_at": None, "vapi_last_ok_at": None, "snapshot": None}
    snapshot = status_snapshot_get() if conf.configured and check_remote else None
    stored = (snapshot.resources or {}) if snapshot is not None and snapshot.computed_at else {}
    if snapshot is not None:
        age = (now - snapshot.computed_at).total_seconds() if snapshot.computed_at else None
        status["snapshot"] = {
            "computed_at": snapshot.computed_at, "age_seconds": None if age is None else round(age),
            "fresh": age is not None and age <= status_max_age().total_seconds(),
            "source": snapshot.source, "run_id": snapshot.run_id,
        }
        status["vapi_last_ok_at"] = snapshot.vapi_ok_at
        if snapshot.vapi_error and (not snapshot.computed_at or (snapshot.vapi_error_at or now) >= snapshot.computed_at):
            status["vapi_error"], status["vapi_error_at"] = snapshot.vapi_error, snapshot.vapi_error_at
    if conf.configured and check_remote:
        _breaker_state(status, conf.base_url)
    overall = bool(stored)
    for resource in RESOURCE_ORDER:
        entry = _local_counts(resource)
        if resource in stored:
            drift = {k: (stored[resource].get("would_change") or {}).get(k, 0)
                     for k in ("created", "updated", "deleted", "conflicts", "skipped")}
            entry["vapi"] = stored[resource].get("vapi")
            entry["would_change"] = drift
            entry["in_sync"] = (
                entry["database"] == entry["vapi"] and not any(drift.values()) and not entry["pending"] and not entry["errors"]
            )
        else:
            entry["vapi"] = None
            entry["in_sync"] = None
        overall = overall and bool(entry["in_sync"])
        status[resource_spec(resource).public_name] = entry
    status["in_sync"] = overall if stored and len(stored) == len(RESOURCE_ORDER) else None
    last = SyncRun.objects.filter(dry_run=False).exclude(status__in=ACTIVE_STATUSES).first()
    active = SyncRun.objects.filter(status__in=ACTIVE_STATUSES, dry_run=False).first()
    status["last_run"] = _run_summary(last)
    status["active_run"] = _run_summary(active)
    return status


def _breaker_state(status: dict, base_url: str) -> None:
    """While this process knows Vapi to be unreachable, say so (with the client's own error): the client's
    in-process circuit breaker, no request."""
    state = circuit_breaker(base_url).state()
    if state["last_success_at"] and (not status["vapi_last_ok_at"] or state["last_success_at"] > status["vapi_last_ok_at"]):
        status["vapi_last_ok_at"] = state["last_success_at"]
    if state["open"]:
        status["vapi_error"], status["vapi_error_at"] = state["last_error"], state["last_error_at"]


def _run_summary(run: SyncRun | None) -> dict | None:
    if run is None:
        return None
    return {
        "id": run.pk, "direction": run.direction, "status": run.status, "trigger": run.trigger,
        "started_at": run.started_at, "finished_at": run.finished_at, "counts": run.counts,
    }


def sync_run_list(*, limit: int | None = None):
    qs = SyncRun.objects.select_related("user")
    return qs[:limit] if limit else qs


def sync_run_get(*, run_id: int) -> SyncRun | None:
    return SyncRun.objects.select_related("user", "rollback_of").filter(pk=run_id).first()


def conflicts_list() -> list[dict]:
    items = []
    for resource, spec in REGISTRY.items():
        for obj in spec.model.objects.filter(sync_status=SyncStatus.CONFLICT):
            items.append({"resource": resource, "local_id": obj.pk, "label": str(obj), "message": obj.sync_error})
    return items


