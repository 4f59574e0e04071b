"""A run's history as it happens: counts per resource, errors, and one `SyncChange` row per record
changed (or, in a dry run, planned), written in bulk."""

from __future__ import annotations

import contextlib
from collections import Counter, defaultdict

from django.db import DatabaseError, transaction
from django.utils import timezone

from vapisync.exceptions import VapiSyncError
from vapisync.models import ChangeAction, SyncChange, SyncRun
from vapisync.services.bulk_insert import insert_rows
from vapisync.services.locks import LeaseLost

BATCH_SIZE = 500  # rows per bulk statement and per transaction of updates
# Rows per transaction of inserts (new local rows, history). Each commit rewrites every index page its
# rows touched, and random keys (Vapi ids, uuids) touch a page per row once a table is large: bigger
# batches share pages, which keeps a 100,000-record import from slowing down as its tables grow.
INSERT_BATCH_SIZE = 2000
_CHANGE_COLUMNS = ("run", "resource", "action", "side", "local_id", "vapi_id", "label", "before", "after", "diff",
                  "reason", "error", "created_at")
COUNT_KEYS = ("created", "updated", "unchanged", "deleted", "conflicts", "failed", "skipped")
_COUNT_OF_ACTION = {
    ChangeAction.CREATE: "created",
    ChangeAction.UPDATE: "updated",
    ChangeAction.DELETE: "deleted",
    ChangeAction.MARK_DELETED: "deleted",
    ChangeAction.CONFLICT: "conflicts",
    ChangeAction.ERROR: "failed",
    ChangeAction.SKIP: "skipped",
}


class Recorder:
    """Collects a run's changes, counts and errors; writes history rows in bulk."""

    def __init__(self, run: SyncRun, *, dry_run: bool):
        self.run = run
        self.dry_run = dry_run
        self.counts: dict[str, Counter] = defaultdict(Counter)  # resource -> action count
        self.errors: list[dict] = []
        self.plan: list[dict] = []
        self._pending: list[tuple] = []  # SyncChange rows in the order of _CHANGE_COLUMNS, less created_at
        self._flushed_in_scope: list[tuple] | None = None  # see kept_on_error
        # resource -> {"vapi": count, "would_change": {...}}: what a full sync would still do, from runs
        # that listed all of Vapi (vapisync.services.status stores it).
        self.status_after: dict[str, dict] = {}

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
        self._pending.append((self.run.pk, resource, action, side, local_id, vapi_id, label[:255], before, after,
                              diff or {}, reason, error))
        if len(self._pending) >= INSERT_BATCH_SIZE:
            self.flush()

    @contextlib.contextmanager
    def undone_on_error(self):
        """Around a transaction that records its writes: if it rolls back, so does what was recorded
        in it (counts, errors, history rows pending or flushed inside it)."""
        pending, errors = list(self._pending), len(self.errors)
        counts = {resource: Counter(c) for resource, c in self.counts.items()}
        try:
            yield
        except BaseException:
            self._pending, self.errors[errors:] = pending, []
            self.counts = defaultdict(Counter, counts)
            raise

    @contextlib.contextmanager
    def kept_on_error(self):
        """Around a transaction that records writes made elsewhere (in Vapi) and flushes their history
        with its own bookkeeping: if it rolls back, the rows flushed inside it are pending again (what
        happened in Vapi happened), written by a later flush."""
        self._flushed_in_scope = flushed = []
        try:
            yield
        except BaseException:
            self._pending = flushed + self._pending
            raise
        finally:
            self._flushed_in_scope = None

    def flush(self) -> None:
        if self._pending:
            now = timezone.now()
            with transaction.atomic():  # one commit for the lot, not one per row (SQLite autocommits each)
                insert_rows(SyncChange, _CHANGE_COLUMNS, [(*row, now) for row in self._pending])
            if self._flushed_in_scope is not None:
                self._flushed_in_scope += self._pending
            self._pending = []

    def counts_json(self, resources) -> dict:
        return {r: {k: self.counts[r][k] for k in COUNT_KEYS} for r in resources}


def error_text(exc: Exception) -> str:
    if isinstance(exc, (VapiSyncError, ValueError, LeaseLost)):
        return str(exc)
    if isinstance(exc, DatabaseError):
        return f"Database error, this record was not changed: {exc}"
    return f"{type(exc).__name__}: {exc}"
