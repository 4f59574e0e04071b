"""Draining the outbox: pushing to Vapi the current state of the records waiting in it.

A drain (`pending_push`, asked for after every save's commit by `vapisync.services.outbox`) is one
selective export run (trigger "signal") of every pending record, and more rounds for what was saved
meanwhile. What it cannot settle it leaves for later, nothing lost:
  - A push that fails with a retryable error (Vapi down, rate limited) leaves the record `pending`
    with the reason in `sync_error`; a worker retries the task with backoff and jitter, the
    reconciler every minute. A payload Vapi rejects leaves it `error` for a person to fix.
  - A record the export could not settle because Vapi changed too (Vapi-only changes, or a conflict
    the policy gives to Vapi) is refreshed by a follow-up selective import in the same drain.
  - If the sync lock is busy, a worker retries the task later; in-process, the records stay pending
    and the run that holds the lock sweeps the outbox when it finishes (every run does).
  - A worker killed between Vapi's answer to a create and the database write leaves an agent without
    its Vapi id; before creating it again the drain looks for the copy carrying its marker.
  - The reconciler (`pending_reconcile`, every minute under beat) pushes whatever is still pending
    after `VAPI_SYNC_RECONCILE_AFTER` seconds and processes webhook events left unprocessed.
The drain's runs settle themselves (`follow_up=False`): a drain never starts another sweep.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import Agent
from globalvoice.tracking import SyncStatus
from phonenumbers_app.models import PhoneNumber
from vapisync import mapping
from vapisync.context import sync_writes
from vapisync.exceptions import SyncAlreadyRunning, VapiError
from vapisync.models import Direction, Resource, RunStatus, SyncRecord, SyncRun, Trigger, WebhookEvent
from vapisync.resources import REGISTRY, RESOURCE_ORDER
from vapisync.services.clients import automatic_client
from vapisync.services.dispatch import Outcome, automatic_settings, in_process, vapi_ready
from vapisync.services.outbox import MAX_ERROR_LENGTH, PUSH_DIRECTIONS, run_settle
from vapisync.services.runs import sync_run_create, sync_run_execute, sync_run_start
from vapisync.services.webhooks import webhook_events_expire, webhook_events_process

logger = logging.getLogger(__name__)

MAX_BATCH = 1000  # records per automatic run; the rest go in the next round
MAX_ROUNDS = 5  # runs per drain; whatever is left waits for the next drain, sweep or reconcile


def pending_push(
    *,
    local_ids: dict | None = None,
    trigger: str = Trigger.SIGNAL,
    include_failed: bool = False,
    older_than: float | None = None,
    then_webhook_events: bool = True,
    client=None,
) -> Outcome:
    """Push the current state of the records waiting in the outbox.

    Each round is one selective export run over every pending record that has not failed yet,
    plus the records named in `local_ids` that are still pending (a retried task's own records),
    plus, with `include_failed`, those whose last attempt failed. `older_than` (seconds) leaves
    alone records saved more recently (their own drain is probably on its way). Later rounds
    take what was saved meanwhile. Then, with `then_webhook_events`, the webhook events that
    found the lock busy while these runs held it are processed.
    """
    outcome = Outcome()
    if not vapi_ready():
        return outcome
    own_client = client is None
    waiting_phones: set[int] = set()
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
            client = client or automatic_client(in_process=in_process())
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
        if then_webhook_events and outcome.runs and WebhookEvent.objects.filter(processed_at__isnull=True).exists():
            outcome.runs += webhook_events_process(client=client, then_push=False).runs
    finally:
        if own_client and client is not None:
            client.close()
    return outcome


def _pending_selection(*, local_ids, include_failed: bool, older_than: float | None) -> tuple[dict, set]:
    """{resource: [pk]} to push now, and the numbers held back until their agent is in Vapi."""
    cutoff = timezone.now() - timedelta(seconds=older_than) if older_than is not None else None
    selection = {}
    for resource in RESOURCE_ORDER:
        pending = REGISTRY[resource].model.objects.filter(sync_status=SyncStatus.PENDING)
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
    run = sync_run_execute(run_id=run.pk, client=client, follow_up=False)
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
                                    local_ids=leftovers, client=client, follow_up=False)
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
        rows = REGISTRY[resource].model.objects.filter(
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
        spec = REGISTRY[resource]
        for obj in spec.model.objects.filter(pk__in=ids, sync_status=SyncStatus.PENDING, sync_error=""):
            if not getattr(obj, spec.vapi_id_field):
                status, message = SyncStatus.LOCAL_ONLY, reasons.get((resource, obj.pk), "")
            else:
                status = SyncStatus.ERROR
                message = "Not pushed: " + (reasons.get((resource, obj.pk)) or "it differs from Vapi and could not be settled.")
            spec.model.objects.filter(pk=obj.pk, sync_status=SyncStatus.PENDING, sync_error="").update(
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
                    "local_deleted_at": None, "remote_deleted_at": None, "clean_mark": "",
                },
            )
    except IntegrityError:  # another agent already holds that id: leave it to the export to report
        logger.warning("Assistant %s carries agent %s's marker but is linked to another agent", doc.get("id"), agent.pk)
        return
    logger.info("Linked agent %s to assistant %s created by an interrupted push", agent.pk, doc["id"])


def automatic_sweep(*, client=None) -> Outcome:
    """Push what waits in the outbox and process waiting webhook events. In-process there is no
    reconciler, so records whose last attempt failed long enough ago are retried here too."""
    here = in_process()
    older_than = automatic_settings().reconcile_after if here else None
    outcome = pending_push(include_failed=here, older_than=older_than, client=client)
    if here:  # the failed ones were offered above; now the fresh ones, whatever their age
        outcome.merge(pending_push(client=client))
    return outcome.merge(webhook_events_process(client=client))


def pending_reconcile(*, older_than: float | None = None, client=None) -> Outcome:
    """Periodic: push every record still pending after `older_than` seconds (default
    VAPI_SYNC_RECONCILE_AFTER) - a broker down at commit, a worker killed mid-task, retries run
    out, Vapi down for an hour - and process webhook events left unprocessed as long.
    Its runs (trigger "schedule") record each failure in the sync history."""
    if not vapi_ready():
        return Outcome()
    older_than = automatic_settings().reconcile_after if older_than is None else older_than
    outcome = pending_push(include_failed=True, older_than=older_than, trigger=Trigger.SCHEDULE, client=client)
    outcome.merge(webhook_events_process(older_than=older_than, client=client))
    webhook_events_expire()
    return outcome
