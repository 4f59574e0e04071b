"""Request and response shapes of the sync API (they also drive the OpenAPI schema).

Resource names: one public name per resource everywhere in the API, "agents" and "phone_numbers"
(runs, counts, errors, plans, changes, selections, status, conflicts). The database and the engine
call agents "assistants" (Vapi's word); the names are translated here, at the boundary, and
"assistants" is still accepted as an input synonym wherever a resource is named.
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from vapisync.models import RunStatus, SyncChange, SyncRun
from vapisync.resources import REGISTRY
from vapisync.services.history import COUNT_KEYS

MAX_IDS = 1000
MAX_LOCAL_ID = 2**63 - 1  # a bigint primary key: larger numbers cannot name a record


def inline_enum_field(field_class, values, **kwargs):
    """A field whose schema keeps its enum inline (wrapped in allOf), so drf-spectacular does not
    hoist it into a shared component whose name collides with another choice set of that name."""
    schema = {"type": "string", "allOf": [{"enum": list(values)}]}
    if issubclass(field_class, serializers.ListField):
        schema = {"type": "array", "items": schema}
    return extend_schema_field(schema)(type(f"Inline{field_class.__name__}", (field_class,), {}))(**kwargs)
CHANGES_IN_DETAIL = 500

# Public resource name (request bodies, status) -> engine resource; the engine's own name is accepted
# as a synonym ("assistants"). Both come from the registry, so a new resource needs nothing here.
RESOURCE_NAMES = {name: str(spec.resource) for spec in REGISTRY.values() for name in (spec.public_name, str(spec.resource))}
PUBLIC_RESOURCE = {str(spec.resource): spec.public_name for spec in REGISTRY.values()}
PUBLIC_RESOURCES = list(PUBLIC_RESOURCE.values())


def public_resource(name):
    """The API's name for an engine resource name ("assistants" -> "agents")."""
    return PUBLIC_RESOURCE.get(name, name)


def _public_keys(mapping) -> dict:
    return {public_resource(k): v for k, v in (mapping or {}).items()} if isinstance(mapping, dict) else mapping


def _public_items(items):
    """Errors and plan items: their `resource` under its public name."""
    if not isinstance(items, list):
        return items
    return [{**item, "resource": public_resource(item["resource"])} if isinstance(item, dict) and item.get("resource")
            else item for item in items]


# --- Requests -------------------------------------------------------------------------------


class StrictSerializer(serializers.Serializer):
    """Refuses keys it does not know, so a typo ("dryrun") is a 400, never silently ignored.

    `field_hints` maps a refused key to a better message than "unknown field".
    """

    field_hints: dict[str, str] = {}

    def to_internal_value(self, data):
        errors = {}
        if hasattr(data, "keys"):
            for key in data.keys():
                if key in self.fields or key == "csrfmiddlewaretoken":
                    continue
                if key.lstrip().startswith(("{", "[")):
                    hint = "This looks like JSON sent as a form: add the header Content-Type: application/json."
                else:
                    hint = self.field_hints.get(key) or f"Unknown field. Allowed: {', '.join(self.fields) or 'none (send no body)'}."
                errors[key] = [hint]
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if errors and isinstance(exc.detail, dict):
                errors.update(exc.detail)
            elif not errors:
                raise
        if errors:
            raise serializers.ValidationError(errors)
        return value


def control_character(text: str) -> str | None:
    """The first control character (U+0000-U+001F, U+007F-U+009F) in `text`, if any. No Vapi id holds
    one, and NUL cannot even be looked up in PostgreSQL: such an id is a field error, not a 503."""
    return next((c for c in text if c < " " or "\x7f" <= c <= "\x9f"), None)


def _no_control_characters(value: str) -> None:
    bad = control_character(value)
    if bad is not None:
        raise serializers.ValidationError(f"A Vapi id cannot hold control characters (found U+{ord(bad):04X}).")


@extend_schema_field(
    {"oneOf": [{"type": "integer", "minimum": 1, "maximum": MAX_LOCAL_ID}, {"type": "string", "minLength": 1, "maxLength": 100}]}
)
class RecordIdField(serializers.Field):
    """A local id (an integer, or a string of digits) or a Vapi id (any other string)."""

    default_error_messages = {
        "invalid": "Expected a local id (a positive integer) or a Vapi id (a string), got {kind}.",
        "blank": "An id must not be empty.",
        "too_long": "A Vapi id has at most 100 characters.",
        "control_character": "A Vapi id cannot hold control characters (found U+{code:04X}).",
    }

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, str)):
            self.fail("invalid", kind=type(data).__name__)
        if isinstance(data, int):
            if not 1 <= data <= MAX_LOCAL_ID:
                self.fail("invalid", kind=f"integer {data}")
            return data
        data = data.strip()
        if not data:
            self.fail("blank")
        if data.isascii() and data.isdigit():
            return self.to_internal_value(int(data))
        if len(data) > 100:
            self.fail("too_long")
        bad = control_character(data)
        if bad is not None:
            self.fail("control_character", code=ord(bad))
        return data

    def to_representation(self, value):
        return value


def _ids_field(help_text: str) -> serializers.ListField:
    return serializers.ListField(
        child=RecordIdField(), required=False, allow_empty=False, max_length=MAX_IDS, help_text=help_text,
        error_messages={"empty": "Leave the list out to sync every record; an empty list selects nothing."},
    )


def split_ids(ids) -> tuple[list[int], list[str]]:
    """Local ids (int) and Vapi ids (str) of a validated id list."""
    ids = ids or []
    return [i for i in ids if isinstance(i, int)], [i for i in ids if isinstance(i, str)]


_DRY_RUN_HELP = "Plan only: report what would change (the `plan` of the response) and change nothing."
_IDS_HELP = (
    "Sync only these records: local ids (integers) or Vapi ids (strings) of this endpoint's resource. "
    "Leave out to sync all of them."
)


class ExportSyncSerializer(StrictSerializer):
    dry_run = serializers.BooleanField(required=False, default=False, help_text=_DRY_RUN_HELP)
    ids = _ids_field(_IDS_HELP)

    field_hints = {"delta": "delta applies to imports (the from-vapi endpoints) only."}


class ImportSyncSerializer(ExportSyncSerializer):
    delta = serializers.BooleanField(
        required=False, default=False,
        help_text="Fetch only what changed in Vapi since the last import (faster; never marks deletions).",
    )

    field_hints = {}

    def validate(self, attrs):
        if attrs.get("delta") and attrs.get("ids"):
            raise serializers.ValidationError({"delta": ["Use either ids or delta, not both."]})
        return attrs


class FullSyncSerializer(StrictSerializer):
    dry_run = serializers.BooleanField(required=False, default=False, help_text=_DRY_RUN_HELP)
    agent_ids = _ids_field("Limit the agents part to these agents: local ids (integers) or Vapi assistant ids (strings).")
    phone_number_ids = _ids_field(
        "Limit the phone numbers part to these numbers: local ids (integers) or Vapi phone number ids (strings)."
    )

    field_hints = {
        "ids": "A full sync covers two resources: use agent_ids and/or phone_number_ids.",
        "delta": "delta applies to imports (the from-vapi endpoints) only.",
    }


class ConflictResolveSerializer(StrictSerializer):
    resource = serializers.ChoiceField(
        choices=list(RESOURCE_NAMES), help_text='"agents" (or "assistants") or "phone_numbers".'
    )
    id = serializers.IntegerField(
        min_value=1, max_value=MAX_LOCAL_ID, help_text="The local id of the agent or phone number in conflict."
    )
    keep = serializers.ChoiceField(choices=["vapi", "local"], help_text="Whose version wins: Vapi's or the database's.")


class DeleteInVapiSerializer(StrictSerializer):
    vapi_ids = serializers.ListField(
        child=serializers.CharField(max_length=100, validators=[_no_control_characters]), allow_empty=False, max_length=MAX_IDS,
        help_text="Vapi assistant ids whose local agents were deleted here. Assistants that still have an agent "
        "here, or that a Vapi phone number routes calls to, are not deleted (reported in errors).",
    )


# --- Runs -----------------------------------------------------------------------------------


class CountsSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    deleted = serializers.IntegerField()
    conflicts = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()


class RunErrorSerializer(serializers.Serializer):
    message = serializers.CharField()
    resource = serializers.CharField(required=False)
    label = serializers.CharField(required=False, allow_blank=True)
    local_id = serializers.IntegerField(required=False, allow_null=True)
    vapi_id = serializers.CharField(required=False, allow_null=True)
    retryable = serializers.BooleanField(required=False, help_text="The same request may succeed later (outage, rate limit).")


class DiffField(serializers.DictField):
    """field -> [old, new]"""

    child = serializers.ListField(child=serializers.JSONField(), min_length=2, max_length=2)


class PlanItemSerializer(serializers.Serializer):
    resource = serializers.CharField()
    action = serializers.CharField(help_text="create, update, link, delete, mark_deleted, conflict, skip or error.")
    side = serializers.CharField(allow_blank=True, help_text='Where it would change: "local" (database), "vapi" or "".')
    local_id = serializers.IntegerField(allow_null=True)
    vapi_id = serializers.CharField(allow_null=True)
    label = serializers.CharField(allow_blank=True)
    diff = DiffField()
    reason = serializers.CharField(allow_blank=True)


class ProgressSerializer(serializers.Serializer):
    phase = serializers.CharField(required=False, help_text="What the run is doing now; \"finished\" at the end.")
    total = serializers.IntegerField(required=False, help_text="Records of this phase that need work.")
    done = serializers.IntegerField(required=False, help_text="Records written so far.")
    checked = serializers.IntegerField(required=False, help_text="Records compared so far (unchanged ones included).")
    percent = serializers.FloatField(required=False, help_text="done / total, in percent.")
    eta_seconds = serializers.IntegerField(required=False, help_text="Estimated seconds left in this phase.")
    phase_started_at = serializers.DateTimeField(required=False)


class RunSerializer(serializers.ModelSerializer):
    """A sync run as every trigger endpoint returns it."""

    user = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    counts = serializers.SerializerMethodField()
    errors = RunErrorSerializer(many=True, read_only=True)
    plan = PlanItemSerializer(many=True, read_only=True, help_text="What a dry run would do (empty for real runs).")
    progress = ProgressSerializer(read_only=True)
    resources = inline_enum_field(serializers.ListField, PUBLIC_RESOURCES, child=serializers.CharField(), read_only=True)
    selection = serializers.JSONField(
        read_only=True, help_text="Ids of a selective sync: {local_ids: {agents|phone_numbers: [...]}, vapi_ids: {...}}."
    )

    class Meta:
        model = SyncRun
        fields = [
            "id", "url", "status", "direction", "resources", "dry_run", "delta", "trigger", "user", "selection",
            "created_at", "started_at", "finished_at", "counts", "errors", "message", "progress", "plan", "rollback_of",
        ]
        read_only_fields = fields

    def get_user(self, run) -> str | None:
        return run.user.get_username() if run.user_id and run.user else None

    def get_url(self, run) -> str:
        path = reverse("vapisync:run-detail", kwargs={"pk": run.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    @extend_schema_field(serializers.DictField(child=CountsSerializer(), help_text="Per resource of the run: agents, phone_numbers."))
    def get_counts(self, run) -> dict:
        counts = run.counts or {}
        return {public_resource(r): {k: int((counts.get(r) or {}).get(k, 0)) for k in COUNT_KEYS}
                for r in (run.resources or counts)}

    def to_representation(self, run):
        data = super().to_representation(run)
        data["resources"] = [public_resource(r) for r in data.get("resources") or []]
        if isinstance(data.get("selection"), dict):
            data["selection"] = {k: _public_keys(v) if k in ("local_ids", "vapi_ids") else v
                                 for k, v in data["selection"].items()}
        for key in ("errors", "plan"):
            if key in data:
                data[key] = _public_items(data[key])
        return data


class RunSummarySerializer(RunSerializer):
    """A run in the history list: without the plan and the error list (see the run's own URL)."""

    error_count = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = [f for f in RunSerializer.Meta.fields if f not in ("plan", "errors")] + ["error_count"]
        read_only_fields = fields

    def get_error_count(self, run) -> int:
        return len(run.errors or [])


class ChangeSerializer(serializers.ModelSerializer):
    resource = inline_enum_field(serializers.CharField, PUBLIC_RESOURCES, read_only=True)
    diff = DiffField(read_only=True)

    def to_representation(self, change):
        data = super().to_representation(change)
        data["resource"] = public_resource(data["resource"])
        return data

    class Meta:
        model = SyncChange
        fields = ["id", "resource", "action", "side", "local_id", "vapi_id", "label", "diff", "reason", "error", "created_at"]
        read_only_fields = fields


class RunDetailSerializer(RunSerializer):
    """A run with its recorded changes (the first CHANGES_IN_DETAIL; the rest via changes_url)."""

    changes = serializers.SerializerMethodField()
    changes_count = serializers.SerializerMethodField()
    changes_url = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = RunSerializer.Meta.fields + ["changes_count", "changes", "changes_url"]
        read_only_fields = fields

    @extend_schema_field(ChangeSerializer(many=True))
    def get_changes(self, run):
        return ChangeSerializer(run.changes.order_by("id")[:CHANGES_IN_DETAIL], many=True).data

    def get_changes_count(self, run) -> int:
        return run.changes.count()

    def get_changes_url(self, run) -> str:
        path = reverse("vapisync:run-changes", kwargs={"pk": run.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


# --- Status, health, conflicts, errors --------------------------------------------------------


class DriftSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    deleted = serializers.IntegerField()
    conflicts = serializers.IntegerField()
    skipped = serializers.IntegerField()


class ResourceStatusSerializer(serializers.Serializer):
    database = serializers.IntegerField(help_text="Records in the database.")
    vapi = serializers.IntegerField(allow_null=True, help_text="Items in Vapi (null when Vapi could not be read).")
    in_sync = serializers.BooleanField(allow_null=True)
    pending = serializers.IntegerField(help_text="Local changes waiting to be pushed.")
    not_synced = serializers.IntegerField(help_text="Local records never pushed to Vapi.")
    errors = serializers.IntegerField(help_text="Records whose last sync failed.")
    conflicts = serializers.IntegerField(help_text="Records changed on both sides, waiting for a decision.")
    deleted_in_vapi = serializers.IntegerField()
    deleted_locally_still_in_vapi = serializers.IntegerField()
    would_change = DriftSerializer(required=False, help_text="What a full sync would do now (present when Vapi was read).")


class RunBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    direction = serializers.CharField()
    status = serializers.ChoiceField(choices=RunStatus.choices)
    trigger = serializers.CharField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    counts = serializers.DictField(child=serializers.DictField(child=serializers.IntegerField()))

    def to_representation(self, run):
        data = super().to_representation(run)
        data["counts"] = _public_keys(data["counts"])
        return data


class SnapshotSerializer(serializers.Serializer):
    computed_at = serializers.DateTimeField(allow_null=True, help_text="When Vapi was last compared (null: never).")
    age_seconds = serializers.IntegerField(allow_null=True)
    fresh = serializers.BooleanField(help_text="Younger than VAPI_SYNC_STATUS_MAX_AGE.")
    source = serializers.CharField(help_text="What computed it: run, check or schedule.")
    run_id = serializers.IntegerField(allow_null=True, help_text="The run that computed it, if one did.")


def _sync_status_serializer() -> type[serializers.Serializer]:
    """The status document: one entry per registered resource under its public name, between the
    figures about Vapi and the runs (DRF orders fields as they are created)."""
    fields = {
        "in_sync": serializers.BooleanField(allow_null=True, help_text="Every resource in sync (null when Vapi was never read)."),
        "timestamp": serializers.DateTimeField(),
        "configured": serializers.BooleanField(help_text="VAPI_API_KEY is set."),
        "vapi_error": serializers.CharField(allow_null=True, help_text="Why the last check of Vapi failed, or why Vapi is "
                                            "unreachable now (the figures are then those of `snapshot`)."),
        "vapi_error_at": serializers.DateTimeField(allow_null=True),
        "vapi_last_ok_at": serializers.DateTimeField(allow_null=True, help_text="Last successful contact with Vapi."),
        "snapshot": SnapshotSerializer(allow_null=True, help_text="The stored comparison the Vapi figures come from."),
        **{spec.public_name: ResourceStatusSerializer() for spec in REGISTRY.values()},
        "last_run": RunBriefSerializer(allow_null=True),
        "active_run": RunBriefSerializer(allow_null=True),
    }
    return type("SyncStatusSerializer", (serializers.Serializer,), {"__module__": __name__, **fields})


SyncStatusSerializer = _sync_status_serializer()


class HealthVapiSerializer(serializers.Serializer):
    configured = serializers.BooleanField()
    reachable = serializers.BooleanField(allow_null=True)
    base_url = serializers.CharField()
    error = serializers.CharField(required=False, allow_null=True)


class HealthDatabaseSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    error = serializers.CharField(required=False)


class HealthBrokerSerializer(serializers.Serializer):
    configured = serializers.BooleanField()
    ok = serializers.BooleanField(allow_null=True)
    mode = serializers.CharField(help_text='"in-process" (no broker: runs finish within the request) or "worker".')
    error = serializers.CharField(required=False)


class HealthSerializer(serializers.Serializer):
    status = inline_enum_field(serializers.ChoiceField, ["ok", "degraded", "disabled"], choices=["ok", "degraded", "disabled"])
    vapi = HealthVapiSerializer()
    database = HealthDatabaseSerializer()
    broker = HealthBrokerSerializer()


class ConflictSerializer(serializers.Serializer):
    resource = serializers.ChoiceField(choices=PUBLIC_RESOURCES)
    id = serializers.IntegerField(help_text="Local id: pass it with `resource` to conflicts/resolve.")
    label = serializers.CharField()
    vapi_id = serializers.CharField(allow_null=True)
    message = serializers.CharField(allow_blank=True)
    diff = DiffField(help_text="field -> [database value, Vapi value], from the run that found the conflict.")
    detected_in_run = serializers.IntegerField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    """Every error response: a message, a stable code, and extras where they apply."""

    detail = serializers.CharField()
    code = serializers.CharField()
    run_id = serializers.IntegerField(required=False, allow_null=True, help_text="409: the run in progress.")
    errors = serializers.DictField(
        child=serializers.JSONField(), required=False, help_text="400 invalid body: field -> messages."
    )
