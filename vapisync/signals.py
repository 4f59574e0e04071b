"""Receivers on the domain models. They never call Vapi: they record what the sync must know
(links, tombstones, the outbox marker) and ask for work after commit (vapisync.services.outbox,
vapisync.services.deletions).

Writes made by the sync itself (`sync_writes()`) and fixture loading (`raw`) are ignored, so an
import never echoes back to Vapi.
"""

from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from django.utils import timezone

from agents.models import Agent
from phonenumbers_app.models import PhoneNumber

from .context import is_sync_write
from .models import DeletedMarker, Resource, SyncRecord
from .services import deletions, outbox


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
    """Keep the link as a tombstone, so no import brings the deleted agent back; an agent not linked
    yet leaves its create marker instead (a create of it may have reached Vapi unrecorded)."""
    _tombstone(Resource.ASSISTANTS, instance.pk, instance.vapi_assistant_id)
    # Its create marker too: any copy of it that turns up in Vapi later (an unrecorded create, a rollback
    # re-creating a deleted assistant) is a tombstone, never imported as a new agent.
    DeletedMarker.objects.get_or_create(marker=str(instance.uuid), defaults={"local_id": instance.pk})


@receiver(post_delete, sender=PhoneNumber, dispatch_uid="vapisync_phone_tombstone")
def phone_tombstone(sender, instance: PhoneNumber, **kwargs):
    _tombstone(Resource.PHONE_NUMBERS, instance.pk, instance.vapi_phone_id)


def _tombstone(resource: str, local_id: int, vapi_id: str | None) -> None:
    if vapi_id:
        SyncRecord.objects.update_or_create(
            resource=resource, vapi_id=vapi_id, defaults={"local_id": local_id, "local_deleted_at": timezone.now(), "clean_mark": ""}
        )


# --- Automatic sync: the outbox --------------------------------------------------------------


@receiver(pre_save, sender=Agent, dispatch_uid="vapisync_agent_outbox_mark")
def agent_outbox_mark(sender, instance: Agent, raw=False, update_fields=None, **kwargs):
    """A person's change to an agent: mark it pending in the same statement."""
    if not raw and not is_sync_write():
        outbox.pending_prepare(resource=Resource.ASSISTANTS, instance=instance, update_fields=update_fields)


@receiver(post_save, sender=Agent, dispatch_uid="vapisync_agent_outbox_push")
def agent_outbox_push(sender, instance: Agent, raw=False, update_fields=None, **kwargs):
    """...and ask for a drain of the outbox after commit."""
    if not raw and not is_sync_write():
        outbox.pending_commit(resource=Resource.ASSISTANTS, instance=instance, update_fields=update_fields)


@receiver(pre_save, sender=PhoneNumber, dispatch_uid="vapisync_phone_outbox_mark")
def phone_outbox_mark(sender, instance: PhoneNumber, raw=False, update_fields=None, **kwargs):
    """A person renamed a linked number or changed its agent: mark it pending."""
    if not raw and not is_sync_write():
        outbox.pending_prepare(resource=Resource.PHONE_NUMBERS, instance=instance, update_fields=update_fields)


@receiver(post_save, sender=PhoneNumber, dispatch_uid="vapisync_phone_outbox_push")
def phone_outbox_push(sender, instance: PhoneNumber, raw=False, update_fields=None, **kwargs):
    if not raw and not is_sync_write():
        outbox.pending_commit(resource=Resource.PHONE_NUMBERS, instance=instance, update_fields=update_fields)


@receiver(post_delete, sender=Agent, dispatch_uid="vapisync_agent_delete_remote")
def agent_delete_remote(sender, instance: Agent, **kwargs):
    """With VAPI_SYNC_DELETE_REMOTE on, delete the assistant in Vapi after commit (the tombstone
    receiver above has kept the link)."""
    if instance.vapi_assistant_id and not is_sync_write():
        deletions.assistants_delete_on_commit(vapi_id=instance.vapi_assistant_id)

