"""Applying a plan in Vapi: writes in parallel chunks, each chunk checked against the local
versions and against what changed in Vapi since the plan read it, every request fenced by the
run's lease, every create after uncertainty preceded by a look for its marker.

Vapi has no conditional write (If-Match); the window that remains is measured per run
(`remote_window_seconds`) and stated in README, "Consistency guarantees".
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import timedelta

from django.db import transaction

from globalvoice.tracking import SyncStatus
from vapisync import mapping
from vapisync.context import sync_writes
from vapisync.exceptions import VapiError
from vapisync.models import ChangeAction, Side, SyncRecord
from vapisync.services.apply_local import CHANGED_MEANWHILE, DELETED_MEANWHILE
from vapisync.services.history import error_text
from vapisync.services.locks import LeaseLost
from vapisync.services.plan import Pair, Plan, PlannedWrite, Write
from vapisync.services.seams import seam

REMOTE_CHUNK = 25  # Vapi writes between two freshness checks of Vapi (about a second at 20/s)
TICK_SECONDS = 1.0  # how often the main thread renews the lease while writes are in flight


class RemoteWrites:
    """The Vapi half of applying a plan (mixed into vapisync.services.engine.ResourceSync)."""

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
                              "local_deleted_at": None, "clean_mark": ""})
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
        with self.recorder.kept_on_error(), transaction.atomic(), sync_writes():
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
                self.remote_created += action == ChangeAction.CREATE
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
            # The history of these Vapi writes commits with their links here: a worker killed after
            # the commit leaves every copy it made recorded (rollback and later creates read it).
            self.recorder.flush()

    def _keep_tombstone(self, pair: Pair, doc: dict) -> None:
        record = SyncRecord.objects.filter(resource=self.resource, vapi_id=doc["id"]).first()
        if record is None:
            record = SyncRecord(resource=self.resource, vapi_id=doc["id"], baseline=pair.local_fields or {})
        record.local_id = pair.local.pk
        record.local_deleted_at = record.local_deleted_at or self.now
        record.remote, record.remote_updated_at = doc, mapping.remote_updated_at(doc)
        record.remote_deleted_at = None
        record.clean_mark = ""
        record.save()
