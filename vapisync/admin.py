"""Admin for the Vapi sync.

- "Vapi Sync" page (/admin/vapisync/sync/): status, buttons per direction, progress, results,
  conflicts, deletions, run history. Listed in the admin index through the `Sync` proxy model.
- Sync runs: read-only history with each run's changes and errors, and a rollback per run.
- Agents and phone numbers: the domain apps' admins, subclassed and re-registered here (the
  domain apps never import vapisync) with sync actions, a coloured sync status, the stored Vapi
  document (secrets masked), a link to Vapi's dashboard and "Compare with Vapi now".
- Webhook events: read-only, filterable, with "Process again" (modelled on dj-stripe's).

Every entry point validates, calls one service from vapisync.services, and reports through
message_user; VapiSyncError never becomes a 500. Syncs start only from CSRF-protected POSTs.
"""

from __future__ import annotations

import json
from functools import update_wrapper

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from agents.admin import AgentAdmin
from agents.models import Agent
from globalvoice.tracking import SyncStatus
from phonenumbers_app.admin import PhoneNumberAdmin
from phonenumbers_app.models import PhoneNumber
from vapisync import admin_views as views
from vapisync.exceptions import RollbackNotPossible, VapiSyncError
from vapisync.models import ChangeAction, Direction, Resource, Sync, SyncChange, SyncRun, Trigger, WebhookEvent
from vapisync.resources import REGISTRY
from vapisync.services import compare

ADMIN_CSS = {"all": ("vapisync/admin.css",)}
SECONDS = "%Y-%m-%d %H:%M:%S"  # several runs a minute: times always show seconds


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


def _wrap(model_admin, view, *, methods=("GET", "HEAD")):
    """admin_view (staff only, CSRF, never cached) around a function taking (model_admin, request, ...)."""

    def wrapper(request, *args, **kwargs):
        if request.method not in methods:
            return HttpResponseNotAllowed(methods)
        return view(model_admin, request, *args, **kwargs)

    update_wrapper(wrapper, view)
    return model_admin.admin_site.admin_view(wrapper)


class RunSyncPermissionMixin:
    def has_run_sync_permission(self, request) -> bool:
        return views.has_run_sync_permission(request)


# --- The Vapi Sync page ------------------------------------------------------------------


@admin.register(Sync)
class SyncPageAdmin(RunSyncPermissionMixin, admin.ModelAdmin):
    """Not a list of objects: its changelist URL is the Vapi Sync page."""

    class Media:
        css = ADMIN_CSS

    def has_view_permission(self, request, obj=None):
        from vapisync.permissions import user_can_view_sync  # the one rule, shared with the API

        return user_can_view_sync(request.user)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("", _wrap(self, views.sync_page_view), name=f"{name}_changelist"),
            path("run/", _wrap(self, views.sync_run_view, methods=("POST",)), name=f"{name}_run"),
            path("resolve/", _wrap(self, views.conflict_resolve_view, methods=("POST",)), name=f"{name}_resolve"),
            path("delete-in-vapi/", _wrap(self, views.delete_in_vapi_view, methods=("GET", "HEAD", "POST")), name=f"{name}_delete_in_vapi"),
            path("check/", _wrap(self, views.status_check_view, methods=("POST",)), name=f"{name}_check"),
            path("status.json", _wrap(self, views.status_json_view), name=f"{name}_status_json"),
            path("runs/active.json", _wrap(self, views.active_run_json_view), name=f"{name}_active_json"),
            path("runs/<int:run_id>.json", _wrap(self, views.run_json_view), name=f"{name}_run_json"),
        ]


# --- Sync runs ----------------------------------------------------------------------------


@admin.register(SyncRun)
class SyncRunAdmin(RunSyncPermissionMixin, admin.ModelAdmin):
    """The run history: read-only; each run shows its counts, errors, plan and changes."""

    change_form_template = "admin/vapisync/syncrun/change_form.html"
    change_list_template = "admin/vapisync/syncrun/change_list.html"
    list_display = ("run_link", "created_display", "direction_display", "trigger_display", "status_badge",
                    "counts_summary", "duration")
    list_display_links = None
    list_filter = ("status", "direction", "trigger", "dry_run")
    date_hierarchy = "created_at"
    list_select_related = ("user",)
    search_fields = ("=id", "message")
    list_per_page = 50
    fieldsets = (
        (None, {"fields": ("what", "status_badge", "resources_display", "dry_run", "trigger", "user",
                           "selection_display", "rollback_of_link", "rollbacks_display")}),
        ("Timing", {"fields": ("created_display", "started_display", "finished_display", "duration")}),
        ("Outcome", {"fields": ("message", "counts_table", "errors_display")}),
    )
    readonly_fields = ("what", "status_badge", "resources_display", "dry_run", "trigger", "user",
                       "selection_display", "rollback_of_link", "rollbacks_display", "created_display",
                       "started_display", "finished_display", "duration", "message", "counts_table", "errors_display")
    changes_per_page = 100

    class Media:
        css = ADMIN_CSS

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # history is never edited; the change view is read-only

    def has_delete_permission(self, request, obj=None):
        return False  # kept for audit and rollback

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("<int:run_id>/rollback/", self.admin_site.admin_view(self.rollback_view), name=f"{name}_rollback"),
            *super().get_urls(),
        ]

    # -- list and detail columns --
    @admin.display(description="Run", ordering="id")
    def run_link(self, run):
        return format_html('<a href="{}">{}</a>', views.run_url(run), run.pk)

    @admin.display(description="Created", ordering="created_at")
    def created_display(self, run):
        return local_time(run.created_at)

    @admin.display(description="Started")
    def started_display(self, run):
        return local_time(run.started_at)

    @admin.display(description="Finished")
    def finished_display(self, run):
        return local_time(run.finished_at)

    @admin.display(description="What", ordering="direction")
    def direction_display(self, run):
        return views.run_what(run)

    @admin.display(description="Trigger", ordering="trigger")
    def trigger_display(self, run):
        if run.user_id:
            return format_html('{}<div class="quiet">{}</div>', run.get_trigger_display(), run.user)
        return run.get_trigger_display()

    @admin.display(description="What")
    def what(self, run):
        return views.run_what(run)

    @admin.display(description="Resources")
    def resources_display(self, run):
        return ", ".join(views.resource_noun(r, plural=True) for r in run.resources or [] if r in REGISTRY) or "—"

    @admin.display(description="Status", ordering="status")
    def status_badge(self, run):
        return views.run_status_badge(run)

    @admin.display(description="Result")
    def counts_summary(self, run):
        return views.run_summary(run)

    @admin.display(description="Duration")
    def duration(self, run):
        return views.duration_text(run) or "—"

    @admin.display(description="Selection")
    def selection_display(self, run):
        selection = run.selection or {}
        parts = [f"{views.resource_noun(r, plural=True)} {', '.join(map(str, ids[:20]))}{' …' if len(ids) > 20 else ''}"
                 for key in ("local_ids", "vapi_ids") for r, ids in (selection.get(key) or {}).items() if r in REGISTRY]
        if selection.get("policy"):
            parts.append(f"policy {selection['policy']}")
        return "; ".join(parts) or "Everything"

    @admin.display(description="Rolls back")
    def rollback_of_link(self, run):
        if not run.rollback_of_id:
            return "—"
        return format_html('<a href="{}">run {}</a>', reverse("admin:vapisync_syncrun_change", args=[run.rollback_of_id]),
                           run.rollback_of_id)

    @admin.display(description="Rolled back by")
    def rollbacks_display(self, run):
        ids = list(run.rollbacks.values_list("pk", flat=True))
        if not ids:
            return "—"
        return format_html_join(", ", '<a href="{}">run {}</a>',
                                ((reverse("admin:vapisync_syncrun_change", args=[i]), i) for i in ids))

    @admin.display(description="Counts")
    def counts_table(self, run):
        if not run.counts:
            return "—"
        head = format_html_join("", "<th>{}</th>", ((k.capitalize(),) for k in views.COUNT_KEYS))
        body = format_html_join("", "<tr><th>{}</th>{}</tr>", (
            (views.resource_noun(r, plural=True).capitalize(),
             format_html_join("", "<td>{}</td>", (((c or {}).get(k, 0),) for k in views.COUNT_KEYS)))
            for r, c in run.counts.items() if r in REGISTRY
        ))
        caption = " (what it would do: a dry run changes nothing)" if run.dry_run else ""
        return format_html('<table class="vs-counts"><thead><tr><th>{}</th>{}</tr></thead><tbody>{}</tbody></table>',
                           caption.strip() or "", head, body)

    @admin.display(description="Errors")
    def errors_display(self, run):
        return views.format_errors(run.errors or [])

    # -- views --
    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "sync_page_url": views.page_url()}
        return super().changelist_view(request, extra_context=extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if run is not None:
            changes = run.changes.all()
            action = request.GET.get("action")
            if action in ChangeAction.values:
                changes = changes.filter(action=action)
            page = Paginator(changes, self.changes_per_page).get_page(request.GET.get("changes_page"))
            action_counts = {a: 0 for a in ChangeAction.values}
            for a in run.changes.values_list("action", flat=True):
                action_counts[a] += 1
            extra.update({
                "run": run,
                "sync_page_url": views.page_url(),
                "changes_page": page,
                "change_rows": views.changes_table(page.object_list),
                "action_filter": action,
                "action_choices": [(a, label, action_counts[a]) for a, label in ChangeAction.choices if action_counts[a]],
                "plan_rows": views._run_results(run)["plan"] if run.dry_run and not run.is_active else [],
                "rollback_url": reverse("admin:vapisync_syncrun_rollback", args=[run.pk])
                if views.rollback_possible(run) and self.has_run_sync_permission(request) else None,
                "run_json_url": reverse("admin:vapisync_sync_run_json", args=[run.pk]),
            })
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def rollback_view(self, request, run_id: int):
        """Confirmation page listing what would be undone, then (POST post=yes) the rollback run."""
        if not self.has_run_sync_permission(request):
            raise PermissionDenied
        run = self.get_object(request, str(run_id))
        if run is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, str(run_id))
        if request.method == "POST" and request.POST.get("post") == "yes":
            from vapisync.services.rollback import sync_run_rollback

            try:
                rollback = sync_run_rollback(run_id=run.pk, trigger=Trigger.ADMIN, user=request.user, background=True)
            except RollbackNotPossible as exc:
                self.message_user(request, f"Cannot roll back run {run.pk}: {exc}", messages.ERROR)
                return HttpResponseRedirect(views.run_url(run))
            except VapiSyncError as exc:
                views.report_error(request, exc)
                return HttpResponseRedirect(views.run_url(run))
            views.report_run(request, rollback)
            return HttpResponseRedirect(views.run_url(rollback))
        undoable = run.changes.exclude(action__in=[ChangeAction.ERROR, ChangeAction.SKIP, ChangeAction.CONFLICT])
        context = {
            **self.admin_site.each_context(request),
            "title": f"Roll back run {run.pk}?",
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "run": run,
            "what": views.run_what(run),
            "badge": views.run_status_badge(run),
            "rows": views.changes_table(undoable.order_by("-id")[:200]),
            "total": undoable.count(),
            "possible": views.rollback_possible(run),
        }
        return TemplateResponse(request, "admin/vapisync/rollback_confirmation.html", context)


# --- Webhook events -----------------------------------------------------------------------------


class ProcessedFilter(admin.SimpleListFilter):
    title = "processed"
    parameter_name = "processed"

    def lookups(self, request, model_admin):
        return (("yes", "Yes"), ("no", "No, waiting"))

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(processed_at__isnull=self.value() == "no")
        return queryset


class ErrorFilter(admin.SimpleListFilter):
    title = "error"
    parameter_name = "has_error"

    def lookups(self, request, model_admin):
        return (("yes", "With an error"), ("no", "Without"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(error="")
        if self.value() == "no":
            return queryset.filter(error="")
        return queryset


@admin.register(WebhookEvent)
class WebhookEventAdmin(RunSyncPermissionMixin, admin.ModelAdmin):
    """What Vapi sent, as received: never edited (it is evidence), only processed again."""

    list_display = ("received_display", "message_type", "state_badge", "assistant_id", "phone_number_id",
                    "duplicates", "processed_display", "error_short")
    list_filter = ("message_type", ProcessedFilter, ErrorFilter)
    search_fields = ("=assistant_id", "=phone_number_id", "=body_sha256", "error")
    date_hierarchy = "received_at"
    list_per_page = 100
    actions = ("process_again",)
    fields = ("received_display", "message_type", "state_badge", "assistant_id", "phone_number_id", "duplicates",
              "processed_display", "error", "body_sha256", "payload_display")
    readonly_fields = fields

    class Media:
        css = ADMIN_CSS

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Received", ordering="received_at")
    def received_display(self, event):
        return local_time(event.received_at)

    @admin.display(description="Processed", ordering="processed_at")
    def processed_display(self, event):
        return local_time(event.processed_at)

    @admin.display(description="State")
    def state_badge(self, event):
        if event.error:
            return views.badge("err", "Failed" if event.processed_at else "Error, waiting")
        return views.badge("ok", "Processed") if event.processed_at else views.badge("info", "Waiting")

    @admin.display(description="Error")
    def error_short(self, event):
        return views.short(event.error, 120) if event.error else "—"

    @admin.display(description="Payload")
    def payload_display(self, event):
        return json_block(compare.mask_secrets(event.payload))

    @admin.action(description="Process again", permissions=("run_sync",))
    def process_again(self, request, queryset):
        """Mark the events waiting (processed_at and error cleared) and hand them to the usual processing."""
        from vapisync.services.webhooks import webhook_events_dispatch

        pks = list(queryset.values_list("pk", flat=True))
        count = WebhookEvent.objects.filter(pk__in=pks).update(processed_at=None, error="")
        webhook_events_dispatch()
        still_waiting = WebhookEvent.objects.filter(pk__in=pks, processed_at__isnull=True).count()
        if still_waiting:
            self.message_user(request, f"{count} event(s) marked for processing again; {still_waiting} still waiting "
                                       "(a worker processes them shortly, or Vapi could not be reached).", messages.WARNING)
        else:
            self.message_user(request, f"{count} event(s) processed again.", messages.SUCCESS)


# --- Sync actions on the domain admins ---------------------------------------------------------


class SyncActionsMixin(RunSyncPermissionMixin):
    """Push / refresh / preview actions, each with the admin's confirmation step."""

    @property
    def sync_resource(self) -> str:
        """The registry's resource for this admin's model."""
        return self._sync_spec.resource

    @property
    def vapi_id_field(self) -> str:
        return self._sync_spec.vapi_id_field

    @property
    def _sync_spec(self):
        return next(spec for spec in REGISTRY.values() if spec.model is self.model)
    actions = ("push_to_vapi", "refresh_from_vapi", "preview_sync")
    change_form_template = "admin/vapisync/record_change_form.html"

    class Media:
        css = ADMIN_CSS

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("<path:object_id>/compare-with-vapi/", self.admin_site.admin_view(self.compare_view),
                 name=f"{name}_compare_vapi"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if obj is not None:
            extra.update({
                "vapi_dashboard_url": compare.dashboard_url(self.sync_resource, compare.vapi_id_of(self.sync_resource, obj)),
                "compare_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_compare_vapi", args=[obj.pk])
                if self.has_run_sync_permission(request) else None,
            })
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def compare_view(self, request, object_id):
        """Here / Vapi now / last sync, field by field, from one GET to Vapi. Changes nothing."""
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(("GET", "HEAD"))
        if not self.has_run_sync_permission(request):
            raise PermissionDenied  # it calls Vapi: the same right as starting a sync
        obj = self.get_object(request, object_id)
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        comparison = compare.record_compare(resource=self.sync_resource, obj=obj)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Compare with Vapi: {obj}",
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "original": obj,
            "media": self.media,
            "comparison": comparison,
            "rows": [{"field": f, "local": views.short(f.local, 10**9), "vapi": views.short(f.vapi, 10**9),
                      "baseline": views.short(f.baseline, 10**9)} for f in comparison.fields],
            "vapi_document": json_block(comparison.vapi_document) if comparison.vapi_document is not None else None,
            "dashboard_url": compare.dashboard_url(self.sync_resource, comparison.vapi_id),
            "noun": views.resource_noun(self.sync_resource),
            "change_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk]),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/vapisync/record_compare.html", context)

    # -- columns and read-only sync state --
    @admin.display(description="Vapi sync", ordering="sync_status")
    def sync_state(self, obj):
        return views.record_status_badge(obj)

    @admin.display(description="Sync status")
    def sync_status_badge(self, obj):
        if obj.pk is None:
            return "—"
        return views.record_status_badge(obj)

    @admin.display(description="Last error")
    def last_error(self, obj):
        return obj.sync_error or "—"

    @admin.display(description="In Vapi's dashboard")
    def vapi_dashboard(self, obj):
        url = compare.dashboard_url(self.sync_resource, compare.vapi_id_of(self.sync_resource, obj)) if obj.pk else None
        if not url:
            return "Not in Vapi yet."
        return format_html('<a href="{}" target="_blank" rel="noopener noreferrer" class="vs-dashboard-link">{} ↗</a>', url, url)

    @admin.display(description="Vapi document")
    def vapi_document(self, obj):
        """The whole document Vapi last answered for this record (secrets masked), collapsed."""
        document = compare.stored_vapi_document(self.sync_resource, obj) if obj.pk else None
        if document is None:
            return "None stored yet: it is kept at each sync."
        return format_html('<details class="vs-document"><summary>Show the stored Vapi document ({} fields)</summary>{}</details>',
                           len(document), json_block(document))

    @admin.display(description="Recent sync changes")
    def sync_history(self, obj):
        if obj.pk is None:
            return "—"
        changes = (SyncChange.objects.filter(resource=self.sync_resource, local_id=obj.pk)
                   .select_related("run").order_by("-id")[:5])
        if not changes:
            return "None yet."
        return format_html('<div class="vs-history">{}</div>', format_html_join("", '<div>{} {} – <a href="{}">run {}</a>, {}</div>', (
            (local_time(c.created_at), c.get_action_display().lower()
             + (f" ({c.get_side_display().lower()})" if c.side else ""), views.run_url(c.run), c.run_id,
             views.run_what(c.run).lower() if c.run else "")
            for c in changes
        )))

    # List columns replaced (None: dropped), so that every column fits a 1440 px window beside the filters.
    LIST_COLUMNS = {"sync_status": "sync_state", "last_synced_at": "last_synced_display"}

    def get_list_display(self, request):
        columns = (self.LIST_COLUMNS.get(f, f) for f in super().get_list_display(request))
        return tuple(c for c in columns if c)

    @admin.display(description="Last synced", ordering="last_synced_at")
    def last_synced_display(self, obj):
        return stacked_time(obj.last_synced_at)

    def get_readonly_fields(self, request, obj=None):
        return (*super().get_readonly_fields(request, obj), "sync_status_badge", "last_error", "sync_history",
                "vapi_dashboard", "vapi_document")

    def get_fieldsets(self, request, obj=None):
        """The "Vapi sync" fieldset open (not collapsed), with a coloured status, the last error and history."""
        fieldsets = []
        for name, options in super().get_fieldsets(request, obj):
            if name == "Vapi sync":
                fields = tuple({"sync_status": "sync_status_badge", "sync_error": "last_error"}.get(f, f)
                               for f in options["fields"])
                if obj is not None:
                    fields = (*fields, "vapi_dashboard", "sync_history", "vapi_document")
                options = {**options, "fields": fields,
                           "classes": tuple(c for c in options.get("classes", ()) if c != "collapse")}
            fieldsets.append((name, options))
        return fieldsets

    # -- actions --
    @admin.action(description="Push selected to Vapi", permissions=("run_sync",))
    def push_to_vapi(self, request, queryset):
        return self._sync_action(request, queryset, "push_to_vapi", Direction.EXPORT)

    @admin.action(description="Refresh selected from Vapi", permissions=("run_sync",))
    def refresh_from_vapi(self, request, queryset):
        return self._sync_action(request, queryset, "refresh_from_vapi", Direction.IMPORT)

    @admin.action(description="Preview sync of selected (dry run)", permissions=("run_sync",))
    def preview_sync(self, request, queryset):
        """The confirmation step is the plan itself, with buttons to push or refresh these records."""
        run = self._submit(request, queryset, Direction.FULL, dry_run=True)
        if run is None:
            return None
        results = views._run_results(run)
        return self._render(request, queryset, "admin/vapisync/action_preview.html", {
            "title": "Preview: what a sync of the selected records would do",
            "results": results,
            "run": run,
        })

    def _sync_action(self, request, queryset, action: str, direction: str):
        if request.POST.get("post") != "yes":
            objects = list(queryset)
            unlinked = [o for o in objects if not getattr(o, self.vapi_id_field)]
            deleted = [o for o in objects if o.sync_status == SyncStatus.DELETED_REMOTELY]
            return self._render(request, queryset, "admin/vapisync/action_confirmation.html", {
                "title": "Push to Vapi?" if direction == Direction.EXPORT else "Refresh from Vapi?",
                "action": action,
                "direction": direction,
                "objects": objects,
                "unlinked": unlinked,
                "deleted": deleted,
                "can_recreate": self.sync_resource == Resource.ASSISTANTS,
            })
        run = self._submit(request, queryset, direction)
        if run is not None:
            views.report_run(request, run)
        return None  # back to the change list, where the message shows

    def _submit(self, request, queryset, direction: str, *, dry_run: bool = False):
        from vapisync.services.runs import sync_run_submit

        pks = list(queryset.values_list("pk", flat=True))
        try:
            return sync_run_submit(direction=direction, resources=[self.sync_resource],
                                   local_ids={self.sync_resource: pks}, trigger=Trigger.ADMIN, user=request.user,
                                   dry_run=dry_run)
        except VapiSyncError as exc:
            views.report_error(request, exc)
            return None

    def _render(self, request, queryset, template: str, extra: dict):
        opts = self.model._meta
        objects = extra.pop("objects", None) or list(queryset)
        context = {
            **self.admin_site.each_context(request),
            "opts": opts,
            "app_label": opts.app_label,
            "media": self.media,
            "queryset": objects,
            "objects": [{"obj": o, "badge": views.record_status_badge(o), "vapi_id": getattr(o, self.vapi_id_field),
                         "url": reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[o.pk])} for o in objects],
            "noun": views.resource_noun(self.sync_resource, plural=len(objects) != 1),
            "these": (f"this {views.resource_noun(self.sync_resource)}" if len(objects) == 1
                      else f"these {len(objects)} {views.resource_noun(self.sync_resource, plural=True)}"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "configured": views.vapi_settings().configured,
            "sync_page_url": views.page_url(),
            **extra,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, template, context)


class AgentSyncAdmin(SyncActionsMixin, AgentAdmin):
    # Provider and name share a column (model, voice): eight columns did not fit 1440 px beside the filters.
    LIST_COLUMNS = {**SyncActionsMixin.LIST_COLUMNS, "model_provider": "model_display", "model": None,
                    "voice_provider": "voice_display", "voice_id": None, "updated_at": "updated_display"}

    @admin.display(description="Model", ordering="model")
    def model_display(self, agent):
        return format_html('{}<div class="quiet">{}</div>', agent.model or "—", agent.model_provider or "")

    @admin.display(description="Voice", ordering="voice_id")
    def voice_display(self, agent):
        return format_html('{}<div class="quiet">{}</div>', agent.voice_id or "—", agent.voice_provider or "")

    @admin.display(description="Updated", ordering="updated_at")
    def updated_display(self, agent):
        return stacked_time(agent.updated_at)


class PhoneNumberSyncAdmin(SyncActionsMixin, PhoneNumberAdmin):
    """The phone-number admin with the sync actions; nothing of its own to add."""


# Every registered resource's model admin gets the sync actions and panels. The two classes above add
# only presentation; a resource without one keeps its own admin, with the sync actions mixed in.
_SYNC_ADMINS = {Agent: AgentSyncAdmin, PhoneNumber: PhoneNumberSyncAdmin}
for _spec in REGISTRY.values():
    _model = _spec.model
    _admin = _SYNC_ADMINS.get(_model)
    if _admin is None:
        _base = type(admin.site.get_model_admin(_model)) if admin.site.is_registered(_model) else admin.ModelAdmin
        _admin = type(f"{_model.__name__}SyncAdmin", (SyncActionsMixin, _base), {})
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _admin)
