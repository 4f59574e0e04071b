"""Receivers on the domain models. They never call Vapi: they record what the sync must know."""

from django.db.models.signals import post_delete, pre_save
from django.dispatch import receiver
from django.utils import timezone

from agents.models import Agent
from phonenumbers_app.models import PhoneNumber

from .context import is_sync_write
from .models import Resource, SyncRecord


@receiver(pre_save, sender=PhoneNumber, dispatch_uid="vapisync_phone_agent_reassigned")
def phone_agent_reassigned(sender, instance: PhoneNumber, raw=False, **kwargs):
    """A person changing the agent also changes the Vapi assignment to push."""
    if raw or is_sync_write() or instance.pk is None and not instance.agent_id:
        return
    previous_agent_id = (
        PhoneNumber.objects.filter(pk=instance.pk).values_list("agent_id", flat=True).first() if instance.pk else None
    )
    if instance.pk is None or previous_agent_id != instance.agent_id:
        instance.vapi_assistant_id = instance.agent.vapi_assistant_id if instance.agent_id else None


@receiver(post_delete, sender=Agent, dispatch_uid="vapisync_agent_tombstone")
def agent_tombstone(sender, instance: Agent, **kwargs):
    """Keep the link as a tombstone, so no import brings the deleted agent back."""
    _tombstone(Resource.ASSISTANTS, instance.pk, instance.vapi_assistant_id)


@receiver(post_delete, sender=PhoneNumber, dispatch_uid="vapisync_phone_tombstone")
def phone_tombstone(sender, instance: PhoneNumber, **kwargs):
    _tombstone(Resource.PHONE_NUMBERS, instance.pk, instance.vapi_phone_id)


def _tombstone(resource: str, local_id: int, vapi_id: str | None) -> None:
    if vapi_id:
        SyncRecord.objects.update_or_create(
            resource=resource, vapi_id=vapi_id, defaults={"local_id": local_id, "local_deleted_at": timezone.now()}
        )
