import uuid

from django.db import models


class SyncStatus(models.TextChoices):
    """Where a record stands against its copy in the remote voice platform."""

    LOCAL_ONLY = "local_only", "Not synced yet"
    PENDING = "pending", "Change waiting to be pushed"
    SYNCED = "synced", "In sync"
    ERROR = "error", "Last sync failed"
    CONFLICT = "conflict", "Changed on both sides"
    DELETED_REMOTELY = "deleted_in_vapi", "Deleted in Vapi"


class SyncTrackedModel(models.Model):
    """Plain bookkeeping columns a sync process fills in; the domain logic ignores them."""

    sync_status = models.CharField(
        max_length=20, choices=SyncStatus.choices, default=SyncStatus.LOCAL_ONLY, db_index=True
    )
    last_synced_at = models.DateTimeField(null=True, blank=True)
    sync_error = models.TextField(blank=True, default="")
    # Bumped in the database by every save (a person's, or a sync writing content): writers that
    # decided from an earlier read compare it first ("compare and set"), so a newer edit is never
    # overwritten. Sync bookkeeping alone (status, error) leaves it as it is.
    version = models.PositiveBigIntegerField(default=1, db_default=1, editable=False)  # db_default: bulk loads in SQL

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if self._state.adding or self.pk is None:
            return super().save(*args, **kwargs)
        # F(): a copy loaded before another write still moves the version past it.
        self.version = models.F("version") + 1
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "version"}
        try:
            super().save(*args, **kwargs)
        finally:
            self.version = type(self).objects.filter(pk=self.pk).values_list("version", flat=True).first() or 0


class Agent(SyncTrackedModel):
    """A voice agent: what it says, how it thinks and how it sounds."""

    # Stable identity that survives renames; also tags the remote copy so a retried
    # create can find it instead of making a second one.
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=40)
    system_prompt = models.TextField(blank=True, default="")
    first_message = models.TextField(blank=True, default="")
    model_provider = models.CharField(max_length=50, default="openai")
    model = models.CharField(max_length=100, default="gpt-4o")
    voice_provider = models.CharField(max_length=50, default="vapi")
    voice_id = models.CharField(max_length=100, default="Elliot")
    vapi_assistant_id = models.CharField(
        max_length=100, null=True, blank=True, unique=True, editable=False, verbose_name="Vapi assistant id"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["vapi_assistant_id"], name="idx_agents_vapi_assistant_id")]

    def __str__(self):
        return self.name
