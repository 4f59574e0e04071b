import uuid

from django.db import models

from globalvoice.tracking import SyncTrackedModel


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
