"""The admin's "Vapi Sync" page and its JSON endpoints (status, the active run, one run's progress).

Views here are wired by `vapisync.admin` through `ModelAdmin.get_urls()`, each wrapped in
`admin_site.admin_view()` (staff only, CSRF protected, never cached). The page's buttons are in
`vapisync.admin_actions`; the formatting they share in `vapisync.admin_format`.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.text import capfirst

from globalvoice.tracking import SyncStatus
from vapisync.admin_actions import OPERATIONS
from vapisync.admin_format import (
    counts_text,
    counts_total,
    diff_items,
    duration_text,
    has_run_sync_permission,
    resource_noun,
    rollback_possible,
    run_json,
    run_results,
    run_status_badge,
    run_summary,
    run_url,
    run_what,
)
from vapisync.conf import vapi_settings
from vapisync.models import ACTIVE_STATUSES, ChangeAction, Resource, SyncChange, SyncRecord, SyncRun
from vapisync.resources import REGISTRY, RESOURCE_ORDER
from vapisync.selectors import conflicts_list, sync_run_get, sync_run_list, sync_status_get
from vapisync.services.dispatch import broker_configured
from vapisync.services.runs import runs_reap_interrupted

logger = logging.getLogger(__name__)


# --- The Vapi Sync page -----------------------------------------------------------------


BUTTON_GROUPS = (
    ("Agents ⇄ Vapi assistants", ("import_assistants", "export_agents")),
    ("Phone numbers", ("import_phone_numbers", "export_phone_numbers")),
    ("Everything", ("full", "preview")),
)

BEST_PRACTICES = (
    ("First setup", "Run a Full Synchronization once, then check the counts match on both sides."),
    ("Edit here", "Agents created or edited here are pushed to Vapi automatically; Export agents catches up on any left pending."),
    ("After the Vapi dashboard", "Import (or run a full sync) after adding numbers or editing assistants in Vapi."),
    ("When unsure", "Preview (dry run) first: it lists every create, update and conflict and changes nothing."),
    ("Conflicts", "A record changed on both sides is never overwritten silently: keep one side below."),
    ("Mistakes", "Every run can be rolled back from its row in the history; newer edits are never overwritten."),
    ("Troubleshooting", "Check VAPI_API_KEY and the errors listed in each run; failed items can be retried by running again."),
)


def _status_safely() -> dict:
    """The stored status with live database counts (no Vapi request); whatever goes wrong, the page renders."""

    try:
        runs_reap_interrupted()
        return sync_status_get()
    except Exception as exc:
        logger.exception("Vapi Sync page: reading the sync status failed")
        try:
            status = sync_status_get(check_remote=False)
        except Exception:
            status = {"configured": vapi_settings().configured, "in_sync": None, "last_run": None, "active_run": None}
        status["vapi_error"] = f"Could not read the sync status ({type(exc).__name__}); the counts below are local only."
        return status


def _snapshot_context(status: dict) -> dict:
    """When Vapi was last compared, for the page: its age, and whether it is out of date."""
    snapshot = status.get("snapshot") or {}
    return {
        "checked_at": snapshot.get("computed_at"),
        "checked_fresh": bool(snapshot.get("fresh")),
        "checked_by_run": snapshot.get("run_id") if snapshot.get("source") == "run" else None,
        "vapi_error_at": status.get("vapi_error_at"),
        "vapi_last_ok_at": status.get("vapi_last_ok_at"),
    }


def _changelist(resource: str, **filters) -> str:
    model = REGISTRY[resource].model
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    if filters:
        url += "?" + "&".join(f"{k}={v}" for k, v in filters.items())
    return url


def _status_cards(status: dict) -> list[dict]:
    cards = []
    for resource in RESOURCE_ORDER:
        spec = REGISTRY[resource]
        key, title = spec.public_name, capfirst(resource_noun(resource, plural=True))
        if spec.public_name != spec.resource:  # say what Vapi calls them when the names differ
            title += f" (Vapi {spec.resource.replace('_', ' ')})"
        entry = status.get(key) or {}
        def by_status(status_value, resource=resource):
            return _changelist(resource, sync_status__exact=status_value)

        rows = [
            ("Pending pushes", entry.get("pending", 0), by_status(SyncStatus.PENDING), "info"),
            ("Not synced yet", entry.get("not_synced", 0), by_status(SyncStatus.LOCAL_ONLY), "muted"),
            ("Conflicts", entry.get("conflicts", 0), by_status(SyncStatus.CONFLICT), "warn"),
            ("Errors", entry.get("errors", 0), by_status(SyncStatus.ERROR), "err"),
            ("Deleted in Vapi", entry.get("deleted_in_vapi", 0), by_status(SyncStatus.DELETED_REMOTELY), "muted"),
            ("Deleted here, still in Vapi", entry.get("deleted_locally_still_in_vapi", 0), "#deleted-here", "muted"),
        ]
        would = entry.get("would_change")
        cards.append({
            "key": key,
            "title": title,
            "url": _changelist(resource),
            "database": entry.get("database"),
            "vapi": entry.get("vapi"),
            "in_sync": entry.get("in_sync"),
            "rows": rows,
            "would_change": counts_text(would, dry_run=True, keys=("created", "updated", "deleted", "conflicts"))
            if would is not None else None,
        })
    return cards


def _conflicts() -> list[dict]:
    items = conflicts_list()
    for item in items:
        change = (
            SyncChange.objects.filter(resource=item["resource"], local_id=item["local_id"], action=ChangeAction.CONFLICT)
            .order_by("-id").only("diff", "run_id").first()
        )
        item["fields"] = sorted((change.diff or {}).keys()) if change else []
        item["diff"] = diff_items(change.diff) if change else []
        item["run_id"] = change.run_id if change else None
        model = REGISTRY[item["resource"]].model
        item["url"] = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[item["local_id"]])
        item["noun"] = resource_noun(item["resource"])
    return items


def _deleted_here_still_in_vapi() -> list[dict]:
    records = SyncRecord.objects.filter(local_deleted_at__isnull=False, remote_deleted_at__isnull=True).order_by(
        "resource", "-local_deleted_at")
    return [
        {
            "resource": r.resource,
            "noun": resource_noun(r.resource),
            "vapi_id": r.vapi_id,
            "label": (r.remote or {}).get("name") or (r.remote or {}).get("number") or r.vapi_id,
            "deleted_at": r.local_deleted_at,
            "deletable": r.resource == Resource.ASSISTANTS,
        }
        for r in records[:200]
    ]


def _last_run(status: dict) -> dict | None:
    summary = status.get("last_run")
    run = sync_run_get(run_id=summary["id"]) if summary else None
    if run is None:
        return None
    return {"run": run, "url": run_url(run), "what": run_what(run), "badge": run_status_badge(run)}


def _recent_runs(limit: int = 10) -> list[dict]:
    return [
        {"run": run, "what": run_what(run), "badge": run_status_badge(run), "url": run_url(run),
         "summary": run_summary(run),
         "failed": counts_total(run.counts)["failed"], "duration": duration_text(run),
         "rollback_url": reverse("admin:vapisync_syncrun_rollback", args=[run.pk]) if rollback_possible(run) else None}
        for run in sync_run_list(limit=limit)
    ]


def sync_page_view(model_admin, request, extra_context=None):
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    conf = vapi_settings()
    status = _status_safely()
    selected = None
    if request.GET.get("run", "").isdigit():
        selected = sync_run_get(run_id=int(request.GET["run"]))
    selected = selected or SyncRun.objects.exclude(status__in=ACTIVE_STATUSES).first()
    active = SyncRun.objects.filter(status__in=ACTIVE_STATUSES).order_by("-id").first()

    can_run = has_run_sync_permission(request)
    enabled = conf.configured and can_run
    groups = [(title, [OPERATIONS[k] for k in keys]) for title, keys in BUTTON_GROUPS]
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Vapi Sync",
        "opts": model_admin.opts,
        "app_label": model_admin.opts.app_label,
        "configured": conf.configured,
        "can_run": can_run,
        "buttons_enabled": enabled,
        "vapi_error": status.get("vapi_error"),
        **_snapshot_context(status),
        "check_url": reverse("admin:vapisync_sync_check"),
        "status": status,
        "last_run": _last_run(status),
        "cards": _status_cards(status),
        "button_groups": groups,
        "active_run": active,
        "active_json_url": reverse("admin:vapisync_sync_active_json"),
        "results": run_results(selected),
        "conflicts": _conflicts(),
        "deleted_here": _deleted_here_still_in_vapi(),
        "recent_runs": _recent_runs(),
        "runs_url": reverse("admin:vapisync_syncrun_changelist"),
        "worker_mode": broker_configured(),
        "best_practices": BEST_PRACTICES,
        **(extra_context or {}),
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/vapisync/sync_page.html", context)


def status_json_view(model_admin, request):
    """The status the page shows (stored Vapi side, live database counts); `?remote=0` leaves Vapi out."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    if request.GET.get("remote") == "0":
        status = sync_status_get(check_remote=False)
    else:
        status = _status_safely()
    return JsonResponse(status)


def active_run_json_view(model_admin, request):
    if not model_admin.has_view_permission(request):
        raise PermissionDenied

    runs_reap_interrupted()
    run = SyncRun.objects.filter(status__in=ACTIVE_STATUSES).order_by("-id").first()
    return JsonResponse({"run": run_json(run) if run else None})


def run_json_view(model_admin, request, run_id: int):
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    run = sync_run_get(run_id=run_id)
    if run is None:
        return JsonResponse({"error": f"There is no sync run {run_id}."}, status=404)
    if run.is_active:
        if runs_reap_interrupted():  # a page following a run whose process died sees it end
            run = sync_run_get(run_id=run_id)
    return JsonResponse(run_json(run))


