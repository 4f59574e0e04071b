"""`vapisync.services.locks`, called directly: the lease rows (take, renew, release, hand-over after
expiry) and `Lease`, the fenced lease of one run, on an injected clock (no sleeping)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from vapisync.models import SyncLock
from vapisync.services.locks import (
    Lease,
    LeaseLost,
    lock_acquire,
    lock_holder,
    lock_release,
    lock_renew,
    lock_take,
)

from .factories import ManualClock

pytestmark = pytest.mark.django_db
TTL = timedelta(seconds=60)


def expire(key="sync"):
    """The holder stopped renewing long ago."""
    SyncLock.objects.filter(key=key).update(expires_at=timezone.now() - timedelta(seconds=1))


def test_take_is_new_then_held_by_the_same_owner_and_refused_to_another():
    assert lock_take(owner="run:1", ttl=TTL) == "new"
    assert lock_take(owner="run:1", ttl=TTL) == "held"
    assert lock_take(owner="run:2", ttl=TTL) is None
    assert lock_acquire(owner="run:2", ttl=TTL) is False
    assert lock_holder() == "run:1"
    assert SyncLock.objects.count() == 1


def test_an_expired_lease_is_taken_over_and_the_old_holder_can_no_longer_renew():
    lock_take(owner="run:1", ttl=TTL)
    expire()
    assert lock_holder() is None

    assert lock_take(owner="run:2", ttl=TTL) == "taken_over"
    assert lock_holder() == "run:2"
    assert lock_renew(owner="run:1", ttl=TTL) is False
    assert lock_renew(owner="run:2", ttl=TTL) is True


def test_renew_moves_the_expiry_forward():
    lock_take(owner="run:1", ttl=timedelta(seconds=5))
    before = SyncLock.objects.get().expires_at
    assert lock_renew(owner="run:1", ttl=timedelta(minutes=30))
    assert SyncLock.objects.get().expires_at > before + timedelta(minutes=20)


def test_release_only_frees_the_owners_lease():
    lock_take(owner="run:1", ttl=TTL)
    lock_release(owner="run:2")
    assert lock_holder() == "run:1"
    lock_release(owner="run:1")
    assert lock_holder() is None and not SyncLock.objects.exists()
    assert lock_take(owner="run:2", ttl=TTL) == "new"


def test_keys_are_independent():
    assert lock_take(key="a", owner="run:1", ttl=TTL) == "new"
    assert lock_take(key="b", owner="run:2", ttl=TTL) == "new"
    assert lock_holder(key="a") == "run:1" and lock_holder(key="b") == "run:2"


def test_a_lease_stays_alive_until_its_deadline_minus_the_margin():
    lock_take(owner="run:1", ttl=TTL)
    clock = ManualClock()
    lease = Lease(owner="run:1", ttl=TTL, margin=10, clock=clock)

    clock.now += 49.9
    assert lease.alive()
    lease.check()
    clock.now += 0.2  # 50.1 s: past TTL minus the margin, though the row itself has not expired
    assert not lease.alive()
    with pytest.raises(LeaseLost, match="not renewed in time"):
        lease.check()


def test_tick_renews_after_a_third_of_the_ttl_and_the_deadline_counts_from_the_renewal():
    lock_take(owner="run:1", ttl=TTL)
    clock = ManualClock()
    lease = Lease(owner="run:1", ttl=TTL, clock=clock)
    row_expiry = SyncLock.objects.get().expires_at

    clock.now += 19  # under a third of 60 s: no renewal, no query
    lease.tick()
    assert SyncLock.objects.get().expires_at == row_expiry

    clock.now += 1
    lease.tick()
    assert SyncLock.objects.get().expires_at > row_expiry
    clock.now += 59  # 79 s after the start, 59 s after the renewal
    assert lease.alive()
    clock.now += 1
    assert not lease.alive()


def test_a_failed_renewal_is_final():
    lock_take(owner="run:1", ttl=TTL)
    clock = ManualClock()
    lease = Lease(owner="run:1", ttl=TTL, clock=clock)
    expire()
    assert lock_take(owner="run:2", ttl=TTL) == "taken_over"

    assert lease.renew() is False
    assert not lease.alive()
    with pytest.raises(LeaseLost, match="renewal failed"):
        lease.check()
    lock_release(owner="run:2")
    lock_take(owner="run:1", ttl=TTL)
    assert lease.renew() is False  # holding the row again does not revive a lost lease


def test_check_in_transaction_sees_a_takeover_the_clock_cannot():
    from django.db import transaction

    lock_take(owner="run:1", ttl=TTL)
    lease = Lease(owner="run:1", ttl=TTL, clock=ManualClock())
    with transaction.atomic():
        lease.check_in_transaction()

    expire()
    lock_take(owner="run:2", ttl=TTL)
    assert lease.alive()  # its own clock says it still has time
    with pytest.raises(LeaseLost, match="took the sync lease over"), transaction.atomic():
        lease.check_in_transaction()
    assert not lease.alive()


def test_the_margin_is_capped_at_half_the_ttl():
    clock = ManualClock()
    lease = Lease(owner="run:1", ttl=TTL, margin=600, clock=clock)
    assert lease.margin == 30
    clock.now += 29
    assert lease.alive()
    clock.now += 1
    assert not lease.alive()
