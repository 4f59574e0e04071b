"""What starts work from the admin: the Vapi Sync page's buttons (run, check now, resolve a conflict,
delete in Vapi) and the push / refresh / preview actions on the record lists, each with its
confirmation step. Each validates, calls one service and reports through messages; a service
error never becomes a 500, and GET never starts a sync.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBadRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from globalvoice.tracking import SyncStatus
from vapisync.admin_format import (
    RunSyncPermissionMixin,
    has_run_sync_permission,
    page_url,
    record_status_badge,
    report_error,
    report_run,
    resource_noun,
    run_results,
    run_url,
)
from vapisync.conf import vapi_settings
from vapisync.exceptions import VapiSyncError
from vapisync.models import Direction, Resource, RunStatus, SyncRecord, Trigger
from vapisync.resources import REGISTRY
from vapisync.services.conflicts import conflict_resolve
from vapisync.services.deletions import assistants_delete_request
from vapisync.services.runs import sync_run_submit
from vapisync.services.status import status_snapshot_refresh

CHECK_MIN_INTERVAL = 10  # seconds between two "Check now" comparisons with Vapi (per cache)


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


def _require_run_permission(request) -> None:
    if not has_run_sync_permission(request):
        raise PermissionDenied


def sync_run_view(model_admin, request):
    """One of the page's buttons: start the run, report it, back to the page."""
    _require_run_permission(request)
    op = OPERATIONS.get(request.POST.get("operation", ""))
    if op is None:
        return HttpResponseBadRequest("Unknown operation.")

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


class SyncActionsMixin(RunSyncPermissionMixin):
    """Push / refresh / preview actions on a synced model's list, each with the admin's confirmation step."""

    actions = ("push_to_vapi", "refresh_from_vapi", "preview_sync")

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
        results = run_results(run)
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
            report_run(request, run)
        return None  # back to the change list, where the message shows

    def _submit(self, request, queryset, direction: str, *, dry_run: bool = False):
        pks = list(queryset.values_list("pk", flat=True))
        try:
            return sync_run_submit(direction=direction, resources=[self.sync_resource],
                                   local_ids={self.sync_resource: pks}, trigger=Trigger.ADMIN, user=request.user,
                                   dry_run=dry_run)
        except VapiSyncError as exc:
            report_error(request, exc)
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
            "objects": [{"obj": o, "badge": record_status_badge(o), "vapi_id": getattr(o, self.vapi_id_field),
                         "url": reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[o.pk])} for o in objects],
            "noun": resource_noun(self.sync_resource, plural=len(objects) != 1),
            "these": (f"this {resource_noun(self.sync_resource)}" if len(objects) == 1
                      else f"these {len(objects)} {resource_noun(self.sync_resource, plural=True)}"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "configured": vapi_settings().configured,
            "sync_page_url": page_url(),
            **extra,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, template, context)

