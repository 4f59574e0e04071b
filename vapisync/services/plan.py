"""The plan of a run: what it read (pairs of a local record and a Vapi document) and the writes it
decided, each carrying what the plan saw so the write can check that the world is still so.

Dry runs, status previews and conflict resolutions make the same plan; only a real run applies it
(vapisync.services.engine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vapisync.drift import Drift
from vapisync.models import ChangeAction, SyncRecord

REMOTE_RECHECK_SECONDS = 1.0  # a copy of Vapi younger than this is fresh enough to PATCH from


class Unfenced:
    """The lease of a run that writes nothing (dry runs, previews): every check passes."""

    def tick(self) -> None:
        pass

    def check(self) -> None:
        pass

    def check_in_transaction(self) -> None:
        pass

    def alive(self) -> bool:
        return True


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
    uncertain: bool = False  # an earlier push may have half-happened: creates look for their marker first
    lease: Any = field(default_factory=Unfenced)
    recheck_seconds: float = REMOTE_RECHECK_SECONDS

    def selected(self, resource: str) -> bool:
        return bool(self.local_ids.get(resource) or self.vapi_ids.get(resource))


@dataclass
class Pair:
    local: Any | None
    remote: dict | None
    record: SyncRecord | None
    remote_gone: bool = False  # Vapi answered 404 / a complete listing lacks it
    drift: Drift | None = None
    local_fields: dict | None = None
    remote_fields: dict | None = None
    seen_version: int | None = None  # the local record's version when it was read


@dataclass
class FoundEqual:
    """A full sync's pairs still exactly as an earlier run found them equal (their clean marks), set
    aside before pairing (ResourceSync.set_aside_found_equal); the rest of the run never sees them."""

    vapi_ids: set[str] = field(default_factory=set)
    local_ids: set[int] = field(default_factory=set)
    other_local_ids: list[int] = field(default_factory=list)  # every other local record read
    other_record_ids: list[int] = field(default_factory=list)  # marked sync records whose mark no longer holds


class Write:
    """Kinds of planned writes."""

    CREATE = "create"
    UPDATE = "update"
    MARK_DELETED = "mark_deleted"
    REBASELINE = "rebaseline"  # both sides agree: record them as the new baseline
    STATUS = "status"  # bookkeeping only: the record's sync status and message


ACTION_OF_WRITE = {Write.CREATE: ChangeAction.CREATE, Write.UPDATE: ChangeAction.UPDATE,
                    Write.MARK_DELETED: ChangeAction.MARK_DELETED}


@dataclass(eq=False)
class PlannedWrite:
    """One write the plan decided, with what the plan saw, so that the write can check it still holds."""

    kind: str
    side: str  # Side.LOCAL or Side.VAPI
    pair: Pair
    fields: dict = field(default_factory=dict)
    status: tuple[str, str] | None = None  # (sync_status, message) for Write.STATUS
    seen_version: int | None = None
    seen_remote_at: str | None = None

    @classmethod
    def of(cls, kind: str, side: str, pair: Pair, fields: dict | None = None, status=None) -> PlannedWrite:
        return cls(kind=kind, side=side, pair=pair, fields=dict(fields or {}), status=status,
                   seen_version=pair.seen_version, seen_remote_at=(pair.remote or {}).get("updatedAt"))


@dataclass
class Plan:
    local: list[PlannedWrite] = field(default_factory=list)
    remote: list[PlannedWrite] = field(default_factory=list)
    bookkeeping: list[PlannedWrite] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return len(self.local) + len(self.remote)
