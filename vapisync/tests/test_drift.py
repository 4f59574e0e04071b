"""`vapisync.drift`, called directly: the three-way rule per field, each conflict policy, the new baseline."""

from datetime import UTC, datetime, timedelta

import pytest

from vapisync.drift import LOCAL_WINS, MANUAL, NEWEST_WINS, VAPI_WINS, Drift, baseline_after, drift_compute

BASE = {"name": "Support", "prompt": "Be kind."}
EARLY = datetime(2026, 1, 1, tzinfo=UTC)
LATE = EARLY + timedelta(minutes=5)


def test_equal_sides_are_clean_whatever_the_baseline():
    assert drift_compute(BASE, dict(BASE), {"name": "Old", "prompt": "Old"}, policy=MANUAL).clean
    assert drift_compute(BASE, dict(BASE), None, policy=MANUAL).clean
    assert Drift().clean


def test_a_field_changed_on_one_side_goes_to_the_other():
    local = {**BASE, "name": "Sales"}
    remote = {**BASE, "prompt": "Be brief."}

    drift = drift_compute(local, remote, BASE, policy=MANUAL)

    assert drift.to_remote == {"name": "Sales"}
    assert drift.to_local == {"prompt": "Be brief."}
    assert drift.conflicts == {} and drift.settled == {}
    assert not drift.clean


def test_both_sides_changed_to_the_same_value_is_in_sync():
    both = {**BASE, "name": "Sales"}
    assert drift_compute(both, dict(both), BASE, policy=MANUAL).clean


def test_both_sides_changed_differently_is_a_conflict_under_manual():
    drift = drift_compute({**BASE, "name": "Here"}, {**BASE, "name": "There"}, BASE, policy=MANUAL)

    assert drift.conflicts == {"name": {"local": "Here", "remote": "There", "baseline": "Support"}}
    assert drift.to_local == {} and drift.to_remote == {} and drift.settled == {}
    assert not drift.clean


@pytest.mark.parametrize("policy, side, to_local, to_remote", [
    (VAPI_WINS, "remote", {"name": "There"}, {}),
    (LOCAL_WINS, "local", {}, {"name": "Here"}),
])
def test_vapi_wins_and_local_wins_settle_the_conflict_and_report_it(policy, side, to_local, to_remote):
    drift = drift_compute({**BASE, "name": "Here"}, {**BASE, "name": "There"}, BASE, policy=policy)

    assert drift.to_local == to_local and drift.to_remote == to_remote
    assert drift.conflicts == {}
    assert drift.settled == {"name": {"local": "Here", "remote": "There", "baseline": "Support", "kept": side}}


@pytest.mark.parametrize("local_at, remote_at, kept", [
    (LATE, EARLY, "local"),
    (EARLY, LATE, "remote"),
    (LATE, LATE, "remote"),  # a tie goes to Vapi
    (None, EARLY, "remote"),  # only Vapi's time is known
    (EARLY, None, "local"),
    (None, None, "local"),
])
def test_newest_wins_compares_the_change_times(local_at, remote_at, kept):
    drift = drift_compute({"name": "Here"}, {"name": "There"}, {"name": "Base"}, policy=NEWEST_WINS,
                          local_changed_at=local_at, remote_changed_at=remote_at)

    assert drift.settled["name"]["kept"] == kept
    assert (drift.to_local if kept == "remote" else drift.to_remote) == {"name": "There" if kept == "remote" else "Here"}


def test_without_a_baseline_every_differing_field_is_a_conflict():
    drift = drift_compute({"name": "Here", "prompt": "Same"}, {"name": "There", "prompt": "Same"}, None, policy=MANUAL)

    assert drift.conflicts == {"name": {"local": "Here", "remote": "There", "baseline": None}}


def test_a_field_known_to_one_side_only_is_compared_as_missing_on_the_other():
    drift = drift_compute({"name": "A", "extra": "x"}, {"name": "A"}, {"name": "A", "extra": "x"}, policy=MANUAL)

    assert drift.to_local == {"extra": None}  # Vapi dropped it since the baseline


def test_baseline_after_records_agreement_and_keeps_the_old_value_elsewhere():
    local = {"name": "Same", "prompt": "Mine"}
    remote = {"name": "Same", "prompt": "Theirs", "voice": "Elliot"}

    assert baseline_after(local, remote, {"prompt": "Before", "name": "Old"}) == {"name": "Same", "prompt": "Before"}
    assert baseline_after(local, remote, None) == {"name": "Same"}
