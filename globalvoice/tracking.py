"""Sync bookkeeping shared by every synced model.

Neither domain app owns it: `agents` and `phonenumbers_app` both inherit the columns, and the sync
app fills them in. An abstract model needs no app of its own.
"""

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
