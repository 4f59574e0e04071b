"""Sync runs: create (taking the lock), execute, submit, delete in Vapi, resolve conflicts.

Every entry point (API, admin, command, task, signal) goes through these functions.
"""

from __future__ import annotations

import logging
import time
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from vapisync.conf import vapi_settings
from vapisync.exceptions import SyncAlreadyRunning, VapiError, VapiNotConfigured, VapiSyncError
from vapisync.models import ACTIVE_STATUSES, ChangeAction, Direction, Resource, RunStatus, Side, SyncRecord, SyncRun, Trigger
from vapisync.services.engine import RESOURCE_ORDER, RESOURCE_SYNCS, Recorder, RunOptions, Unfenced
from vapisync.services.locks import Lease, LeaseLost, lock_holder, lock_release, lock_take, lock_ttl

logger = logging.getLogger(__name__)

ALL_RESOURCES = [r.value for r in RESOURCE_ORDER]
HEARTBEAT_SECONDS = 2.0


def _owner(run: SyncRun) -> str:
    return f"run:{run.pk}"


def _running_run_id() -> int | None:
    holder = lock_holder()
    return int(holder.split(":", 1)[1]) if holder and holder.startswith("run:") else None


def sync_client(**overrides):
    """The Vapi client for runs; raises VapiNotConfigured without an API key."""
    from vapisync.client import VapiClient

    return VapiClient.from_settings(**overrides)


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
        from vapisync.actor import current_user

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


def _reap_interrupted_runs(*, exclude: int) -> None:
    """Runs left 'running' by a process that died: their lock has expired or passed on."""
    stale_before = timezone.now() - lock_ttl()
    holder = _running_run_id()
    for run in SyncRun.objects.filter(status__in=ACTIVE_STATUSES, dry_run=False).exclude(pk=exclude):
        last_sign = run.heartbeat_at or run.created_at
        if run.pk != holder and last_sign < stale_before:
            SyncRun.objects.filter(pk=run.pk, status__in=ACTIVE_STATUSES).update(
                status=RunStatus.FAILED, finished_at=timezone.now(),
                message="Interrupted (the process running it stopped). Run the sync again to finish the job.",
            )


class _Progress:
    """Saves progress and renews the lock at most every HEARTBEAT_SECONDS."""

    def __init__(self, run: SyncRun, listener=None, lease=None):
        self.run = run
        self.lease = lease or Unfenced()
        self.state = {}
        self.last = 0.0
        self.listener = listener  # e.g. the command's progress bar; told of every report

    def __call__(self, **kw):
        self.state.update(kw)
        if self.listener is not None:
            try:
                self.listener(dict(self.state))
            except Exception:  # noqa: BLE001 - a display problem must not stop the sync
                logger.debug("Progress listener failed", exc_info=True)
        now = time.monotonic()
        if now - self.last < HEARTBEAT_SECONDS and "phase" not in kw:
            return
        self.last = now
        SyncRun.objects.filter(pk=self.run.pk).update(progress=dict(self.state), heartbeat_at=timezone.now())
        self.lease.tick()


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


def sync_run_execute(*, run_id: int, client=None, progress=None) -> SyncRun:
    """Run a queued run. Safe to call twice: a finished run is returned as it is, and a run
    whose worker died is resumed (the engine re-reads both sides, so nothing is done twice).
    `progress`, if given, is called with the run's progress dict ({"phase", "done", "total"}) as it changes."""
    run = SyncRun.objects.get(pk=run_id)
    if run.status not in ACTIVE_STATUSES:
        return run
    taken = None if run.dry_run else lock_take(owner=_owner(run))
    if not run.dry_run and taken is None:
        return _finish(run, RunStatus.FAILED, message=f"Another sync (run {_running_run_id()}) took over; this one did not run.")
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
        if run.direction == Direction.ROLLBACK:
            from vapisync.services.rollback import rollback_apply

            rollback_apply(run=run, client=client, recorder=recorder, lease=lease)
        elif run.direction == Direction.DELETE:
            assistants_delete_apply(run=run, client=client, recorder=recorder)
        else:
            options = _options(run, lease=lease, taken_over=taken_over)
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
                _delete_tombstoned_assistants(run=run, client=client, recorder=recorder)
    except LeaseLost as exc:
        fatal = str(exc)
        recorder.errors.append({"message": fatal, "retryable": True})
    except VapiSyncError as exc:
        fatal = str(exc)
        recorder.errors.append({"message": fatal})
    except Exception as exc:  # noqa: BLE001 - the run must end recorded, whatever happened
        logger.exception("Sync run %s crashed", run.pk)
        fatal = f"Unexpected error: {type(exc).__name__}: {exc}"
        recorder.errors.append({"message": fatal})
    finally:
        recorder.flush()
        if not run.dry_run:
            lock_release(owner=_owner(run))
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
    return _finish(run, status, message=fatal or "")


def _finish(run: SyncRun, status: str, *, message: str = "") -> SyncRun:
    run.status, run.finished_at, run.message = status, timezone.now(), message
    run.progress = {**(run.progress or {}), "phase": "finished"}
    run.save()
    return run


def sync_run_start(**kwargs) -> SyncRun:
    """Create and execute a run in this process; returns the finished run."""
    client = kwargs.pop("client", None)
    progress = kwargs.pop("progress", None)
    run = sync_run_create(**kwargs)
    return sync_run_execute(run_id=run.pk, client=client, progress=progress)


def broker_configured() -> bool:
    return bool(getattr(settings, "CELERY_BROKER_URL", ""))


def sync_run_submit(**kwargs) -> SyncRun:
    """Run now when there is no worker (returns it finished); otherwise queue it for a
    worker after commit (returns it queued: poll it)."""
    if not broker_configured() or kwargs.get("dry_run"):
        return sync_run_start(**kwargs)
    from vapisync.tasks import sync_run_execute_task

    run = sync_run_create(**kwargs)
    transaction.on_commit(lambda: sync_run_execute_task.delay(run.pk))
    return run


# --- Deleting assistants in Vapi ------------------------------------------------------


def assistants_delete_remote(*, vapi_ids: list[str], trigger: str, user=None, client=None) -> SyncRun:
    """Delete in Vapi the assistants of agents deleted here (explicit request)."""
    return sync_run_start(
        direction=Direction.DELETE, resources=[Resource.ASSISTANTS], trigger=trigger, user=user,
        vapi_ids={Resource.ASSISTANTS: list(vapi_ids)}, client=client,
    )


def assistants_delete_apply(*, run: SyncRun, client, recorder: Recorder) -> None:
    vapi_ids = (run.selection.get("vapi_ids") or {}).get(Resource.ASSISTANTS) or []
    records = SyncRecord.objects.filter(resource=Resource.ASSISTANTS, vapi_id__in=vapi_ids)
    _delete_assistants(records=records, client=client, recorder=recorder, explicit_ids=vapi_ids)


def _delete_tombstoned_assistants(*, run, client, recorder) -> None:
    records = SyncRecord.objects.filter(
        resource=Resource.ASSISTANTS, local_deleted_at__isnull=False, remote_deleted_at__isnull=True
    )
    _delete_assistants(records=records, client=client, recorder=recorder, explicit_ids=[])


def _delete_assistants(*, records, client, recorder: Recorder, explicit_ids: list[str]) -> None:
    from agents.models import Agent

    by_id = {r.vapi_id: r for r in records}
    for vapi_id in explicit_ids:
        if vapi_id not in by_id or by_id[vapi_id].local_deleted_at is None:
            if Agent.objects.filter(vapi_assistant_id=vapi_id).exists():
                recorder.add(Resource.ASSISTANTS, ChangeAction.ERROR, vapi_id=vapi_id,
                             error="Its agent still exists here; delete the agent first, then delete it in Vapi.")
                by_id.pop(vapi_id, None)
    if not by_id:
        return
    # Never delete an assistant that still answers calls on a Vapi number.
    routed = {}
    for phone in client.iter_phone_numbers():
        if phone.get("assistantId"):
            routed[phone["assistantId"]] = phone.get("number") or phone.get("sipUri") or phone["id"]
    now = timezone.now()
    for vapi_id, record in by_id.items():
        label = (record.remote or {}).get("name") or vapi_id
        if vapi_id in routed:
            recorder.add(Resource.ASSISTANTS, ChangeAction.SKIP, vapi_id=vapi_id, local_id=record.local_id, label=label,
                         reason=f"Not deleted: Vapi number {routed[vapi_id]} still routes calls to it.")
            continue
        if recorder.dry_run:
            recorder.add(Resource.ASSISTANTS, ChangeAction.DELETE, side=Side.VAPI, vapi_id=vapi_id, label=label)
            continue
        try:
            before = client.get_assistant(vapi_id)
            client.delete_assistant(vapi_id)
        except VapiError as exc:
            from vapisync.exceptions import VapiNotFound

            if isinstance(exc, VapiNotFound):
                record.remote_deleted_at = now
                record.save(update_fields=["remote_deleted_at"])
                recorder.add(Resource.ASSISTANTS, ChangeAction.SKIP, vapi_id=vapi_id, label=label,
                             reason="Already deleted in Vapi.")
            else:
                recorder.add(Resource.ASSISTANTS, ChangeAction.ERROR, side=Side.VAPI, vapi_id=vapi_id, label=label,
                             error=str(exc))
            continue
        record.remote_deleted_at, record.remote = now, before
        record.save(update_fields=["remote_deleted_at", "remote"])
        recorder.add(Resource.ASSISTANTS, ChangeAction.DELETE, side=Side.VAPI, vapi_id=vapi_id, local_id=record.local_id,
                     label=label, before={"remote": before}, after=None)


# --- Conflicts --------------------------------------------------------------------------


def conflict_resolve(*, resource: str, local_id: int, keep: str, trigger: str, user=None, client=None) -> SyncRun:
    """Settle one record's conflict by keeping Vapi's version ("vapi") or ours ("local")."""
    if keep not in ("vapi", "local"):
        raise ValueError("keep must be 'vapi' or 'local'")
    return sync_run_start(
        direction=Direction.RESOLVE, resources=[resource], trigger=trigger, user=user,
        local_ids={resource: [local_id]}, policy="vapi_wins" if keep == "vapi" else "local_wins", client=client,
    )
