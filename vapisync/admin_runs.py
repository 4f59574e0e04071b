"""The run history in the admin: a read-only list and detail of sync runs, with a rollback per run."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from vapisync.admin_format import (
    ADMIN_CSS,
    COUNT_KEYS,
    RunSyncPermissionMixin,
    changes_table,
    duration_text,
    format_errors,
    local_time,
    page_url,
    report_error,
    report_run,
    resource_noun,
    rollback_possible,
    run_results,
    run_status_badge,
    run_summary,
    run_url,
    run_what,
)
from vapisync.exceptions import RollbackNotPossible, VapiSyncError
from vapisync.models import ChangeAction, Trigger
from vapisync.resources import REGISTRY
from vapisync.services.rollback import sync_run_rollback


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
        return format_html('<a href="{}">{}</a>', run_url(run), run.pk)

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
        return run_what(run)

    @admin.display(description="Trigger", ordering="trigger")
    def trigger_display(self, run):
        if run.user_id:
            return format_html('{}<div class="quiet">{}</div>', run.get_trigger_display(), run.user)
        return run.get_trigger_display()

    @admin.display(description="What")
    def what(self, run):
        return run_what(run)

    @admin.display(description="Resources")
    def resources_display(self, run):
        return ", ".join(resource_noun(r, plural=True) for r in run.resources or [] if r in REGISTRY) or "—"

    @admin.display(description="Status", ordering="status")
    def status_badge(self, run):
        return run_status_badge(run)

    @admin.display(description="Result")
    def counts_summary(self, run):
        return run_summary(run)

    @admin.display(description="Duration")
    def duration(self, run):
        return duration_text(run) or "—"

    @admin.display(description="Selection")
    def selection_display(self, run):
        selection = run.selection or {}
        parts = [f"{resource_noun(r, plural=True)} {', '.join(map(str, ids[:20]))}{' …' if len(ids) > 20 else ''}"
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
        head = format_html_join("", "<th>{}</th>", ((k.capitalize(),) for k in COUNT_KEYS))
        body = format_html_join("", "<tr><th>{}</th>{}</tr>", (
            (resource_noun(r, plural=True).capitalize(),
             format_html_join("", "<td>{}</td>", (((c or {}).get(k, 0),) for k in COUNT_KEYS)))
            for r, c in run.counts.items() if r in REGISTRY
        ))
        caption = " (what it would do: a dry run changes nothing)" if run.dry_run else ""
        return format_html('<table class="vs-counts"><thead><tr><th>{}</th>{}</tr></thead><tbody>{}</tbody></table>',
                           caption.strip() or "", head, body)

    @admin.display(description="Errors")
    def errors_display(self, run):
        return format_errors(run.errors or [])

    # -- views --
    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "sync_page_url": page_url()}
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
                "sync_page_url": page_url(),
                "changes_page": page,
                "change_rows": changes_table(page.object_list),
                "action_filter": action,
                "action_choices": [(a, label, action_counts[a]) for a, label in ChangeAction.choices if action_counts[a]],
                "plan_rows": run_results(run)["plan"] if run.dry_run and not run.is_active else [],
                "rollback_url": reverse("admin:vapisync_syncrun_rollback", args=[run.pk])
                if rollback_possible(run) and self.has_run_sync_permission(request) else None,
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
            try:
                rollback = sync_run_rollback(run_id=run.pk, trigger=Trigger.ADMIN, user=request.user, background=True)
            except RollbackNotPossible as exc:
                self.message_user(request, f"Cannot roll back run {run.pk}: {exc}", messages.ERROR)
                return HttpResponseRedirect(run_url(run))
            except VapiSyncError as exc:
                report_error(request, exc)
                return HttpResponseRedirect(run_url(run))
            report_run(request, rollback)
            return HttpResponseRedirect(run_url(rollback))
        undoable = run.changes.exclude(action__in=[ChangeAction.ERROR, ChangeAction.SKIP, ChangeAction.CONFLICT])
        context = {
            **self.admin_site.each_context(request),
            "title": f"Roll back run {run.pk}?",
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "run": run,
            "what": run_what(run),
            "badge": run_status_badge(run),
            "rows": changes_table(undoable.order_by("-id")[:200]),
            "total": undoable.count(),
            "possible": rollback_possible(run),
        }
        return TemplateResponse(request, "admin/vapisync/rollback_confirmation.html", context)

