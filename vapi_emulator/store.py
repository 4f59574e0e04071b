"""In-memory resource storage with a createdAt index, and Vapi's timestamp format.

Listing stays O(log n + items scanned): a sorted (createdAt, insertion order) index answers the
createdAt filters by bisection, and pages are read off it newest first, so the bench's 10,000
assistants are never re-sorted per request.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:  # Vapi's servers run in UTC; JS parses a zoneless ISO string as local = UTC
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def truncate_to_millis(micros: int) -> int:
    return micros - micros % 1000


def format_timestamp(micros: int) -> str:
    """Vapi's (JavaScript's) ISO 8601 form: millisecond precision, UTC, "Z" suffix."""
    m = _EPOCH + timedelta(microseconds=micros)
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}.{m.microsecond // 1000:03d}Z"


def parse_timestamp(value: str | datetime) -> int | None:
    """Epoch microseconds of an ISO 8601 timestamp (or datetime); None if it is not one."""
    if isinstance(value, datetime):
        return to_micros(value)
    try:
        return to_micros(datetime.fromisoformat(value.strip()))
    except ValueError:
        return None


@dataclass(frozen=True)
class TimeFilter:
    """Bounds in epoch microseconds: `lower` inclusive, `upper` exclusive; None = unbounded."""

    lower: int | None = None
    upper: int | None = None

    def admits(self, micros: int) -> bool:
        return (self.lower is None or micros >= self.lower) and (self.upper is None or micros < self.upper)


class Collection:
    """Documents of one resource type, keyed by id. `docs` is the live mapping the emulator exposes.

    Stored documents are replaced, never mutated in place, so a response being serialised
    outside the emulator's lock can never see a half-applied write.
    """

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self._index: list[tuple[int, int, str]] = []  # (createdAt µs, insertion sequence, id), ascending
        self._key: dict[str, tuple[int, int, str]] = {}
        self._updated: dict[str, int] = {}
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self.docs)

    def insert(self, doc: dict[str, Any], created: int, updated: int) -> None:
        key = (created, next(self._sequence), doc["id"])
        bisect.insort(self._index, key)
        self._key[doc["id"]] = key
        self._updated[doc["id"]] = updated
        self.docs[doc["id"]] = doc

    def replace(self, doc: dict[str, Any], updated: int) -> None:
        self._updated[doc["id"]] = updated
        self.docs[doc["id"]] = doc

    def remove(self, doc_id: str) -> dict[str, Any]:
        key = self._key.pop(doc_id)
        del self._index[bisect.bisect_left(self._index, key)]
        del self._updated[doc_id]
        return self.docs.pop(doc_id)

    def updated_micros(self, doc_id: str) -> int:
        return self._updated[doc_id]

    def select(self, created: TimeFilter, updated: TimeFilter, newest_first: bool = True) -> Iterator[dict[str, Any]]:
        """Documents within both filters, ordered by createdAt; ties by insertion order (reversed when newest first)."""
        start = 0 if created.lower is None else bisect.bisect_left(self._index, (created.lower,))
        stop = len(self._index) if created.upper is None else bisect.bisect_left(self._index, (created.upper,))
        window = range(stop - 1, start - 1, -1) if newest_first else range(start, stop)
        index, updated_at, docs = self._index, self._updated, self.docs
        for position in window:
            doc_id = index[position][2]
            if updated.admits(updated_at[doc_id]):
                yield docs[doc_id]
