"""Rollback: a new run that undoes, change by change, what another run did.

Undoing is a plan with preconditions. Each change recorded what the record looked like right
after the run: the local record's `version` and the whole Vapi document. A change is undone only
if the present state is still exactly that, on both sides and over the whole document (every
field, not only the ones the app models); otherwise it is left alone and reported. So a rollback
never overwrites a newer edit made here or in Vapi's dashboard.

Undoing restores both sides together, so the record is truthfully "in sync" afterwards and the
next sync does not redo (or undo) anything: undoing an import update pushes the old values to
Vapi too; undoing a push restores the local record as well. A run can be rolled back once (a
second attempt names the first rollback); a rollback is a run like any other and can itself be
rolled back. An assistant a Vapi number routes calls to is never deleted by a rollback.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from globalvoice.tracking import SyncStatus
from vapisync import mapping
from vapisync.context import sync_writes
from vapisync.exceptions import RollbackNotPossible, VapiError, VapiNotFound
from vapisync.models import ChangeAction, Direction, RunStatus, Side, SyncChange, SyncRecord, SyncRun
from vapisync.services.history import Recorder
from vapisync.services.plan import Pair, RunOptions, Unfenced
from vapisync.services.resource_syncs import RESOURCE_SYNCS
from vapisync.services.runs import sync_run_start, sync_run_submit
from vapisync.services.seams import seam


def sync_run_rollback(*, run_id: int, trigger: str, user=None, client=None, background: bool = False) -> SyncRun:
    """Roll back run `run_id` in a new run. With `background` (a person's request waiting), the run is
    started as every triggered run is (vapisync.services.runs.sync_run_submit) and returned queued."""
    original = SyncRun.objects.filter(pk=run_id).first()
    if original is None:
        raise RollbackNotPossible(f"There is no sync run {run_id}.")
    if original.dry_run:
        raise RollbackNotPossible(f"Run {run_id} was a dry run: it changed nothing, so there is nothing to roll back.")
    if original.is_active:
        raise RollbackNotPossible(f"Run {run_id} is still {original.status}; wait for it to finish.")
    if original.status == RunStatus.FAILED and not original.changes.exists():
        raise RollbackNotPossible(f"Run {run_id} changed nothing.")
    earlier = earlier_rollback(original)
    if earlier is not None:
        raise _already_rolled_back(original, earlier)
    start = sync_run_submit if background else sync_run_start
    return start(
        direction=Direction.ROLLBACK, resources=original.resources, trigger=trigger, user=user,
        rollback_of=original, client=client,
    )


def earlier_rollback(original: SyncRun, *, exclude: int | None = None) -> SyncRun | None:
    """The rollback that already undid (or is undoing) `original`; a failed one did nothing and does not count."""
    rollbacks = original.rollbacks.filter(dry_run=False).exclude(status=RunStatus.FAILED)
    if exclude is not None:
        rollbacks = rollbacks.exclude(pk=exclude)
    return rollbacks.order_by("id").first()


def _already_rolled_back(original: SyncRun, earlier: SyncRun) -> RollbackNotPossible:
    return RollbackNotPossible(
        f"Run {original.pk} was already rolled back by run {earlier.pk}; a run is rolled back once. "
        f"Roll back run {earlier.pk} to undo that rollback."
    )


class _Undo:
    """Undoes one run's changes, newest first, each after checking its preconditions."""

    def __init__(self, *, run: SyncRun, client, recorder: Recorder, lease):
        self.run, self.client, self.recorder, self.lease = run, client, recorder, lease
        options = RunOptions(pull=True, push=True, dry_run=False, policy="manual", lease=lease)
        self.adapters = {}
        for resource, sync_class in RESOURCE_SYNCS.items():
            adapter = sync_class(client=client, options=options, recorder=recorder)
            adapter.prepare()
            self.adapters[resource] = adapter
        self._routed: dict[str, str] | None = None
        # (resource, local id) -> (version before, version after) of this rollback's own writes, so
        # two changes of one record in the same run can both be undone.
        self.own_versions: dict[tuple[str, int], tuple[int, int]] = {}
        self.now = timezone.now()

    # -- preconditions ----------------------------------------------------------------
    def require_version(self, change: SyncChange, obj, after: dict) -> None:
        expected = after.get("version")
        if obj is None or expected is None:
            return
        current = obj.version
        before_own, after_own = self.own_versions.get((change.resource, obj.pk), (None, None))
        if current == after_own:
            current = before_own
        if current != expected:
            raise RollbackNotPossible(f"the record was edited here since (version {expected} -> {obj.version})")

    def require_remote(self, change: SyncChange, current: dict, expected_sha: str | None) -> None:
        if expected_sha is not None and mapping.document_hash(current) != expected_sha:
            raise RollbackNotPossible("it was edited in Vapi since")

    def routed(self) -> dict[str, str]:
        """Vapi assistant id -> the number routing calls to it, read once per rollback."""
        if self._routed is None:
            self._routed = {}
            for phone in self.client.iter_phone_numbers():
                if phone.get("assistantId"):
                    self._routed[phone["assistantId"]] = phone.get("number") or phone.get("sipUri") or phone["id"]
        return self._routed

    def get_remote(self, change: SyncChange) -> dict | None:
        try:
            return self.adapters[change.resource].get_remote(change.vapi_id)
        except VapiNotFound:
            return None

    def lock_local(self, change: SyncChange):
        """Inside a transaction: the record, locked, or None."""
        self.lease.check_in_transaction()
        return self.adapters[change.resource].model.objects.select_for_update().filter(pk=change.local_id).first()

    # -- one change ---------------------------------------------------------------------
    def undo(self, change: SyncChange) -> None:
        handlers = {
            (Side.LOCAL, ChangeAction.CREATE): self.undo_local_create,
            (Side.LOCAL, ChangeAction.DELETE): self.undo_local_delete,
            (Side.LOCAL, ChangeAction.UPDATE): self.undo_local_update,
            (Side.LOCAL, ChangeAction.MARK_DELETED): self.undo_mark_deleted,
            (Side.VAPI, ChangeAction.CREATE): self.undo_remote_create,
            (Side.VAPI, ChangeAction.DELETE): self.undo_remote_delete,
            (Side.VAPI, ChangeAction.UPDATE): self.undo_remote_update,
        }
        handler = handlers.get((change.side, change.action))
        if handler is None:
            raise RollbackNotPossible(f"a {change.get_action_display().lower()} cannot be undone")
        handler(change, change.before or {}, change.after or {})

    def record(self, change: SyncChange, action, side, **kw) -> None:
        self.recorder.add(change.resource, action, side=side, local_id=kw.pop("local_id", change.local_id),
                          vapi_id=kw.pop("vapi_id", change.vapi_id), label=change.label,
                          reason=kw.pop("reason", f"Rollback of change {change.pk}"), **kw)

    def undo_local_create(self, change, before, after):
        adapter = self.adapters[change.resource]
        with transaction.atomic(), sync_writes():
            obj = self.lock_local(change)
            if obj is None:
                raise RollbackNotPossible("the record it created no longer exists here")
            if after.get("version") is None and adapter.local_fields(obj) != after.get("local"):
                raise RollbackNotPossible("the record was edited here since")
            self.require_version(change, obj, after)
            fields = adapter.local_fields(obj)
            obj.delete()  # leaves a tombstone: the next import will not bring it back
        self.record(change, ChangeAction.DELETE, Side.LOCAL, before={"local": fields, "vapi_id": change.vapi_id}, after=None)

    def undo_local_delete(self, change, before, after):
        adapter = self.adapters[change.resource]
        vapi_id = before.get("vapi_id") or change.vapi_id
        if vapi_id and adapter.model.objects.filter(**{adapter.vapi_id_field: vapi_id}).exists():
            raise RollbackNotPossible("a record linked to it exists here again")
        with transaction.atomic(), sync_writes():
            self.lease.check_in_transaction()
            obj = adapter.mapper.new_local({"id": vapi_id}, before.get("local") or {})
            obj.sync_status = SyncStatus.SYNCED
            obj.save()
            SyncRecord.objects.filter(resource=change.resource, vapi_id=vapi_id).update(local_id=obj.pk, local_deleted_at=None, clean_mark="")
        self.record(change, ChangeAction.CREATE, Side.LOCAL, local_id=obj.pk,
                    after={"local": adapter.local_fields(obj), "version": obj.version})

    def undo_local_update(self, change, before, after):
        """An import changed the record here: put the old values back on both sides."""
        adapter = self.adapters[change.resource]
        old_fields = before.get("local") or {}
        obj = adapter.model.objects.filter(pk=change.local_id).first()
        if obj is None:
            raise RollbackNotPossible("the record was deleted here since")
        self.require_version(change, obj, after)
        if after.get("version") is None and adapter.local_fields(obj) != after.get("local"):
            raise RollbackNotPossible("the record was edited here since")
        restore = {k: v[1] for k, v in mapping.diff(adapter.local_fields(obj), old_fields).items() if k in old_fields}
        current = self.get_remote(change) if change.vapi_id else None
        if change.vapi_id and current is None:
            raise RollbackNotPossible("Vapi no longer has it")
        if current is not None:
            self.require_remote(change, current, after.get("remote_sha"))
        if not restore and "agent" not in change.diff:
            return
        if "agent" in change.diff and not restore:
            # A link made by an import: undoing it unlinks the number here only (Vapi never changed).
            with transaction.atomic(), sync_writes():
                obj = self.lock_local(change)
                self.require_version(change, obj, after)
                obj.agent_id = None
                obj.save(update_fields=["agent"])
            self.record(change, ChangeAction.UPDATE, Side.LOCAL, before={"local": {"agent": change.diff["agent"][1]}},
                        after={"local": {"agent": None}, "version": obj.version}, diff={"agent": change.diff["agent"][::-1]})
            return
        restored = self.push_fields(change, current, restore) if current is not None else None
        self.write_local(change, obj, restore, restored, after)

    def undo_mark_deleted(self, change, before, after):
        adapter = self.adapters[change.resource]
        current = self.get_remote(change)
        if current is None:
            raise RollbackNotPossible("it is still deleted in Vapi; push it explicitly to re-create it")
        with transaction.atomic(), sync_writes():
            obj = self.lock_local(change)
            if obj is None:
                raise RollbackNotPossible("the record was deleted here since")
            self.require_version(change, obj, after)
            in_sync = adapter.local_fields(obj) == adapter.remote_fields(current)
            status = SyncStatus.SYNCED if in_sync else SyncStatus.PENDING
            adapter.model.objects.filter(pk=obj.pk).update(sync_status=status, sync_error="")
            SyncRecord.objects.filter(resource=change.resource, vapi_id=change.vapi_id).update(
                remote_deleted_at=None, remote=current, remote_updated_at=mapping.remote_updated_at(current), clean_mark="")
        self.record(change, ChangeAction.UPDATE, Side.LOCAL, before={"status": SyncStatus.DELETED_REMOTELY},
                    after={"status": status, "version": obj.version})

    def undo_remote_delete(self, change, before, after):
        payload = before.get("remote")
        adapter = self.adapters[change.resource]
        if not payload or not adapter.can_create_remote:
            raise RollbackNotPossible("no copy of the deleted item was kept")
        record = SyncRecord.objects.filter(resource=change.resource, vapi_id=change.vapi_id).first()
        if record is not None and record.remote_deleted_at is None:
            raise RollbackNotPossible("it exists in Vapi again")
        if self.get_remote(change) is not None:
            raise RollbackNotPossible("it exists in Vapi again")
        linked = adapter.model.objects.filter(pk=change.local_id).values_list(adapter.vapi_id_field, flat=True).first()
        # Another copy for the same record, linked or kept as "deleted here, still in Vapi".
        linked = linked or SyncRecord.objects.filter(
            resource=change.resource, local_id=change.local_id, remote_deleted_at__isnull=True,
        ).exclude(vapi_id=change.vapi_id).values_list("vapi_id", flat=True).first() if change.local_id else linked
        if linked:
            raise RollbackNotPossible(f"its record here is linked to another copy in Vapi now ({linked})")
        self.lease.check()
        created = adapter.create_document(payload)
        with transaction.atomic(), sync_writes():
            self.lease.check_in_transaction()
            gone_here = bool(change.local_id) and not adapter.model.objects.filter(pk=change.local_id).exists()
            if record is not None:
                SyncRecord.objects.filter(pk=record.pk).update(
                    vapi_id=created["id"], remote=created, remote_deleted_at=None, clean_mark="",
                    remote_updated_at=mapping.remote_updated_at(created),
                    local_deleted_at=(record.local_deleted_at or self.now) if gone_here else record.local_deleted_at)
            elif gone_here:
                # Its record was deleted here: the copy re-created in Vapi is "deleted here, still in Vapi".
                SyncRecord.objects.create(resource=change.resource, vapi_id=created["id"], local_id=change.local_id,
                                          remote=created, remote_updated_at=mapping.remote_updated_at(created),
                                          local_deleted_at=self.now)
            obj = adapter.model.objects.select_for_update().filter(pk=change.local_id).first() if change.local_id else None
            if obj is not None and not getattr(obj, adapter.vapi_id_field):
                # Its record is still here, unlinked: link it again, truthfully.
                setattr(obj, adapter.vapi_id_field, created["id"])
                in_sync = adapter.local_fields(obj) == adapter.remote_fields(created)
                adapter.model.objects.filter(pk=obj.pk).update(
                    **{adapter.vapi_id_field: created["id"]},
                    sync_status=SyncStatus.SYNCED if in_sync else SyncStatus.PENDING, sync_error="", last_synced_at=self.now)
                fields = adapter.local_fields(obj)
                SyncRecord.objects.update_or_create(
                    resource=change.resource, vapi_id=created["id"],
                    defaults={"local_id": obj.pk, "remote": created, "baseline": fields if in_sync else {},
                              "remote_updated_at": mapping.remote_updated_at(created), "synced_at": self.now,
                              "local_deleted_at": None, "remote_deleted_at": None, "clean_mark": ""})
        self.record(change, ChangeAction.CREATE, Side.VAPI, vapi_id=created["id"],
                    after={"remote": created, "version": obj.version if obj is not None else None})

    def unchanged_since(self, change, after):
        """(adapter, Vapi's document now, the local record or None), once both sides are checked to be
        exactly as the run left them."""
        adapter = self.adapters[change.resource]
        current = self.get_remote(change)
        if current is None:
            raise RollbackNotPossible("Vapi no longer has it")
        self.require_remote(change, current, mapping.document_hash(after.get("remote")))
        obj = adapter.model.objects.filter(pk=change.local_id).first()
        self.require_version(change, obj, after)
        return adapter, current, obj

    def undo_remote_create(self, change, before, after):
        if not self.adapters[change.resource].can_create_remote:
            raise RollbackNotPossible("this app never creates these in Vapi")
        adapter, current, obj = self.unchanged_since(change, after)
        if change.vapi_id in self.routed():
            raise RollbackNotPossible(f"Vapi number {self.routed()[change.vapi_id]} routes calls to it; "
                                      "not deleted (move the number to another assistant first)")
        self.lease.check()
        adapter.delete_document(change.vapi_id)
        with transaction.atomic(), sync_writes():
            self.lease.check_in_transaction()
            records = SyncRecord.objects.filter(resource=change.resource, vapi_id=change.vapi_id)
            if obj is None:  # deleted here too: keep the tombstone, now "deleted on both sides"
                records.update(remote_deleted_at=self.now)
            else:
                records.delete()
                adapter.model.objects.filter(pk=obj.pk, **{adapter.vapi_id_field: change.vapi_id}).update(
                    **{adapter.vapi_id_field: None}, sync_status=SyncStatus.LOCAL_ONLY, sync_error="", last_synced_at=None)
        self.record(change, ChangeAction.DELETE, Side.VAPI, before={"remote": current}, after=None)

    def undo_remote_update(self, change, before, after):
        """A push changed Vapi: put the old document back in Vapi and the old values here."""
        adapter, current, obj = self.unchanged_since(change, after)
        old = before.get("remote") or {}
        self.lease.check()
        body = adapter.restore_body(old, current)
        restored = adapter.patch_document(change.vapi_id, body) if body else current
        self.record(change, ChangeAction.UPDATE, Side.VAPI, before={"remote": current},
                    after={"remote": restored, "version": obj.version if obj is not None else None},
                    diff=mapping.diff(adapter.remote_fields(current), adapter.remote_fields(restored)))
        if obj is not None:
            local_before = adapter.local_fields(obj)
            restore = {k: v for k, v in adapter.remote_fields(restored).items() if local_before.get(k) != v}
            self.write_local(change, obj, restore, restored, after, record_vapi=False)

    # -- writes shared by the undo steps ------------------------------------------------
    def push_fields(self, change: SyncChange, current: dict, fields: dict) -> dict:
        adapter = self.adapters[change.resource]
        obj = adapter.model.objects.filter(pk=change.local_id).first()
        self.lease.check()
        try:  # the resource's own push: what Vapi cannot take (a number's identity) is refused with a reason
            restored = adapter.push(Pair(local=obj, remote=current, record=None), fields)
        except ValueError as exc:
            raise RollbackNotPossible(str(exc)) from exc
        self.record(change, ChangeAction.UPDATE, Side.VAPI, before={"remote": current},
                    after={"remote": restored}, diff=mapping.diff(adapter.remote_fields(current), adapter.remote_fields(restored)))
        return restored

    def write_local(self, change, obj, fields: dict, remote: dict | None, after: dict, *, record_vapi=True) -> None:
        """Compare-and-set: the old values here, the baseline both sides now share, the truthful status."""
        adapter = self.adapters[change.resource]
        with transaction.atomic(), sync_writes():
            locked = self.lock_local(change)
            if locked is None:
                raise RollbackNotPossible("the record was deleted here since")
            self.require_version(change, locked, after)
            local_before = adapter.local_fields(locked)
            version_before = locked.version
            if fields:
                adapter.apply_local(locked, fields, {"id": getattr(locked, adapter.vapi_id_field)})
                locked.save()
            local_after = adapter.local_fields(locked)
            in_sync = remote is not None and local_after == adapter.remote_fields(remote)
            adapter.model.objects.filter(pk=locked.pk).update(
                sync_status=SyncStatus.SYNCED if in_sync else SyncStatus.PENDING, sync_error="", last_synced_at=self.now)
            if remote is not None:
                SyncRecord.objects.update_or_create(
                    resource=change.resource, vapi_id=remote["id"],
                    defaults={"local_id": locked.pk, "baseline": local_after if in_sync else local_before,
                              "remote": remote, "remote_updated_at": mapping.remote_updated_at(remote),
                              "synced_at": self.now, "local_deleted_at": None, "remote_deleted_at": None,
                              "clean_mark": ""})
        if locked.version != version_before:
            self.own_versions[(change.resource, locked.pk)] = (version_before, locked.version)
        if local_before != local_after:
            self.record(change, ChangeAction.UPDATE, Side.LOCAL, before={"local": local_before},
                        after={"local": local_after, "version": locked.version,
                               "remote_sha": mapping.document_hash(remote)},
                        diff=mapping.diff(local_before, local_after))


def rollback_apply(*, run: SyncRun, client, recorder: Recorder, lease=None) -> None:
    lease = lease or Unfenced()
    original = run.rollback_of
    earlier = earlier_rollback(original, exclude=run.pk)
    if earlier is not None and earlier.pk < run.pk:
        raise _already_rolled_back(original, earlier)  # two requests raced past the first check
    undo = _Undo(run=run, client=client, recorder=recorder, lease=lease)
    changes = original.changes.exclude(action__in=[ChangeAction.ERROR, ChangeAction.SKIP, ChangeAction.CONFLICT])
    for change in changes.order_by("-id"):
        lease.tick()
        lease.check()
        seam("rollback_step", change=change)
        try:
            undo.undo(change)
        except (VapiError, RollbackNotPossible, ValueError) as exc:
            recorder.add(change.resource, ChangeAction.ERROR, side=change.side, local_id=change.local_id,
                         vapi_id=change.vapi_id, label=change.label, error=f"Not rolled back: {exc}")
