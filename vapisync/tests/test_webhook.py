"""POST /api/vapi-sync/webhook: authentication, limits, replay, and the refresh it starts."""

import json
import logging
import threading

import pytest
from django.db import connection, connections
from django.test import Client

from agents.models import Agent
from phonenumbers_app.models import PhoneNumber
from vapisync.api.webhook import VapiWebhookView
from vapisync.models import Direction, RunStatus, SyncRun, Trigger, WebhookEvent
from vapisync.services import webhooks
from vapisync.services.runs import sync_run_start
from vapisync.tasks import pending_reconcile_task

from .factories import make_assistant

pytestmark = pytest.mark.django_db

URL = "/api/vapi-sync/webhook"
SECRET = "test-webhook-secret"  # globalvoice.settings_test


def message(type_="status-update", **fields):
    return {"message": {"type": type_, "timestamp": 1767225600000, "status": "in-progress", **fields}}


def post(client, body, secret=SECRET, **extra):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"HTTP_X_VAPI_SECRET": secret} if secret is not None else {}
    return client.post(URL, raw, content_type="application/json", **headers, **extra)


def writes(emulator) -> int:
    return sum(n for route, n in emulator.counts.items() if not route.startswith("GET"))


@pytest.fixture
def imported(emulator, vapi_client):
    """Two assistants and a number routed to the first, imported here."""
    first = make_assistant(emulator, "First")
    second = make_assistant(emulator, "Second")
    phone = emulator.add_phone_number(provider="vapi", number="+16826269224", name="Main", assistantId=first["id"])
    sync_run_start(direction=Direction.IMPORT, trigger=Trigger.CLI, client=vapi_client)
    emulator.reset_counters()
    return first, second, phone


# --- Authentication and limits ----------------------------------------------------------------------


def test_missing_or_wrong_secret_is_401_and_never_echoed(client, caplog):
    with caplog.at_level(logging.DEBUG):
        missing = post(client, message(), secret=None)
        wrong = post(client, message(), secret="not-the-secret")
        almost = post(client, message(), secret=SECRET + "x")
    for response in (missing, wrong, almost):
        assert response.status_code == 401
        assert response.json()["code"] == "webhook_secret_invalid"
        assert SECRET not in response.content.decode()
    assert SECRET not in caplog.text
    assert not WebhookEvent.objects.exists()


def test_no_secret_configured_disables_the_webhook_with_503(client, settings):
    settings.VAPI_WEBHOOK_SECRET = ""
    response = post(client, message(), secret="")
    assert response.status_code == 503
    assert "VAPI_WEBHOOK_SECRET" in response.json()["detail"]
    assert post(client, message(), secret="anything").status_code == 503
    assert not WebhookEvent.objects.exists()


def test_oversized_body_is_413(client, settings):
    settings.VAPI_WEBHOOK_MAX_BYTES = 200
    body = message(transcript="x" * 500)
    response = post(client, body)
    assert response.status_code == 413
    assert response.json()["code"] == "webhook_too_large"
    assert post(client, message()).status_code == 200  # within the limit
    assert WebhookEvent.objects.count() == 1


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"[1, 2]", b'{"no_message": {}}', b'{"message": "text"}', b'{"message": {"status": "x"}}',
     b'{"message": {"type": "status-update", "timestamp": NaN}}', b"\xff\xfe\x00"],
    ids=["broken", "empty", "array", "no-message", "message-not-object", "no-type", "nan", "not-utf8"],
)
def test_malformed_body_is_400(client, body):
    response = post(client, body)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "webhook_malformed"
    assert not WebhookEvent.objects.exists()


def test_unknown_message_type_is_200_and_ignored(client, emulator):
    response = post(client, message("something-new", call={"phoneNumberId": "pn_1"}))
    assert response.status_code == 200 and response.json() == {"status": "ignored"}
    assert not WebhookEvent.objects.exists() and emulator.counts == {}


def test_webhook_needs_no_session_csrf_or_token(emulator):
    csrf_client = Client(enforce_csrf_checks=True)
    assert post(csrf_client, message()).status_code == 200


def test_view_manages_its_own_transactions():
    assert "default" in getattr(VapiWebhookView.as_view(), "_non_atomic_requests", set())


def test_works_with_atomic_requests(client, emulator, imported):
    _, _, phone = imported
    connections.settings["default"]["ATOMIC_REQUESTS"] = True
    try:
        body = message(call={"phoneNumberId": phone["id"]})
        assert post(client, body).json() == {"status": "received"}
        assert post(client, body).json() == {"status": "duplicate"}  # IntegrityError handled in a savepoint
    finally:
        connections.settings["default"]["ATOMIC_REQUESTS"] = False
    assert WebhookEvent.objects.get().duplicates == 1


# --- Storing, replay, refresh ------------------------------------------------------------------------


def test_message_is_stored_raw_and_names_what_to_refresh(client, emulator, imported):
    first, _, phone = imported
    body = message("end-of-call-report", call={"id": "call_1", "phoneNumberId": phone["id"], "assistantId": first["id"]})
    response = post(client, body)
    assert response.status_code == 200 and response.json() == {"status": "received"}
    event = WebhookEvent.objects.get()
    assert event.payload == body and event.message_type == "end-of-call-report"
    assert (event.assistant_id, event.phone_number_id) == (first["id"], phone["id"])
    assert len(event.body_sha256) == 64 and event.processed_at is not None and event.error == ""


def test_phone_reassigned_in_vapi_is_refreshed_from_vapi_not_from_the_payload(client, emulator, imported):
    first, second, phone = imported
    emulator.edit_phone_number(phone["id"], assistantId=second["id"])
    emulator.reset_counters()
    # The payload's copy of the number is stale (still routed to the first assistant).
    stale = {"id": phone["id"], "number": "+16826269224", "provider": "vapi", "assistantId": first["id"]}
    body = message("status-update", phoneNumber=stale, call={"phoneNumberId": phone["id"]})

    assert post(client, body).status_code == 200

    local = PhoneNumber.objects.get()
    assert local.agent == Agent.objects.get(vapi_assistant_id=second["id"])
    assert local.vapi_assistant_id == second["id"]
    run = SyncRun.objects.get(trigger=Trigger.WEBHOOK)
    assert run.direction == Direction.IMPORT and run.status == RunStatus.SUCCEEDED
    assert run.selection["vapi_ids"] == {"phone_numbers": [phone["id"]]}
    assert emulator.counts["GET /phone-number/{id}"] == 1
    assert "GET /assistant" not in emulator.counts and "GET /phone-number" not in emulator.counts  # never a full sync
    assert writes(emulator) == 0  # the refresh is an import: nothing echoes back
    assert not SyncRun.objects.filter(trigger=Trigger.SIGNAL).exists()
    assert WebhookEvent.objects.get().processed_at is not None


def test_replay_changes_nothing_the_second_time(client, emulator, imported):
    first, _, _ = imported
    body = message(call={"assistantId": first["id"]})
    assert post(client, body).json() == {"status": "received"}
    runs, counts = SyncRun.objects.count(), dict(emulator.counts)

    emulator.edit_assistant(first["id"], name="Changed since")
    replay = post(client, body)

    assert replay.status_code == 200 and replay.json() == {"status": "duplicate"}
    event = WebhookEvent.objects.get()
    assert event.duplicates == 1
    assert SyncRun.objects.count() == runs and dict(emulator.counts) == counts
    assert Agent.objects.get(vapi_assistant_id=first["id"]).name == "First"


def test_burst_for_one_record_is_refreshed_by_one_run(emulator, imported):
    _, _, phone = imported
    for i in range(5):
        body = json.dumps(message(timestamp=i, call={"phoneNumberId": phone["id"]})).encode()
        assert webhooks.webhook_event_receive(body=body).needs_processing
    outcome = webhooks.webhook_events_process()
    assert len(outcome.runs) == 1 and outcome.runs[0].trigger == Trigger.WEBHOOK
    assert emulator.counts["GET /phone-number/{id}"] == 1
    assert not WebhookEvent.objects.filter(processed_at__isnull=True).exists()
    assert webhooks.webhook_events_process().runs == []  # nothing left


def test_message_naming_nothing_is_stored_and_needs_no_run(client, emulator):
    assert post(client, message("speech-update", role="user")).json() == {"status": "received"}
    assert WebhookEvent.objects.get().processed_at is not None
    assert not SyncRun.objects.exists() and emulator.counts == {}


def test_vapi_down_during_the_refresh_keeps_the_event_for_the_reconciler(client, emulator, imported):
    first, second, phone = imported
    emulator.edit_phone_number(phone["id"], assistantId=second["id"])
    emulator.down = True
    assert post(client, message(call={"phoneNumberId": phone["id"]})).status_code == 200
    event = WebhookEvent.objects.get()
    assert event.processed_at is None and event.error
    assert PhoneNumber.objects.get().agent.vapi_assistant_id == first["id"]

    emulator.down = False
    pending_reconcile_task(older_than=0)

    event.refresh_from_db()
    assert event.processed_at is not None and event.error == ""
    assert PhoneNumber.objects.get().agent.vapi_assistant_id == second["id"]


@pytest.mark.django_db(transaction=True)
def test_three_concurrent_deliveries_store_one_event(emulator, imported):
    _, _, phone = imported
    body = json.dumps(message(call={"phoneNumberId": phone["id"]})).encode()
    barrier = threading.Barrier(3)
    answers = []

    def deliver():
        try:
            barrier.wait(timeout=10)
            answers.append(post(Client(), body).json()["status"])
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(answers) == ["duplicate", "duplicate", "received"]
    event = WebhookEvent.objects.get()
    assert event.duplicates == 2 and event.processed_at is not None
    assert SyncRun.objects.filter(trigger=Trigger.WEBHOOK).count() == 1
