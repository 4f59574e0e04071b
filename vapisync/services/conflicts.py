"""Settling a conflict: a record changed on both sides since the last sync, kept as it is until a
person chooses which version wins. The API, the admin and the command all come here for the rule."""

from __future__ import annotations

from globalvoice.tracking import SyncStatus
from vapisync.exceptions import NothingToResolve
from vapisync.models import Direction, SyncRun
from vapisync.resources import REGISTRY
from vapisync.services.runs import sync_run_start

KEEP_CHOICES = ("vapi", "local")


def conflict_resolve(*, resource: str, local_id: int, keep: str, trigger: str, user=None, client=None) -> SyncRun:
    """Settle one record's conflict by keeping Vapi's version ("vapi") or ours ("local"), in a run.
    Raises NothingToResolve if the record does not exist or is not in conflict."""
    if keep not in KEEP_CHOICES:
        raise ValueError("keep must be 'vapi' or 'local'")
    spec = REGISTRY[resource]
    record = spec.model.objects.filter(pk=local_id).first()
    if record is None:
        raise NothingToResolve(f"There is no {spec.public_name.replace('_', ' ')[:-1]} with id {local_id}.")
    if record.sync_status != SyncStatus.CONFLICT:
        raise NothingToResolve(f"{record} is not in conflict (its sync status is {record.get_sync_status_display()!r}).")
    return sync_run_start(
        direction=Direction.RESOLVE, resources=[resource], trigger=trigger, user=user,
        local_ids={resource: [local_id]}, policy="vapi_wins" if keep == "vapi" else "local_wins", client=client,
    )
