"""The run lifecycle: create (taking the sync lock), execute, finish, submit, reap.

Every entry point (API, admin, command, task, receiver) starts runs through these functions. A run
of the engine's directions (import, export, full, resolve) runs the resource syncs; the other kinds
(a deletion in Vapi, a rollback) are applied by the modules that own them, registered with
`run_apply_register` (wired in `vapisync.apps`), so this module never imports what starts runs.

When a run finishes it refreshes the stored status (`vapisync.services.status`) and, once it has
committed, settles the outbox (`vapisync.services.outbox.run_finished`); the outbox's own runs pass
`follow_up=False`: they settle themselves and must not start another sweep.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from vapisync.actor import current_user
from vapisync.conf import vapi_settings
from vapisync.exceptions import SyncAlreadyRunning, VapiError, VapiNotConfigured, VapiSyncError
from vapisync.models import ACTIVE_STATUSES, Direction, Resource, RunStatus, SyncRun, Trigger
from vapisync.services import dispatch, outbox
from vapisync.services.clients import sync_client
from vapisync.services.history import Recorder
from vapisync.services.locks import Lease, LeaseLost, lock_holder, lock_release, lock_take, lock_ttl
from vapisync.services.plan import RunOptions, Unfenced
from vapisync.services.resource_syncs import RESOURCE_ORDER, RESOURCE_SYNCS
from vapisync.services.status import status_snapshot_after_run, status_snapshot_store, status_snapshot_wanted_after

logger = logging.getLogger(__name__)

ALL_RESOURCES = [r.value for r in RESOURCE_ORDER]
HEARTBEAT_SECONDS = 1.0


def _owner(run: SyncRun) -> str:
    return f"run:{run.pk}"


def _running_run_id() -> int | None:
    holder = lock_holder()
    return int(holder.split(":", 1)[1]) if holder and holder.startswith("run:") else None


# apply(*, run, client, recorder, lease) for the run kinds that are not the engine's sync.
RunApply = Callable[..., None]
_APPLY: dict[str, RunApply] = {}
_AFTER_PUSH: list[RunApply] = []  # steps a push run ends with when VAPI_SYNC_DELETE_REMOTE is on


def run_apply_register(direction: str, apply: RunApply) -> None:
    """How runs of `direction` (delete, rollback) are applied."""
    _APPLY[direction] = apply


def push_run_step_register(apply: RunApply) -> None:
    """A step every push run ends with when deletions reach Vapi (deleting what was deleted here)."""
    if apply not in _AFTER_PUSH:
        _AFTER_PUSH.append(apply)


def sync_run_create(
    *,
    direction: str,
    resources: list[str] | None = None,
    trigger: str,
    user=None,
    dry_run: bool = False,
    delta: bool = False,
    local_ids: dict | None = None,
    vapi_ids: dict | None = None,
    policy: str | None = None,
    rollback_of: SyncRun | None = None,
) -> SyncRun:
    """Record a queued run. A real run takes the sync lock now, so a second one is refused at once."""
    if not vapi_settings().configured:
        raise VapiNotConfigured()
    resources = [r for r in ALL_RESOURCES if r in (resources or ALL_RESOURCES)]
    selection = {
        "local_ids": {r: sorted(set(ids)) for r, ids in (local_ids or {}).items() if ids},
        "vapi_ids": {r: sorted(set(ids)) for r, ids in (vapi_ids or {}).items() if ids},
    }
    if policy:
        selection["policy"] = policy
    if user is None:  # a run caused indirectly (a save's push): the user of the request or task behind it
        user = current_user()
    user = user if getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        run = SyncRun.objects.create(
            direction=direction, resources=resources, trigger=trigger, user=user, dry_run=dry_run,
            delta=delta, selection=selection, rollback_of=rollback_of,
            counts={r: {} for r in resources},
        )
        taken = None if dry_run else lock_take(owner=_owner(run))
        if not dry_run and taken is None:
            holder = _running_run_id()
            transaction.set_rollback(True)  # no trace of the refused run
            raise SyncAlreadyRunning(holder)
        if taken == "taken_over":  # the previous holder's lease expired mid-run: it may have half-written
            SyncRun.objects.filter(pk=run.pk).update(progress={"lease": "taken_over"})
    _reap_interrupted_runs(exclude=run.pk)
    return run


INTERRUPTED_MESSAGE = (
    "Interrupted: the process running it stopped ({why}). Nothing is lost: run the sync again and it "
    "picks up the work (both sides are read again, so nothing is done twice)."
)


def runs_reap_interrupted() -> int:
    """Mark `interrupted` the runs left queued or running by a process that died; cheap enough for
    every status read and page load (one query when nothing is active). Returns how many."""
    if not SyncRun.objects.filter(status__in=ACTIVE_STATUSES).exists():
        return 0
    return _reap_interrupted_runs(exclude=None)


def sync_run_interrupt(*, run_id: int, why: str) -> bool:
    """Record that the process running `run_id` is stopping it, and free its lease for the next run."""
    stopped = SyncRun.objects.filter(pk=run_id, status__in=ACTIVE_STATUSES).update(
        status=RunStatus.INTERRUPTED, finished_at=timezone.now(), message=INTERRUPTED_MESSAGE.format(why=why),
    )
    if stopped:
        lock_release(owner=f"run:{run_id}")
        logger.warning("Sync run %s interrupted: %s", run_id, why)
    return bool(stopped)


def _reap_interrupted_runs(*, exclude: int | None) -> int:
    """A real run is dead when it no longer holds the sync lease (expired: no heartbeat within
    VAPI_SYNC_LOCK_TTL, or passed on); a dry run, which holds no lease, when its heartbeat is as old."""
    now = timezone.now()
    stale_before = now - lock_ttl()
    holder = _running_run_id()
    reaped = 0
    for run in SyncRun.objects.filter(status__in=ACTIVE_STATUSES).exclude(pk=exclude):
        last_sign = run.heartbeat_at or run.created_at
        if run.dry_run:
            dead, why = last_sign < stale_before, "no sign of life for longer than the lease"
        else:
            # Both: between releasing its lease and saving its outcome a live run holds no lease.
            dead = run.pk != holder and last_sign < stale_before
            why = "its lease expired" if holder is None else f"run {holder} holds the lease now"
        if not dead:
            continue
        reaped += SyncRun.objects.filter(pk=run.pk, status__in=ACTIVE_STATUSES).update(
            status=RunStatus.INTERRUPTED, finished_at=now,
            progress={**(run.progress or {}), "phase": "interrupted"},
            message=INTERRUPTED_MESSAGE.format(why=why),
        )
        logger.warning("Sync run %s marked interrupted: %s", run.pk, why)
    return reaped


class _Progress:
    """The run's progress, reported by the engine as
    `progress(phase=..., total=records needing work, checked=records compared, done=records written)`.

    Every report goes to the listener (the command's progress bar); the run's row is updated at most
    every HEARTBEAT_SECONDS and on each new phase, with the derived `percent` and `eta_seconds`
    (from the pace since the phase began) that the page and the API show. Renews the lease too."""

    def __init__(self, run: SyncRun, listener=None, lease=None):
        self.run = run
        self.lease = lease or Unfenced()
        self.state = {}
        self.last = 0.0
        self.listener = listener  # e.g. the command's progress bar; told of every report
        self._phase_started = time.monotonic()
        self._phase_done = 0

    def __call__(self, **kw):
        now = time.monotonic()
        new_phase = "phase" in kw and kw["phase"] != self.state.get("phase")
        if new_phase:
            # A new phase brings its own figures; the previous phase's must not show as its progress.
            for key in ("total", "checked", "done", "percent", "eta_seconds"):
                self.state.pop(key, None)
            self._phase_started, self._phase_done = now, kw.get("done") or 0
            self.state["phase_started_at"] = timezone.now().isoformat()
        self.state.update({k: v for k, v in kw.items() if v is not None})
        self._derive(now)
        if self.listener is not None:
            try:
                self.listener(dict(self.state))
            except Exception:  # a display problem must not stop the sync
                logger.debug("Progress listener failed", exc_info=True)
        if now - self.last < HEARTBEAT_SECONDS and "phase" not in kw:
            return
        self.last = now
        SyncRun.objects.filter(pk=self.run.pk).update(progress=dict(self.state), heartbeat_at=timezone.now())
        self.lease.tick()

    def _derive(self, now: float) -> None:
        total, done = self.state.get("total"), self.state.get("done")
        if not total or done is None:
            self.state.pop("percent", None)
            self.state.pop("eta_seconds", None)
            return
        done = min(done, total)
        self.state["percent"] = round(100.0 * done / total, 1)
        written = done - min(self._phase_done, done)
        elapsed = now - self._phase_started
        if done >= total:
            self.state["eta_seconds"] = 0
        elif written > 0 and elapsed > 0:
            self.state["eta_seconds"] = round((total - done) * elapsed / written)
        else:
            self.state.pop("eta_seconds", None)


PUSH_DIRECTIONS = (Direction.EXPORT, Direction.FULL, Direction.RESOLVE, Direction.ROLLBACK)
UNCERTAIN_WINDOW_DAYS = 7


def _uncertain(run: SyncRun, *, taken_over: bool) -> bool:
    """Whether an earlier push may have half-happened (so creates must look for their marker first):
    the lease was taken over from a holder that stopped renewing it, or a recent push run did not
    finish cleanly."""
    if taken_over:
        return True
    since = timezone.now() - timezone.timedelta(days=UNCERTAIN_WINDOW_DAYS)
    unfinished = SyncRun.objects.filter(dry_run=False, direction__in=PUSH_DIRECTIONS, created_at__gte=since).exclude(
        pk=run.pk).exclude(status=RunStatus.SUCCEEDED)
    return unfinished.exists()


def _options(run: SyncRun, *, lease=None, taken_over: bool = False) -> RunOptions:
    conf = vapi_settings()
    pull = run.direction in (Direction.IMPORT, Direction.FULL, Direction.RESOLVE)
    push = run.direction in (Direction.EXPORT, Direction.FULL, Direction.RESOLVE)
    return RunOptions(
        pull=pull, push=push, dry_run=run.dry_run,
        policy=run.selection.get("policy") or conf.conflict_policy,
        delta=run.delta and run.direction == Direction.IMPORT,
        delete_remote=conf.delete_remote and push,
        # Only a person's explicit push re-creates what was deleted in Vapi, never automation.
        recreate_deleted=run.trigger in (Trigger.API, Trigger.ADMIN, Trigger.CLI),
        local_ids=run.selection.get("local_ids") or {},
        vapi_ids=run.selection.get("vapi_ids") or {},
        uncertain=not run.dry_run and _uncertain(run, taken_over=taken_over),
        lease=lease or Unfenced(),
        recheck_seconds=conf.remote_recheck_seconds,
    )


def sync_run_execute(*, run_id: int, client=None, progress=None, follow_up: bool = True) -> SyncRun:
    """Run a queued run. Safe to call twice: a finished run is returned as it is, and a run
    whose worker died is resumed (the engine re-reads both sides, so nothing is done twice).
    `progress`, if given, is called with the run's progress dict ({"phase", "done", "total"}) as it changes.
    `follow_up=False` for the outbox's own runs (see the module docstring)."""
    run = SyncRun.objects.get(pk=run_id)
    if run.status not in ACTIVE_STATUSES:
        return run
    taken = None if run.dry_run else lock_take(owner=_owner(run))
    if not run.dry_run and taken is None:
        return _finish(run, RunStatus.FAILED, message=f"Another sync (run {_running_run_id()}) took over; this one did not run.",
                       follow_up=follow_up)
    taken_over = taken == "taken_over" or (run.progress or {}).get("lease") == "taken_over"
    run.status, run.started_at, run.heartbeat_at = RunStatus.RUNNING, run.started_at or timezone.now(), timezone.now()
    run.save(update_fields=["status", "started_at", "heartbeat_at"])
    recorder = Recorder(run, dry_run=run.dry_run)
    lease = Unfenced()
    fatal = None
    try:
        client = client or sync_client()
        if not run.dry_run:
            # Stop writing one request's time before the lease could expire (a request in flight may land late).
            margin = sum(getattr(client, "timeout", (5.0, 30.0)))
            lease = Lease(owner=_owner(run), margin=margin)
        progress = _Progress(run, listener=progress, lease=lease)
        if run.direction in _APPLY:
            _APPLY[run.direction](run=run, client=client, recorder=recorder, lease=lease)
        else:
            options = _options(run, lease=lease, taken_over=taken_over)
            fatal = _sync_apply(run=run, client=client, recorder=recorder, lease=lease, options=options, progress=progress)
    except LeaseLost as exc:
        fatal = str(exc)
        recorder.errors.append({"message": fatal, "retryable": True})
    except VapiSyncError as exc:
        fatal = str(exc)
        recorder.errors.append({"message": fatal})
    except Exception as exc:  # the run must end recorded, whatever happened
        logger.exception("Sync run %s crashed", run.pk)
        fatal = f"Unexpected error: {type(exc).__name__}: {exc}"
        recorder.errors.append({"message": fatal})
    finally:
        recorder.flush()
        if not run.dry_run:
            lock_release(owner=_owner(run))
    if isinstance(progress, _Progress) and progress.state.get("remote_window_seconds") is not None:
        saved = SyncRun.objects.filter(pk=run.pk).values_list("progress", flat=True).first() or {}
        SyncRun.objects.filter(pk=run.pk).update(
            progress={**saved, "remote_window_seconds": progress.state["remote_window_seconds"]})
    run.counts = recorder.counts_json(run.resources or ALL_RESOURCES)
    run.errors = recorder.errors[:1000]
    run.plan = recorder.plan
    item_failures = sum(c.get("failed", 0) for c in run.counts.values())
    done = sum(c.get(k, 0) for c in run.counts.values() for k in ("created", "updated", "deleted", "unchanged"))
    if fatal and not done:
        status = RunStatus.FAILED
    elif fatal or item_failures:
        status = RunStatus.PARTIAL
    else:
        status = RunStatus.SUCCEEDED
    return _finish(run, status, message=fatal or "", follow_up=follow_up, status_after=recorder.status_after)


def _sync_apply(*, run: SyncRun, client, recorder: Recorder, lease, options: RunOptions, progress) -> str | None:
    """A run of the engine's directions: each resource in order. Returns the first error that made
    Vapi unusable for a resource, if any (the others still ran)."""
    fatal = None
    for resource in RESOURCE_ORDER:
        if resource not in run.resources:
            continue
        try:
            RESOURCE_SYNCS[resource](client=client, options=options, recorder=recorder, progress=progress).run()
        except VapiError as exc:
            # Vapi unusable for this resource (auth, outage): record it, try the next one.
            recorder.errors.append({"resource": resource, "message": str(exc), "retryable": exc.retryable})
            fatal = fatal or str(exc)
    if options.delete_remote and Resource.ASSISTANTS in run.resources and not run.dry_run:
        for step in _AFTER_PUSH:
            step(run=run, client=client, recorder=recorder, lease=lease)
    return fatal


def _finish(run: SyncRun, status: str, *, message: str = "", follow_up: bool = True,
            status_after: dict | None = None) -> SyncRun:
    """`status_after`: what the engine says a full sync would still do, per resource it listed whole."""
    run.status, run.message = status, message
    # The row, not this object: progress reports update the row only.
    saved = SyncRun.objects.filter(pk=run.pk).values_list("progress", flat=True).first()
    progress = {k: v for k, v in (saved or run.progress or {}).items() if k != "eta_seconds"}
    if progress.get("total") and status != RunStatus.FAILED:
        progress.update(done=progress["total"], percent=100.0)  # the bar ends full, whatever the last report said
    if status_after and set(status_after) >= set(run.resources or ()) and not run.dry_run:
        # The run listed all of Vapi itself: store what it saw instead of listing Vapi again.
        status_snapshot_store(resources=status_after, source="run", run=run)
    elif status_snapshot_wanted_after(run):
        # Before the run shows as finished, so the page that then reloads shows the status it left.
        SyncRun.objects.filter(pk=run.pk).update(progress={**progress, "phase": "comparing with Vapi"})
        status_snapshot_after_run(run)
    run.finished_at = timezone.now()
    run.progress = {**progress, "phase": "finished"}
    run.save()
    if follow_up and not run.dry_run:
        transaction.on_commit(functools.partial(outbox.run_finished, run), robust=True)
    return run


def sync_run_start(*, client=None, progress=None, follow_up: bool = True, **kwargs) -> SyncRun:
    """Create and execute a run in this process; returns the finished run."""
    run = sync_run_create(**kwargs)
    return sync_run_execute(run_id=run.pk, client=client, progress=progress, follow_up=follow_up)


def sync_run_submit(**kwargs) -> SyncRun:
    """Start a run from a request without making the request wait for it: queued for the worker
    after commit when there is a broker, else executed by a background thread of this process
    (vapisync.services.dispatch decides). Returns the run queued: poll its row.

    Dry runs change nothing and are answered inline (returned finished), with the interactive
    budget so a slow or unreachable Vapi fails them quickly."""
    if kwargs.get("dry_run"):
        if "client" not in kwargs and vapi_settings().configured:
            kwargs["client"] = sync_client(interactive=True)
        return sync_run_start(**kwargs)
    kwargs.pop("progress", None)
    client = kwargs.pop("client", None)
    run = sync_run_create(**kwargs)
    run_id = run.pk
    dispatch.run_submit(
        run_id, here=client is not None,
        execute_here=lambda: sync_run_execute(run_id=run_id, client=client),
        interrupt=lambda: sync_run_interrupt(run_id=run_id, why="a restart or a deploy stopped the web process"),
    )
    return run
