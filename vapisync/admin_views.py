"""The admin's "Vapi Sync" page and the small helpers the sync admins share.

Views here are wired by `vapisync.admin` through `ModelAdmin.get_urls()`, each wrapped in
`admin_site.admin_view()` (staff only, CSRF protected, never cached). They validate the
request, call one service, turn its outcome or its VapiSyncError into a message, and
redirect: GET never starts a sync, and a service error never becomes a 500.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBadRequest, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst

from globalvoice.tracking import SyncStatus
from vapisync.conf import vapi_settings
from vapisync.exceptions import SyncAlreadyRunning, VapiSyncError
from vapisync.models import (
    ACTIVE_STATUSES,
    ChangeAction,
    Direction,
    Resource,
    RunStatus,
    SyncChange,
    SyncRecord,
    SyncRun,
    Trigger,
)
from vapisync.resources import REGISTRY, RESOURCE_ORDER
from vapisync.selectors import conflicts_list, sync_run_get, sync_run_list, sync_status_get

logger = logging.getLogger(__name__)

RUN_SYNC_PERMISSION = "vapisync.run_sync"


def resource_noun(resource: str | None, *, plural: bool = False) -> str:
    """"agent" / "phone numbers": the registered model's own verbose name ("" for an unknown resource)."""
    spec = REGISTRY.get(resource)
    if spec is None:
        return ""
    return str(spec.model._meta.verbose_name_plural if plural else spec.model._meta.verbose_name)


COUNT_KEYS = ("created", "updated", "deleted", "unchanged", "conflicts", "failed", "skipped")
COUNT_WORDS = {  # key -> (singular, plural) for a finished run, then for a dry run
    "created": (("created", "created"), ("to create", "to create")),
    "updated": (("updated", "updated"), ("to update", "to update")),
    "deleted": (("deleted", "deleted"), ("to delete", "to delete")),
    "unchanged": (("unchanged", "unchanged"), ("unchanged", "unchanged")),
    "conflicts": (("conflict", "conflicts"), ("conflict", "conflicts")),
    "failed": (("failed", "failed"), ("failing", "failing")),
    "skipped": (("skipped", "skipped"), ("skipped", "skipped")),
}

RECORD_STATUS_LEVEL = {
    SyncStatus.SYNCED: "ok",
    SyncStatus.PENDING: "info",
    SyncStatus.LOCAL_ONLY: "muted",
    SyncStatus.ERROR: "err",
    SyncStatus.CONFLICT: "warn",
    SyncStatus.DELETED_REMOTELY: "muted",
}
RUN_STATUS_LEVEL = {
    RunStatus.QUEUED: "info",
    RunStatus.RUNNING: "info",
    RunStatus.SUCCEEDED: "ok",
    RunStatus.PARTIAL: "warn",
    RunStatus.FAILED: "err",
    RunStatus.INTERRUPTED: "warn",
}
MESSAGE_LEVEL = {
    RunStatus.SUCCEEDED: messages.SUCCESS,
    RunStatus.PARTIAL: messages.WARNING,
    RunStatus.FAILED: messages.ERROR,
    RunStatus.INTERRUPTED: messages.WARNING,
}
CHECK_MIN_INTERVAL = 10  # seconds between two "Check now" comparisons with Vapi (per cache)


# --- Shared formatting ---------------------------------------------------------------


def has_run_sync_permission(request) -> bool:
    from vapisync.permissions import user_can_run_sync  # the one rule, shared with the API and the CLI

    return user_can_run_sync(request.user)


def badge(level: str, text: str):
    return format_html('<span class="vs-badge vs-{}">{}</span>', level, text)


def record_status_badge(obj):
    return badge(RECORD_STATUS_LEVEL.get(obj.sync_status, "muted"), obj.get_sync_status_display())


def run_status_badge(run: SyncRun):
    text = run.get_status_display()
    if run.dry_run and not run.is_active:
        text = "Preview" if run.status == RunStatus.SUCCEEDED else f"Preview – {text.lower()}"
    return badge(RUN_STATUS_LEVEL.get(run.status, "muted"), text)


def run_url(run: SyncRun) -> str:
    return reverse("admin:vapisync_syncrun_change", args=[run.pk])


def page_url() -> str:
    return reverse("admin:vapisync_sync_changelist")


def counts_total(counts: dict) -> dict:
    total = dict.fromkeys(COUNT_KEYS, 0)
    for per_resource in (counts or {}).values():
        for key in COUNT_KEYS:
            total[key] += (per_resource or {}).get(key, 0) or 0
    return total


def counts_text(counts: dict, *, dry_run: bool = False, keys=COUNT_KEYS) -> str:
    """"2 created, 1 unchanged, 1 conflict" or, for a dry run, "2 to create, 1 to update"."""
    counts = counts or {}
    parts = []
    for key in keys:
        n = counts.get(key) or 0
        if n:
            singular, plural = COUNT_WORDS[key][1 if dry_run else 0]
            parts.append(f"{n} {singular if n == 1 else plural}")
    return ", ".join(parts) if parts else "nothing to change"


def run_failed_empty(run: SyncRun) -> bool:
    """A failed run that counted nothing: "nothing to change" would read as a success."""
    return run.status == RunStatus.FAILED and not any(counts_total(run.counts).values())


FAILED_EMPTY_TEXT = "failed before any change"


def run_summary(run: SyncRun) -> str:
    """The one-line result of a finished run for lists: its totals, or why there are none."""
    if run.is_active:
        return "…"
    if run_failed_empty(run):
        return FAILED_EMPTY_TEXT
    return counts_text(counts_total(run.counts), dry_run=run.dry_run)


def run_counts_text(run: SyncRun) -> str:
    """Per resource: "agents: 1 created, 2 unchanged; phone numbers: nothing to change"."""
    if run_failed_empty(run):
        return FAILED_EMPTY_TEXT
    parts = []
    for resource in RESOURCE_ORDER:
        if resource in (run.counts or {}):
            text = counts_text(run.counts[resource], dry_run=run.dry_run)
            if run.status == RunStatus.FAILED and text == "nothing to change":
                text = "nothing done"  # the run stopped before this resource, it did not find it in sync
            parts.append(f"{resource_noun(resource, plural=True)}: {text}")
    return "; ".join(parts) or "nothing to change"


def run_what(run: SyncRun) -> str:
    """A short name for what a run did: "Import of phone numbers", "Full synchronization"."""
    nouns = " and ".join(resource_noun(r, plural=True) for r in run.resources or [] if r in REGISTRY)
    selected = sum(len(ids) for ids in (run.selection or {}).get("local_ids", {}).values())
    if selected:
        noun = resource_noun(run.resources[0], plural=selected != 1) if run.resources else "records"
        nouns = f"{selected} selected {noun}"
    base = {
        Direction.IMPORT: f"Import of {nouns} from Vapi",
        Direction.EXPORT: f"Export of {nouns} to Vapi",
        Direction.FULL: "Full synchronization" if not selected else f"Synchronization of {nouns}",
        Direction.ROLLBACK: f"Rollback of run {run.rollback_of_id}",
        Direction.RESOLVE: "Conflict resolution",
        Direction.DELETE: "Deletion in Vapi",
    }.get(run.direction, run.get_direction_display())
    return f"Preview of {base[0].lower()}{base[1:]}" if run.dry_run else base


def report_run(request, run: SyncRun) -> None:
    """One message per run: SUCCESS, WARNING for partial, ERROR for failed, always linking the run."""
    link = format_html('<a href="{}">run {}</a>', run_url(run), run.pk)
    what = run_what(run)
    if run.is_active:
        messages.info(request, format_html(
            "{} started as {}; it runs in the background, its progress shows below. You may leave this page.",
            what, link))
        return
    level = MESSAGE_LEVEL.get(run.status, messages.INFO)
    totals = counts_total(run.counts)
    if run.status == RunStatus.PARTIAL and not any(totals[k] for k in ("created", "updated", "deleted", "unchanged")):
        level = messages.ERROR  # "partial" with nothing done is a failure to the person who clicked
    summary = run_counts_text(run)
    first_errors = [e.get("message", "") for e in (run.errors or [])[:3]]
    if run.status == RunStatus.SUCCEEDED:
        text = format_html("{} finished ({}): {}.", what, link, summary)
    elif run.status == RunStatus.PARTIAL:
        failed = totals["failed"]
        verb = "failed" if level == messages.ERROR else "partly failed"
        text = format_html("{} {} ({}): {}. {} item(s) failed{}", what, verb, link, summary, failed,
                           format_html(": {}", "; ".join(first_errors)) if first_errors else ".")
    else:
        reason = run.message or "; ".join(first_errors) or "see the run for details"
        text = format_html("{} failed ({}): {}", what, link, reason)
    messages.add_message(request, level, text)


def report_error(request, exc: VapiSyncError) -> None:
    if isinstance(exc, SyncAlreadyRunning) and exc.run_id:
        messages.error(request, format_html(
            'Not started: <a href="{}">sync run {}</a> is already in progress; wait for it to finish.',
            reverse("admin:vapisync_syncrun_change", args=[exc.run_id]), exc.run_id))
    else:
        messages.error(request, f"Not done: {exc}")


def run_json(run: SyncRun) -> dict:
    return {
        "id": run.pk,
        "direction": run.direction,
        "status": run.status,
        "status_display": run.get_status_display(),
        "active": run.is_active,
        "dry_run": run.dry_run,
        "trigger": run.trigger,
        "resources": run.resources,
        "what": run_what(run),
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "progress": run.progress or {},
        "counts": run.counts or {},
        "summary": run_counts_text(run) if not run.is_active else "",
        "errors": (run.errors or [])[:20],
        "message": run.message,
        "url": run_url(run),
        "page_url": f"{page_url()}?run={run.pk}",
    }


def duration_text(run: SyncRun) -> str:
    if not (run.started_at and run.finished_at):
        return ""
    seconds = (run.finished_at - run.started_at).total_seconds()
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {int(seconds % 60)} s"


def rollback_possible(run: SyncRun) -> bool:
    """Worth offering a rollback button for (the service has the last word)."""
    return (
        not run.dry_run
        and not run.is_active
        and any(counts_total(run.counts)[k] for k in ("created", "updated", "deleted"))
    )


# --- The Vapi Sync page -----------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    key: str
    label: str
    help: str
    direction: str
    resources: tuple[str, ...] | None
    dry_run: bool = False
    primary: bool = False


OPERATIONS = {
    op.key: op
    for op in (
        Operation("import_assistants", "Import assistants", "Create and update agents here from Vapi's assistants.",
                  Direction.IMPORT, (Resource.ASSISTANTS,)),
        Operation("export_agents", "Export agents", "Create or update Vapi assistants from the agents here.",
                  Direction.EXPORT, (Resource.ASSISTANTS,)),
        Operation("import_phone_numbers", "Import phone numbers", "Bring numbers added in Vapi here, linked to their agents.",
                  Direction.IMPORT, (Resource.PHONE_NUMBERS,)),
        Operation("export_phone_numbers", "Export phone numbers", "Push names and agent assignments of linked numbers to Vapi.",
                  Direction.EXPORT, (Resource.PHONE_NUMBERS,)),
        Operation("full", "Full Synchronization", "Both directions, agents first, then phone numbers.",
                  Direction.FULL, None, primary=True),
        Operation("preview", "Preview (dry run)", "What a full synchronization would do now; changes nothing.",
                  Direction.FULL, None, dry_run=True),
    )
}
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
    from vapisync.services.runs import runs_reap_interrupted

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


def _pair(values) -> tuple[str, str]:
    old, new = (list(values) + [None, None])[:2] if isinstance(values, (list, tuple)) else (values, None)
    return short(old), short(new)


EMPTY = "—"


class DiffText(str):
    """A value shortened for a diff cell (`str` is the short text) that keeps the whole text in `full`,
    so templates can offer it (a <details> that expands) instead of losing it."""

    full: str

    def __new__(cls, short_text: str, full: str):
        obj = super().__new__(cls, short_text)
        obj.full = full
        return obj

    @property
    def truncated(self) -> bool:
        return self.full != str(self)


def diff_items(diff: dict | None, limit: int = 8) -> list[tuple[str, str, str]]:
    """(field, old, new) for display, leaving out fields empty on both sides."""
    items = [(field, *_pair(values)) for field, values in sorted((diff or {}).items())]
    return [(f, old, new) for f, old, new in items if not (old == EMPTY and new == EMPTY)][:limit]


def short(value, limit: int = 90) -> DiffText:
    text = EMPTY if value is None or value == "" else str(value)
    return DiffText(text if len(text) <= limit else text[: limit - 1] + "…", text)


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


def _run_results(run: SyncRun | None) -> dict | None:
    if run is None or run.is_active:
        return None
    rows = []
    for resource in RESOURCE_ORDER:
        if resource in (run.counts or {}):
            counts = run.counts[resource] or {}
            rows.append({"title": capfirst(resource_noun(resource, plural=True)),
                         "cells": [counts.get(k, 0) for k in COUNT_KEYS]})
    plan = [
        {**item, "noun": resource_noun(item.get("resource")),
         "action_display": ChangeAction(item["action"]).label if item.get("action") in ChangeAction.values else "",
         "diff_items": diff_items(item.get("diff"), limit=6)}
        for item in (run.plan or []) if item.get("action") != ChangeAction.SKIP or item.get("reason")
    ]
    return {
        "run": run, "what": run_what(run), "badge": run_status_badge(run), "url": run_url(run),
        "summary": run_counts_text(run), "headers": COUNT_KEYS, "rows": rows,
        "total_summary": run_summary(run),
        "errors": normalized_errors(run.errors)[:20], "more_errors": max(0, len(run.errors or []) - 20),
        "plan": plan[:200], "more_plan": max(0, len(plan) - 200), "duration": duration_text(run),
    }


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
    from vapisync.services.dispatch import broker_configured

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
        "results": _run_results(selected),
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


def _require_run_permission(request) -> None:
    if not has_run_sync_permission(request):
        raise PermissionDenied


def sync_run_view(model_admin, request):
    """One of the page's buttons: start the run, report it, back to the page."""
    _require_run_permission(request)
    op = OPERATIONS.get(request.POST.get("operation", ""))
    if op is None:
        return HttpResponseBadRequest("Unknown operation.")
    from vapisync.services.runs import sync_run_submit

    try:
        run = sync_run_submit(direction=op.direction, resources=list(op.resources) if op.resources else None,
                              trigger=Trigger.ADMIN, user=request.user, dry_run=op.dry_run)
    except VapiSyncError as exc:
        report_error(request, exc)
        return HttpResponseRedirect(page_url())
    report_run(request, run)
    return HttpResponseRedirect(f"{page_url()}?run={run.pk}#{'progress' if run.is_active else 'results'}")


def status_check_view(model_admin, request):
    """"Check now": compare with Vapi now (a few seconds at most) and store it; back to the page."""
    _require_run_permission(request)
    from django.core.cache import cache

    from vapisync.services.status import status_snapshot_refresh

    if not vapi_settings().configured:
        messages.error(request, "Vapi is not configured: set VAPI_API_KEY.")
        return HttpResponseRedirect(page_url())
    if not cache.add("vapisync:status-check", True, CHECK_MIN_INTERVAL):
        messages.info(request, "Checked moments ago; the figures below are current.")
        return HttpResponseRedirect(f"{page_url()}#status")
    snapshot = status_snapshot_refresh(interactive=True)
    if snapshot.vapi_error and (not snapshot.computed_at or snapshot.vapi_error_at >= snapshot.computed_at):
        messages.error(request, f"Could not compare with Vapi: {snapshot.vapi_error}")
    else:
        messages.success(request, "Compared with Vapi just now.")
    return HttpResponseRedirect(f"{page_url()}#status")


def conflict_resolve_view(model_admin, request):
    _require_run_permission(request)
    resource, keep, local_id = request.POST.get("resource"), request.POST.get("keep"), request.POST.get("local_id", "")
    if resource not in REGISTRY or keep not in ("vapi", "local") or not local_id.isdigit():
        return HttpResponseBadRequest("Expected resource, local_id and keep=vapi|local.")
    from vapisync.services.conflicts import conflict_resolve

    model = REGISTRY[resource].model
    label = str(model.objects.filter(pk=int(local_id)).first() or f"#{local_id}")
    try:
        run = conflict_resolve(resource=resource, local_id=int(local_id), keep=keep, trigger=Trigger.ADMIN, user=request.user)
    except VapiSyncError as exc:
        report_error(request, exc)
        return HttpResponseRedirect(page_url())
    link = format_html('<a href="{}">run {}</a>', run_url(run), run.pk)
    side = "Vapi's version" if keep == "vapi" else "the version here"
    if run.status == RunStatus.SUCCEEDED:
        messages.success(request, format_html("Conflict on “{}” resolved by keeping {} ({}).", label, side, link))
    else:
        report_run(request, run)
    return HttpResponseRedirect(f"{page_url()}#conflicts")


def delete_in_vapi_view(model_admin, request):
    """Confirmation page (GET, or POST without `post`), then the deletion (POST with post=yes)."""
    _require_run_permission(request)
    source = request.POST if request.method == "POST" else request.GET
    vapi_ids = [v for v in source.getlist("vapi_id") if v]
    records = list(SyncRecord.objects.filter(
        resource=Resource.ASSISTANTS, vapi_id__in=vapi_ids, local_deleted_at__isnull=False, remote_deleted_at__isnull=True))
    if not records:
        messages.warning(request, "Nothing to delete: choose assistants whose agents were deleted here.")
        return HttpResponseRedirect(f"{page_url()}#deleted-here")
    if request.method == "POST" and request.POST.get("post") == "yes":
        from vapisync.services.deletions import assistants_delete_request

        try:
            run = assistants_delete_request(vapi_ids=[r.vapi_id for r in records], trigger=Trigger.ADMIN, user=request.user)
        except VapiSyncError as exc:
            report_error(request, exc)
        else:
            report_run(request, run)
        return HttpResponseRedirect(f"{page_url()}#deleted-here")
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Delete in Vapi?",
        "opts": model_admin.opts,
        "app_label": model_admin.opts.app_label,
        "records": [{"vapi_id": r.vapi_id, "label": (r.remote or {}).get("name") or r.vapi_id,
                     "deleted_at": r.local_deleted_at} for r in records],
        "configured": vapi_settings().configured,
    }
    return TemplateResponse(request, "admin/vapisync/delete_in_vapi_confirmation.html", context)


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
    from vapisync.services.runs import runs_reap_interrupted

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
        from vapisync.services.runs import runs_reap_interrupted

        if runs_reap_interrupted():  # a page following a run whose process died sees it end
            run = sync_run_get(run_id=run_id)
    return JsonResponse(run_json(run))


def changes_table(changes) -> list[dict]:
    """Rows for a table of SyncChange objects (run detail, rollback confirmation)."""
    rows = []
    for change in changes:
        model = REGISTRY[change.resource].model if change.resource in REGISTRY else None
        record_url = None
        if model is not None and change.local_id and model.objects.filter(pk=change.local_id).exists():
            record_url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[change.local_id])
        rows.append({
            "change": change,
            "noun": resource_noun(change.resource),
            "record_url": record_url,
            "diff": diff_items(change.diff),
            "level": {ChangeAction.ERROR: "err", ChangeAction.CONFLICT: "warn", ChangeAction.SKIP: "muted",
                      ChangeAction.DELETE: "warn", ChangeAction.MARK_DELETED: "warn"}.get(change.action, "ok"),
        })
    return rows


def normalized_errors(errors) -> list[dict]:
    """Run errors with every key the templates read (older or hand-made entries may lack some)."""
    return [
        {"label": e.get("label") or "", "vapi_id": e.get("vapi_id") or "", "resource": e.get("resource") or "",
         "message": e.get("message") or "", "retryable": bool(e.get("retryable"))}
        for e in (errors or []) if isinstance(e, dict)
    ]


def format_errors(errors: list[dict]):
    errors = normalized_errors(errors)
    if not errors:
        return "—"
    rows = format_html_join("", '<div class="vs-error-text">{}{}</div>', (
        (format_html("<strong>{}</strong>: ", e["label"] or e["vapi_id"] or e["resource"])
         if (e["label"] or e["vapi_id"] or e["resource"]) else "", e["message"])
        for e in errors[:50]
    ))
    more = format_html('<div class="quiet">…and {} more</div>', len(errors) - 50) if len(errors) > 50 else ""
    return format_html("{}{}", rows, more)
