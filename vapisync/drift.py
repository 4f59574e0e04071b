"""Three-way drift detection between local (L), remote (R) and the last-sync baseline (B).

Per field: changed on one side only -> that side wins; changed on both sides to the
same value -> in sync; changed on both sides differently -> conflict, settled by the
conflict policy. No baseline (first link) makes every differing field a conflict.
"""

from dataclasses import dataclass, field
from datetime import datetime

VAPI_WINS, LOCAL_WINS, NEWEST_WINS, MANUAL = "vapi_wins", "local_wins", "newest_wins", "manual"


@dataclass
class Drift:
    to_local: dict = field(default_factory=dict)  # fields to write locally (remote value)
    to_remote: dict = field(default_factory=dict)  # fields to push (local value)
    conflicts: dict = field(default_factory=dict)  # field -> {"local", "remote", "baseline"} left unresolved
    # field -> {"local", "remote", "baseline", "kept": "local"|"remote"}: changed on both sides and
    # settled by the policy; the other side's value is discarded, and the run reports it as a conflict.
    settled: dict = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.to_local or self.to_remote or self.conflicts)


def drift_compute(
    local: dict,
    remote: dict,
    baseline: dict | None,
    *,
    policy: str,
    local_changed_at: datetime | None = None,
    remote_changed_at: datetime | None = None,
) -> Drift:
    result = Drift()
    baseline = baseline or {}
    for name in local.keys() | remote.keys():
        mine, theirs = local.get(name), remote.get(name)
        if mine == theirs:
            continue
        if name not in baseline:
            local_moved = remote_moved = True
        else:
            local_moved, remote_moved = mine != baseline[name], theirs != baseline[name]
        if local_moved and not remote_moved:
            result.to_remote[name] = mine
        elif remote_moved and not local_moved:
            result.to_local[name] = theirs
        else:
            winner = _conflict_winner(policy, local_changed_at, remote_changed_at)
            both = {"local": mine, "remote": theirs, "baseline": baseline.get(name)}
            if winner == "remote":
                result.to_local[name] = theirs
                result.settled[name] = {**both, "kept": "remote"}
            elif winner == "local":
                result.to_remote[name] = mine
                result.settled[name] = {**both, "kept": "local"}
            else:
                result.conflicts[name] = both
    return result


def _conflict_winner(policy, local_changed_at, remote_changed_at) -> str | None:
    if policy == VAPI_WINS:
        return "remote"
    if policy == LOCAL_WINS:
        return "local"
    if policy == NEWEST_WINS:
        if local_changed_at and remote_changed_at:
            return "local" if local_changed_at > remote_changed_at else "remote"
        return "remote" if remote_changed_at else "local"
    return None  # manual


def baseline_after(local: dict, remote: dict, previous: dict | None) -> dict:
    """New baseline: a field is recorded where both sides now agree; otherwise the old value stays."""
    if local == remote:  # the usual case (every record an import creates): all of it
        return dict(local)
    previous = previous or {}
    baseline = {}
    for name in local.keys() | remote.keys():
        if local.get(name) == remote.get(name):
            baseline[name] = local.get(name)
        elif name in previous:
            baseline[name] = previous[name]
    return baseline
