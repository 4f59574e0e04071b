"""Sync bookkeeping: baselines per linked record, run history, locks, webhook events."""

from django.conf import settings
from django.db import models


class Resource(models.TextChoices):
    ASSISTANTS = "assistants", "Agents / assistants"
    PHONE_NUMBERS = "phone_numbers", "Phone numbers"


class Direction(models.TextChoices):
    IMPORT = "import", "Import from Vapi"
    EXPORT = "export", "Export to Vapi"
    FULL = "full", "Full sync"
    ROLLBACK = "rollback", "Rollback"
    RESOLVE = "resolve", "Conflict resolution"
    DELETE = "delete", "Delete in Vapi"


class Trigger(models.TextChoices):
    API = "api", "API"
    ADMIN = "admin", "Admin"
    CLI = "cli", "Command line"
    SIGNAL = "signal", "Automatic (record saved)"
    SCHEDULE = "schedule", "Schedule"
    WEBHOOK = "webhook", "Webhook"
    ROLLBACK = "rollback", "Rollback"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Partly failed"
    FAILED = "failed", "Failed"
    # The process running it stopped (worker killed, web process recycled, deploy); the next run picks up its work.
    INTERRUPTED = "interrupted", "Interrupted"


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)


class SyncRun(models.Model):
    """One sync operation, whatever started it; dry runs keep their plan here."""

    direction = models.CharField(max_length=10, choices=Direction.choices)
    resources = models.JSONField(default=list)
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    dry_run = models.BooleanField(default=False)
    delta = models.BooleanField(default=False, help_text="Import only what changed in Vapi since the last run.")
    selection = models.JSONField(default=dict, blank=True, help_text="Local or Vapi ids for a selective sync.")
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    rollback_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rollbacks")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    progress = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True)
    plan = models.JSONField(default=list, blank=True)
    message = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("run_sync", "Can run Vapi syncs, roll back runs and resolve conflicts")]

    def __str__(self):
        return f"Sync run {self.pk} ({self.get_direction_display()}, {self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class ChangeAction(models.TextChoices):
    CREATE = "create", "Create"
    UPDATE = "update", "Update"
    DELETE = "delete", "Delete"
    MARK_DELETED = "mark_deleted", "Mark deleted in Vapi"
    CONFLICT = "conflict", "Conflict"
    SKIP = "skip", "Skip"
    ERROR = "error", "Error"


class Side(models.TextChoices):
    LOCAL = "local", "Database"
    VAPI = "vapi", "Vapi"


class SyncChange(models.Model):
    """One record's change (or planned change) in a run, with what is needed to undo it."""

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="changes")
    resource = models.CharField(max_length=20, choices=Resource.choices)
    action = models.CharField(max_length=15, choices=ChangeAction.choices)
    side = models.CharField(max_length=5, choices=Side.choices, blank=True, default="")
    local_id = models.BigIntegerField(null=True, blank=True)
    vapi_id = models.CharField(max_length=100, null=True, blank=True)
    label = models.CharField(max_length=255, blank=True, default="")
    before = models.JSONField(null=True, blank=True, help_text="{'local': fields, 'remote': payload} before the change")
    after = models.JSONField(null=True, blank=True)
    diff = models.JSONField(default=dict, blank=True, help_text="field -> [old, new]")
    reason = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["resource", "local_id"]), models.Index(fields=["resource", "vapi_id"])]

    def __str__(self):
        return f"{self.action} {self.resource} {self.label or self.vapi_id or self.local_id}"


class SyncRecord(models.Model):
    """The baseline of one linked pair: what both sides looked like at the last successful sync.

    Kept after either side is deleted, as the tombstone that stops an import from
    resurrecting a locally deleted agent and an export from re-creating a remotely
    deleted assistant.
    """

    resource = models.CharField(max_length=20, choices=Resource.choices)
    vapi_id = models.CharField(max_length=100)
    local_id = models.BigIntegerField(null=True, blank=True)
    baseline = models.JSONField(default=dict, help_text="Canonical mapped fields at the last sync.")
    remote = models.JSONField(default=dict, help_text="The full Vapi document last seen.")
    remote_updated_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    local_deleted_at = models.DateTimeField(null=True, blank=True)
    remote_deleted_at = models.DateTimeField(null=True, blank=True)
    # "<format>:<hash of the local fields>@<Vapi updatedAt>" (vapisync.mapping.clean_mark) when a run
    # found both sides equal, with those local fields and that Vapi document; "" otherwise. Vapi moves
    # updatedAt on every change, so a later run that finds the same two knows the pair is still equal
    # without mapping Vapi's document again (vapisync.services.engine). Every other writer clears it.
    clean_mark = models.CharField(max_length=100, blank=True, default="", db_default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["resource", "vapi_id"], name="uniq_syncrecord_resource_vapi_id")]
        indexes = [models.Index(fields=["resource", "local_id"])]

    def __str__(self):
        return f"{self.resource} {self.vapi_id}"


class DeletedMarker(models.Model):
    """The create marker of an agent deleted before any run linked it to an assistant.

    A create whose answer was lost (a timeout, a lease lost mid-run) can leave an assistant in
    Vapi that this app never recorded; if the agent is then deleted here, that assistant turns up
    later carrying the deleted agent's marker. It is a tombstone, never imported as a new agent.
    """

    marker = models.CharField(max_length=64, unique=True)
    local_id = models.BigIntegerField()
    deleted_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"agent {self.local_id} ({self.marker}), deleted unlinked"


class SyncLock(models.Model):
    """A named lease held in the database, so it works across processes and on SQLite."""

    key = models.CharField(max_length=100, unique=True)
    owner = models.CharField(max_length=100)
    acquired_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    def __str__(self):
        return f"{self.key} held by {self.owner}"


class SyncCursor(models.Model):
    """High-water mark for delta imports: Vapi's updatedAt of the newest item seen."""

    resource = models.CharField(max_length=20, choices=Resource.choices, unique=True)
    updated_since = models.DateTimeField(null=True, blank=True)


class WebhookEvent(models.Model):
    """A Vapi server message as received; the hash recognises a replay."""

    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    body_sha256 = models.CharField(max_length=64, unique=True)
    message_type = models.CharField(max_length=100, blank=True, default="")
    payload = models.JSONField(default=dict)
    assistant_id = models.CharField(max_length=100, blank=True, default="")
    phone_number_id = models.CharField(max_length=100, blank=True, default="")
    duplicates = models.PositiveIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-received_at"]

    def __str__(self):
        return f"{self.message_type or 'message'} at {self.received_at:%Y-%m-%d %H:%M:%S}"


class SyncStatusSnapshot(models.Model):
    """The last comparison of both sides (Vapi counts, what a full sync would do), so the status page
    and `GET status` read the database instead of listing Vapi on every view. One row per `key`.

    Stored by every run that reads all of Vapi, by the periodic status check (with a worker) and by
    "Check now"; also keeps the last Vapi error and the last successful contact for the page's banner."""

    key = models.CharField(max_length=20, unique=True, default="status")
    resources = models.JSONField(default=dict, blank=True, help_text="resource -> {vapi, would_change}")
    computed_at = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=20, blank=True, default="", help_text="run, check, schedule")
    run = models.ForeignKey(SyncRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    vapi_ok_at = models.DateTimeField(null=True, blank=True, help_text="Last time Vapi answered a status check.")
    vapi_error = models.TextField(blank=True, default="")
    vapi_error_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"Sync status at {self.computed_at:%Y-%m-%d %H:%M:%S}" if self.computed_at else "Sync status (never checked)"


class Sync(SyncRun):
    """No table of its own: gives the admin's "Vapi Sync" page (vapisync.admin) its entry in the
    admin index and sidebar, at /admin/vapisync/sync/. Access follows SyncRun's permissions."""

    class Meta:
        proxy = True
        verbose_name = "Vapi Sync"
        verbose_name_plural = "Vapi Sync"
        default_permissions = ()
