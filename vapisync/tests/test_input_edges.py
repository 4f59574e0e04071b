"""Edges of what reaches the app: bodies that must be a 400 (never 500/503), numbers Vapi holds that
are not E.164, and write answers that show what the automatic push left. Vapi is the emulator."""

import json

import pytest

from agents.models import Agent
from globalvoice.tracking import SyncStatus
from phonenumbers_app.models import PhoneNumber
from vapisync.models import Direction, Trigger, WebhookEvent
from vapisync.services.runs import sync_run_start

from .factories import make_assistant

pytestmark = pytest.mark.django_db

SYNC = "/api/vapi-sync/"
SECRET = "test-webhook-secret"  # globalvoice.settings_test


# --- Control characters in ids on sync triggers -------------------------------------------------------

ID_BODIES = [
    ("agents/to-vapi", "ids"),
    ("assistants/from-vapi", "ids"),
    ("phone-numbers/to-vapi", "ids"),
    ("phone-numbers/from-vapi", "ids"),
    ("full", "agent_ids"),
    ("full", "phone_number_ids"),
    ("assistants/delete-in-vapi", "vapi_ids"),
]


@pytest.mark.parametrize(("path", "field"), ID_BODIES)
@pytest.mark.parametrize("bad", ["\u0000", "asst_\u0000", "asst\u0001x", "a\u007fb", "x\u009b"])
def test_control_characters_in_ids_are_a_field_error(emulator, staff_api, path, field, bad):
    response = staff_api.post(SYNC + path, {field: [bad]}, format="json")
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert field in errors, errors
    assert "control character" in json.dumps(errors)
    assert emulator.counts == {}


# --- Deeply nested webhook bodies -------------------------------------------------------------------


def webhook(client, raw: str):
    return client.post(f"{SYNC}webhook", raw, content_type="application/json", HTTP_X_VAPI_SECRET=SECRET)


@pytest.mark.parametrize("depth", [150, 1_500, 5_000, 200_000])
def test_deeply_nested_webhook_body_is_a_400(client, depth):
    inner = "[" * depth + "]" * depth
    response = webhook(client, '{"message": {"type": "status-update", "deep": ' + inner + "}}")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["code"] == "webhook_malformed"
    assert "nested too deeply" in response.json()["detail"]
    assert not WebhookEvent.objects.exists()


def test_nested_objects_too(client):
    inner = '{"a":' * 3_000 + "1" + "}" * 3_000
    response = webhook(client, '{"message": {"type": "status-update", "deep": ' + inner + "}}")
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


def test_a_reasonably_nested_message_is_received(client):
    inner = "[" * 40 + "]" * 40
    response = webhook(client, '{"message": {"type": "status-update", "deep": ' + inner + "}}")
    assert response.status_code == 200 and response.json()["status"] == "received"
    assert WebhookEvent.objects.count() == 1


def test_webhook_still_names_malformed_json(client):
    response = webhook(client, "{not json")
    assert response.status_code == 400 and response.json()["code"] == "webhook_malformed"


# --- Numbers Vapi holds that are not E.164 ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("odd", ["1234", "abc", "+001234567890"])
def test_imported_odd_numbers_stay_editable_and_their_changes_reach_vapi(emulator, vapi_client, staff_api, odd):
    assistant = make_assistant(emulator, "Reception")
    remote = emulator.add_phone_number(provider="byo-phone-number", number=odd, name="BYO",
                                       numberE164CheckEnabled=False, credentialId="cred-1")
    sync_run_start(direction=Direction.FULL, trigger=Trigger.CLI, client=vapi_client)
    phone = PhoneNumber.objects.get(vapi_phone_id=remote["id"])
    assert phone.number == odd
    agent = Agent.objects.get(vapi_assistant_id=assistant["id"])

    response = staff_api.patch(f"/api/phone-numbers/{phone.pk}/", {"name": "Front desk", "agent": agent.pk}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["number"], body["number_is_e164"], body["name"]) == (odd, False, "Front desk")
    # The save pushed in-process after commit, and the answer shows it.
    assert body["sync_status"] == SyncStatus.SYNCED, body
    assert emulator.phone_numbers[remote["id"]]["name"] == "Front desk"
    assert emulator.phone_numbers[remote["id"]]["assistantId"] == assistant["id"]
    assert emulator.phone_numbers[remote["id"]]["number"] == odd


# --- Write answers show the state after the automatic push ---------------------------------------


@pytest.mark.django_db(transaction=True)
def test_create_and_update_answers_show_the_push(emulator, staff_api):
    response = staff_api.post("/api/agents/", {"name": "From API", "first_message": "Hi"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["sync_status"] == SyncStatus.SYNCED, body
    assert body["vapi_assistant_id"] in emulator.assistants
    assert body["last_synced_at"] is not None

    response = staff_api.patch(f"/api/agents/{body['id']}/", {"first_message": "Hello"}, format="json",
                               HTTP_IF_MATCH=response["ETag"])
    assert response.status_code == 200, response.content
    assert response.json()["sync_status"] == SyncStatus.SYNCED
    assert response["ETag"] == '"2"'
    assert emulator.assistants[body["vapi_assistant_id"]]["firstMessage"] == "Hello"


# --- People's writes are optimistic: a real import moving a record on meanwhile ----------------------


def writes(emulator) -> int:
    return sum(n for route, n in emulator.counts.items() if not route.startswith("GET"))


@pytest.fixture
def imported_agent(emulator, vapi_client):
    assistant = make_assistant(emulator, "Reception")
    sync_run_start(direction=Direction.IMPORT, trigger=Trigger.CLI, client=vapi_client)
    return assistant, Agent.objects.get(vapi_assistant_id=assistant["id"])


def rename_in_vapi_and_import(emulator, vapi_client, assistant):
    emulator.edit_assistant(assistant["id"], name="Front desk")
    sync_run_start(direction=Direction.IMPORT, trigger=Trigger.CLI, client=vapi_client)
    emulator.reset_counters()


def test_stale_admin_form_does_not_revert_an_imported_rename(emulator, vapi_client, imported_agent, client, staff_user):
    assistant, agent = imported_agent
    client.force_login(staff_user)
    url = f"/admin/agents/agent/{agent.pk}/change/"
    form = client.get(url).context["adminform"].form
    data = {name: ("" if form[name].value() is None else form[name].value()) for name in form.fields}

    rename_in_vapi_and_import(emulator, vapi_client, assistant)
    agent.refresh_from_db()
    assert agent.name == "Front desk" and agent.version > data["seen_version"]

    response = client.post(url, {**data, "first_message": "Welcome!"})  # changed only the first message
    assert response.status_code == 200
    assert "Name: your value “Reception” / current value “Front desk”" in response.context["adminform"].form.non_field_errors()
    agent.refresh_from_db()
    assert (agent.name, agent.first_message) == ("Front desk", "Hi, this is Reception.")
    assert emulator.assistants[assistant["id"]]["name"] == "Front desk"
    assert writes(emulator) == 0


def test_if_match_refuses_a_patch_over_an_imported_rename(emulator, vapi_client, imported_agent, staff_api):
    assistant, agent = imported_agent
    etag = staff_api.get(f"/api/agents/{agent.pk}/")["ETag"]
    rename_in_vapi_and_import(emulator, vapi_client, assistant)
    response = staff_api.put(f"/api/agents/{agent.pk}/", {"name": "Reception", "first_message": "Welcome!"},
                             format="json", HTTP_IF_MATCH=etag)
    assert response.status_code == 412 and response.json()["code"] == "precondition_failed"
    agent.refresh_from_db()
    assert agent.name == "Front desk"
    fresh = staff_api.get(f"/api/agents/{agent.pk}/")["ETag"]
    assert fresh != etag
    response = staff_api.patch(f"/api/agents/{agent.pk}/", {"first_message": "Welcome!"}, format="json",
                               HTTP_IF_MATCH=fresh)
    assert response.status_code == 200
    agent.refresh_from_db()
    assert (agent.name, agent.first_message) == ("Front desk", "Welcome!")
