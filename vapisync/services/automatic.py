"""Automatic sync: the outbox of records waiting for Vapi, what drains it, the scheduled runs and
the webhook inbox. Receivers (vapisync.signals), tasks (vapisync.tasks), the webhook view
(vapisync.api.webhook) and the `setup_periodic_tasks` command are thin wrappers over these functions.

The outbox
  A person's save of an agent, or of a linked phone number's name or agent, marks the record
  `pending` in the same statement (`sync_status` is the durable outbox entry), and after commit a
  push task drains the outbox: one selective export run (trigger "signal") of the *current* state
  of every pending record. Ten rapid saves therefore end in pushes of the latest state, a task that
  finds nothing pending does nothing, and pushing an already pushed version changes nothing (the
  engine compares with the baseline). Writes made by the sync itself (`sync_writes()`) never mark.

Nothing lost
  - A push that fails with a retryable error (Vapi down, rate limited) leaves the record `pending`
    with the reason in `sync_error`; a worker retries the task with backoff and jitter, the
    reconciler every minute. A payload Vapi rejects leaves it `error` for a person to fix.
  - A record the export could not settle because Vapi changed too (Vapi-only changes, or a conflict
    the policy gives to Vapi) is refreshed by a follow-up selective import in the same task.
  - A save that lands while a run is busy with the same record can have its marker overwritten by
    the run's bookkeeping: after every run, records saved since it started whose content no longer
    matches their baseline are marked pending again.
  - If the sync lock is busy, a worker retries the task later; in-process, the records stay pending
    and the run that holds the lock sweeps the outbox when it finishes (every run does).
  - A worker killed between Vapi's answer to a create and the database write leaves an agent without
    its Vapi id; before creating it again the push looks for the copy carrying its marker.
  - The reconciler (`pending_reconcile`, every minute under beat) pushes whatever is still pending
    after `VAPI_SYNC_RECONCILE_AFTER` seconds and processes webhook events left unprocessed.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import DataError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from agents.models import Agent
from globalvoice.tracking import SyncStatus
from phonenumbers_app.models import PhoneNumber
from vapisync import mapping
from vapisync.conf import vapi_settings
from vapisync.context import sync_writes
from vapisync.exceptions import SyncAlreadyRunning, VapiError
from vapisync.models import Direction, Resource, RunStatus, SyncRecord, SyncRun, Trigger, WebhookEvent
from vapisync.services.plan import RunOptions
from vapisync.services.resource_syncs import RESOURCE_ORDER, RESOURCE_SYNCS
from vapisync.services.runs import broker_configured, sync_client, sync_run_create, sync_run_execute, sync_run_start

logger = logging.getLogger(__name__)

MODELS = {Resource.ASSISTANTS: Agent, Resource.PHONE_NUMBERS: PhoneNumber}
VAPI_ID_FIELDS = {Resource.ASSISTANTS: "vapi_assistant_id", Resource.PHONE_NUMBERS: "vapi_phone_id"}
# What a person can change that Vapi takes: the mapped agent fields; a number's name and agent.
TRACKED_FIELDS = {Resource.ASSISTANTS: mapping.ASSISTANT_FIELDS, Resource.PHONE_NUMBERS: ("name", "agent_id")}
# Columns only the sync writes (a person's save keeps the stored values).
SYNC_COLUMNS = {
    resource: (vapi_id_field, "sync_status", "sync_error", "last_synced_at")
    for resource, vapi_id_field in VAPI_ID_FIELDS.items()
}
PUSH_DIRECTIONS = (Direction.EXPORT, Direction.FULL, Direction.RESOLVE)
MAX_BATCH = 1000  # records per automatic run; the rest go in the next round
MAX_ROUNDS = 5  # runs per task; whatever is left waits for the next task, sweep or reconcile
CHANGED_DURING_RUN_MARGIN = timedelta(minutes=2)  # a save's updated_at is taken before its commit
WEBHOOK_EVENT_MAX_AGE = timedelta(hours=24)  # unprocessed events older than this are given up
MAX_ERROR_LENGTH = 2000


class RetryLater(Exception):
    """The work is not done but may succeed later (sync lock busy, Vapi unavailable).

    Tasks retry on it with backoff and jitter; in-process it is not raised: what is left stays in the
    outbox (pending records, unprocessed webhook events) for the next sweep or the reconciler."""


@dataclass
class Outcome:
    """What an automatic operation did, and whether what is left is worth retrying soon."""

    runs: list[SyncRun] = field(default_factory=list)
    lock_busy: bool = False
    retryable: list[str] = field(default_factory=list)  # messages of failures that may pass later

    @property
    def retry_reason(self) -> str | None:
        if self.lock_busy:
            return "another sync run holds the lock"
        if self.retryable:
            return f"{len(self.retryable)} retryable failure(s), e.g. {self.retryable[0]}"
        return None

    def merge(self, other: Outcome) -> Outcome:
        self.runs += other.runs
        self.lock_busy = self.lock_busy or other.lock_busy
        self.retryable += other.retryable
        return self


@dataclass(frozen=True)
class AutomaticSettings:
    reconcile_after: float  # seconds a pending record or webhook event waits before the reconciler takes it
    webhook_debounce: float  # seconds a worker waits before refreshing, so a burst of events makes one run


def automatic_settings() -> AutomaticSettings:
    """Read at call time (tests and the admin's settings may change them)."""
    return AutomaticSettings(
        reconcile_after=float(getattr(settings, "VAPI_SYNC_RECONCILE_AFTER", 60)),
        webhook_debounce=float(getattr(settings, "VAPI_WEBHOOK_DEBOUNCE", 2)),
    )


def in_process() -> bool:
    """True without a broker: tasks run in this process right after commit (CELERY_TASK_ALWAYS_EAGER)."""
    return not broker_configured()


# --- Context: work done by these services ------------------------------------------------------

_automatic_work = contextvars.ContextVar("vapisync_automatic_work", default=False)


@contextlib.contextmanager
def automatic_work():
    """Runs started in here settle the outbox themselves: the after-run sweep receiver skips them."""
    token = _automatic_work.set(True)
    try:
        yield
    finally:
        _automatic_work.reset(token)


def is_automatic_work() -> bool:
    return _automatic_work.get()


_not_configured_logged = False


def _configured() -> bool:
    """Whether Vapi is configured; says once per process that automatic sync is idle if not."""
    global _not_configured_logged
    if vapi_settings().configured:
        return True
    if not _not_configured_logged:
        _not_configured_logged = True
        logger.info("Automatic Vapi sync is idle: VAPI_API_KEY is not set. Changes stay pending until it is.")
    return False


def _client():
    """In-process pushes run inside a person's request: fail fast and leave the rest to a later sweep."""
    if in_process():
        conf = vapi_settings()
        return sync_client(max_retries=min(conf.max_retries, 1), max_retry_wait=min(conf.max_retry_wait, 2.0))
    return sync_client()


# --- Marking: called by the save receivers ------------------------------------------------------


def pending_prepare(*, resource: str, instance, update_fields) -> None:
    """Before a person's save: decide whether it must reach Vapi and, if so, write the outbox
    marker in the same statement. Remembers the decision on the instance for `pending_commit`.

    The sync owns the bookkeeping columns (Vapi id, status, error, last sync): a person's save, maybe
    of an instance loaded before a push linked it, keeps what is stored instead of writing it back."""
    tracked = TRACKED_FIELDS[resource]
    instance._vapisync_push = False
    if update_fields is not None and not set(update_fields) & {*tracked, "agent", *SYNC_COLUMNS[resource]}:
        return
    previous = None
    if instance.pk is not None and not instance._state.adding:
        previous = MODELS[resource].objects.filter(pk=instance.pk).values(*tracked, *SYNC_COLUMNS[resource]).first()
    if previous is None:  # a new record
        # Numbers are bought in Vapi's dashboard: a local one is linked by an import, never pushed.
        # A caller that creates a record with a status of its own (fixtures, scripts) knows what it does.
        instance._vapisync_push = resource == Resource.ASSISTANTS and instance.sync_status == SyncStatus.LOCAL_ONLY
    else:
        for name in SYNC_COLUMNS[resource]:
            setattr(instance, name, previous[name])
        instance._vapisync_push = _change_wants_push(resource=resource, instance=instance, previous=previous)
    if instance._vapisync_push and update_fields is None:
        instance.sync_status, instance.sync_error = SyncStatus.PENDING, ""


def pending_commit(*, resource: str, instance, update_fields) -> None:
    """After a person's save: complete the marker if the statement could not carry it, and ask for
    a push once the transaction commits (nothing is sent if it rolls back)."""
    if not instance.__dict__.pop("_vapisync_push", False):
        return
    if update_fields is not None:  # save(update_fields=...) did not write the status columns
        MODELS[resource].objects.filter(pk=instance.pk).update(sync_status=SyncStatus.PENDING, sync_error="")
        instance.sync_status, instance.sync_error = SyncStatus.PENDING, ""
    _on_commit_collect("push", resource, instance.pk)


def _change_wants_push(*, resource: str, instance, previous: dict) -> bool:
    status = previous["sync_status"]
    if status == SyncStatus.DELETED_REMOTELY:
        return False  # stays so until a person pushes it explicitly (re-creating it in Vapi)
    if resource == Resource.PHONE_NUMBERS and not previous["vapi_phone_id"]:
        return False
    if any(getattr(instance, name) != previous[name] for name in TRACKED_FIELDS[resource]):
        return True
    # Saving unchanged is a natural "try again" for a record that never reached Vapi or failed.
    return status in (SyncStatus.LOCAL_ONLY, SyncStatus.ERROR, SyncStatus.PENDING)


def assistant_delete_schedule(*, vapi_id: str) -> None:
    """A person deleted an agent linked to Vapi: with VAPI_SYNC_DELETE_REMOTE on, delete its
    assistant after commit (the tombstone receiver has recorded the link)."""
    if vapi_settings().delete_remote:
        _on_commit_collect("delete", Resource.ASSISTANTS, vapi_id)


def _on_commit_collect(kind: str, resource: str, item) -> None:
    """One task per transaction and kind, carrying every id the transaction touched."""
    connection = transaction.get_connection()
    if connection.in_atomic_block:
        for _, func, _ in getattr(connection, "run_on_commit", []):
            batch = getattr(func, "vapisync_batch", None)
            if batch is not None and batch["kind"] == kind and not batch["sent"]:
                batch["items"].setdefault(resource, []).append(item)
                return
    batch = {"kind": kind, "items": {resource: [item]}, "sent": False}

    def send_after_commit():
        batch["sent"] = True
        _send(batch["kind"], {r: sorted(set(items)) for r, items in batch["items"].items()})

    send_after_commit.vapisync_batch = batch
    # robust: a broker that is down must not turn a committed save into an error page; the record
    # stays pending and the reconciler pushes it once the broker is back.
    transaction.on_commit(send_after_commit, robust=True)


def _send(kind: str, items: dict) -> None:
    from vapisync.tasks import assistants_delete_remote_task, pending_push_task

    if kind == "push":
        pending_push_task.delay(local_ids=items)
    else:
        assistants_delete_remote_task.delay(vapi_ids=items[Resource.ASSISTANTS])


def assistants_delete(*, vapi_ids: list[str], client=None) -> Outcome:
    """Delete in Vapi the assistants of agents a person deleted here (VAPI_SYNC_DELETE_REMOTE on).
    Vapi numbers still routed to one keep it (the run records why). If this does not happen now,
    the tombstones remain and the nightly full sync deletes them."""
    outcome = Outcome()
    if not _configured():
        return outcome
    from vapisync.services.runs import assistants_delete_remote

    try:
        run = assistants_delete_remote(vapi_ids=vapi_ids, trigger=Trigger.SIGNAL, client=client)
    except SyncAlreadyRunning:
        outcome.lock_busy = True
        return outcome
    outcome.runs.append(run)
    # Item errors say whether they may pass; an error without that verdict stopped the whole run.
    outcome.retryable += [e.get("message", "") for e in run.errors or [] if e.get("retryable", True)]
    return outcome


# --- Draining the outbox ----------------------------------------------------------------------


def pending_push(
    *,
    local_ids: dict | None = None,
    trigger: str = Trigger.SIGNAL,
    include_failed: bool = False,
    older_than: float | None = None,
    client=None,
) -> Outcome:
    """Push the current state of the records waiting in the outbox.

    Each round is one selective export run over every pending record that has not failed yet,
    plus the records named in `local_ids` that are still pending (a retried task's own records),
    plus, with `include_failed`, those whose last attempt failed. `older_than` (seconds) leaves
    alone records saved more recently (their own push task is probably on its way). Later rounds
    take what was saved meanwhile.
    """
    outcome = Outcome()
    if not _configured():
        return outcome
    outermost = not is_automatic_work()
    own_client = client is None
    waiting_phones: set[int] = set()
    with automatic_work():
        try:
            for round_no in range(MAX_ROUNDS):
                first = round_no == 0
                selection, waiting = _pending_selection(
                    local_ids=local_ids if first else None, include_failed=include_failed and first,
                    older_than=older_than if first else None,
                )
                waiting_phones |= waiting
                if not selection:
                    break
                client = client or _client()
                try:
                    run = sync_run_create(direction=Direction.EXPORT, resources=list(selection), trigger=trigger,
                                          local_ids=selection)
                except SyncAlreadyRunning:
                    outcome.lock_busy = True
                    break
                outcome.merge(_push_run(run=run, selection=selection, trigger=trigger, client=client))
                if outcome.lock_busy:
                    break
            _note_waiting_phones(waiting_phones)
            if outermost and outcome.runs and WebhookEvent.objects.filter(processed_at__isnull=True).exists():
                # Events that arrived while these runs held the lock found it busy.
                outcome.runs += webhook_events_process(client=client).runs
        finally:
            if own_client and client is not None:
                client.close()
    return outcome


def _pending_selection(*, local_ids, include_failed: bool, older_than: float | None) -> tuple[dict, set]:
    """{resource: [pk]} to push now, and the numbers held back until their agent is in Vapi."""
    cutoff = timezone.now() - timedelta(seconds=older_than) if older_than is not None else None
    selection = {}
    for resource in RESOURCE_ORDER:
        pending = MODELS[resource].objects.filter(sync_status=SyncStatus.PENDING)
        chosen = pending if include_failed else pending.filter(sync_error="")
        if cutoff is not None:
            chosen = chosen.filter(updated_at__lte=cutoff)
        ids = set(chosen.order_by("pk").values_list("pk", flat=True)[:MAX_BATCH])
        own = (local_ids or {}).get(resource) or []
        if own:
            ids |= set(pending.filter(pk__in=own).values_list("pk", flat=True))
        if ids:
            selection[resource] = sorted(ids)
    waiting = set()
    phone_ids = selection.get(Resource.PHONE_NUMBERS)
    if phone_ids:
        # A number routed to an agent not in Vapi yet would be pushed with no assistant (and so
        # lose its routing in Vapi). Push the agent first; the number follows in the next round.
        rows = PhoneNumber.objects.filter(pk__in=phone_ids, agent__isnull=False, agent__vapi_assistant_id__isnull=True)
        waiting = set(rows.values_list("pk", flat=True))
        agents = set(
            Agent.objects.filter(phone_numbers__in=waiting, sync_error="")
            .filter(sync_status__in=(SyncStatus.LOCAL_ONLY, SyncStatus.PENDING)).values_list("pk", flat=True)
        )
        selection[Resource.PHONE_NUMBERS] = [pk for pk in phone_ids if pk not in waiting]
        if agents:
            selection[Resource.ASSISTANTS] = sorted(set(selection.get(Resource.ASSISTANTS, [])) | agents)
        selection = {r: ids for r, ids in selection.items() if ids}
    return selection, waiting


def _note_waiting_phones(phone_ids: set[int]) -> None:
    still = PhoneNumber.objects.filter(
        pk__in=phone_ids, sync_status=SyncStatus.PENDING, sync_error="", agent__vapi_assistant_id__isnull=True
    )
    still.update(sync_error="Waiting for its agent to be created in Vapi; pushed once the agent is.")


def _push_run(*, run: SyncRun, selection: dict, trigger: str, client) -> Outcome:
    """Execute a created export run and settle what it leaves behind."""
    outcome = Outcome()
    skip = _adopt_interrupted_creates(run=run, agent_ids=selection.get(Resource.ASSISTANTS, []), client=client)
    if skip:
        outcome.retryable.append(skip)
    run = sync_run_execute(run_id=run.pk, client=client)
    outcome.runs.append(run)
    if run.started_at is None:  # another run took the lock over before this one started
        outcome.lock_busy = True
        return outcome
    outcome.retryable += run_settle(run)
    leftovers = _unsettled(run=run, selection=selection)
    if leftovers:
        # Vapi changed these too: what the export could not push is Vapi's side. Refresh them through
        # the import path (the conflict policy decides), as the next scheduled import would.
        try:
            follow = sync_run_start(direction=Direction.IMPORT, resources=list(leftovers), trigger=trigger,
                                    local_ids=leftovers, client=client)
        except SyncAlreadyRunning:
            outcome.lock_busy = True
            return outcome
        outcome.runs.append(follow)
        outcome.retryable += run_settle(follow)
        _give_up_unsettled(run=follow, selection=_unsettled(run=follow, selection=leftovers))
    return outcome


def _unsettled(*, run: SyncRun, selection: dict) -> dict:
    """Selected records the run left pending with no error, not saved again while it ran."""
    since = run.started_at or run.created_at
    left = {}
    for resource, ids in selection.items():
        rows = MODELS[resource].objects.filter(
            pk__in=ids, sync_status=SyncStatus.PENDING, sync_error="", updated_at__lt=since
        ).values_list("pk", flat=True)
        if rows:
            left[resource] = list(rows)
    return left


def _give_up_unsettled(*, run: SyncRun, selection: dict) -> None:
    """Neither the export nor the import settled them: show why instead of retrying forever."""
    reasons = {(c.resource, c.local_id): c.reason for c in run.changes.filter(local_id__isnull=False).only(
        "resource", "local_id", "reason")}
    for resource, ids in selection.items():
        model = MODELS[resource]
        for obj in model.objects.filter(pk__in=ids, sync_status=SyncStatus.PENDING, sync_error=""):
            if not getattr(obj, VAPI_ID_FIELDS[resource]):
                status, message = SyncStatus.LOCAL_ONLY, reasons.get((resource, obj.pk), "")
            else:
                status = SyncStatus.ERROR
                message = "Not pushed: " + (reasons.get((resource, obj.pk)) or "it differs from Vapi and could not be settled.")
            model.objects.filter(pk=obj.pk, sync_status=SyncStatus.PENDING, sync_error="").update(
                sync_status=status, sync_error=message[:MAX_ERROR_LENGTH])


def _adopt_interrupted_creates(*, run: SyncRun, agent_ids: list[int], client) -> str | None:
    """Agents a run that did not finish cleanly may have created in Vapi already (a worker killed
    after Vapi answered the POST, before the id was saved): link each to the copy carrying its
    marker, so the export does not create a second one. Runs while holding the sync lock.

    Returns a message if some could not be checked (they are then left out of this run)."""
    unlinked = list(Agent.objects.filter(pk__in=agent_ids, vapi_assistant_id__isnull=True))
    if not unlinked:
        return None
    oldest = min(agent.created_at for agent in unlinked)
    suspects = (
        SyncRun.objects.filter(dry_run=False, direction__in=PUSH_DIRECTIONS, created_at__gte=oldest)
        .exclude(pk=run.pk).exclude(status=RunStatus.SUCCEEDED)
    )
    if not suspects.exists():
        return None
    unchecked, message = [], None
    for agent in unlinked:
        try:
            doc = client.find_assistant_by_metadata(mapping.MARKER_KEY, str(agent.uuid), created_since=agent.created_at)
        except VapiError as exc:
            unchecked.append(agent.pk)
            message = f"Could not check whether an interrupted push created it in Vapi already: {exc}"
            continue
        if doc is not None:
            _adopt(agent, doc)
    if unchecked:
        Agent.objects.filter(pk__in=unchecked, sync_status=SyncStatus.PENDING).update(sync_error=message[:MAX_ERROR_LENGTH])
        local_ids = run.selection.get("local_ids") or {}
        local_ids[Resource.ASSISTANTS] = [pk for pk in local_ids.get(Resource.ASSISTANTS, []) if pk not in unchecked]
        run.selection["local_ids"] = {r: ids for r, ids in local_ids.items() if ids}
        run.save(update_fields=["selection"])
    return message


def _adopt(agent: Agent, doc: dict) -> None:
    fields = mapping.assistant_fields(doc)
    try:
        with transaction.atomic(), sync_writes():
            if not Agent.objects.filter(pk=agent.pk, vapi_assistant_id__isnull=True).update(vapi_assistant_id=doc["id"]):
                return
            # The copy is what an earlier push sent: it is the baseline, so later local edits push.
            SyncRecord.objects.update_or_create(
                resource=Resource.ASSISTANTS, vapi_id=doc["id"],
                defaults={
                    "local_id": agent.pk, "baseline": fields, "remote": doc,
                    "remote_updated_at": mapping.remote_updated_at(doc), "synced_at": timezone.now(),
                    "local_deleted_at": None, "remote_deleted_at": None,
                },
            )
    except IntegrityError:  # another agent already holds that id: leave it to the export to report
        logger.warning("Assistant %s carries agent %s's marker but is linked to another agent", doc.get("id"), agent.pk)
        return
    logger.info("Linked agent %s to assistant %s created by an interrupted push", agent.pk, doc["id"])


# --- After every run ---------------------------------------------------------------------------


def run_settle(run: SyncRun) -> list[str]:
    """Put back in the outbox what a finished run failed to push for a reason that may pass, and
    what was saved while it ran. Returns the retryable failure messages."""
    if run.dry_run or run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
        return []
    retryable = []
    if run.direction in PUSH_DIRECTIONS:
        retryable = _requeue_retryable_failures(run)
    _pending_again_if_changed(run)
    return retryable


def _requeue_retryable_failures(run: SyncRun) -> list[str]:
    failed = defaultdict(set)
    messages, whole = [], {}
    selected = (run.selection or {}).get("local_ids") or {}
    for error in run.errors or []:
        retryable = error.get("retryable", True)  # a crash is not a verdict on the payload
        resource = error.get("resource")
        if error.get("local_id") is not None and resource in MODELS:
            if retryable:
                failed[resource].add(error["local_id"])
                messages.append(error.get("message", ""))
        elif resource in MODELS or resource is None:
            # Vapi unusable for a whole resource (or the run crashed): nothing selected was attempted.
            for r in [resource] if resource else run.resources:
                whole.setdefault(r, (error.get("message", ""), retryable))
            if retryable:
                messages.append(error.get("message", ""))
    for resource, ids in failed.items():
        MODELS[resource].objects.filter(pk__in=ids, sync_status=SyncStatus.ERROR).update(sync_status=SyncStatus.PENDING)
    for resource, (message, retryable) in whole.items():
        rows = MODELS[resource].objects.filter(sync_status=SyncStatus.PENDING, sync_error="")
        if selected.get(resource):
            rows = rows.filter(pk__in=selected[resource])
        elif run.selection.get("vapi_ids"):
            continue
        rows.filter(updated_at__lt=run.started_at or run.created_at).update(
            sync_status=SyncStatus.PENDING if retryable else SyncStatus.ERROR, sync_error=message[:MAX_ERROR_LENGTH])
    return messages


def _pending_again_if_changed(run: SyncRun) -> None:
    """A person's save that landed while the run was busy with the record may have had its marker
    overwritten by the run's status bookkeeping. Records saved since the run started that are
    marked in sync but no longer match their baseline go back to the outbox."""
    started = run.started_at or run.created_at
    for resource in run.resources or []:
        model = MODELS.get(resource)
        if model is None:
            continue
        candidates = list(
            model.objects.filter(sync_status=SyncStatus.SYNCED, updated_at__gte=started - CHANGED_DURING_RUN_MARGIN,
                                 created_at__lt=started)
        )
        if not candidates:
            continue
        sync = RESOURCE_SYNCS[resource](
            client=None, options=RunOptions(pull=False, push=False, dry_run=True, policy="manual"), recorder=None
        )
        sync.prepare()
        vapi_field = VAPI_ID_FIELDS[resource]
        baselines = dict(
            SyncRecord.objects.filter(resource=resource, vapi_id__in=[getattr(c, vapi_field) for c in candidates])
            .values_list("vapi_id", "baseline")
        )
        stale = [
            c.pk for c in candidates
            if getattr(c, vapi_field) in baselines and sync.local_fields(c) != baselines[getattr(c, vapi_field)]
        ]
        if stale:
            model.objects.filter(pk__in=stale, sync_status=SyncStatus.SYNCED).update(
                sync_status=SyncStatus.PENDING, sync_error="")
            logger.info("%s %s changed during run %s: pushed again", resource, stale, run.pk)


def run_finished(*, run_id: int) -> None:
    """After a run started elsewhere (API, admin, command, schedule) finished: settle it, then
    sweep the outbox if anything waits (records saved while it held the lock, webhook events)."""
    run = SyncRun.objects.filter(pk=run_id).first()
    if run is None or run.dry_run:
        return
    run_settle(run)
    if outbox_waiting():
        from vapisync.tasks import automatic_sweep_task

        automatic_sweep_task.delay()


def outbox_waiting() -> bool:
    fresh = any(m.objects.filter(sync_status=SyncStatus.PENDING, sync_error="").exists() for m in MODELS.values())
    return fresh or WebhookEvent.objects.filter(processed_at__isnull=True).exists()


def automatic_sweep(*, client=None) -> Outcome:
    """Push what waits in the outbox and process waiting webhook events. In-process there is no
    reconciler, so records whose last attempt failed long enough ago are retried here too."""
    older_than = automatic_settings().reconcile_after if in_process() else None
    outcome = pending_push(include_failed=in_process(), older_than=older_than, client=client)
    if in_process():  # the failed ones were offered above; now the fresh ones, whatever their age
        outcome.merge(pending_push(client=client))
    return outcome.merge(webhook_events_process(client=client))


def pending_reconcile(*, older_than: float | None = None, client=None) -> Outcome:
    """Periodic: push every record still pending after `older_than` seconds (default
    VAPI_SYNC_RECONCILE_AFTER) - a broker down at commit, a worker killed mid-task, retries run
    out, Vapi down for an hour - and process webhook events left unprocessed as long.
    Its runs (trigger "schedule") record each failure in the sync history."""
    if not _configured():
        return Outcome()
    older_than = automatic_settings().reconcile_after if older_than is None else older_than
    outcome = pending_push(include_failed=True, older_than=older_than, trigger=Trigger.SCHEDULE, client=client)
    outcome.merge(webhook_events_process(older_than=older_than, client=client))
    _webhook_events_expire()
    return outcome


# --- Scheduled runs --------------------------------------------------------------------------


def scheduled_import() -> SyncRun | None:
    """Delta import (what changed in Vapi since the last one); trigger "schedule". Skipped while
    another run holds the lock: the next one is minutes away."""
    return _scheduled_run(direction=Direction.IMPORT, delta=True, wait_for_lock=False)


def scheduled_full_sync() -> SyncRun | None:
    """Full two-way reconciliation, including deletion detection; trigger "schedule". Retried
    later (RetryLater) while another run holds the lock."""
    return _scheduled_run(direction=Direction.FULL, wait_for_lock=True)


def _scheduled_run(*, wait_for_lock: bool, **kwargs) -> SyncRun | None:
    if not _configured():
        return None
    try:
        run = sync_run_start(trigger=Trigger.SCHEDULE, **kwargs)
    except SyncAlreadyRunning as exc:
        if wait_for_lock:
            raise RetryLater(str(exc)) from exc
        logger.info("Scheduled %s skipped: %s", kwargs["direction"], exc)
        return None
    if run.status == RunStatus.FAILED and run.errors and all(e.get("retryable") for e in run.errors):
        raise RetryLater(run.message or "Vapi was unavailable")
    return run


# --- Webhook inbox -------------------------------------------------------------------------------

# ServerMessage types in Vapi's OpenAPI (components.schemas.ServerMessage*). Others are ignored.
WEBHOOK_MESSAGE_TYPES = frozenset({
    "assistant-request", "conversation-update", "end-of-call-report", "handoff-destination-request", "hang",
    "knowledge-base-request", "model-output", "phone-call-control", "speech-update", "status-update", "tool-calls",
    "transfer-destination-request", "transfer-update", "transcript", 'transcript[transcriptType="final"]',
    "user-interrupted", "language-change-detected", "voice-input", "assistant.speechStarted", "voice-request",
    "call.endpointing.request", "chat.created", "chat.deleted", "session.created", "session.updated",
    "session.deleted", "call.deleted", "call.delete.failed", "call.artifact.upload", "campaign.predial",
})
_VAPI_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


class WebhookMalformed(ValueError):
    """The body is not a Vapi server message; the view answers 400 with this text."""


@dataclass(frozen=True)
class WebhookReceipt:
    status: str  # "received", "duplicate" or "ignored"
    event_id: int | None = None
    needs_processing: bool = False


def webhook_message_ids(message: dict) -> tuple[str | None, str | None]:
    """The (assistant id, phone-number id) a server message names, from wherever Vapi puts them.
    Only the ids are used: the records themselves are re-read from Vapi."""

    def first(*candidates):
        for value in candidates:
            if isinstance(value, str) and _VAPI_ID.match(value):
                return value
        return None

    def obj(value):
        return value if isinstance(value, dict) else {}

    call = obj(message.get("call"))
    assistant_id = first(
        obj(message.get("assistant")).get("id"), message.get("assistantId"), call.get("assistantId"),
        obj(call.get("assistant")).get("id"),
    )
    phone_id = first(
        obj(message.get("phoneNumber")).get("id"), message.get("phoneNumberId"), call.get("phoneNumberId"),
        obj(call.get("phoneNumber")).get("id"),
    )
    return assistant_id, phone_id


def _reject_constant(name):
    raise WebhookMalformed(f"The body is not valid JSON ({name} is not a JSON value).")


def webhook_event_receive(*, body: bytes) -> WebhookReceipt:
    """Store one authenticated Vapi server message as received. The SHA-256 of the body recognises a
    replay, which only increments `duplicates`. Raises WebhookMalformed for a body that is not one."""
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, WebhookMalformed):
            raise
        raise WebhookMalformed("The body is not valid JSON.") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("message"), dict):
        raise WebhookMalformed('The body must be a JSON object with a "message" object (a Vapi server message).')
    message = payload["message"]
    message_type = message.get("type")
    if not isinstance(message_type, str) or not message_type:
        raise WebhookMalformed('"message.type" must be a non-empty string.')
    if message_type not in WEBHOOK_MESSAGE_TYPES:
        return WebhookReceipt("ignored")
    assistant_id, phone_id = webhook_message_ids(message)
    digest = hashlib.sha256(body).hexdigest()
    names_something = bool(assistant_id or phone_id)
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                body_sha256=digest, message_type=message_type[:100], payload=payload,
                assistant_id=assistant_id or "", phone_number_id=phone_id or "",
                processed_at=None if names_something else timezone.now(),
            )
    except IntegrityError:
        if not WebhookEvent.objects.filter(body_sha256=digest).update(duplicates=F("duplicates") + 1):
            raise
        return WebhookReceipt("duplicate")
    except DataError as exc:  # e.g. a \u0000 PostgreSQL's jsonb cannot store
        raise WebhookMalformed("The body holds values that cannot be stored.") from exc
    return WebhookReceipt("received", event.pk, needs_processing=names_something)


def webhook_events_dispatch() -> None:
    """Ask for the refresh of what waiting events name: a worker waits VAPI_WEBHOOK_DEBOUNCE seconds
    first, so a burst is refreshed by one run; in-process it runs now."""
    from vapisync.tasks import webhook_events_process_task

    if in_process():
        webhook_events_process_task.delay()
    else:
        webhook_events_process_task.apply_async(countdown=automatic_settings().webhook_debounce)


def webhook_events_process(*, older_than: float | None = None, client=None) -> Outcome:
    """Refresh, through the import path, the assistants and phone numbers that unprocessed webhook
    events name: one selective import run (trigger "webhook") for all of them, re-reading each
    record from Vapi. Never a full sync. Events stay unprocessed while the failure may pass."""
    outcome = Outcome()
    if not _configured():
        return outcome
    outermost = not is_automatic_work()
    with automatic_work():
        for _ in range(MAX_ROUNDS):
            events = WebhookEvent.objects.filter(processed_at__isnull=True)
            if older_than is not None:
                events = events.filter(received_at__lte=timezone.now() - timedelta(seconds=older_than))
            events = list(events.order_by("received_at", "pk")[:MAX_BATCH])
            if not events:
                break
            vapi_ids = {
                Resource.ASSISTANTS: sorted({e.assistant_id for e in events if e.assistant_id}),
                Resource.PHONE_NUMBERS: sorted({e.phone_number_id for e in events if e.phone_number_id}),
            }
            vapi_ids = {r: ids for r, ids in vapi_ids.items() if ids}
            if not vapi_ids:
                WebhookEvent.objects.filter(pk__in=[e.pk for e in events]).update(processed_at=timezone.now())
                continue
            try:
                run = sync_run_start(direction=Direction.IMPORT, resources=list(vapi_ids), trigger=Trigger.WEBHOOK,
                                     vapi_ids=vapi_ids, client=client)
            except SyncAlreadyRunning:
                outcome.lock_busy = True
                break
            outcome.runs.append(run)
            run_settle(run)
            retry = _webhook_events_settle(events, run)
            if retry:
                outcome.retryable += retry
                break
        if outermost and outcome.runs and any(
            m.objects.filter(sync_status=SyncStatus.PENDING, sync_error="").exists() for m in MODELS.values()
        ):
            # Saves made while these runs held the lock found it busy.
            outcome.runs += pending_push(client=client).runs
    return outcome


def _webhook_events_settle(events: list[WebhookEvent], run: SyncRun) -> list[str]:
    by_id, by_resource = {}, {}
    for error in run.errors or []:
        problem = (error.get("message", ""), error.get("retryable", True))
        if error.get("vapi_id"):
            by_id[error["vapi_id"]] = problem
        else:
            for resource in [error["resource"]] if error.get("resource") else run.resources:
                by_resource.setdefault(resource, problem)
    now, retry_messages = timezone.now(), []
    done: dict[str, list[int]] = defaultdict(list)
    waiting: dict[str, list[int]] = defaultdict(list)
    for event in events:
        problems = [
            by_id.get(vapi_id) or by_resource.get(resource)
            for resource, vapi_id in ((Resource.ASSISTANTS, event.assistant_id), (Resource.PHONE_NUMBERS, event.phone_number_id))
            if vapi_id
        ]
        problems = [p for p in problems if p]
        retryable = [message for message, may_pass in problems if may_pass]
        text = "; ".join(message for message, _ in problems)[:MAX_ERROR_LENGTH]
        (waiting if retryable else done)[text].append(event.pk)
        retry_messages += retryable
    for text, pks in done.items():
        WebhookEvent.objects.filter(pk__in=pks, processed_at__isnull=True).update(processed_at=now, error=text)
    for text, pks in waiting.items():
        WebhookEvent.objects.filter(pk__in=pks).update(error=text)
    return retry_messages


def _webhook_events_expire() -> None:
    old = WebhookEvent.objects.filter(processed_at__isnull=True, received_at__lt=timezone.now() - WEBHOOK_EVENT_MAX_AGE)
    old.update(processed_at=timezone.now(), error="Given up: not processed within 24 hours.")


# --- Schedules (django-celery-beat) -----------------------------------------------------------

# name -> (task, schedule). Editable in the admin (Periodic tasks) once installed.
DEFAULT_SCHEDULES = {
    "Vapi sync: delta import": (
        "vapisync.tasks.scheduled_import_task", {"every": 5, "period": "minutes"},
        "Imports what changed in Vapi since the last import.",
    ),
    "Vapi sync: nightly full sync": (
        "vapisync.tasks.scheduled_full_sync_task", {"minute": "0", "hour": "3"},
        "Full two-way sync, including deletions made in Vapi (03:00, TIME_ZONE).",
    ),
    "Vapi sync: reconcile pending changes": (
        "vapisync.tasks.pending_reconcile_task", {"every": 1, "period": "minutes"},
        "Pushes changes still pending (Vapi or the worker was down) and processes waiting webhook events.",
    ),
}


def periodic_tasks_setup(*, reset: bool = False, apps=None) -> dict[str, str]:
    """Install the default schedules; a schedule that exists is left as the admin edited it unless
    `reset`. `apps` is a migration's app registry (historical models). Returns name -> what happened."""
    if apps is None:
        from django.apps import apps
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    done = {}
    with transaction.atomic():
        for name, (task, schedule, description) in DEFAULT_SCHEDULES.items():
            existing = PeriodicTask.objects.filter(name=name).first()
            if existing is not None and not reset:
                done[name] = "kept"
                continue
            if "every" in schedule:
                interval, _ = IntervalSchedule.objects.get_or_create(**schedule)
                kinds = {"interval": interval, "crontab": None}
            else:
                crontab, _ = CrontabSchedule.objects.get_or_create(
                    day_of_week="*", day_of_month="*", month_of_year="*", timezone=settings.TIME_ZONE, **schedule)
                kinds = {"interval": None, "crontab": crontab}
            values = {"task": task, "description": description, "enabled": True, "args": "[]", "kwargs": "{}", "one_off": False,
                      "solar": None, "clocked": None, **kinds}
            PeriodicTask.objects.update_or_create(name=name, defaults=values)
            done[name] = "reset" if existing is not None else "created"
        # Tell a running beat (DatabaseScheduler) to reload; historical models skip the model's signals.
        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})
    return done
