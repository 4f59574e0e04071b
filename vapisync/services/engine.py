"""The sync engine: pair local records with Vapi documents, plan, then apply with compare-and-set.

One pass per resource (assistants first, so phone numbers can link to them):
  fetch   - list Vapi (full, delta since a high-water mark, or the selected ids)
  pair    - match by Vapi id, then by our create marker (assistants) or E.164 number (phones)
  plan    - three-way drift per pair (vapisync.drift); tombstones; deletions. Each decided write
            is a `PlannedWrite` that carries what the plan saw: the local record's `version` and
            the Vapi document's `updatedAt`. A dry run stops here and records the plan.
  apply   - every write checks that the world is still what the plan saw:
            * local rows: in one transaction per batch, the rows are locked and their versions
              compared; a row a person (or anyone) wrote since is left alone and reported, never
              overwritten. Status-only writes (synced, error) obey the same rule, so a newer
              `pending` always survives;
            * Vapi: before each chunk of PATCHes, what changed in Vapi since the plan's read is
              listed (one delta request, Vapi's own clock); a document that moved is planned
              again from its fresh copy, so a dashboard edit is merged or reported, not undone.
              Vapi has no If-Match, so the window left is one chunk (see README, "Consistency");
            * every write is fenced by the run's lease (vapisync.services.locks.Lease): a run that
              lost it stops writing at once;
            * a create that follows uncertainty (a lease taken over, an earlier push that did not
              finish, a maybe-applied POST, a partial listing) first looks for the copy carrying
              its marker.
Tests inject concurrent writes at the named points of vapisync.services.seams, never by timing.
"""

from __future__ import annotations

import functools
import logging
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import timedelta

from django.db import DatabaseError, transaction
from django.utils import timezone

from globalvoice.tracking import SyncStatus
from vapisync import mapping
from vapisync.context import sync_writes
from vapisync.drift import baseline_after, drift_compute
from vapisync.exceptions import VapiError, VapiNotFound
from vapisync.models import ChangeAction, Side, SyncCursor, SyncRecord
from vapisync.services.history import BATCH_SIZE, Recorder, error_text
from vapisync.services.locks import LeaseLost
from vapisync.services.plan import ACTION_OF_WRITE, Pair, Plan, PlannedWrite, RunOptions, Write
from vapisync.services.seams import seam

logger = logging.getLogger(__name__)

REMOTE_CHUNK = 25  # Vapi writes between two freshness checks of Vapi (about a second at 20/s)
TICK_SECONDS = 1.0  # how often the main thread renews the lease while writes are in flight
CHANGED_MEANWHILE = "Changed here while this run was working (version {seen} -> {now}); not overwritten. " \
                    "The newer edit is kept and settled by the next sync."
DELETED_MEANWHILE = "Deleted here while this run was working; nothing written to it."


def _newest(docs) -> str:
    return max((d.get("updatedAt") or "" for d in docs), default="")


class ResourceSync:
    """The algorithm, the same for every resource; a subclass says how its resource is listed,
    matched and written in Vapi (vapisync.services.resource_syncs), its mapper how it translates."""

    resource: str
    model: type
    vapi_id_field: str
    local_update_fields: tuple[str, ...]
    can_create_remote = True
    listing_complete = True  # set per run: False when only selected ids or a delta were fetched

    def __init__(self, *, client, options: RunOptions, recorder: Recorder, progress=None):
        self.client = client
        self.options = options
        self.lease = options.lease
        self.recorder = recorder
        self.progress = progress or (lambda **kw: None)
        self.now = timezone.now()
        self.done = 0
        self.remote_read_at = time.monotonic()
        self.remote_anchor = ""  # newest Vapi updatedAt seen: what changed after it is news
        self.remote_window = 0.0

    # -- what each resource says (vapisync.services.resource_syncs) ---------------------
    def new_mapper(self): raise NotImplementedError
    def list_remote(self, updated_since): raise NotImplementedError
    def get_remote(self, vapi_id): raise NotImplementedError
    def secondary_key_of_doc(self, doc): return None
    def secondary_key_of_local(self, obj): return None
    def push(self, pair: Pair, fields: dict) -> dict: raise NotImplementedError
    def create_remote(self, pair: Pair) -> dict | None: raise NotImplementedError
    def prepare(self): self.mapper = self.new_mapper()
    def after_local_creates(self, pairs: list[Pair]) -> None: pass

    # -- translation: the resource's mapper (vapisync.resources) --------------------------
    def local_fields(self, obj): return self.mapper.local_fields(obj)
    def remote_fields(self, doc): return self.mapper.remote_fields(doc)
    def label_of(self, obj=None, doc=None): return self.mapper.label(obj, doc)
    def new_local(self, doc, fields): return self.mapper.new_local(doc, fields)
    def apply_local(self, obj, fields, doc): return self.mapper.apply_local(obj, fields, doc)
    def local_state(self, obj) -> dict: return self.mapper.local_state(obj)

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
                return self._listed(self.list_remote(cursor.updated_since)), set(), False
        return self._listed(self.list_remote(None)), set(), True

    def _listed(self, docs) -> list[dict]:
        out = []
        for doc in docs:  # a long listing keeps the lease renewed
            out.append(doc)
            if len(out) % 1000 == 0:
                self.lease.tick()
        return out

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

        self.load_deleted_markers(docs, by_secondary, records)
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
            if local is None and record is None:
                orphan = self.deleted_before_linked(doc)
                if orphan is not None:
                    tombstones.append(orphan)
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
        pair.seen_version = pair.local.version if pair.local is not None else None
        pair.local_fields = self.local_fields(pair.local) if pair.local is not None else None
        pair.remote_fields = self.remote_fields(pair.remote) if pair.remote is not None else None
        pair.drift = None
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
        self.progress(phase=f"{self.resource}: reading Vapi", total=0, checked=0, done=0)
        docs, gone, complete = self.fetch()
        self.remote_read_at = time.monotonic()
        self.listing_complete = complete
        self.remote_count = len(docs) if complete else None
        newest = _newest(docs)
        self.remote_anchor = newest
        locals_ = self.load_locals(docs, complete)
        pairs, tombstones = self.pair_up(docs, gone, complete, locals_)
        plan = Plan()
        for pair in pairs:
            self.decide(pair)
            self.route(pair, plan)
        self.handle_tombstones(tombstones)
        seam("planned", resource=self.resource, plan=plan)
        self.progress(phase=f"{self.resource}: applying", total=plan.writes, checked=len(pairs), done=0)

        if self.options.dry_run:
            self.record_plan(plan)
        else:
            self.apply_local_writes(plan.local)
            self.apply_remote_writes(plan.remote)
            self.save_bookkeeping(plan.bookkeeping)
            if self.remote_window:
                self.progress(remote_window_seconds=round(self.remote_window, 3))
            if complete or self.options.delta:
                self.advance_cursor(newest)
        self.recorder.flush()

    def _advance(self, n: int = 1) -> None:
        self.done += n
        self.progress(done=self.done)

    def route(self, pair: Pair, plan: Plan) -> None:
        """Decide what happens to one pair; queue the writes."""
        opts, label = self.options, self.label_of(pair.local, pair.remote)
        local_id = pair.local.pk if pair.local is not None else None
        vapi_id = pair.remote["id"] if pair.remote else (getattr(pair.local, self.vapi_id_field, None) if pair.local else None)
        if pair.local is None:  # only in Vapi
            if opts.pull:
                plan.local.append(PlannedWrite.of(Write.CREATE, Side.LOCAL, pair))
            else:
                self.recorder.add(self.resource, ChangeAction.SKIP, vapi_id=vapi_id, label=label,
                                  reason="Only in Vapi; an import would create it here.")
            return
        if pair.remote_gone:
            if opts.push and opts.recreate_deleted and opts.selected(self.resource) and self.can_create_remote:
                plan.remote.append(PlannedWrite.of(Write.CREATE, Side.VAPI, pair, pair.local_fields))
            elif pair.local.sync_status == SyncStatus.DELETED_REMOTELY:
                self.recorder.unchanged(self.resource)
            elif opts.pull or opts.push:
                plan.local.append(PlannedWrite.of(Write.MARK_DELETED, Side.LOCAL, pair))
            return
        if pair.remote is None:  # only here, never linked
            if opts.push:
                plan.remote.append(PlannedWrite.of(Write.CREATE, Side.VAPI, pair, pair.local_fields))
            else:
                self.recorder.add(self.resource, ChangeAction.SKIP, local_id=local_id, label=label,
                                  reason="Not in Vapi yet; an export would create it.")
            return
        drift = pair.drift
        if drift.conflicts:
            self.recorder.add(
                self.resource, ChangeAction.CONFLICT, side="", local_id=local_id, vapi_id=vapi_id, label=label,
                diff={k: [v["local"], v["remote"]] for k, v in drift.conflicts.items()},
                reason="Changed both here and in Vapi; resolve it by keeping one side.",
            )
            if not opts.dry_run and pair.local.sync_status != SyncStatus.CONFLICT:
                plan.bookkeeping.append(PlannedWrite.of(Write.STATUS, Side.LOCAL, pair,
                                                        status=(SyncStatus.CONFLICT, "Changed both here and in Vapi.")))
        pull = drift.to_local if opts.pull else {}
        push = drift.to_remote if opts.push else {}
        self.record_settled(pair, pull, push)
        if pull:
            plan.local.append(PlannedWrite.of(Write.UPDATE, Side.LOCAL, pair, pull))
        if push:
            plan.remote.append(PlannedWrite.of(Write.UPDATE, Side.VAPI, pair, push))
        if not drift.conflicts and not pull and not push:
            if drift.clean:
                self.recorder.unchanged(self.resource)
            else:
                waiting = "push" if drift.to_remote else "pull"
                self.recorder.add(self.resource, ChangeAction.SKIP, local_id=local_id, vapi_id=vapi_id, label=label,
                                  diff=mapping.diff(pair.local_fields, pair.remote_fields),
                                  reason=f"Differs; waiting for a {'export' if waiting == 'push' else 'import'}.")
            if not opts.dry_run:
                plan.bookkeeping.append(PlannedWrite.of(Write.REBASELINE, Side.LOCAL, pair))

    def record_settled(self, pair: Pair, pull: dict, push: dict) -> None:
        """A field changed on both sides and settled by the conflict policy is a conflict too: the
        history says which value was kept and which was discarded."""
        settled = {name: how for name, how in pair.drift.settled.items()
                   if (how["kept"] == "remote" and name in pull) or (how["kept"] == "local" and name in push)}
        if not settled:
            return
        kept = {how["kept"] for how in settled.values()}
        overwritten = Side.LOCAL if kept == {"remote"} else Side.VAPI if kept == {"local"} else ""
        details = "; ".join(
            f"{name}: kept {'Vapi' if how['kept'] == 'remote' else 'this app'}'s {how[how['kept']]!r}, "
            f"discarded {how['local' if how['kept'] == 'remote' else 'remote']!r}"
            for name, how in sorted(settled.items())
        )
        self.recorder.add(
            self.resource, ChangeAction.CONFLICT, side=overwritten, local_id=pair.local.pk, vapi_id=pair.remote["id"],
            label=self.label_of(pair.local, pair.remote),
            before={"local": pair.local_fields, "remote_fields": pair.remote_fields},
            diff={name: [how["local"], how["remote"]] for name, how in settled.items()},
            reason=f"Changed on both sides; settled by the conflict policy {self.options.policy}. {details}"[:2000],
        )

    def load_deleted_markers(self, docs, by_secondary, records) -> None:
        """Hook: what `deleted_before_linked` needs, read once per run (assistants override)."""

    def deleted_before_linked(self, doc) -> SyncRecord | None:
        """Hook: a tombstone for a document whose local record was deleted before any run linked it."""
        return None

    def handle_tombstones(self, records: list[SyncRecord]) -> None:
        new = [r for r in records if r.pk is None]
        if new and not self.options.dry_run:
            with transaction.atomic(), sync_writes():
                self.lease.check_in_transaction()
                SyncRecord.objects.bulk_create(new, batch_size=BATCH_SIZE)
        for record in records:
            self.recorder.add(self.resource, ChangeAction.SKIP, vapi_id=record.vapi_id, local_id=record.local_id,
                              label=self.label_of(None, record.remote),
                              reason="Deleted here but still in Vapi; not re-imported. Delete it in Vapi explicitly if wanted.")

    def record_plan(self, plan: Plan) -> None:
        """A dry run records the writes it would make, with the field diff of each."""
        for write in [*plan.local, *plan.remote]:
            pair, fields = write.pair, write.fields
            if write.kind == Write.CREATE:
                current = {}
                fields = pair.remote_fields if write.side == Side.LOCAL else pair.local_fields
            else:
                current = pair.local_fields if write.side == Side.LOCAL else pair.remote_fields
            self.recorder.add(
                self.resource, ACTION_OF_WRITE[write.kind], side=write.side,
                local_id=pair.local.pk if pair.local is not None else None,
                vapi_id=pair.remote["id"] if pair.remote else None, label=self.label_of(pair.local, pair.remote),
                diff=mapping.diff(current or {}, {**(current or {}), **(fields or {})}),
                reason="Deleted in Vapi" if write.kind == Write.MARK_DELETED else "",
            )

    # -- compare-and-set on local rows ---------------------------------------------------
    def versions_now(self, pks) -> dict[int, int]:
        """pk -> version, with the rows locked until the caller's transaction ends (PostgreSQL;
        SQLite's IMMEDIATE transactions already hold the database's write lock)."""
        pks, found = list(pks), {}
        for start in range(0, len(pks), 900):  # SQLite's limit on query parameters
            found.update(self.model.objects.select_for_update().filter(pk__in=pks[start:start + 900])
                         .values_list("pk", "version"))
        return found

    def report_missed(self, write: PlannedWrite, now_version: int | None) -> None:
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
        for start in range(0, len(creates), BATCH_SIZE):
            self._local_batch(creates[start:start + BATCH_SIZE], self._create_locals)
        for start in range(0, len(updates), BATCH_SIZE):
            self._local_batch(updates[start:start + BATCH_SIZE], self._update_locals)

    def _local_batch(self, batch: list[PlannedWrite], writer) -> None:
        saved_records = [w.pair.record for w in batch]
        self.lease.tick()
        seam("local_write", resource=self.resource, ops=batch)
        try:
            with transaction.atomic(), sync_writes():
                self.lease.check_in_transaction()
                results = writer(batch)
        except (DatabaseError, ValueError) as exc:
            for write, record in zip(batch, saved_records):  # undo in-memory effects of the rolled-back batch
                write.pair.record = record
            if len(batch) == 1:
                self._fail_local(batch[0], exc)
                return
            # Isolate the bad item: redo this batch one by one, each in its own transaction.
            for write in batch:
                self._local_batch([write], writer)
            return
        for result in results:
            self._record_local(*result)
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
        objs = []
        for write in batch:
            obj = self.new_local(write.pair.remote, write.pair.remote_fields)
            obj.sync_status, obj.last_synced_at, obj.sync_error = SyncStatus.SYNCED, self.now, ""
            objs.append(obj)
        created = self.model.objects.bulk_create(objs, batch_size=BATCH_SIZE)
        records = []
        for write, obj in zip(batch, created):
            pair = write.pair
            pair.local, pair.seen_version = obj, obj.version
            pair.local_fields = self.local_fields(obj)
            records.append(self._record_for(pair))
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
                    pair.record.save(update_fields=["remote_deleted_at"])
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
            # What rollback checks before undoing: the record's version and Vapi's whole document.
            after={"local": after, "version": pair.local.version,
                   "remote_sha": mapping.document_hash(pair.remote) if pair.remote else None},
            diff={**mapping.diff(before or {}, after or {}), **(extra_diff or {})},
        )

    # -- apply: Vapi --------------------------------------------------------------------
    def apply_remote_writes(self, writes: list[PlannedWrite]) -> None:
        queue = list(writes)
        while queue:
            chunk, queue = queue[:REMOTE_CHUNK], queue[REMOTE_CHUNK:]
            self.lease.tick()
            self.lease.check()
            chunk = self._locally_unchanged(chunk)
            seam("remote_chunk", resource=self.resource, ops=chunk)
            chunk = self._still_current(chunk)
            creates = [w for w in chunk if w.kind == Write.CREATE]
            if creates and (self.options.uncertain or not self.listing_complete):
                try:
                    gone = self._look_for_earlier_creates(creates)
                except VapiError as exc:  # cannot tell whether they exist already: create none of them now
                    for write in creates:
                        self._fail_remote(write, exc)
                    chunk = [w for w in chunk if w.kind != Write.CREATE]
                else:
                    if gone:
                        self._mark_copies_deleted(gone)
                        chunk = [w for w in chunk if w not in gone]
            if not chunk:
                continue
            finished = []
            for write, doc, exc in self._in_parallel(self._remote_call, chunk):
                if exc is not None:
                    self._fail_remote(write, exc)
                elif doc is not None:
                    finished.append((write, doc))
            if finished:
                try:
                    self._finish_remote_batch(finished)
                except LeaseLost:
                    self._record_unrecorded_creates(finished)
                    raise
            self._advance(len(chunk))
            if not self.lease.alive():
                raise LeaseLost(f"The sync lease was lost ({self.lease.lost_reason}); stopped before writing more. "
                                "Run the sync again to finish.")

    def _locally_unchanged(self, chunk: list[PlannedWrite]) -> list[PlannedWrite]:
        """Drop the writes whose record was written here since it was read (it is pushed from
        what it is now by the next run; the save that changed it put it in the outbox)."""
        pks = [w.pair.local.pk for w in chunk]
        current = dict(self.model.objects.filter(pk__in=pks).values_list("pk", "version"))
        keep = []
        for write in chunk:
            write.seen_version = write.pair.seen_version  # after this run's own local writes
            if current.get(write.pair.local.pk) == write.seen_version:
                keep.append(write)
            else:
                self.report_missed(write, current.get(write.pair.local.pk))
        return keep

    def _remote_call(self, write: PlannedWrite):
        self.lease.check()  # in the worker thread, right before the request: no write after the lease is gone
        seam("remote_write", resource=self.resource, op=write)
        if write.kind == Write.CREATE:
            return self.create_remote(write.pair)
        # How old our view of this document is as the PATCH leaves: the window in which a dashboard
        # edit can still be overwritten (reported in the run's progress as `remote_window_seconds`).
        self.remote_window = max(self.remote_window, time.monotonic() - self.remote_read_at)
        return self.push(write.pair, write.fields)

    def _in_parallel(self, fn, items):
        """(item, result, exception) as each call finishes; the lease is renewed while waiting."""
        workers = max(1, min(getattr(self.client, "max_concurrency", 4), len(items)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vapisync-write") as pool:
            futures = {pool.submit(fn, item): item for item in items}
            waiting = set(futures)
            while waiting:
                done, waiting = wait(waiting, timeout=TICK_SECONDS, return_when=FIRST_COMPLETED)
                self.lease.tick()
                for future in done:
                    exc = future.exception()
                    yield futures[future], (None if exc else future.result()), exc

    def _still_current(self, chunk: list[PlannedWrite]) -> list[PlannedWrite]:
        """Before PATCHing from the plan's copy of a document: if that copy is older than
        `recheck_seconds`, list what changed in Vapi since (one delta request; Vapi's own clock)
        and plan again the records whose document moved."""
        updates = [w for w in chunk if w.kind == Write.UPDATE and w.pair.remote is not None]
        if not updates or time.monotonic() - self.remote_read_at < self.options.recheck_seconds:
            return chunk
        anchor = mapping.remote_updated_at({"updatedAt": self.remote_anchor}) if self.remote_anchor else None
        since = anchor - timedelta(milliseconds=1) if anchor else None
        checked_at = time.monotonic()
        moved = {}
        wanted = {w.pair.remote["id"] for w in updates}
        for doc in self._listed(self.list_remote(since)):
            if doc.get("updatedAt") and doc["updatedAt"] > self.remote_anchor:
                self.remote_anchor = doc["updatedAt"]
            if doc["id"] in wanted:
                moved[doc["id"]] = doc
        self.remote_read_at = checked_at
        keep, replanned = [], Plan()
        for write in chunk:
            doc = moved.get(write.pair.remote["id"]) if write in updates else None
            if doc is None or doc.get("updatedAt") == write.seen_remote_at:
                keep.append(write)
                continue
            # Vapi changed this document after the plan read it: decide again from the fresh copy.
            pair = write.pair
            pair.remote = doc
            self.decide(pair)
            self.route(pair, replanned)
        self.apply_local_writes(replanned.local)
        self.save_bookkeeping(replanned.bookkeeping)
        for write in replanned.remote:
            write.seen_remote_at = write.pair.remote.get("updatedAt")
        return keep + replanned.remote

    def _look_for_earlier_creates(self, creates: list[PlannedWrite]) -> dict:
        """Hook: find copies an earlier, uncertain create already made (assistants override).
        Returns {write: Vapi id} for the creates whose earlier copy was deleted in Vapi since."""
        return {}

    def _record_unrecorded_creates(self, finished: list) -> None:
        """The lease was lost after Vapi answered these creates: nothing may be written to the
        records any more, but the history keeps what Vapi now holds, so a later run adopts the copy
        or, if it was deleted in Vapi meanwhile, does not create it a second time."""
        for write, doc in finished:
            if write.kind == Write.CREATE:
                self.recorder.add(
                    self.resource, ChangeAction.CREATE, side=Side.VAPI, local_id=write.pair.local.pk, vapi_id=doc["id"],
                    label=self.label_of(write.pair.local, doc), after={"remote": doc, "version": write.seen_version},
                    reason="Created in Vapi, but not recorded here: the run lost its sync lease. The next run links it.",
                )

    def _mark_copies_deleted(self, gone: dict) -> None:
        """Creates whose earlier copy was deleted in Vapi: a person removed it there, so it is marked
        deleted in Vapi (as for any linked record), never created again automatically."""
        with transaction.atomic(), sync_writes():
            self.lease.check_in_transaction()
            current = self.versions_now(w.pair.local.pk for w in gone)
            marked = []
            for write, vapi_id in gone.items():
                pair = write.pair
                if current.get(pair.local.pk) != write.seen_version:
                    self.report_missed(write, current.get(pair.local.pk))
                    continue
                SyncRecord.objects.update_or_create(
                    resource=self.resource, vapi_id=vapi_id,
                    defaults={"local_id": pair.local.pk, "baseline": {}, "remote_deleted_at": self.now,
                              "local_deleted_at": None})
                pair.local.sync_status = SyncStatus.DELETED_REMOTELY
                pair.local.sync_error = ("Its copy in Vapi, made by an earlier push, was deleted in Vapi; not re-created "
                                         "automatically. Push it explicitly to re-create it.")
                setattr(pair.local, self.vapi_id_field, vapi_id)
                marked.append(pair.local)
                self.recorder.add(self.resource, ChangeAction.MARK_DELETED, side=Side.LOCAL, local_id=pair.local.pk,
                                  vapi_id=vapi_id, label=self.label_of(pair.local), before={"status": write.pair.local.sync_status},
                                  after={"status": SyncStatus.DELETED_REMOTELY, "version": write.seen_version})
            if marked:
                self.model.objects.bulk_update(marked, [self.vapi_id_field, "sync_status", "sync_error"])

    def _fail_remote(self, write: PlannedWrite, exc: Exception) -> None:
        pair, kind = write.pair, write.kind
        message = error_text(exc)
        self.recorder.add(self.resource, ChangeAction.ERROR, side=Side.VAPI, local_id=pair.local.pk,
                          vapi_id=pair.remote["id"] if pair.remote else None, label=self.label_of(pair.local, pair.remote),
                          error=message, reason=f"{kind} in Vapi failed",
                          retryable=isinstance(exc, LeaseLost) or getattr(exc, "retryable", False))
        if isinstance(exc, LeaseLost):
            return  # nothing was sent: the record stays as it is for the next run
        # Only over the version the plan saw: a fix saved meanwhile stays pending and is pushed.
        with transaction.atomic():
            self.lease.check_in_transaction()
            self.model.objects.filter(pk=pair.local.pk, version=write.seen_version).update(
                sync_status=SyncStatus.ERROR, sync_error=message[:2000])

    def _finish_remote_batch(self, finished: list) -> None:
        with transaction.atomic(), sync_writes():
            self.lease.check_in_transaction()
            current = self.versions_now(w.pair.local.pk for w, _ in finished)
            objs, records = [], []
            for write, doc in finished:
                pair = write.pair
                before_remote = pair.remote
                pair.remote = doc
                pair.remote_fields = self.remote_fields(doc)
                now_version = current.get(pair.local.pk)
                action = ChangeAction.CREATE if write.kind == Write.CREATE else ChangeAction.UPDATE
                reason = ""
                if now_version is None:
                    # Deleted here while the write was in flight: Vapi has it, so keep it listed as
                    # "deleted here, still in Vapi" (a tombstone naming this very document).
                    self._keep_tombstone(pair, doc)
                    reason = DELETED_MEANWHILE.replace("nothing written to it", "kept as deleted here, still in Vapi")
                else:
                    relink = getattr(pair.local, self.vapi_id_field) != doc["id"]
                    setattr(pair.local, self.vapi_id_field, doc["id"])
                    # The baseline is what was pushed: both sides agreed on it when Vapi answered.
                    records.append(self._record_for(pair))
                    if now_version == write.seen_version:
                        self._mark_synced(pair)
                        objs.append(pair.local)
                    else:
                        reason = CHANGED_MEANWHILE.format(seen=write.seen_version, now=now_version)
                        if relink:
                            # The link is the sync's own column: written even though a person edited
                            # the record meanwhile, or the next push would create a second copy.
                            self.model.objects.filter(pk=pair.local.pk).update(**{self.vapi_id_field: doc["id"]})
                self.recorder.add(
                    self.resource, action, side=Side.VAPI, local_id=pair.local.pk, vapi_id=doc["id"],
                    label=self.label_of(pair.local, doc), reason=reason,
                    before={"remote": before_remote} if before_remote else None,
                    after={"remote": doc, "version": write.seen_version},
                    diff=mapping.diff(self.remote_fields(before_remote) if before_remote else {}, pair.remote_fields),
                )
            if objs:
                self.model.objects.bulk_update(objs, [self.vapi_id_field, "sync_status", "sync_error", "last_synced_at"])
            self._save_records(records)

    def _keep_tombstone(self, pair: Pair, doc: dict) -> None:
        record = SyncRecord.objects.filter(resource=self.resource, vapi_id=doc["id"]).first()
        if record is None:
            record = SyncRecord(resource=self.resource, vapi_id=doc["id"], baseline=pair.local_fields or {})
        record.local_id = pair.local.pk
        record.local_deleted_at = record.local_deleted_at or self.now
        record.remote, record.remote_updated_at = doc, mapping.remote_updated_at(doc)
        record.remote_deleted_at = None
        record.save()

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
        pair.record = record
        return record

    def _save_records(self, records: list[SyncRecord]) -> None:
        new = [r for r in records if r.pk is None]
        old = [r for r in records if r.pk is not None]
        if new:
            SyncRecord.objects.bulk_create(new, batch_size=BATCH_SIZE)
        if old:
            SyncRecord.objects.bulk_update(
                old, ["vapi_id", "local_id", "baseline", "remote", "remote_updated_at", "synced_at",
                      "local_deleted_at", "remote_deleted_at"], batch_size=BATCH_SIZE,
            )

    def save_bookkeeping(self, writes: list[PlannedWrite]) -> None:
        """Baselines for pairs already equal; statuses. Writes only what actually differs, and only
        to records nobody wrote since the plan read them."""
        needed = [w for w in writes if w.kind == Write.STATUS or self._bookkeeping_differs(w.pair)]
        for start in range(0, len(needed), BATCH_SIZE):
            self._bookkeeping_batch(needed[start:start + BATCH_SIZE])

    def _bookkeeping_differs(self, pair: Pair) -> bool:
        record = pair.record
        stale_record = (
            record is None
            or record.local_id != pair.local.pk
            or record.remote_updated_at != mapping.remote_updated_at(pair.remote)
            or record.baseline != baseline_after(pair.local_fields, pair.remote_fields, record.baseline)
            or record.remote_deleted_at is not None
        )
        in_sync = pair.local_fields == pair.remote_fields
        return stale_record or (in_sync and (pair.local.sync_status != SyncStatus.SYNCED
                                             or getattr(pair.local, self.vapi_id_field) != pair.remote["id"]))

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
                record = pair.record
                if (record is None or record.local_id != pair.local.pk
                        or record.remote_updated_at != mapping.remote_updated_at(pair.remote)
                        or record.baseline != baseline_after(pair.local_fields, pair.remote_fields, record.baseline)
                        or record.remote_deleted_at is not None):
                    records.append(self._record_for(pair))
                if pair.local_fields == pair.remote_fields and (
                        pair.local.sync_status != SyncStatus.SYNCED
                        or getattr(pair.local, self.vapi_id_field) != pair.remote["id"]):
                    setattr(pair.local, self.vapi_id_field, pair.remote["id"])
                    pair.local.sync_status, pair.local.sync_error, pair.local.last_synced_at = SyncStatus.SYNCED, "", self.now
                    status_changes.append(pair.local)
            self._save_records(records)
            if status_changes:
                self.model.objects.bulk_update(
                    status_changes, [self.vapi_id_field, "sync_status", "sync_error", "last_synced_at"], batch_size=BATCH_SIZE
                )

    def advance_cursor(self, newest: str) -> None:
        cursor, _ = SyncCursor.objects.get_or_create(resource=self.resource)
        newest_at = mapping.remote_updated_at({"updatedAt": newest}) if newest else None
        if newest_at and (cursor.updated_since is None or newest_at > cursor.updated_since):
            cursor.updated_since = newest_at
        cursor.save()
