"""The sync engine: pair local records with Vapi documents, decide, then apply.

One pass per resource (assistants first, so phone numbers can link to them):
  fetch   - list Vapi (full, delta since a high-water mark, or the selected ids)
  pair    - match by Vapi id, then by our create marker (assistants) or E.164 number (phones)
  decide  - three-way drift per pair (vapisync.drift); tombstones; deletions
  apply   - local writes in bulk, one transaction per batch (a failing batch is retried
            item by item so one bad record fails alone); Vapi writes in parallel under the
            client's pacing; history rows in bulk.
A dry run stops after `decide` and records the plan: the same code decides both.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from agents.models import Agent, SyncStatus
from phonenumbers_app.e164 import e164_normalize
from phonenumbers_app.models import PhoneNumber
from vapisync import mapping
from vapisync.context import sync_writes
from vapisync.drift import Drift, baseline_after, drift_compute
from vapisync.exceptions import VapiNotFound, VapiSyncError, VapiUnavailable
from vapisync.models import ChangeAction, Resource, Side, SyncChange, SyncCursor, SyncRecord, SyncRun

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
PUSH_CHUNK = 200  # Vapi writes between two lease renewals (10 s at 20 requests a second)
COUNT_KEYS = ("created", "updated", "unchanged", "deleted", "conflicts", "failed", "skipped")
_COUNT_OF_ACTION = {
    ChangeAction.CREATE: "created",
    ChangeAction.UPDATE: "updated",
    ChangeAction.LINK: "updated",
    ChangeAction.DELETE: "deleted",
    ChangeAction.MARK_DELETED: "deleted",
    ChangeAction.CONFLICT: "conflicts",
    ChangeAction.ERROR: "failed",
    ChangeAction.SKIP: "skipped",
}


# --- Run context and history recorder ------------------------------------------------


@dataclass
class RunOptions:
    pull: bool  # remote changes may be written locally
    push: bool  # local changes may be written to Vapi
    dry_run: bool
    policy: str
    delta: bool = False
    delete_remote: bool = False  # delete assistants of locally deleted agents
    recreate_deleted: bool = False  # a person explicitly pushed records deleted in Vapi: create them again
    local_ids: dict = field(default_factory=dict)  # resource -> [pk]
    vapi_ids: dict = field(default_factory=dict)  # resource -> [vapi id]

    def selected(self, resource: str) -> bool:
        return bool(self.local_ids.get(resource) or self.vapi_ids.get(resource))


class Recorder:
    """Collects a run's changes, counts and errors; writes history rows in bulk."""

    def __init__(self, run: SyncRun, *, dry_run: bool):
        self.run = run
        self.dry_run = dry_run
        self.counts: dict[str, Counter] = defaultdict(Counter)  # resource -> action count
        self.errors: list[dict] = []
        self.plan: list[dict] = []
        self._pending: list[SyncChange] = []

    def unchanged(self, resource: str, n: int = 1) -> None:
        self.counts[resource]["unchanged"] += n

    def add(self, resource, action, *, side="", local_id=None, vapi_id=None, label="", before=None, after=None,
            diff=None, reason="", error="", retryable=False) -> None:
        self.counts[resource][_COUNT_OF_ACTION[action]] += 1
        if error:
            # `retryable`: the same request may succeed later (outage, rate limit), unlike a rejected payload.
            self.errors.append(
                {"resource": resource, "label": label, "local_id": local_id, "vapi_id": vapi_id, "message": error,
                 "retryable": retryable}
            )
        if self.dry_run:
            self.plan.append(
                {"resource": resource, "action": action, "side": side, "local_id": local_id, "vapi_id": vapi_id,
                 "label": label, "diff": diff or {}, "reason": reason or error}
            )
            return
        self._pending.append(
            SyncChange(run=self.run, resource=resource, action=action, side=side, local_id=local_id, vapi_id=vapi_id,
                       label=label[:255], before=before, after=after, diff=diff or {}, reason=reason, error=error)
        )
        if len(self._pending) >= BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            SyncChange.objects.bulk_create(self._pending, batch_size=BATCH_SIZE)
            self._pending = []

    def counts_json(self, resources) -> dict:
        return {r: {k: self.counts[r][k] for k in COUNT_KEYS} for r in resources}


def _error_text(exc: Exception) -> str:
    if isinstance(exc, (VapiSyncError, ValueError)):
        return str(exc)
    if isinstance(exc, DatabaseError):
        return f"Database error, this record was not changed: {exc}"
    return f"{type(exc).__name__}: {exc}"


# --- One pair of local record and Vapi document ---------------------------------------


@dataclass
class Pair:
    local: Any | None
    remote: dict | None
    record: SyncRecord | None
    remote_gone: bool = False  # Vapi answered 404 / a complete listing lacks it
    drift: Drift | None = None
    local_fields: dict | None = None
    remote_fields: dict | None = None


class ResourceSync:
    """Shared algorithm; subclasses say how one resource maps and is fetched."""

    resource: str
    model: type
    vapi_id_field: str
    local_update_fields: tuple[str, ...]
    can_create_remote = True
    listing_complete = True  # set per run: False when only selected ids or a delta were fetched

    def __init__(self, *, client, options: RunOptions, recorder: Recorder, progress=None):
        self.client = client
        self.options = options
        self.recorder = recorder
        self.progress = progress or (lambda **kw: None)
        self.now = timezone.now()

    # -- hooks ------------------------------------------------------------------------
    def list_remote(self, updated_since): raise NotImplementedError
    def get_remote(self, vapi_id): raise NotImplementedError
    def remote_fields(self, doc): raise NotImplementedError
    def local_fields(self, obj): raise NotImplementedError
    def secondary_key_of_doc(self, doc): return None
    def secondary_key_of_local(self, obj): return None
    def label_of(self, obj=None, doc=None): raise NotImplementedError
    def new_local(self, doc, fields): raise NotImplementedError
    def apply_local(self, obj, fields, doc): raise NotImplementedError
    def push(self, pair: Pair, fields: dict) -> dict: raise NotImplementedError
    def create_remote(self, pair: Pair) -> dict | None: raise NotImplementedError
    def prepare(self): pass

    # -- fetch --------------------------------------------------------------------------
    def fetch(self) -> tuple[list[dict], set[str], bool]:
        """Return (documents, ids known to be gone, listing complete)."""
        opts = self.options
        if opts.selected(self.resource):
            wanted = set(opts.vapi_ids.get(self.resource) or [])
            selected = self.model.objects.filter(pk__in=opts.local_ids.get(self.resource) or []).values_list(
                "pk", self.vapi_id_field
            )
            wanted |= {vapi_id for _, vapi_id in selected if vapi_id}
            wanted |= set(self.recorded_links([pk for pk, vapi_id in selected if not vapi_id]).values())
            docs, gone = [], set()
            for vapi_id, doc, exc in self.client.map_concurrent(self.get_remote, sorted(wanted)):
                if isinstance(exc, VapiNotFound):
                    gone.add(vapi_id)
                elif exc is not None:
                    raise exc
                else:
                    docs.append(doc)
            return docs, gone, False
        if opts.delta:
            cursor, _ = SyncCursor.objects.get_or_create(resource=self.resource)
            if cursor.updated_since is not None:
                return list(self.list_remote(cursor.updated_since)), set(), False
        return list(self.list_remote(None)), set(), True

    def load_locals(self, docs, complete) -> list:
        opts = self.options
        qs = self.model.objects.all()
        if opts.selected(self.resource):
            ids = [d["id"] for d in docs] + list(opts.vapi_ids.get(self.resource) or [])
            qs = qs.filter(pk__in=opts.local_ids.get(self.resource) or []) | qs.filter(
                **{f"{self.vapi_id_field}__in": ids}
            )
        elif not complete:
            keys = [k for k in (self.secondary_key_of_doc(d) for d in docs) if k]
            qs = qs.filter(**{f"{self.vapi_id_field}__in": [d["id"] for d in docs]}) | self.secondary_filter(qs, keys)
        return list(qs.distinct())

    def secondary_filter(self, qs, keys):
        return qs.none()

    # -- pair and decide ----------------------------------------------------------------
    def recorded_links(self, local_ids: list[int]) -> dict[int, str]:
        """local id -> Vapi id, from the baselines, for records whose Vapi id column is empty.

        The column can lose a link a sync just wrote (a person's save of a copy loaded before
        it); the baseline keeps it, so the record is re-linked instead of created twice."""
        if not local_ids:
            return {}
        return dict(
            SyncRecord.objects.filter(
                resource=self.resource, local_id__in=local_ids, local_deleted_at__isnull=True, remote_deleted_at__isnull=True
            ).values_list("local_id", "vapi_id")
        )

    def pair_up(self, docs, gone, complete, locals_) -> tuple[list[Pair], list[SyncRecord]]:
        recorded = self.recorded_links([o.pk for o in locals_ if not getattr(o, self.vapi_id_field)])
        by_vapi_id = {}
        for obj in locals_:
            vapi_id = getattr(obj, self.vapi_id_field) or recorded.get(obj.pk)
            if vapi_id:
                by_vapi_id[vapi_id] = obj
        by_secondary = {}
        for obj in locals_:
            key = self.secondary_key_of_local(obj)
            if key and not getattr(obj, self.vapi_id_field):
                by_secondary[key] = obj
        ids = {d["id"] for d in docs} | set(by_vapi_id) | gone
        records_qs = SyncRecord.objects.filter(resource=self.resource)
        if not complete:
            records_qs = records_qs.filter(vapi_id__in=ids)
        records = {r.vapi_id: r for r in records_qs}

        pairs, tombstones, seen_local = [], [], set()
        for doc in docs:
            record = records.get(doc["id"])
            local = by_vapi_id.get(doc["id"])
            if local is None:
                key = self.secondary_key_of_doc(doc)
                local = by_secondary.pop(key, None) if key else None
            if local is None and record is not None and record.local_id is not None:
                # Linked before, local record gone: a tombstone, never resurrected by import.
                tombstones.append(record)
                continue
            if local is not None:
                seen_local.add(local.pk)
            pairs.append(Pair(local=local, remote=doc, record=record))
        for obj in locals_:
            if obj.pk in seen_local:
                continue
            vapi_id = getattr(obj, self.vapi_id_field) or recorded.get(obj.pk)
            if vapi_id and (complete or vapi_id in gone):
                pairs.append(Pair(local=obj, remote=None, record=records.get(vapi_id), remote_gone=True))
            elif not vapi_id:
                pairs.append(Pair(local=obj, remote=None, record=None))
        return pairs, tombstones

    def decide(self, pair: Pair) -> None:
        pair.local_fields = self.local_fields(pair.local) if pair.local is not None else None
        pair.remote_fields = self.remote_fields(pair.remote) if pair.remote is not None else None
        if pair.local is not None and pair.remote is not None:
            local_changed_at = getattr(pair.local, "updated_at", None)
            pair.drift = drift_compute(
                pair.local_fields,
                pair.remote_fields,
                pair.record.baseline if pair.record and pair.record.local_id is not None else None,
                policy=self.options.policy,
                local_changed_at=local_changed_at,
                remote_changed_at=mapping.remote_updated_at(pair.remote),
            )

    # -- run ----------------------------------------------------------------------------
    def run(self) -> None:
        self.prepare()
        self.progress(phase=f"{self.resource}: reading Vapi")
        docs, gone, complete = self.fetch()
        self.listing_complete = complete
        self.remote_count = len(docs) if complete else None
        newest = max((d.get("updatedAt") or "" for d in docs), default="")
        locals_ = self.load_locals(docs, complete)
        pairs, tombstones = self.pair_up(docs, gone, complete, locals_)
        for pair in pairs:
            self.decide(pair)
        self.progress(phase=f"{self.resource}: applying", done=0, total=len(pairs))

        local_ops, remote_ops, bookkeeping = [], [], []
        for pair in pairs:
            self.route(pair, local_ops, remote_ops, bookkeeping)
        self.handle_tombstones(tombstones)

        if self.options.dry_run:
            self.record_plan(local_ops, remote_ops)
        else:
            self.apply_local_ops(local_ops)
            self.apply_remote_ops(remote_ops)
            self.save_bookkeeping(bookkeeping)
            if complete or self.options.delta:
                self.advance_cursor(newest, complete)
        self.recorder.flush()

    def route(self, pair: Pair, local_ops: list, remote_ops: list, bookkeeping: list) -> None:
        """Decide what happens to one pair; queue the writes."""
        opts, label = self.options, self.label_of(pair.local, pair.remote)
        local_id = pair.local.pk if pair.local is not None else None
        vapi_id = pair.remote["id"] if pair.remote else (getattr(pair.local, self.vapi_id_field, None) if pair.local else None)
        if pair.local is None:  # only in Vapi
            if opts.pull:
                local_ops.append(("create", pair))
            else:
                self.recorder.add(self.resource, ChangeAction.SKIP, vapi_id=vapi_id, label=label,
                                  reason="Only in Vapi; an import would create it here.")
            return
        if pair.remote_gone:
            if opts.push and opts.recreate_deleted and opts.selected(self.resource) and self.can_create_remote:
                remote_ops.append(("create", pair, pair.local_fields))
            elif pair.local.sync_status == SyncStatus.DELETED_REMOTELY:
                self.recorder.unchanged(self.resource)
            elif opts.pull or opts.push:
                local_ops.append(("mark_deleted", pair))
            return
        if pair.remote is None:  # only here, never linked
            if opts.push:
                remote_ops.append(("create", pair, pair.local_fields))
            else:
                self.recorder.add(self.resource, ChangeAction.SKIP, local_id=local_id, label=label,
                                  reason="Not in Vapi yet; an export would create it.")
            return
        drift = pair.drift
        if pair.local.sync_status == SyncStatus.DELETED_REMOTELY and not opts.selected(self.resource):
            # It reappeared (restored in Vapi); relink it through the normal rules below.
            pass
        if drift.conflicts:
            self.recorder.add(
                self.resource, ChangeAction.CONFLICT, side="", local_id=local_id, vapi_id=vapi_id, label=label,
                diff={k: [v["local"], v["remote"]] for k, v in drift.conflicts.items()},
                reason="Changed both here and in Vapi; resolve it by keeping one side.",
            )
            if not opts.dry_run and pair.local.sync_status != SyncStatus.CONFLICT:
                bookkeeping.append(("status", pair, SyncStatus.CONFLICT, "Changed both here and in Vapi."))
        pull = drift.to_local if opts.pull else {}
        push = drift.to_remote if opts.push else {}
        if pull:
            local_ops.append(("update", pair, pull))
        if push:
            remote_ops.append(("update", pair, push))
        if not drift.conflicts and not pull and not push:
            if drift.clean:
                self.recorder.unchanged(self.resource)
            else:
                waiting = "push" if drift.to_remote else "pull"
                self.recorder.add(self.resource, ChangeAction.SKIP, local_id=local_id, vapi_id=vapi_id, label=label,
                                  diff=mapping.diff(pair.local_fields, pair.remote_fields),
                                  reason=f"Differs; waiting for a {'export' if waiting == 'push' else 'import'}.")
            if not opts.dry_run:
                bookkeeping.append(("baseline", pair))

    def handle_tombstones(self, records: list[SyncRecord]) -> None:
        for record in records:
            self.recorder.add(self.resource, ChangeAction.SKIP, vapi_id=record.vapi_id, local_id=record.local_id,
                              label=self.label_of(None, record.remote),
                              reason="Deleted here but still in Vapi; not re-imported. Delete it in Vapi explicitly if wanted.")

    def record_plan(self, local_ops: list, remote_ops: list) -> None:
        """A dry run records the writes it would make, with the field diff of each."""
        actions = {"create": ChangeAction.CREATE, "update": ChangeAction.UPDATE, "mark_deleted": ChangeAction.MARK_DELETED}
        for side, ops in ((Side.LOCAL, local_ops), (Side.VAPI, remote_ops)):
            for op in ops:
                kind, pair = op[0], op[1]
                fields = op[2] if len(op) > 2 else {}
                if kind == "create":
                    current = {}
                    fields = pair.remote_fields if side == Side.LOCAL else pair.local_fields
                else:
                    current = pair.local_fields if side == Side.LOCAL else pair.remote_fields
                self.recorder.add(
                    self.resource, actions[kind], side=side, local_id=pair.local.pk if pair.local is not None else None,
                    vapi_id=pair.remote["id"] if pair.remote else None, label=self.label_of(pair.local, pair.remote),
                    diff=mapping.diff(current or {}, {**(current or {}), **(fields or {})}),
                    reason="Deleted in Vapi" if kind == "mark_deleted" else "",
                )

    # -- apply: local -------------------------------------------------------------------
    def apply_local_ops(self, ops: list) -> None:
        creates = [op[1] for op in ops if op[0] == "create"]
        updates = [op for op in ops if op[0] in ("update", "mark_deleted")]
        for start in range(0, len(creates), BATCH_SIZE):
            self._local_batch(creates[start:start + BATCH_SIZE], self._create_locals)
        for start in range(0, len(updates), BATCH_SIZE):
            self._local_batch(updates[start:start + BATCH_SIZE], self._update_locals)

    def _local_batch(self, batch, writer) -> None:
        pairs = [item if isinstance(item, Pair) else item[1] for item in batch]
        saved_records = [p.record for p in pairs]
        try:
            with transaction.atomic(), sync_writes():
                results = writer(batch)
        except (DatabaseError, ValueError) as exc:
            for pair, record in zip(pairs, saved_records):  # undo in-memory effects of the rolled-back batch
                pair.record = record
            if len(batch) == 1:
                self._fail_local(batch[0], exc)
                return
            # Isolate the bad item: redo this batch one by one, each in its own transaction.
            for item in batch:
                self._local_batch([item], writer)
            return
        for item in results:
            self._record_local(*item)

    def _fail_local(self, item, exc) -> None:
        pair = item if isinstance(item, Pair) else item[1]
        label = self.label_of(pair.local, pair.remote)
        self.recorder.add(self.resource, ChangeAction.ERROR, side=Side.LOCAL,
                          local_id=pair.local.pk if pair.local is not None and pair.local.pk else None,
                          vapi_id=pair.remote["id"] if pair.remote else None, label=label, error=_error_text(exc))
        if pair.local is not None and pair.local.pk:
            self.model.objects.filter(pk=pair.local.pk).update(sync_status=SyncStatus.ERROR, sync_error=_error_text(exc))

    def _create_locals(self, pairs: list[Pair]) -> list:
        objs = []
        for pair in pairs:
            obj = self.new_local(pair.remote, pair.remote_fields)
            obj.sync_status, obj.last_synced_at, obj.sync_error = SyncStatus.SYNCED, self.now, ""
            objs.append(obj)
        created = self.model.objects.bulk_create(objs, batch_size=BATCH_SIZE)
        records = []
        for pair, obj in zip(pairs, created):
            pair.local = obj
            pair.local_fields = self.local_fields(obj)
            records.append(self._record_for(pair))
        self._save_records(records)
        return [(ChangeAction.CREATE, pair, None, pair.local_fields) for pair in pairs]

    def _update_locals(self, ops: list) -> list:
        results, changed = [], []
        for op in ops:
            kind, pair = op[0], op[1]
            if kind == "mark_deleted":
                before = {"status": pair.local.sync_status}
                pair.local.sync_status = SyncStatus.DELETED_REMOTELY
                pair.local.sync_error = "Deleted in Vapi; not re-created automatically. Push it explicitly to re-create it."
                changed.append(pair.local)
                if pair.record:
                    pair.record.remote_deleted_at = self.now
                    pair.record.save(update_fields=["remote_deleted_at"])
                results.append((ChangeAction.MARK_DELETED, pair, before, {"status": SyncStatus.DELETED_REMOTELY}))
                continue
            fields = op[2]
            before = dict(pair.local_fields)
            self.apply_local(pair.local, fields, pair.remote)
            pair.local_fields = self.local_fields(pair.local)
            self._mark_synced(pair)
            changed.append(pair.local)
            results.append((ChangeAction.UPDATE, pair, before, pair.local_fields))
        self.model.objects.bulk_update(changed, [*self.local_update_fields, "sync_status", "sync_error", "last_synced_at"])
        self._save_records([self._record_for(pair) for action, pair, _, _ in results if action == ChangeAction.UPDATE])
        return results

    def _record_local(self, action, pair: Pair, before, after) -> None:
        self.recorder.add(
            self.resource, action, side=Side.LOCAL, local_id=pair.local.pk,
            vapi_id=pair.remote["id"] if pair.remote else getattr(pair.local, self.vapi_id_field),
            label=self.label_of(pair.local, pair.remote),
            before={"local": before} if before is not None else None,
            after={"local": after},
            diff=mapping.diff(before or {}, after or {}),
        )

    # -- apply: Vapi --------------------------------------------------------------------
    def apply_remote_ops(self, ops: list) -> None:
        if not ops:
            return
        done = 0

        def call(op):
            kind, pair, fields = op
            if kind == "create":
                return self.create_remote(pair)
            return self.push(pair, fields)

        # In chunks: each chunk's results are saved before the next starts (a crash loses
        # little), and progress between chunks renews the sync lease during a long push.
        for start in range(0, len(ops), PUSH_CHUNK):
            finished = []
            for op, doc, exc in self.client.map_concurrent(call, ops[start:start + PUSH_CHUNK]):
                kind, pair, fields = op
                done += 1
                if exc is not None:
                    self._fail_remote(pair, kind, exc)
                elif doc is not None:
                    finished.append((kind, pair, doc))
            if finished:
                self._finish_remote_batch(finished)
            self.progress(done=done)

    def _fail_remote(self, pair: Pair, kind: str, exc: Exception) -> None:
        message = _error_text(exc)
        self.recorder.add(self.resource, ChangeAction.ERROR, side=Side.VAPI, local_id=pair.local.pk,
                          vapi_id=pair.remote["id"] if pair.remote else None, label=self.label_of(pair.local, pair.remote),
                          error=message, reason=f"{kind} in Vapi failed", retryable=getattr(exc, "retryable", False))
        self.model.objects.filter(pk=pair.local.pk).update(sync_status=SyncStatus.ERROR, sync_error=message[:2000])

    def _finish_remote_batch(self, finished: list) -> None:
        with transaction.atomic(), sync_writes():
            objs, records = [], []
            for kind, pair, doc in finished:
                before_remote = pair.remote
                pair.remote = doc
                pair.remote_fields = self.remote_fields(doc)
                setattr(pair.local, self.vapi_id_field, doc["id"])
                self._mark_synced(pair)
                objs.append(pair.local)
                records.append(self._record_for(pair))
                self.recorder.add(
                    self.resource, ChangeAction.CREATE if kind == "create" else ChangeAction.UPDATE, side=Side.VAPI,
                    local_id=pair.local.pk, vapi_id=doc["id"], label=self.label_of(pair.local, doc),
                    before={"remote": before_remote} if before_remote else None, after={"remote": doc},
                    diff=mapping.diff(self.remote_fields(before_remote) if before_remote else {}, pair.remote_fields),
                )
            self.model.objects.bulk_update(objs, [self.vapi_id_field, "sync_status", "sync_error", "last_synced_at"])
            self._save_records(records)

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
        record.baseline_hash = mapping.fields_hash(record.baseline)
        record.remote = pair.remote
        record.remote_updated_at = mapping.remote_updated_at(pair.remote)
        record.synced_at = self.now
        record.local_deleted_at = None
        record.remote_deleted_at = None
        pair.record = record
        return record

    def _save_records(self, records: list[SyncRecord]) -> None:
        new = [r for r in records if r.pk is None]
        old = [r for r in records if r.pk is not None]
        if new:
            SyncRecord.objects.bulk_create(new, batch_size=BATCH_SIZE)
        if old:
            SyncRecord.objects.bulk_update(
                old, ["local_id", "baseline", "baseline_hash", "remote", "remote_updated_at", "synced_at",
                      "local_deleted_at", "remote_deleted_at"], batch_size=BATCH_SIZE,
            )

    def save_bookkeeping(self, items: list) -> None:
        """Baselines for pairs already equal; statuses. Writes only what actually differs."""
        records, status_changes = [], []
        for item in items:
            if item[0] == "status":
                _, pair, status, message = item
                pair.local.sync_status, pair.local.sync_error = status, message
                status_changes.append(pair.local)
                continue
            pair = item[1]
            record = pair.record
            stale_record = (
                record is None
                or record.local_id != pair.local.pk
                or record.remote_updated_at != mapping.remote_updated_at(pair.remote)
                or record.baseline != baseline_after(pair.local_fields, pair.remote_fields, record.baseline)
                or record.remote_deleted_at is not None
            )
            if stale_record:
                records.append(self._record_for(pair))
            in_sync = pair.local_fields == pair.remote_fields
            if in_sync and (pair.local.sync_status != SyncStatus.SYNCED or getattr(pair.local, self.vapi_id_field) != pair.remote["id"]):
                setattr(pair.local, self.vapi_id_field, pair.remote["id"])
                pair.local.sync_status, pair.local.sync_error, pair.local.last_synced_at = SyncStatus.SYNCED, "", self.now
                status_changes.append(pair.local)
        with transaction.atomic(), sync_writes():
            for start in range(0, len(records), BATCH_SIZE):
                self._save_records(records[start:start + BATCH_SIZE])
            if status_changes:
                self.model.objects.bulk_update(
                    status_changes, [self.vapi_id_field, "sync_status", "sync_error", "last_synced_at"], batch_size=BATCH_SIZE
                )

    def advance_cursor(self, newest: str, complete: bool) -> None:
        cursor, _ = SyncCursor.objects.get_or_create(resource=self.resource)
        newest_at = mapping.remote_updated_at({"updatedAt": newest}) if newest else None
        if newest_at and (cursor.updated_since is None or newest_at > cursor.updated_since):
            cursor.updated_since = newest_at
        if complete:
            cursor.last_full_listing_at = self.now
        cursor.save()


# --- Assistants <-> agents ---------------------------------------------------------------


class AssistantSync(ResourceSync):
    resource = Resource.ASSISTANTS
    model = Agent
    vapi_id_field = "vapi_assistant_id"
    local_update_fields = mapping.ASSISTANT_FIELDS

    def list_remote(self, updated_since):
        return self.client.iter_assistants(updated_since=updated_since)

    def get_remote(self, vapi_id):
        return self.client.get_assistant(vapi_id)

    def remote_fields(self, doc):
        return mapping.assistant_fields(doc)

    def local_fields(self, obj):
        return mapping.agent_fields(obj)

    def secondary_key_of_doc(self, doc):
        return str((doc.get("metadata") or {}).get(mapping.MARKER_KEY) or "") or None

    def secondary_key_of_local(self, obj):
        return str(obj.uuid)

    def secondary_filter(self, qs, keys):
        return qs.filter(uuid__in=keys)

    def label_of(self, obj=None, doc=None):
        if obj is not None:
            return obj.name
        return (doc or {}).get("name") or (doc or {}).get("id") or ""

    def new_local(self, doc, fields):
        agent = Agent(vapi_assistant_id=doc["id"])
        self.apply_local(agent, fields, doc)
        return agent

    def apply_local(self, obj, fields, doc):
        for name, value in fields.items():
            if name == "name":
                value = (value or "")[:40]
            setattr(obj, name, value or "")
        obj.vapi_assistant_id = doc["id"]

    def create_remote(self, pair: Pair) -> dict:
        agent = pair.local
        if not self.listing_complete:
            # A selective push has not seen Vapi's full list: an earlier create whose answer
            # was lost (timeout, crash) would not have been matched by its marker. Look first.
            found = self.client.find_assistant_by_metadata(
                mapping.MARKER_KEY, str(agent.uuid), created_since=agent.created_at
            )
            if found is not None:
                return found
        payload = mapping.assistant_create_payload(pair.local_fields, marker=str(agent.uuid))
        sent_at = timezone.now()
        try:
            return self.client.create_assistant(payload)
        except VapiUnavailable as exc:
            if not exc.maybe_applied:
                raise
            # The create may have reached Vapi: adopt the copy carrying our marker, if any.
            found = self.client.find_assistant_by_metadata(mapping.MARKER_KEY, str(agent.uuid), created_since=sent_at)
            if found is None:
                raise
            return found

    def push(self, pair: Pair, fields: dict) -> dict | None:
        body = mapping.assistant_update_payload(fields, pair.remote)
        if not body:
            return pair.remote
        return self.client.update_assistant(pair.remote["id"], body)


# --- Phone numbers ----------------------------------------------------------------------


@functools.lru_cache(maxsize=65536)  # a run compares each number several times
def _normalize_or_keep(number: str) -> str:
    try:
        return e164_normalize(number)
    except Exception:  # a number we cannot parse is compared as Vapi wrote it
        return number


class PhoneNumberSync(ResourceSync):
    resource = Resource.PHONE_NUMBERS
    model = PhoneNumber
    vapi_id_field = "vapi_phone_id"
    local_update_fields = ("number", "sip_uri", "name", "provider", "agent", "vapi_assistant_id")
    can_create_remote = False  # numbers are bought or imported in Vapi's dashboard

    def prepare(self):
        # Vapi assistant id <-> local agent, read once per run (after assistants were synced).
        self.agent_by_vapi_id = dict(
            Agent.objects.exclude(vapi_assistant_id__isnull=True).values_list("vapi_assistant_id", "pk")
        )
        self.vapi_id_by_agent = {pk: vapi_id for vapi_id, pk in self.agent_by_vapi_id.items()}

    def list_remote(self, updated_since):
        return self.client.iter_phone_numbers(updated_since=updated_since)

    def get_remote(self, vapi_id):
        return self.client.get_phone_number(vapi_id)

    def remote_fields(self, doc):
        return mapping.phone_fields(doc, normalize_number=_normalize_or_keep)

    def local_assistant_id(self, obj) -> str | None:
        # With an agent, route to its assistant; without one, keep the assignment Vapi
        # reported (it may name an assistant not imported yet). A person changing the
        # agent resets vapi_assistant_id (see vapisync.signals), so None means unassigned.
        if obj.agent_id:
            return self.vapi_id_by_agent.get(obj.agent_id)
        return obj.vapi_assistant_id or None

    def local_fields(self, obj):
        return mapping.phone_local_fields(obj, assistant_id=self.local_assistant_id(obj))

    def secondary_key_of_doc(self, doc):
        return _normalize_or_keep(doc["number"]) if doc.get("number") else None

    def secondary_key_of_local(self, obj):
        return obj.number or None

    def secondary_filter(self, qs, keys):
        return qs.filter(number__in=keys)

    def label_of(self, obj=None, doc=None):
        if obj is not None:
            return str(obj)
        doc = doc or {}
        return doc.get("number") or doc.get("sipUri") or doc.get("name") or doc.get("id") or ""

    def new_local(self, doc, fields):
        phone = PhoneNumber()
        self.apply_local(phone, fields, doc)
        return phone

    def apply_local(self, obj, fields, doc):
        for name in ("number", "sip_uri", "name", "provider"):
            if name in fields:
                setattr(obj, name, fields[name] if name == "number" else (fields[name] or ""))
        if "name" in fields:
            obj.name = (obj.name or "")[:40]
        if "assistant_id" in fields:
            obj.vapi_assistant_id = fields["assistant_id"]
            obj.agent_id = self.agent_by_vapi_id.get(fields["assistant_id"]) if fields["assistant_id"] else None
        obj.vapi_phone_id = doc["id"]

    def route(self, pair, local_ops, remote_ops, bookkeeping):
        # An assistantId naming an assistant imported since: link the agent now.
        if pair.local is not None and pair.remote is not None and self.options.pull and not pair.local.agent_id:
            assistant_id = pair.local.vapi_assistant_id
            if assistant_id and assistant_id in self.agent_by_vapi_id and pair.drift and pair.drift.clean:
                local_ops.append(("update", pair, {"assistant_id": assistant_id}))
                return
        if pair.local is not None and pair.remote is None and not pair.remote_gone:
            self.recorder.add(
                self.resource, ChangeAction.SKIP, local_id=pair.local.pk, label=self.label_of(pair.local),
                reason="Not in Vapi: buy or import this number in Vapi's dashboard, then run an import to link it.",
            )
            return
        super().route(pair, local_ops, remote_ops, bookkeeping)

    def create_remote(self, pair):  # never reached: numbers are bought in Vapi's dashboard
        return None

    def push(self, pair: Pair, fields: dict) -> dict | None:
        fixed = sorted(set(fields) - set(mapping.PHONE_PUSHABLE))
        if fixed:
            raise ValueError(
                f"{', '.join(fixed)} cannot be changed through Vapi's API; change it in Vapi's dashboard "
                "or revert it here, then sync again."
            )
        if "assistant_id" in fields and fields["assistant_id"] is None and pair.local.agent_id:
            # Its agent has no assistant yet: pushing null would stop the number answering calls.
            # (No database access here: pushes run in the client's worker threads.)
            raise ValueError(
                f"Its agent (id {pair.local.agent_id}) is not in Vapi yet; export agents first (a full sync does both)."
            )
        body = mapping.phone_update_payload(fields, pair.remote)
        if not body:
            return pair.remote
        return self.client.update_phone_number(pair.remote["id"], body)


RESOURCE_SYNCS = {Resource.ASSISTANTS: AssistantSync, Resource.PHONE_NUMBERS: PhoneNumberSync}
RESOURCE_ORDER = (Resource.ASSISTANTS, Resource.PHONE_NUMBERS)
