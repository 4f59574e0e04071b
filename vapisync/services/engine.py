"""The sync engine: pair local records with Vapi documents, plan, then apply with compare-and-set.

One pass per resource (assistants first, so phone numbers can link to them):
  fetch   - list Vapi (full, delta since a high-water mark, or the selected ids)
  set aside - (full syncs) pairs still as a run found them equal, by their sync records' clean marks,
            read as plain columns; nothing is written for them, so they need no check later
  pair    - match by Vapi id, then by our create marker (assistants) or E.164 number (phones)
  plan    - three-way drift per pair (vapisync.drift); tombstones; deletions. Each decided write
            is a `PlannedWrite` that carries what the plan saw: the local record's `version` and
            the Vapi document's `updatedAt`. A dry run stops here and records the plan.
  apply   - (apply_local, apply_remote) every write checks that the world is still what the plan saw:
            * local rows: in one transaction per batch, with the batch's history rows, the rows are
              locked and their versions compared; a row a person (or anyone) wrote since is left
              alone and reported, never overwritten. Status-only writes (synced, error) obey the
              same rule, so a newer `pending` always survives;
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

import logging
import time
from types import SimpleNamespace

from django.db import transaction
from django.utils import timezone

from globalvoice.tracking import SyncStatus
from vapisync import mapping
from vapisync.context import sync_writes
from vapisync.drift import drift_compute
from vapisync.exceptions import VapiNotFound
from vapisync.models import ChangeAction, Side, SyncCursor, SyncRecord
from vapisync.services.apply_local import LocalWrites
from vapisync.services.apply_remote import RemoteWrites
from vapisync.services.bulk_insert import param_chunks
from vapisync.services.history import BATCH_SIZE, Recorder
from vapisync.services.plan import ACTION_OF_WRITE, FoundEqual, Pair, Plan, PlannedWrite, RunOptions, Write
from vapisync.services.seams import seam

logger = logging.getLogger(__name__)


def _newest(docs) -> str:
    return max((d.get("updatedAt") or "" for d in docs), default="")


class ResourceSync(LocalWrites, RemoteWrites):
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
        self.missed = 0  # writes left alone because the record changed meanwhile
        self.remote_created = 0

    # -- what each resource says (vapisync.services.resource_syncs) ---------------------
    def new_mapper(self): raise NotImplementedError
    def list_remote(self, updated_since): raise NotImplementedError
    def get_remote(self, vapi_id): raise NotImplementedError
    def secondary_key_of_doc(self, doc): return None
    def secondary_key_of_local(self, obj): return None
    def push(self, pair: Pair, fields: dict) -> dict: raise NotImplementedError
    def create_remote(self, pair: Pair) -> dict | None: raise NotImplementedError
    def create_document(self, payload: dict) -> dict: raise NotImplementedError
    def patch_document(self, vapi_id: str, body: dict) -> dict: raise NotImplementedError
    def delete_document(self, vapi_id: str) -> dict: raise NotImplementedError
    def restore_body(self, old: dict, current: dict) -> dict: raise NotImplementedError
    def prepare(self): self.mapper = self.new_mapper()
    def after_local_creates(self, pairs: list[Pair]) -> None: pass

    # -- translation: the resource's mapper (vapisync.resources) --------------------------
    def local_fields(self, obj): return self.mapper.local_fields(obj)
    def remote_fields(self, doc): return self.mapper.remote_fields(doc)
    def label_of(self, obj=None, doc=None): return self.mapper.label(obj, doc)
    def new_local_values(self, doc, fields) -> dict:
        """Column values of the local record an import makes of `doc`: the mapper's apply_local, onto
        a plain namespace rather than a model instance (bulk_insert.insert_new builds those)."""
        values = SimpleNamespace()
        self.mapper.apply_local(values, fields, doc)
        return vars(values)
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

    def load_locals(self, docs, complete, found: FoundEqual | None = None) -> list:
        opts = self.options
        qs = self.model.objects.all()
        if found is not None:  # a full sync: everything but the pairs set aside
            locals_ = []
            for chunk in param_chunks(sorted(found.other_local_ids)):
                locals_ += qs.filter(pk__in=chunk)
            self.mapper.stored_rows_read(locals_)
            return locals_
        if opts.selected(self.resource):
            ids = [d["id"] for d in docs] + list(opts.vapi_ids.get(self.resource) or [])
            qs = qs.filter(pk__in=opts.local_ids.get(self.resource) or []) | qs.filter(
                **{f"{self.vapi_id_field}__in": ids}
            )
        elif not complete:
            keys = [k for k in (self.secondary_key_of_doc(d) for d in docs) if k]
            qs = qs.filter(**{f"{self.vapi_id_field}__in": [d["id"] for d in docs]}) | self.secondary_filter(qs, keys)
        locals_ = list(qs.distinct())
        self.mapper.stored_rows_read(locals_)
        return locals_

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

    def set_aside_found_equal(self, docs) -> FoundEqual | None:
        """A full sync's pairs that are still as a run found them equal, read as plain column values
        (no model instance, no stored document): most of a no-op sync. None when no record has a mark.

        Such a pair is a document, a local record and a sync record that name one another (the local
        record carries the document's id; the sync record, keyed by that id, the local record's), so
        setting all three aside changes no other pairing: the rest is paired exactly as before. Nothing
        is written for them, so a person's edit after these reads is never overwritten: it made the
        record pending, and the outbox pushes it."""
        marked = {vapi_id: (pk, local_id, mark, local_deleted_at is None and remote_deleted_at is None)
                  for pk, vapi_id, local_id, mark, local_deleted_at, remote_deleted_at
                  in SyncRecord.objects.filter(resource=self.resource).exclude(clean_mark="").values_list(
                      "pk", "vapi_id", "local_id", "clean_mark", "local_deleted_at", "remote_deleted_at")}
        if not marked:
            return None
        rows = {row.pk: row for row in self.model.objects.order_by().values_list(
            "pk", self.vapi_id_field, "sync_status", *self.mapper.local_columns, named=True)}
        self.mapper.stored_rows_read(rows.values())
        found = FoundEqual()
        for doc in docs:
            record_pk, local_id, mark, undeleted = marked.pop(doc["id"], (None, None, "", False))
            if record_pk is None:
                continue
            row = rows.get(local_id)
            if row is not None and undeleted and self.still_found_equal(mark, local_id, row, doc):
                found.vapi_ids.add(doc["id"])
                found.local_ids.add(local_id)
            else:
                found.other_record_ids.append(record_pk)
        found.other_record_ids += [record_pk for record_pk, *_ in marked.values()]  # no document listed
        found.other_local_ids = [pk for pk in rows if pk not in found.local_ids]
        return found

    def load_records(self, ids, complete, found: FoundEqual | None) -> dict[str, SyncRecord]:
        """Vapi id -> sync record. The stored Vapi document is for people and rollbacks; baselines are
        read later, only for the pairs that need comparing (load_baselines)."""
        records_qs = SyncRecord.objects.filter(resource=self.resource).defer("remote", "baseline")
        if found is not None:  # the unmarked records, and the marked ones not set aside
            records = list(records_qs.filter(clean_mark=""))
            for chunk in param_chunks(found.other_record_ids):
                records += records_qs.filter(pk__in=chunk)
            return {r.vapi_id: r for r in records}
        if not complete:
            records_qs = records_qs.filter(vapi_id__in=ids)
        return {r.vapi_id: r for r in records_qs}

    def pair_up(self, docs, gone, complete, locals_, found: FoundEqual | None = None) -> tuple[list[Pair], list[SyncRecord]]:
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
        records = self.load_records({d["id"] for d in docs} | set(by_vapi_id) | gone, complete, found)

        self.load_deleted_markers(docs, by_secondary, records)
        pairs, tombstones, seen_local = [], [], set()
        for doc in docs:
            record = records.get(doc["id"])
            local = by_vapi_id.get(doc["id"])
            if local is None and by_secondary:
                key = self.secondary_key_of_doc(doc)
                local = by_secondary.pop(key, None) if key else None
            if local is None and record is not None and record.local_id is not None:
                # Linked before, local record gone: a tombstone, never resurrected by import.
                record.remote = doc  # (unsaved) what its history row is labelled from
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

    def unchanged_since_found_equal(self, pair: Pair) -> bool:
        """True when a run found this pair's sides equal with the local fields they have now and the
        Vapi document at the `updatedAt` it has now (the record's `clean_mark`). Vapi moves `updatedAt`
        on every change, so both sides are equal still: nothing to map, compare, write or record.
        Anything else about the pair (its status, link, tombstones) must be settled too, or it is compared."""
        record, local, doc = pair.record, pair.local, pair.remote
        if record is None or local is None or doc is None or not record.clean_mark:
            return False
        return (record.local_deleted_at is None and record.remote_deleted_at is None
                and self.still_found_equal(record.clean_mark, record.local_id, local, doc))

    def still_found_equal(self, mark: str, record_local_id: int | None, local, doc: dict) -> bool:
        """The clean mark `mark`, of a sync record linking `record_local_id` to `doc`, still holds for
        `local` (a model instance, or a row of the mapper's `local_columns`, pk, Vapi id and status)."""
        return (local.sync_status == SyncStatus.SYNCED and getattr(local, self.vapi_id_field) == doc["id"]
                and record_local_id == local.pk and not self.waiting_for_link(local)
                and mark == mapping.clean_mark(self.local_fields(local), doc.get("updatedAt")))

    def waiting_for_link(self, local) -> bool:
        """Hook: the local record has a write due that its fields do not show (phone numbers: an agent to link)."""
        return False

    def load_baselines(self, pairs: list[Pair]) -> None:
        """Read the baselines of the pairs about to be compared, in bulk (pair_up defers them)."""
        records = {p.record.pk: p.record for p in pairs if p.record is not None and p.record.pk
                   and "baseline" not in p.record.__dict__}
        for chunk in param_chunks(list(records)):
            for pk, baseline in SyncRecord.objects.filter(pk__in=chunk).values_list("pk", "baseline"):
                records[pk].baseline = baseline

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
        found = self.set_aside_found_equal(docs) if complete else None
        if found is not None:
            self.recorder.unchanged(self.resource, len(found.vapi_ids))
        locals_ = self.load_locals(docs, complete, found)
        pairs, tombstones = self.pair_up([d for d in docs if d["id"] not in found.vapi_ids] if found else docs,
                                         gone, complete, locals_, found)
        plan = Plan()
        to_compare = []
        for pair in pairs:
            if self.unchanged_since_found_equal(pair):
                self.recorder.unchanged(self.resource)
            else:
                to_compare.append(pair)
        self.load_baselines(to_compare)
        for pair in to_compare:
            self.decide(pair)
            self.route(pair, plan)
        self.handle_tombstones(tombstones)
        seam("planned", resource=self.resource, plan=plan)
        self.progress(phase=f"{self.resource}: applying", total=plan.writes,
                      checked=len(pairs) + (len(found.vapi_ids) if found else 0), done=0)

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
            if complete:
                self.recorder.status_after[self.resource] = self.status_after(pairs, tombstones)
        self.recorder.flush()

    def status_after(self, pairs: list[Pair], tombstones: list) -> dict:
        """What a full sync would still do after this run, from what this run read and did: the stored
        status the Vapi Sync page shows, with no second listing of Vapi. Writes that failed or found the
        record changed meanwhile are still to do."""
        pull, push = self.options.pull, self.options.push
        would = dict.fromkeys(("created", "updated", "deleted", "conflicts", "skipped"), 0)
        for pair in pairs:
            if pair.local is None:
                would["created"] += not pull
            elif pair.remote_gone:
                would["deleted"] += pair.local.sync_status != SyncStatus.DELETED_REMOTELY and not (pull or push)
            elif pair.remote is None:
                key = "created" if self.can_create_remote else "skipped"
                would[key] += not (push and self.can_create_remote)
            elif pair.drift is None:
                continue  # created on one side by this very run
            elif pair.drift.conflicts:
                would["conflicts"] += 1
            elif (pair.drift.to_local and not pull) or (pair.drift.to_remote and not push):
                would["updated"] += 1
        counts = self.recorder.counts[self.resource]
        would["updated"] += counts["failed"]
        would["skipped"] += len(tombstones) + self.missed
        return {"vapi": self.remote_count + self.remote_created, "would_change": would}

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

    def advance_cursor(self, newest: str) -> None:
        cursor, _ = SyncCursor.objects.get_or_create(resource=self.resource)
        newest_at = mapping.remote_updated_at({"updatedAt": newest}) if newest else None
        if newest_at and (cursor.updated_since is None or newest_at > cursor.updated_since):
            cursor.updated_since = newest_at
        cursor.save()
