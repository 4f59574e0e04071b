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

from functools import update_wrapper

from django.contrib import admin, messages
from django.http import HttpResponseNotAllowed
from django.urls import path

from vapisync import admin_actions as actions
from vapisync import admin_views as views
from vapisync.admin_format import ADMIN_CSS, RunSyncPermissionMixin, badge, json_block, local_time, short
from vapisync.admin_record import sync_admin_class
from vapisync.admin_runs import SyncRunAdmin
from vapisync.models import Sync, SyncRun, WebhookEvent
from vapisync.permissions import user_can_view_sync
from vapisync.resources import REGISTRY
from vapisync.services import compare
from vapisync.services.webhooks import webhook_events_dispatch


def _wrap(model_admin, view, *, methods=("GET", "HEAD")):
    """admin_view (staff only, CSRF, never cached) around a function taking (model_admin, request, ...)."""

    def wrapper(request, *args, **kwargs):
        if request.method not in methods:
            return HttpResponseNotAllowed(methods)
        return view(model_admin, request, *args, **kwargs)

    update_wrapper(wrapper, view)
    return model_admin.admin_site.admin_view(wrapper)


# --- The Vapi Sync page ------------------------------------------------------------------


@admin.register(Sync)
class SyncPageAdmin(RunSyncPermissionMixin, admin.ModelAdmin):
    """Not a list of objects: its changelist URL is the Vapi Sync page."""

    class Media:
        css = ADMIN_CSS

    def has_view_permission(self, request, obj=None):
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
            path("run/", _wrap(self, actions.sync_run_view, methods=("POST",)), name=f"{name}_run"),
            path("resolve/", _wrap(self, actions.conflict_resolve_view, methods=("POST",)), name=f"{name}_resolve"),
            path("delete-in-vapi/", _wrap(self, actions.delete_in_vapi_view, methods=("GET", "HEAD", "POST")), name=f"{name}_delete_in_vapi"),
            path("check/", _wrap(self, actions.status_check_view, methods=("POST",)), name=f"{name}_check"),
            path("status.json", _wrap(self, views.status_json_view), name=f"{name}_status_json"),
            path("runs/active.json", _wrap(self, views.active_run_json_view), name=f"{name}_active_json"),
            path("runs/<int:run_id>.json", _wrap(self, views.run_json_view), name=f"{name}_run_json"),
        ]


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
            return badge("err", "Failed" if event.processed_at else "Error, waiting")
        return badge("ok", "Processed") if event.processed_at else badge("info", "Waiting")

    @admin.display(description="Error")
    def error_short(self, event):
        return short(event.error, 120) if event.error else "—"

    @admin.display(description="Payload")
    def payload_display(self, event):
        return json_block(compare.mask_secrets(event.payload))

    @admin.action(description="Process again", permissions=("run_sync",))
    def process_again(self, request, queryset):
        """Mark the events waiting (processed_at and error cleared) and hand them to the usual processing."""

        pks = list(queryset.values_list("pk", flat=True))
        count = WebhookEvent.objects.filter(pk__in=pks).update(processed_at=None, error="")
        webhook_events_dispatch()
        still_waiting = WebhookEvent.objects.filter(pk__in=pks, processed_at__isnull=True).count()
        if still_waiting:
            self.message_user(request, f"{count} event(s) marked for processing again; {still_waiting} still waiting "
                                       "(a worker processes them shortly, or Vapi could not be reached).", messages.WARNING)
        else:
            self.message_user(request, f"{count} event(s) processed again.", messages.SUCCESS)


admin.site.register(SyncRun, SyncRunAdmin)

# Every registered resource's model admin gets the sync actions and the Vapi section. Agents and phone
# numbers have classes of their own (vapisync.admin_record) that add only presentation; a resource
# without one keeps its own admin, with them mixed in.
for _spec in REGISTRY.values():
    _model = _spec.model
    _base = type(admin.site.get_model_admin(_model)) if admin.site.is_registered(_model) else admin.ModelAdmin
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, sync_admin_class(_model, _base))
