"""Deleting assistants in Vapi: every deletion the sync makes there goes through this module.

Deleting an agent here leaves a tombstone (vapisync.signals) and never deletes its assistant by
itself, unless VAPI_SYNC_DELETE_REMOTE is on. Then:
  assistants_delete_on_commit  a person deleted a linked agent: ask for the deletion after commit
  assistants_delete_automatic  ...which a task performs (trigger "signal"); if it cannot happen now the
                               tombstones remain and the nightly full sync deletes them
  assistants_delete_tombstoned the step every push run ends with: delete what was deleted here
A person can also ask explicitly, setting or not (API, admin, command):
  assistants_delete_request    a run (direction "delete") for the given Vapi ids
  assistants_delete_apply      how such a run is applied (registered with the run lifecycle)

Never deleted: an assistant whose agent still exists here, or that a Vapi number still routes calls to.
"""

from __future__ import annotations

from django.utils import timezone

from agents.models import Agent
from vapisync.conf import vapi_settings
from vapisync.exceptions import SyncAlreadyRunning, VapiError, VapiNotFound
from vapisync.models import ChangeAction, Direction, Resource, Side, SyncRecord, SyncRun, Trigger
from vapisync.services import dispatch
from vapisync.services.history import Recorder
from vapisync.services.runs import sync_run_start


def assistants_delete_request(*, vapi_ids: list[str], trigger: str, user=None, client=None) -> SyncRun:
    """Delete in Vapi the assistants of agents deleted here (a person's explicit request); returns the run."""
    return sync_run_start(
        direction=Direction.DELETE, resources=[Resource.ASSISTANTS], trigger=trigger, user=user,
        vapi_ids={Resource.ASSISTANTS: list(vapi_ids)}, client=client,
    )


def assistants_delete_on_commit(*, vapi_id: str) -> None:
    """A person deleted an agent linked to Vapi: with VAPI_SYNC_DELETE_REMOTE on, delete its assistant
    after commit, in one task for every agent the transaction deleted."""
    if vapi_settings().delete_remote:
        dispatch.on_commit_once(
            "delete", lambda vapi_ids: dispatch.task_send(dispatch.DELETE_TASK, vapi_ids=vapi_ids), item=vapi_id)


def assistants_delete_automatic(*, vapi_ids: list[str], client=None) -> dispatch.Outcome:
    """The deletion `assistants_delete_on_commit` asked for. Vapi numbers still routed to one keep it
    (the run records why). If this does not happen now, the tombstones remain and the nightly full
    sync deletes them."""
    outcome = dispatch.Outcome()
    if not dispatch.vapi_ready():
        return outcome
    try:
        run = assistants_delete_request(vapi_ids=vapi_ids, trigger=Trigger.SIGNAL, client=client)
    except SyncAlreadyRunning:
        outcome.lock_busy = True
        return outcome
    outcome.runs.append(run)
    # Item errors say whether they may pass; an error without that verdict stopped the whole run.
    outcome.retryable += [e.get("message", "") for e in run.errors or [] if e.get("retryable", True)]
    return outcome


def assistants_delete_apply(*, run: SyncRun, client, recorder: Recorder, lease=None) -> None:
    """Apply a "delete" run: the Vapi ids it names."""
    vapi_ids = (run.selection.get("vapi_ids") or {}).get(Resource.ASSISTANTS) or []
    records = SyncRecord.objects.filter(resource=Resource.ASSISTANTS, vapi_id__in=vapi_ids)
    _assistants_delete_in_vapi(records=records, client=client, recorder=recorder, explicit_ids=vapi_ids)


def assistants_delete_tombstoned(*, run: SyncRun, client, recorder: Recorder, lease=None) -> None:
    """End of a push run with VAPI_SYNC_DELETE_REMOTE on: every assistant whose agent was deleted here."""
    records = SyncRecord.objects.filter(
        resource=Resource.ASSISTANTS, local_deleted_at__isnull=False, remote_deleted_at__isnull=True
    )
    _assistants_delete_in_vapi(records=records, client=client, recorder=recorder, explicit_ids=[])


def _assistants_delete_in_vapi(*, records, client, recorder: Recorder, explicit_ids: list[str]) -> None:
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
        _assistant_delete_one(client=client, recorder=recorder, record=record, label=label, now=now)


def _assistant_delete_one(*, client, recorder: Recorder, record: SyncRecord, label: str, now) -> None:
    vapi_id = record.vapi_id
    try:
        before = client.get_assistant(vapi_id)
        client.delete_assistant(vapi_id)
    except VapiNotFound:
        record.remote_deleted_at = now
        record.clean_mark = ""
        record.save(update_fields=["remote_deleted_at", "clean_mark"])
        recorder.add(Resource.ASSISTANTS, ChangeAction.SKIP, vapi_id=vapi_id, label=label, reason="Already deleted in Vapi.")
        return
    except VapiError as exc:
        recorder.add(Resource.ASSISTANTS, ChangeAction.ERROR, side=Side.VAPI, vapi_id=vapi_id, label=label, error=str(exc))
        return
    record.remote_deleted_at, record.remote = now, before
    record.clean_mark = ""
    record.save(update_fields=["remote_deleted_at", "remote", "clean_mark"])
    recorder.add(Resource.ASSISTANTS, ChangeAction.DELETE, side=Side.VAPI, vapi_id=vapi_id, local_id=record.local_id,
                 label=label, before={"remote": before}, after=None)
