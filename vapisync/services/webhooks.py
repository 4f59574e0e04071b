"""The webhook inbox: Vapi server messages, stored as received and then refreshed from Vapi.

The view (vapisync.api.webhook) authenticates and bounds the request, `webhook_event_receive`
stores the message (a replay only counts), and `webhook_events_dispatch` asks for the refresh:
`webhook_events_process` re-reads from Vapi, through the import path, the assistants and phone
numbers the waiting events name (one selective import run, trigger "webhook"; never a full sync).
Events stay unprocessed while a failure may pass (the reconciler takes them again) and are given up
after WEBHOOK_EVENT_MAX_AGE (`webhook_events_expire`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from django.db import DataError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from vapisync.exceptions import SyncAlreadyRunning
from vapisync.models import Direction, Resource, SyncRun, Trigger, WebhookEvent
from vapisync.services import dispatch
from vapisync.services.dispatch import Outcome, automatic_settings, vapi_ready
from vapisync.services.outbox import MAX_ERROR_LENGTH, fresh_pending_exists, run_settle
from vapisync.services.runs import sync_run_start

WEBHOOK_EVENT_MAX_AGE = timedelta(hours=24)  # unprocessed events older than this are given up
MAX_BATCH = 1000  # events per run; the rest go in the next round
MAX_ROUNDS = 5  # runs per call; whatever is left waits for the next task or the reconciler


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
    dispatch.task_send(dispatch.WEBHOOK_TASK, countdown=automatic_settings().webhook_debounce)


def webhook_events_process(*, older_than: float | None = None, then_push: bool = True, client=None) -> Outcome:
    """Refresh, through the import path, the assistants and phone numbers that unprocessed webhook
    events name: one selective import run (trigger "webhook") for all of them, re-reading each
    record from Vapi. Never a full sync. Events stay unprocessed while the failure may pass.
    Then, with `then_push`, a drain of the saves that found the lock busy while these runs held it."""
    outcome = Outcome()
    if not vapi_ready():
        return outcome
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
                                 vapi_ids=vapi_ids, client=client, follow_up=False)
        except SyncAlreadyRunning:
            outcome.lock_busy = True
            break
        outcome.runs.append(run)
        run_settle(run)
        retry = _webhook_events_settle(events, run)
        if retry:
            outcome.retryable += retry
            break
    if then_push and outcome.runs and fresh_pending_exists():
        dispatch.task_send(dispatch.PUSH_TASK, then_webhook_events=False)
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


def webhook_events_expire() -> None:
    """Give up the events left unprocessed for longer than WEBHOOK_EVENT_MAX_AGE."""
    old = WebhookEvent.objects.filter(processed_at__isnull=True, received_at__lt=timezone.now() - WEBHOOK_EVENT_MAX_AGE)
    old.update(processed_at=timezone.now(), error="Given up: not processed within 24 hours.")


