"""The sync API: each view validates its input, calls one service or selector, shapes the output.

Reads need CanViewSync, every POST CanRunSync and is throttled (scope "vapi_sync").
Errors are always {"detail", "code", ...}, shaped once for every /api/ view by the project's
handler (globalvoice.exceptions): domain errors (409 with run_id, 503 without VAPI_API_KEY...),
DRF's own (401, 403, 404, 405, 415, 429), invalid bodies with their field messages in "errors".
"""

from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from vapisync import selectors
from vapisync.conf import vapi_settings
from vapisync.exceptions import UnknownLocalIds
from vapisync.models import ChangeAction, Direction, Resource, RunStatus, SyncChange, Trigger
from vapisync.resources import RESOURCE_ORDER, resource_spec
from vapisync.services.conflicts import conflict_resolve
from vapisync.services.deletions import assistants_delete_request
from vapisync.services.health import sync_health_check
from vapisync.services.rollback import sync_run_rollback
from vapisync.services.runs import runs_reap_interrupted, sync_run_submit
from vapisync.services.selection import local_ids_check
from vapisync.services.status import status_snapshot_refresh

from .permissions import CanRunSync, CanViewSync
from .serializers import (
    MAX_LOCAL_ID,
    PUBLIC_RESOURCE,
    RESOURCE_NAMES,
    ChangeSerializer,
    ConflictResolveSerializer,
    ConflictSerializer,
    DeleteInVapiSerializer,
    ErrorSerializer,
    ExportSyncSerializer,
    FullSyncSerializer,
    HealthSerializer,
    ImportSyncSerializer,
    RunDetailSerializer,
    RunSerializer,
    RunSummarySerializer,
    StrictSerializer,
    SyncStatusSerializer,
    split_ids,
)
from .throttles import SyncTriggerThrottle

TAGS = ["vapi-sync"]


def _errors(*codes: int) -> dict:
    text = {
        400: "Invalid request body or parameters ({detail, code: invalid, errors: {field: [messages]}}).",
        401: "No or invalid credentials (send Authorization: Bearer <token>).",
        403: "Authenticated, but without the permission this needs.",
        404: "No such run or record.",
        409: "Another sync is in progress: run_id names it.",
        429: "Too many sync requests (VAPI_SYNC_THROTTLE_RATE); retry after Retry-After seconds.",
        503: "Vapi sync is not configured (VAPI_API_KEY is empty).",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=text[code]) for code in codes}


_RUN_DONE = OpenApiResponse(RunSerializer, description="The run finished within the request (status succeeded, partial or failed).")
_RUN_QUEUED = OpenApiResponse(
    RunSerializer,
    description="Started outside this request (by the worker with a broker, else in the background of the web "
    "process): `Location` and `url` name the run; poll it (GET runs/{id}/) until status is no longer "
    "queued/running. Its `progress` says the phase, records done of total and the estimated time left.",
)


def _check_local_ids(resource: str, ids: list[int], field: str) -> None:
    """The service's rule, translated into a 400 naming the request field."""
    try:
        local_ids_check(resource, ids)
    except UnknownLocalIds as exc:
        raise ValidationError({field: [str(exc)]}) from exc


class SyncAPIView(APIView):
    permission_classes = [CanViewSync]


class SyncTriggerView(SyncAPIView):
    """Base of every POST: run_sync permission, scoped throttle, strict body, run response."""

    permission_classes = [CanRunSync]
    throttle_classes = [SyncTriggerThrottle]
    throttle_scope = "vapi_sync"

    def validated(self, serializer_class, request) -> dict:
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


def run_response(run, request) -> Response:
    """200 with the finished run, or 202 with the queued one (and Location: its URL)."""
    data = RunSerializer(run, context={"request": request}).data
    if run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": data["url"]})
    return Response(data, status=status.HTTP_200_OK)


# --- Triggers ------------------------------------------------------------------------------


class _ResourceSyncView(SyncTriggerView):
    direction: str
    resource: str
    request_serializer = ExportSyncSerializer

    def post(self, request):
        body = self.validated(self.request_serializer, request)
        local_ids, vapi_ids = split_ids(body.get("ids"))
        _check_local_ids(self.resource, local_ids, "ids")
        run = sync_run_submit(
            direction=self.direction, resources=[self.resource], trigger=Trigger.API, user=request.user,
            dry_run=body["dry_run"], delta=body.get("delta", False),
            local_ids={self.resource: local_ids}, vapi_ids={self.resource: vapi_ids},
        )
        return run_response(run, request)


def _trigger_schema(operation_id: str, summary: str, request_serializer, description: str):
    return extend_schema(
        operation_id=operation_id, summary=summary, description=description, tags=TAGS,
        request={"application/json": request_serializer, "application/x-www-form-urlencoded": request_serializer},
        responses={200: _RUN_DONE, 202: _RUN_QUEUED, **_errors(400, 401, 403, 409, 429, 503)},
        examples=[
            OpenApiExample("Everything", value={}, request_only=True),
            OpenApiExample("Preview only", value={"dry_run": True}, request_only=True),
        ],
    )


_BODY_NOTE = (
    " The body is optional: with none, every record is synced. Answers 202 at once with the run, which "
    "executes outside the request (a worker with CELERY_BROKER_URL, else a background thread of the web "
    "process); dry runs change nothing and answer 200 with the finished run."
)


class PhoneNumbersFromVapiView(_ResourceSyncView):
    direction, resource, request_serializer = Direction.IMPORT, Resource.PHONE_NUMBERS, ImportSyncSerializer

    @_trigger_schema("vapi_sync_phone_numbers_from_vapi", "Import phone numbers from Vapi", ImportSyncSerializer,
                     "Creates or updates local phone numbers from Vapi's and links them to their agents." + _BODY_NOTE)
    def post(self, request):
        return super().post(request)


class PhoneNumbersToVapiView(_ResourceSyncView):
    direction, resource = Direction.EXPORT, Resource.PHONE_NUMBERS

    @_trigger_schema("vapi_sync_phone_numbers_to_vapi", "Export phone numbers to Vapi", ExportSyncSerializer,
                     "Pushes local changes (name, assigned agent) to the matching Vapi numbers; numbers are never "
                     "bought or created in Vapi, local-only ones are reported." + _BODY_NOTE)
    def post(self, request):
        return super().post(request)


class AssistantsFromVapiView(_ResourceSyncView):
    direction, resource, request_serializer = Direction.IMPORT, Resource.ASSISTANTS, ImportSyncSerializer

    @_trigger_schema("vapi_sync_assistants_from_vapi", "Import assistants from Vapi as agents", ImportSyncSerializer,
                     "Creates or updates local agents from Vapi's assistants." + _BODY_NOTE)
    def post(self, request):
        return super().post(request)


class AgentsToVapiView(_ResourceSyncView):
    direction, resource = Direction.EXPORT, Resource.ASSISTANTS

    @_trigger_schema("vapi_sync_agents_to_vapi", "Export agents to Vapi as assistants", ExportSyncSerializer,
                     "Creates missing assistants in Vapi and pushes local edits to existing ones." + _BODY_NOTE)
    def post(self, request):
        return super().post(request)


class FullSyncView(SyncTriggerView):
    @_trigger_schema(
        "vapi_sync_full", "Full synchronisation (both directions, both resources)", FullSyncSerializer,
        "Assistants first, then phone numbers, each in both directions with three-way drift detection. "
        "With agent_ids and/or phone_number_ids only those records are synced (a resource without ids "
        "is left out)." + _BODY_NOTE,
    )
    def post(self, request):
        body = self.validated(FullSyncSerializer, request)
        selected = {Resource.ASSISTANTS: body.get("agent_ids"), Resource.PHONE_NUMBERS: body.get("phone_number_ids")}
        resources = [r for r, ids in selected.items() if ids] or list(RESOURCE_ORDER)  # no ids: every registered resource
        local_ids, vapi_ids = {}, {}
        for resource, field in zip(selected, ("agent_ids", "phone_number_ids"), strict=True):
            if resource in resources:
                local_ids[resource], vapi_ids[resource] = split_ids(selected[resource])
                _check_local_ids(resource, local_ids[resource], field)
        run = sync_run_submit(
            direction=Direction.FULL, resources=resources, trigger=Trigger.API, user=request.user,
            dry_run=body["dry_run"], local_ids=local_ids, vapi_ids=vapi_ids,
        )
        return run_response(run, request)


# --- Status and health ---------------------------------------------------------------------


class StatusQuerySerializer(serializers.Serializer):
    remote = serializers.BooleanField(required=False, default=True, help_text="Include the Vapi side (default true).")
    refresh = serializers.BooleanField(
        required=False, default=False,
        help_text="Compare with Vapi now instead of reading the stored status (needs the run_sync permission; "
        "throttled like the sync triggers; a few seconds at most, the error is reported if Vapi does not answer).",
    )


def _query(serializer_class, request) -> dict:
    # A plain dict: a QueryDict would make a missing boolean read as False (HTML form rules).
    serializer = serializer_class(data=request.query_params.dict())
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _wants_refresh(request) -> bool:
    return str(request.query_params.get("refresh", "")).lower() in ("true", "1", "yes", "on")


class StatusView(SyncAPIView):
    throttle_scope = "vapi_sync"

    def get_throttles(self):
        # Only a refresh reaches Vapi, so only a refresh counts against the sync triggers' rate.
        return [SyncTriggerThrottle()] if _wants_refresh(self.request) else super().get_throttles()

    def get_permissions(self):
        return [CanRunSync()] if _wants_refresh(self.request) else super().get_permissions()

    @extend_schema(
        operation_id="vapi_sync_status", summary="Sync status: database vs Vapi, drift, last and active run", tags=TAGS,
        description="Database counts are live. The Vapi side (its counts, what a full sync would do) is the stored "
        "status of the last comparison: `snapshot` says when it was computed (by a run that read all of Vapi, the "
        "periodic check with a worker, or a refresh) and whether it is fresh; no request is sent to Vapi. "
        "`?refresh=true` compares now (run_sync permission, throttled). `vapi_error` and `vapi_last_ok_at` tell "
        "whether Vapi answered. `?remote=false` reports the database side only (vapi and in_sync null).",
        parameters=[StatusQuerySerializer],
        responses={200: SyncStatusSerializer, **_errors(400, 401, 403, 429)},
    )
    def get(self, request):
        query = _query(StatusQuerySerializer, request)
        runs_reap_interrupted()
        if query["refresh"] and query["remote"] and vapi_settings().configured:
            status_snapshot_refresh(interactive=True)
        data = selectors.sync_status_get(check_remote=query["remote"])
        return Response(SyncStatusSerializer(data).data)


class HealthView(SyncAPIView):
    @extend_schema(
        operation_id="vapi_sync_health", summary="Health of the sync: Vapi, database, broker", tags=TAGS,
        description="200 when ok or disabled (no VAPI_API_KEY: a deliberate configuration), 503 when degraded "
        "(Vapi unreachable or refusing the key, database or broker down). The Vapi probe is cached for 15 s. "
        "Needs authentication like every sync endpoint; an unauthenticated load-balancer probe belongs on /healthz.",
        responses={200: HealthSerializer, 503: HealthSerializer, **_errors(401, 403)},
    )
    def get(self, request):
        data = HealthSerializer(sync_health_check()).data
        code = status.HTTP_503_SERVICE_UNAVAILABLE if data["status"] == "degraded" else status.HTTP_200_OK
        return Response(data, status=code)


# --- Runs ------------------------------------------------------------------------------------


class RunFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
    direction = serializers.ChoiceField(choices=Direction.choices, required=False)
    trigger = serializers.ChoiceField(choices=Trigger.choices, required=False)
    dry_run = serializers.BooleanField(required=False, allow_null=True, default=None)


class RunListView(generics.ListAPIView):
    permission_classes = [CanViewSync]
    serializer_class = RunSummarySerializer

    def get_queryset(self):
        filters = _query(RunFilterSerializer, self.request)
        return selectors.sync_run_list().filter(**{k: v for k, v in filters.items() if v is not None})

    @extend_schema(
        operation_id="vapi_sync_runs_list", summary="Run history, newest first", tags=TAGS,
        parameters=[RunFilterSerializer], responses={200: RunSummarySerializer(many=True), **_errors(400, 401, 403)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


def _run_or_404(pk: int):
    run = selectors.sync_run_get(run_id=pk) if pk <= MAX_LOCAL_ID else None
    if run is None:
        raise NotFound(f"There is no sync run {pk}.")
    return run


@csrf_exempt  # a Bearer-token POST to a wrong path gets this JSON 404, not Django's CSRF page
def not_found(request, *args, **kwargs):
    """Any other path under /api/vapi-sync/: a JSON 404 like the endpoints' own, not an HTML page."""
    return JsonResponse(
        {"detail": f"There is no Vapi sync endpoint at {request.path} (see /api/docs/).", "code": "not_found"}, status=404
    )


class RunDetailView(generics.RetrieveAPIView):
    permission_classes = [CanViewSync]
    serializer_class = RunDetailSerializer

    def get_object(self):
        return _run_or_404(self.kwargs["pk"])

    @extend_schema(
        operation_id="vapi_sync_runs_retrieve", summary="One run with its changes", tags=TAGS,
        description="`changes` holds the first 500 recorded changes; `changes_count` says how many there are "
        "and `changes_url` pages through all of them.",
        responses={200: RunDetailSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ChangeFilterSerializer(serializers.Serializer):
    resource = serializers.ChoiceField(
        choices=list(RESOURCE_NAMES), required=False, help_text='"agents" (or "assistants") or "phone_numbers".'
    )
    action = serializers.ChoiceField(choices=ChangeAction.choices, required=False)

    def validate_resource(self, value):
        return RESOURCE_NAMES[value]


class RunChangesView(generics.ListAPIView):
    permission_classes = [CanViewSync]
    serializer_class = ChangeSerializer

    def get_queryset(self):
        run = _run_or_404(self.kwargs["pk"])
        return run.changes.filter(**_query(ChangeFilterSerializer, self.request)).order_by("id")

    @extend_schema(
        operation_id="vapi_sync_runs_changes_list", summary="All changes of one run, paginated", tags=TAGS,
        parameters=[ChangeFilterSerializer], responses={200: ChangeSerializer(many=True), **_errors(400, 401, 403, 404)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class EmptyRequestSerializer(StrictSerializer):
    """No body (or an empty JSON object)."""


class RunRollbackView(SyncTriggerView):
    @extend_schema(
        operation_id="vapi_sync_runs_rollback", summary="Roll back a run", tags=TAGS,
        description="Starts a new run that restores what the given run changed, on both sides. A record edited "
        "since is left alone and reported in the new run's errors (status partial). A rollback can itself be "
        "rolled back; a run is rolled back once. 400 when the run cannot be rolled back (a dry run, still "
        "running, changed nothing, rolled back already). 202: the rollback runs in the background; poll it.",
        request=None, responses={200: _RUN_DONE, 202: _RUN_QUEUED, **_errors(400, 401, 403, 404, 409, 429, 503)},
    )
    def post(self, request, pk: int):
        self.validated(EmptyRequestSerializer, request)
        original = _run_or_404(pk)
        run = sync_run_rollback(run_id=original.pk, trigger=Trigger.API, user=request.user, background=True)
        return run_response(run, request)


# --- Conflicts and deletions ------------------------------------------------------------------


class ConflictListView(generics.ListAPIView):
    permission_classes = [CanViewSync]
    serializer_class = ConflictSerializer

    def get_queryset(self):
        return selectors.conflicts_list()

    @extend_schema(
        operation_id="vapi_sync_conflicts_list", summary="Records changed on both sides, waiting for a decision", tags=TAGS,
        description="Conflicts arise under VAPI_SYNC_CONFLICT_POLICY=manual (other policies settle them). Resolve "
        "one with POST conflicts/resolve.",
        responses={200: ConflictSerializer(many=True), **_errors(401, 403)},
    )
    def get(self, request, *args, **kwargs):
        items = self.paginate_queryset(self.get_queryset())
        found = _latest_conflict_changes(items)
        rows = []
        for item in items:
            change = found.get((item["resource"], item["local_id"]))
            rows.append({
                "resource": PUBLIC_RESOURCE[item["resource"]], "id": item["local_id"], "label": item["label"],
                "message": item.get("message") or "", "vapi_id": change.vapi_id if change else None,
                "diff": change.diff if change else {}, "detected_in_run": change.run_id if change else None,
            })
        return self.get_paginated_response(ConflictSerializer(rows, many=True).data)


def _latest_conflict_changes(items) -> dict:
    found = {}
    for resource in {i["resource"] for i in items}:
        ids = [i["local_id"] for i in items if i["resource"] == resource]
        for change in SyncChange.objects.filter(action=ChangeAction.CONFLICT, resource=resource, local_id__in=ids).order_by("id"):
            found[(resource, change.local_id)] = change  # the newest wins
    return found


class ConflictResolveView(SyncTriggerView):
    @extend_schema(
        operation_id="vapi_sync_conflicts_resolve", summary="Resolve one conflict: keep Vapi's or the local version", tags=TAGS,
        request=ConflictResolveSerializer,
        responses={200: _RUN_DONE, **_errors(400, 401, 403, 404, 409, 429, 503)},
        examples=[OpenApiExample("Keep Vapi's", value={"resource": "agents", "id": 12, "keep": "vapi"}, request_only=True)],
    )
    def post(self, request):
        body = self.validated(ConflictResolveSerializer, request)
        resource = RESOURCE_NAMES[body["resource"]]
        record = resource_spec(resource).model.objects.filter(pk=body["id"]).first()
        if record is None:
            raise NotFound(f"There is no {body['resource'].replace('_', ' ')[:-1]} with id {body['id']}.")
        run = conflict_resolve(resource=resource, local_id=record.pk, keep=body["keep"], trigger=Trigger.API, user=request.user)
        return run_response(run, request)


class AssistantsDeleteInVapiView(SyncTriggerView):
    @extend_schema(
        operation_id="vapi_sync_assistants_delete_in_vapi", summary="Delete in Vapi the assistants of agents deleted here",
        tags=TAGS,
        description="Deleting an agent here never deletes its Vapi assistant by itself; this does, for the ids "
        "given. Refused per item (reported in the run's errors or as skipped) while a local agent still uses it "
        "or a Vapi phone number routes calls to it. A rollback of this run re-creates the assistants.",
        request=DeleteInVapiSerializer, responses={200: _RUN_DONE, **_errors(400, 401, 403, 409, 429, 503)},
    )
    def post(self, request):
        body = self.validated(DeleteInVapiSerializer, request)
        run = assistants_delete_request(vapi_ids=body["vapi_ids"], trigger=Trigger.API, user=request.user)
        return run_response(run, request)
