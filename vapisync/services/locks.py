"""Leases in the database: one active sync at a time, across processes and on SQLite.

A lease expires unless its holder renews it, so a crashed process cannot block syncs
forever; an expired lease is taken over atomically by the next caller.
"""

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
    ttl = ttl or lock_ttl()
    now = timezone.now()
    try:
        with transaction.atomic():
            SyncLock.objects.create(key=key, owner=owner, expires_at=now + ttl)
        return True
    except IntegrityError:
        pass
    # Re-entrant for the same owner; otherwise only an expired lease can be taken over.
    # The conditional UPDATE is atomic, so two callers cannot both win.
    taken = (
        SyncLock.objects.filter(key=key)
        .filter(Q(owner=owner) | Q(expires_at__lt=now))
        .update(owner=owner, expires_at=now + ttl, acquired_at=now)
    )
    return taken == 1


def lock_renew(*, key: str = SYNC_LOCK, owner: str, ttl: timedelta | None = None) -> bool:
    return SyncLock.objects.filter(key=key, owner=owner).update(expires_at=timezone.now() + (ttl or lock_ttl())) == 1


def lock_release(*, key: str = SYNC_LOCK, owner: str) -> None:
    SyncLock.objects.filter(key=key, owner=owner).delete()


def lock_holder(*, key: str = SYNC_LOCK) -> str | None:
    lock = SyncLock.objects.filter(key=key, expires_at__gte=timezone.now()).first()
    return lock.owner if lock else None
