"""A synced record in the admin: its "Vapi sync" section (coloured status, last error, recent
changes, the stored Vapi document with secrets masked, a link to Vapi's dashboard), "Compare with
Vapi now", and the list columns; on top of the sync actions of `vapisync.admin_actions`.

The domain apps' admins are subclassed here (the domain apps never import vapisync) and
re-registered by `vapisync.admin`.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from agents.admin import AgentAdmin
from agents.models import Agent
from phonenumbers_app.admin import PhoneNumberAdmin
from phonenumbers_app.models import PhoneNumber
from vapisync.admin_actions import SyncActionsMixin
from vapisync.admin_format import (
    ADMIN_CSS,
    json_block,
    local_time,
    record_status_badge,
    resource_noun,
    run_url,
    run_what,
    short,
    stacked_time,
)
from vapisync.models import SyncChange
from vapisync.services import compare


class VapiRecordMixin(SyncActionsMixin):
    """The record's Vapi section and "Compare with Vapi", for any registered resource's model admin."""

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
            "rows": [{"field": f, "local": short(f.local, 10**9), "vapi": short(f.vapi, 10**9),
                      "baseline": short(f.baseline, 10**9)} for f in comparison.fields],
            "vapi_document": json_block(comparison.vapi_document) if comparison.vapi_document is not None else None,
            "dashboard_url": compare.dashboard_url(self.sync_resource, comparison.vapi_id),
            "noun": resource_noun(self.sync_resource),
            "change_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk]),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/vapisync/record_compare.html", context)

    # -- columns and read-only sync state --
    @admin.display(description="Vapi sync", ordering="sync_status")
    def sync_state(self, obj):
        return record_status_badge(obj)

    @admin.display(description="Sync status")
    def sync_status_badge(self, obj):
        if obj.pk is None:
            return "—"
        return record_status_badge(obj)

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
             + (f" ({c.get_side_display().lower()})" if c.side else ""), run_url(c.run), c.run_id,
             run_what(c.run).lower() if c.run else "")
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


class AgentSyncAdmin(VapiRecordMixin, AgentAdmin):
    # Provider and name share a column (model, voice): eight columns did not fit 1440 px beside the filters.
    LIST_COLUMNS = {**VapiRecordMixin.LIST_COLUMNS, "model_provider": "model_display", "model": None,
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


class PhoneNumberSyncAdmin(VapiRecordMixin, PhoneNumberAdmin):
    """The phone-number admin with the sync actions; nothing of its own to add."""


_SYNC_ADMINS = {Agent: AgentSyncAdmin, PhoneNumber: PhoneNumberSyncAdmin}


def sync_admin_class(model, base=admin.ModelAdmin) -> type:
    """The admin class for a registered resource's model: one of the two above, or its current admin
    (`base`) with the Vapi section and the sync actions mixed in."""
    return _SYNC_ADMINS.get(model) or type(f"{model.__name__}SyncAdmin", (VapiRecordMixin, base), {})
