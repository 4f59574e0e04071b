"""Leases in the database: one active sync at a time, across processes and on SQLite.

A lease expires unless its holder renews it, so a crashed process cannot block syncs
forever; an expired lease is taken over atomically by the next caller.
"""

import time
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from vapisync.models import SyncLock

SYNC_LOCK = "sync"
DEFAULT_TTL = timedelta(minutes=10)


def lock_ttl() -> timedelta:
    """How long a lease outlives its last renewal: VAPI_SYNC_LOCK_TTL seconds, read at call time.

    It bounds how long a worker killed mid-run blocks the next sync."""
    return timedelta(seconds=float(getattr(settings, "VAPI_SYNC_LOCK_TTL", DEFAULT_TTL.total_seconds())))


def lock_acquire(*, key: str = SYNC_LOCK, owner: str, ttl: timedelta | None = None) -> bool:
    return lock_take(key=key, owner=owner, ttl=ttl) is not None


def lock_take(*, key: str = SYNC_LOCK, owner: str, ttl: timedelta | None = None) -> str | None:
    """Take the lease: "new", "held" (already ours), "taken_over" (from a holder whose lease
    expired: what it was doing may have half-happened) or None (someone else holds it)."""
    ttl = ttl or lock_ttl()
    now = timezone.now()
    try:
        with transaction.atomic():
            SyncLock.objects.create(key=key, owner=owner, expires_at=now + ttl)
        return "new"
    except IntegrityError:
        pass
    previous = SyncLock.objects.filter(key=key).values_list("owner", flat=True).first()
    # Re-entrant for the same owner; otherwise only an expired lease can be taken over.
    # The conditional UPDATE is atomic, so two callers cannot both win.
    taken = (
        SyncLock.objects.filter(key=key)
        .filter(Q(owner=owner) | Q(expires_at__lt=now))
        .update(owner=owner, expires_at=now + ttl, acquired_at=now)
    )
    if taken != 1:
        return None
    return "held" if previous == owner else "taken_over"


def lock_renew(*, key: str = SYNC_LOCK, owner: str, ttl: timedelta | None = None) -> bool:
    return SyncLock.objects.filter(key=key, owner=owner).update(expires_at=timezone.now() + (ttl or lock_ttl())) == 1


def lock_release(*, key: str = SYNC_LOCK, owner: str) -> None:
    SyncLock.objects.filter(key=key, owner=owner).delete()


def lock_holder(*, key: str = SYNC_LOCK) -> str | None:
    lock = SyncLock.objects.filter(key=key, expires_at__gte=timezone.now()).first()
    return lock.owner if lock else None


class LeaseLost(Exception):
    """The run no longer holds the sync lease: it must not write anything more."""

    def __init__(self, message: str = "The sync lease was lost (renewal failed or another run took over); "
                                      "stopped before writing more. Run the sync again to finish."):
        super().__init__(message)


class Lease:
    """The sync lease held by one run, with fencing.

    `tick()` renews it on a clock (every third of the TTL), from the thread that runs the sync; a
    failed renewal is final. `alive()` is also false once the local deadline passes without a
    renewal: the deadline is the TTL minus a margin for one request in flight, measured from
    *before* the renewal was sent, so the run stops writing before anyone can take the lease over.
    Client worker threads call `check()` before each Vapi write (no database access); database
    writes call `check_in_transaction()` inside their transaction, which locks the lease row, so a
    run that lost the lease cannot commit a write after another run took it.
    """

    def __init__(self, *, owner: str, key: str = SYNC_LOCK, ttl: timedelta | None = None, margin: float = 0.0,
                 clock=time.monotonic):
        self.owner, self.key = owner, key
        self.ttl = (ttl or lock_ttl()).total_seconds()
        self.margin = min(max(margin, 0.0), self.ttl / 2)
        self.clock = clock
        self.lost_reason: str | None = None
        self._renewed_at = clock()
        self._valid_until = self._renewed_at + self.ttl - self.margin

    def renew(self) -> bool:
        if self.lost_reason:
            return False
        sent_at = self.clock()
        if lock_renew(key=self.key, owner=self.owner, ttl=timedelta(seconds=self.ttl)):
            self._renewed_at, self._valid_until = sent_at, sent_at + self.ttl - self.margin
            return True
        self.lose("its renewal failed: another run holds the sync lease now")
        return False

    def tick(self) -> None:
        """Renew when a third of the TTL has passed since the last renewal."""
        if not self.lost_reason and self.clock() - self._renewed_at >= self.ttl / 3:
            self.renew()

    def lose(self, reason: str) -> None:
        self.lost_reason = self.lost_reason or reason

    def alive(self) -> bool:
        return self.lost_reason is None and self.clock() < self._valid_until

    def check(self) -> None:
        if not self.alive():
            self.lose(self.lost_reason or "it was not renewed in time")
            raise LeaseLost(f"The sync lease was lost ({self.lost_reason}); stopped before writing more. "
                            "Run the sync again to finish.")

    def check_in_transaction(self) -> None:
        """Inside a write transaction: lock the lease row and make sure it is still ours."""
        self.check()
        held = (SyncLock.objects.select_for_update()
                .filter(key=self.key, owner=self.owner, expires_at__gt=timezone.now()).exists())
        if not held:
            self.lose("another run took the sync lease over")
            self.check()
