"""Rollback: a new run that restores the before-state of each change another run made.

Each step first checks that the record still looks the way the run left it, so a
rollback never overwrites a newer edit; what cannot be restored is reported. The
rollback's own changes are recorded like any run's, so it can be rolled back in turn.
Restoring a change pushed to Vapi puts both sides back (Vapi and the local record),
so the next sync does not push the undone edit again.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from agents.models import SyncStatus
from vapisync import mapping
from vapisync.context import sync_writes
from vapisync.exceptions import RollbackNotPossible, VapiError, VapiNotFound
from vapisync.models import ChangeAction, Direction, Resource, RunStatus, Side, SyncChange, SyncRecord, SyncRun
from vapisync.services.engine import RESOURCE_SYNCS, Pair, Recorder, RunOptions


def sync_run_rollback(*, run_id: int, trigger: str, user=None, client=None) -> SyncRun:
    from vapisync.services.runs import sync_run_start

    original = SyncRun.objects.filter(pk=run_id).first()
    if original is None:
        raise RollbackNotPossible(f"There is no sync run {run_id}.")
    if original.dry_run:
        raise RollbackNotPossible(f"Run {run_id} was a dry run: it changed nothing, so there is nothing to roll back.")
    if original.is_active:
        raise RollbackNotPossible(f"Run {run_id} is still {original.status}; wait for it to finish.")
    if original.status == RunStatus.FAILED and not original.changes.exists():
        raise RollbackNotPossible(f"Run {run_id} changed nothing.")
    return sync_run_start(
        direction=Direction.ROLLBACK, resources=original.resources, trigger=trigger, user=user,
        rollback_of=original, client=client,
    )


def rollback_apply(*, run: SyncRun, client, recorder: Recorder) -> None:
    original = run.rollback_of
    options = RunOptions(pull=True, push=True, dry_run=False, policy="manual")
    adapters = {}
    for resource in (Resource.ASSISTANTS, Resource.PHONE_NUMBERS):
        adapter = RESOURCE_SYNCS[resource](client=client, options=options, recorder=recorder)
        adapter.prepare()
        adapters[resource] = adapter
    changes = original.changes.exclude(action__in=[ChangeAction.ERROR, ChangeAction.SKIP, ChangeAction.CONFLICT])
    for change in changes.order_by("-id"):
        adapter = adapters[change.resource]
        try:
            _undo(change, adapter, client, recorder)
        except (VapiError, RollbackNotPossible, ValueError) as exc:
            recorder.add(change.resource, ChangeAction.ERROR, side=change.side, local_id=change.local_id,
                         vapi_id=change.vapi_id, label=change.label, error=f"Not rolled back: {exc}")


def _undo(change: SyncChange, adapter, client, recorder: Recorder) -> None:
    before, after = change.before or {}, change.after or {}
    model = adapter.model
    now = timezone.now()

    def record(action, side, **kw):
        recorder.add(change.resource, action, side=side, local_id=kw.pop("local_id", change.local_id),
                     vapi_id=kw.pop("vapi_id", change.vapi_id), label=change.label,
                     reason=f"Rollback of change {change.pk}", **kw)

    if change.side == Side.LOCAL:
        obj = model.objects.filter(pk=change.local_id).first()
        if change.action == ChangeAction.CREATE:
            if obj is None:
                raise RollbackNotPossible("the record it created no longer exists here")
            _require_equal(adapter.local_fields(obj), after.get("local"), "the record was edited since")
            fields = adapter.local_fields(obj)
            obj.delete()  # leaves a tombstone: the next import will not bring it back
            record(ChangeAction.DELETE, Side.LOCAL, before={"local": fields, "vapi_id": change.vapi_id}, after=None)
        elif change.action == ChangeAction.DELETE:
            if obj is not None:
                raise RollbackNotPossible("the record exists again")
            restored = _recreate_local(adapter, change, before)
            record(ChangeAction.CREATE, Side.LOCAL, local_id=restored.pk, after={"local": adapter.local_fields(restored)})
        elif change.action == ChangeAction.UPDATE:
            if obj is None:
                raise RollbackNotPossible("the record was deleted since")
            current = adapter.local_fields(obj)
            _require_equal(current, after.get("local"), "the record was edited since")
            restore = mapping.diff(current, before.get("local") or {})
            with transaction.atomic(), sync_writes():
                _apply_local(adapter, obj, {k: v[1] for k, v in restore.items()})
                SyncRecord.objects.filter(resource=change.resource, vapi_id=change.vapi_id).update(
                    baseline=adapter.local_fields(obj), baseline_hash=mapping.fields_hash(adapter.local_fields(obj))
                )
            record(ChangeAction.UPDATE, Side.LOCAL, before={"local": current}, after={"local": adapter.local_fields(obj)},
                   diff=mapping.diff(current, adapter.local_fields(obj)))
        elif change.action == ChangeAction.MARK_DELETED:
            if obj is None:
                raise RollbackNotPossible("the record was deleted since")
            model.objects.filter(pk=obj.pk).update(sync_status=(before or {}).get("status") or SyncStatus.SYNCED, sync_error="")
            SyncRecord.objects.filter(resource=change.resource, vapi_id=change.vapi_id).update(remote_deleted_at=None)
            record(ChangeAction.UPDATE, Side.LOCAL, before={"status": SyncStatus.DELETED_REMOTELY}, after=before)
        return

    # Changes made in Vapi.
    get = client.get_assistant if change.resource == Resource.ASSISTANTS else client.get_phone_number
    if change.action == ChangeAction.DELETE:
        payload = before.get("remote")
        if not payload or change.resource != Resource.ASSISTANTS:
            raise RollbackNotPossible("no copy of the deleted item was kept")
        created = client.create_assistant(payload)
        SyncRecord.objects.filter(resource=change.resource, vapi_id=change.vapi_id).update(
            vapi_id=created["id"], remote=created, remote_deleted_at=None
        )
        record(ChangeAction.CREATE, Side.VAPI, vapi_id=created["id"], after={"remote": created},
               error="")
        return
    try:
        current = get(change.vapi_id)
    except VapiNotFound as exc:
        raise RollbackNotPossible("Vapi no longer has it") from exc
    _require_equal(adapter.remote_fields(current), adapter.remote_fields(after.get("remote") or {}), "it was edited in Vapi since")
    obj = model.objects.filter(pk=change.local_id).first()
    if change.action == ChangeAction.CREATE:
        if change.resource != Resource.ASSISTANTS:
            raise RollbackNotPossible("phone numbers are never created in Vapi by this app")
        client.delete_assistant(change.vapi_id)
        with transaction.atomic(), sync_writes():
            SyncRecord.objects.filter(resource=change.resource, vapi_id=change.vapi_id).delete()
            if obj is not None:
                model.objects.filter(pk=obj.pk).update(
                    **{adapter.vapi_id_field: None}, sync_status=SyncStatus.LOCAL_ONLY, sync_error="", last_synced_at=None
                )
        record(ChangeAction.DELETE, Side.VAPI, before={"remote": current}, after=None)
        return
    if change.action == ChangeAction.UPDATE:
        old = before.get("remote") or {}
        old_fields = adapter.remote_fields(old)
        body_fields = {k: v for k, v in old_fields.items() if adapter.remote_fields(current).get(k) != v}
        if change.resource == Resource.ASSISTANTS:
            body = mapping.changed_top_level(old, current)
            restored = client.update_assistant(change.vapi_id, body) if body else current
        else:
            body = mapping.phone_update_payload(body_fields, current)
            restored = client.update_phone_number(change.vapi_id, body) if body else current
        record(ChangeAction.UPDATE, Side.VAPI, before={"remote": current}, after={"remote": restored},
               diff=mapping.diff(adapter.remote_fields(current), adapter.remote_fields(restored)))
        if obj is not None:
            # Put the local record back to match, so the next sync does not push the undone edit again.
            local_before = adapter.local_fields(obj)
            pair = Pair(local=obj, remote=restored, record=SyncRecord.objects.filter(
                resource=change.resource, vapi_id=change.vapi_id).first())
            with transaction.atomic(), sync_writes():
                _apply_local(adapter, obj, {k: v for k, v in adapter.remote_fields(restored).items() if local_before.get(k) != v})
                pair.local_fields = adapter.local_fields(obj)
                adapter._mark_synced(pair)
                model.objects.filter(pk=obj.pk).update(sync_status=obj.sync_status, sync_error="", last_synced_at=now)
                adapter._save_records([adapter._record_for(pair)])
            if local_before != pair.local_fields:
                record(ChangeAction.UPDATE, Side.LOCAL, before={"local": local_before}, after={"local": pair.local_fields},
                       diff=mapping.diff(local_before, pair.local_fields))


def _require_equal(current, expected, message: str) -> None:
    if expected is not None and current != expected:
        raise RollbackNotPossible(message)


def _apply_local(adapter, obj, fields: dict) -> None:
    if not fields:
        return
    vapi_id = getattr(obj, adapter.vapi_id_field)
    adapter.apply_local(obj, fields, {"id": vapi_id})
    obj.save()


def _recreate_local(adapter, change: SyncChange, before: dict):
    fields = before.get("local") or {}
    vapi_id = before.get("vapi_id") or change.vapi_id
    with transaction.atomic(), sync_writes():
        obj = adapter.new_local({"id": vapi_id}, fields)
        obj.sync_status = SyncStatus.SYNCED
        obj.save()
        SyncRecord.objects.filter(resource=change.resource, vapi_id=vapi_id).update(local_id=obj.pk, local_deleted_at=None)
    return obj
