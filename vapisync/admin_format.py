"""Formatting shared by every sync admin: badges, times, counts, run names and results, diffs, errors,
and the messages that report a run. No views here; nothing in it calls a service that writes.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst

from globalvoice.tracking import SyncStatus
from vapisync.exceptions import SyncAlreadyRunning, VapiSyncError
from vapisync.models import ChangeAction, Direction, RunStatus, SyncRun
from vapisync.permissions import user_can_run_sync
from vapisync.resources import REGISTRY, RESOURCE_ORDER

ADMIN_CSS = {"all": ("vapisync/admin.css",)}
SECONDS = "%Y-%m-%d %H:%M:%S"  # several runs a minute: times always show seconds


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


# --- Shared formatting ---------------------------------------------------------------


def has_run_sync_permission(request) -> bool:
    return user_can_run_sync(request.user)  # the one rule, shared with the API and the CLI


class RunSyncPermissionMixin:
    def has_run_sync_permission(self, request) -> bool:
        return has_run_sync_permission(request)


def local_time(value) -> str:
    return timezone.localtime(value).strftime(SECONDS) if value else "—"


def stacked_time(value):
    """Date over time: narrow enough for list columns."""
    if not value:
        return "—"
    date, _, time = local_time(value).partition(" ")
    return format_html('<span class="vs-nowrap">{}</span><div class="quiet vs-nowrap">{}</div>', date, time)


def json_block(document) -> str:
    return format_html('<pre class="vs-json">{}</pre>', json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True))


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


# --- Diffs, changes and errors ----------------------------------------------------------


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


def run_results(run: SyncRun | None) -> dict | None:
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
