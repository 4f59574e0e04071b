"""Applying a plan here: every write to a local row is a compare-and-set on the row's `version`,
in one transaction that also checks the run's lease (vapisync.services.locks.Lease).

A row written since the plan read it is left alone and reported, never overwritten; status-only
writes (synced, error) obey the same rule, so a newer `pending` always survives.
"""

from __future__ import annotations

from django.db import DatabaseError, transaction

from globalvoice.tracking import SyncStatus
from vapisync import mapping
from vapisync.context import sync_writes
from vapisync.drift import baseline_after
from vapisync.models import ChangeAction, Side, SyncRecord
from vapisync.services.bulk_insert import insert_instances, insert_new, insert_rows, param_chunks
from vapisync.services.history import BATCH_SIZE, INSERT_BATCH_SIZE, error_text
from vapisync.services.plan import Pair, PlannedWrite, Write
from vapisync.services.seams import seam

CHANGED_MEANWHILE = "Changed here while this run was working (version {seen} -> {now}); not overwritten. " \
                    "The newer edit is kept and settled by the next sync."
DELETED_MEANWHILE = "Deleted here while this run was working; nothing written to it."


class LocalWrites:
    """The local half of applying a plan (mixed into vapisync.services.engine.ResourceSync)."""

    # -- compare-and-set on local rows ---------------------------------------------------
    def versions_now(self, pks) -> dict[int, int]:
        """pk -> version, with the rows locked until the caller's transaction ends (PostgreSQL;
        SQLite's IMMEDIATE transactions already hold the database's write lock)."""
        found = {}
        for chunk in param_chunks(list(pks)):
            found.update(self.model.objects.select_for_update().filter(pk__in=chunk).values_list("pk", "version"))
        return found

    def report_missed(self, write: PlannedWrite, now_version: int | None) -> None:
        self.missed += 1
        pair = write.pair
        reason = DELETED_MEANWHILE if now_version is None else CHANGED_MEANWHILE.format(
            seen=write.seen_version, now=now_version)
        self.recorder.add(self.resource, ChangeAction.SKIP, side=write.side, local_id=pair.local.pk,
                          vapi_id=pair.remote["id"] if pair.remote else getattr(pair.local, self.vapi_id_field),
                          label=self.label_of(pair.local, pair.remote), reason=reason)

    # -- apply: local -------------------------------------------------------------------
    def apply_local_writes(self, writes: list[PlannedWrite]) -> None:
        creates = [w for w in writes if w.kind == Write.CREATE]
        updates = [w for w in writes if w.kind in (Write.UPDATE, Write.MARK_DELETED)]
        for start in range(0, len(creates), INSERT_BATCH_SIZE):
            self._local_batch(creates[start:start + INSERT_BATCH_SIZE], self._create_locals)
        for start in range(0, len(updates), BATCH_SIZE):
            self._local_batch(updates[start:start + BATCH_SIZE], self._update_locals)

    def _local_batch(self, batch: list[PlannedWrite], writer) -> None:
        saved_records, missed = [w.pair.record for w in batch], self.missed
        self.lease.tick()
        seam("local_write", resource=self.resource, ops=batch)
        try:
            with transaction.atomic(), sync_writes(), self.recorder.undone_on_error():
                self.lease.check_in_transaction()
                for result in writer(batch):
                    self._record_local(*result)
                # The history of these writes commits with them: a worker killed after the commit
                # leaves no change that rollback cannot see.
                self.recorder.flush()
        except (DatabaseError, ValueError) as exc:
            for write, record in zip(batch, saved_records, strict=True):  # undo in-memory effects of the rolled-back batch
                write.pair.record = record
            self.missed = missed
            if len(batch) == 1:
                self._fail_local(batch[0], exc)
                return
            # Isolate the bad item: redo this batch one by one, each in its own transaction.
            for write in batch:
                self._local_batch([write], writer)
            return
        self._advance(len(batch))

    def _fail_local(self, write: PlannedWrite, exc) -> None:
        pair = write.pair
        label = self.label_of(pair.local, pair.remote)
        self.recorder.add(self.resource, ChangeAction.ERROR, side=Side.LOCAL,
                          local_id=pair.local.pk if pair.local is not None and pair.local.pk else None,
                          vapi_id=pair.remote["id"] if pair.remote else None, label=label, error=error_text(exc))
        if pair.local is not None and pair.local.pk:
            with transaction.atomic():
                self.lease.check_in_transaction()
                self.model.objects.filter(pk=pair.local.pk, version=write.seen_version).update(
                    sync_status=SyncStatus.ERROR, sync_error=error_text(exc)[:2000])

    def _create_locals(self, batch: list[PlannedWrite]) -> list:
        rows = []
        for write in batch:
            values = self.new_local_values(write.pair.remote, write.pair.remote_fields)
            values.update(sync_status=SyncStatus.SYNCED, last_synced_at=self.now, sync_error="")
            rows.append(values)
        created = insert_new(self.model, rows)
        records, new_records = [], []
        for write, obj in zip(batch, created, strict=True):
            pair = write.pair
            pair.local, pair.seen_version = obj, obj.version
            pair.local_fields = self.local_fields(obj)
            if pair.record is None:  # the usual case, a first import: the row alone, no model instance
                new_records.append((self.resource, pair.remote["id"], obj.pk,
                                    baseline_after(pair.local_fields, pair.remote_fields, None), pair.remote,
                                    mapping.remote_updated_at(pair.remote), self.now,
                                    self.clean_mark_of(pair, pair.local_fields, pair.remote_fields)))
            else:
                records.append(self._record_for(pair))
        insert_rows(SyncRecord, ("resource", "vapi_id", "local_id", "baseline", "remote", "remote_updated_at",
                                 "synced_at", "clean_mark"), new_records)
        self._save_records(records)
        self.after_local_creates([w.pair for w in batch])
        return [(ChangeAction.CREATE, w.pair, None, w.pair.local_fields, {}) for w in batch]

    def _update_locals(self, batch: list[PlannedWrite]) -> list:
        current = self.versions_now(w.pair.local.pk for w in batch)
        results, content, status_only = [], [], []
        for write in batch:
            pair = write.pair
            now_version = current.get(pair.local.pk)
            if now_version != write.seen_version:
                self.report_missed(write, now_version)
                continue
            if write.kind == Write.MARK_DELETED:
                before = {"status": pair.local.sync_status}
                pair.local.sync_status = SyncStatus.DELETED_REMOTELY
                pair.local.sync_error = "Deleted in Vapi; not re-created automatically. Push it explicitly to re-create it."
                status_only.append(pair.local)
                if pair.record:
                    pair.record.remote_deleted_at = self.now
                    pair.record.clean_mark = ""
                    pair.record.save(update_fields=["remote_deleted_at", "clean_mark"])
                results.append((ChangeAction.MARK_DELETED, pair, before, {"status": SyncStatus.DELETED_REMOTELY}, {}))
                continue
            before, before_state = dict(pair.local_fields), self.local_state(pair.local)
            self.apply_local(pair.local, write.fields, pair.remote)
            pair.local.version = pair.seen_version = write.seen_version + 1
            pair.local_fields = self.local_fields(pair.local)
            self._mark_synced(pair)
            content.append(pair.local)
            extra = mapping.diff(before_state, self.local_state(pair.local))
            results.append((ChangeAction.UPDATE, pair, before, pair.local_fields, extra))
        if content:
            self.model.objects.bulk_update(
                content, [*self.local_update_fields, "sync_status", "sync_error", "last_synced_at", "version"])
        if status_only:
            self.model.objects.bulk_update(status_only, ["sync_status", "sync_error", "last_synced_at"])
        self._save_records([self._record_for(pair) for action, pair, *_ in results if action == ChangeAction.UPDATE])
        return results

    def _record_local(self, action, pair: Pair, before, after, extra_diff) -> None:
        self.recorder.add(
            self.resource, action, side=Side.LOCAL, local_id=pair.local.pk,
            vapi_id=pair.remote["id"] if pair.remote else getattr(pair.local, self.vapi_id_field),
            label=self.label_of(pair.local, pair.remote),
            before={"local": before} if before is not None else None,
            # What rollback checks before undoing: the record's version and, for an update (whose undo
            # restores the old values in Vapi too), Vapi's whole document. A create's values are its diff.
            after={"version": pair.local.version} if action == ChangeAction.CREATE else
            {"local": after, "version": pair.local.version,
             "remote_sha": mapping.document_hash(pair.remote) if pair.remote and action == ChangeAction.UPDATE else None},
            diff={**mapping.diff(before or {}, after or {}), **(extra_diff or {})},
        )

    # -- bookkeeping --------------------------------------------------------------------
    def _mark_synced(self, pair: Pair) -> None:
        in_sync = pair.remote is not None and self.local_fields(pair.local) == self.remote_fields(pair.remote)
        pair.local.sync_status = SyncStatus.SYNCED if in_sync else pair.local.sync_status
        if in_sync:
            pair.local.sync_error = ""
        pair.local.last_synced_at = self.now

    def _record_for(self, pair: Pair) -> SyncRecord:
        record = pair.record or SyncRecord(resource=self.resource, vapi_id=pair.remote["id"])
        previous = record.baseline if record.pk and record.local_id is not None else None
        local_fields = self.local_fields(pair.local)
        remote_fields = self.remote_fields(pair.remote)
        record.vapi_id = pair.remote["id"]
        record.local_id = pair.local.pk
        record.baseline = baseline_after(local_fields, remote_fields, previous)
        record.remote = pair.remote
        record.remote_updated_at = mapping.remote_updated_at(pair.remote)
        record.synced_at = self.now
        record.local_deleted_at = None
        record.remote_deleted_at = None
        record.clean_mark = self.clean_mark_of(pair, local_fields, remote_fields)
        pair.record = record
        return record

    @staticmethod
    def clean_mark_of(pair: Pair, local_fields: dict, remote_fields: dict) -> str:
        """The record's `clean_mark` for a pair whose fields are as given: set only when they are equal."""
        if pair.remote is None or local_fields != remote_fields:
            return ""
        return mapping.clean_mark(local_fields, pair.remote.get("updatedAt"))

    def _save_records(self, records: list[SyncRecord]) -> None:
        new = [r for r in records if r.pk is None]
        old = [r for r in records if r.pk is not None]
        if new:
            insert_instances(new)
        if old:
            SyncRecord.objects.bulk_update(
                old, ["vapi_id", "local_id", "baseline", "remote", "remote_updated_at", "synced_at",
                      "local_deleted_at", "remote_deleted_at", "clean_mark"], batch_size=BATCH_SIZE,
            )

    def save_bookkeeping(self, writes: list[PlannedWrite]) -> None:
        """Baselines for pairs already equal; statuses. Writes only what actually differs, and only
        to records nobody wrote since the plan read them."""
        needed = [w for w in writes if w.kind == Write.STATUS or self._bookkeeping_differs(w.pair)]
        for start in range(0, len(needed), BATCH_SIZE):
            self._bookkeeping_batch(needed[start:start + BATCH_SIZE])

    def _record_stale(self, pair: Pair) -> bool:
        """The pair's sync record no longer says what both sides are now."""
        record = pair.record
        return (
            record is None
            or record.local_id != pair.local.pk
            or record.remote_updated_at != mapping.remote_updated_at(pair.remote)
            or record.baseline != baseline_after(pair.local_fields, pair.remote_fields, record.baseline)
            or record.remote_deleted_at is not None
            or record.clean_mark != self.clean_mark_of(pair, pair.local_fields, pair.remote_fields)
        )

    def _status_stale(self, pair: Pair) -> bool:
        """Both sides agree but the record does not say "in sync" (or is not linked) yet."""
        return pair.local_fields == pair.remote_fields and (
            pair.local.sync_status != SyncStatus.SYNCED or getattr(pair.local, self.vapi_id_field) != pair.remote["id"])

    def _bookkeeping_differs(self, pair: Pair) -> bool:
        return self._record_stale(pair) or self._status_stale(pair)

    def _bookkeeping_batch(self, writes: list[PlannedWrite]) -> None:
        with transaction.atomic(), sync_writes():
            self.lease.check_in_transaction()
            current = self.versions_now(w.pair.local.pk for w in writes)
            records, status_changes = [], []
            for write in writes:
                pair = write.pair
                if current.get(pair.local.pk) != pair.seen_version:
                    continue  # someone wrote it since: the next run settles it from what it is now
                if write.kind == Write.STATUS:
                    pair.local.sync_status, pair.local.sync_error = write.status
                    status_changes.append(pair.local)
                    continue
                if self._record_stale(pair):
                    records.append(self._record_for(pair))
                if self._status_stale(pair):
                    setattr(pair.local, self.vapi_id_field, pair.remote["id"])
                    pair.local.sync_status, pair.local.sync_error, pair.local.last_synced_at = SyncStatus.SYNCED, "", self.now
                    status_changes.append(pair.local)
            self._save_records(records)
            if status_changes:
                self.model.objects.bulk_update(
                    status_changes, [self.vapi_id_field, "sync_status", "sync_error", "last_synced_at"], batch_size=BATCH_SIZE
                )
