"""/api/agents/: authentication, Django model permissions, CRUD and validation."""

import pytest
from rest_framework.test import APIClient

from agents.models import Agent
from globalvoice.tracking import SyncStatus

from .factories import AgentFactory
from .helpers import user_with_perms

pytestmark = pytest.mark.django_db

LIST = "/api/agents/"

AGENT_FIELDS = {
    "id",
    "name",
    "system_prompt",
    "first_message",
    "model_provider",
    "model",
    "voice_provider",
    "voice_id",
    "vapi_assistant_id",
    "sync_status",
    "last_synced_at",
    "sync_error",
    "created_at",
    "updated_at",
}


def detail(agent) -> str:
    return f"/api/agents/{agent.pk}/"


# --- Authentication ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_gets_401_with_bearer_challenge(anon_api, method):
    response = getattr(anon_api, method)(LIST, {}, format="json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert "credentials were not provided" in response.json()["detail"]


def test_anonymous_detail_gets_401(anon_api):
    agent = AgentFactory()
    assert anon_api.get(detail(agent)).status_code == 401
    assert anon_api.delete(detail(agent)).status_code == 401
    assert Agent.objects.filter(pk=agent.pk).exists()


def test_bad_token_gets_401(anon_api):
    anon_api.credentials(HTTP_AUTHORIZATION="Bearer not-a-real-token")
    response = anon_api.get(LIST)
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid token."


def test_token_keyword_other_than_bearer_is_not_accepted(staff_user):
    from rest_framework.authtoken.models import Token

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff_user).key}")
    assert client.get(LIST).status_code == 401


def test_inactive_user_token_gets_401(plain_user, plain_api):
    plain_user.is_active = False
    plain_user.save()
    assert plain_api.get(LIST).status_code == 401


def test_session_auth_reads_and_writes_with_csrf(staff_user):
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="staff", password="pw-staff-123")
    assert client.get(LIST).status_code == 200

    # Session writes need the CSRF token, like any form post.
    assert client.post(LIST, {"name": "No CSRF"}, format="json").status_code == 403
    assert client.get("/admin/").status_code == 200  # the page sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    response = client.post(LIST, {"name": "With CSRF"}, format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.content
    assert Agent.objects.filter(name="With CSRF").exists()


# --- Permissions (DjangoModelPermissions) -----------------------------------------


def test_authenticated_user_without_perms_can_read(plain_api):
    agent = AgentFactory(name="Readable")
    assert plain_api.get(LIST).json()["count"] == 1
    assert plain_api.get(detail(agent)).json()["name"] == "Readable"


def test_authenticated_user_without_perms_cannot_write(plain_api):
    agent = AgentFactory(name="Original")
    assert plain_api.post(LIST, {"name": "New"}, format="json").status_code == 403
    assert plain_api.put(detail(agent), {"name": "Changed"}, format="json").status_code == 403
    assert plain_api.patch(detail(agent), {"name": "Changed"}, format="json").status_code == 403
    assert plain_api.delete(detail(agent)).status_code == 403
    agent.refresh_from_db()
    assert agent.name == "Original"
    assert Agent.objects.count() == 1


def test_each_write_needs_its_own_permission(bearer_client):
    agent = AgentFactory(name="Original")
    changer = bearer_client(user_with_perms("changer", "agents.change_agent"))
    assert changer.patch(detail(agent), {"name": "Changed"}, format="json").status_code == 200
    assert changer.post(LIST, {"name": "New"}, format="json").status_code == 403
    assert changer.delete(detail(agent)).status_code == 403

    adder = bearer_client(user_with_perms("adder", "agents.add_agent"))
    assert adder.post(LIST, {"name": "New"}, format="json").status_code == 201
    assert adder.patch(detail(agent), {"name": "Nope"}, format="json").status_code == 403

    deleter = bearer_client(user_with_perms("deleter", "agents.delete_agent"))
    assert deleter.delete(detail(agent)).status_code == 204
    assert not Agent.objects.filter(pk=agent.pk).exists()


# --- CRUD -------------------------------------------------------------------------


def test_staff_creates_an_agent_with_defaults(staff_api):
    response = staff_api.post(LIST, {"name": "Reception", "first_message": "Hi!"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == AGENT_FIELDS
    assert body["name"] == "Reception"
    assert body["model_provider"] == "openai" and body["model"] == "gpt-4o"
    assert body["voice_provider"] == "vapi" and body["voice_id"] == "Elliot"
    assert body["vapi_assistant_id"] is None
    agent = Agent.objects.get(pk=body["id"])
    assert agent.first_message == "Hi!"


def test_staff_updates_and_deletes(staff_api):
    agent = AgentFactory(name="Before")
    payload = {
        "name": "After",
        "system_prompt": "Be brief.",
        "first_message": "Hello",
        "model_provider": "anthropic",
        "model": "claude-sonnet-4-6",
        "voice_provider": "11labs",
        "voice_id": "burt",
    }
    response = staff_api.put(detail(agent), payload, format="json")
    assert response.status_code == 200, response.content
    agent.refresh_from_db()
    assert {k: getattr(agent, k) for k in payload} == payload

    response = staff_api.patch(detail(agent), {"voice_id": "Elliot"}, format="json")
    assert response.status_code == 200
    agent.refresh_from_db()
    assert agent.voice_id == "Elliot" and agent.name == "After"

    assert staff_api.delete(detail(agent)).status_code == 204
    assert not Agent.objects.filter(pk=agent.pk).exists()
    assert staff_api.get(detail(agent)).status_code == 404


def test_read_only_fields_are_ignored_on_write(staff_api):
    response = staff_api.post(
        LIST,
        {
            "name": "Sneaky",
            "vapi_assistant_id": "asst_forged",
            "sync_status": SyncStatus.SYNCED,
            "last_synced_at": "2020-01-01T00:00:00Z",
            "sync_error": "forged",
            "created_at": "2000-01-01T00:00:00Z",
            "id": 999999,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    agent = Agent.objects.get(name="Sneaky")
    assert agent.pk != 999999
    assert agent.vapi_assistant_id is None
    assert agent.sync_status != SyncStatus.SYNCED
    assert agent.last_synced_at is None
    assert agent.sync_error == ""
    assert agent.created_at.year > 2000

    linked = AgentFactory(vapi_assistant_id="asst_real")
    response = staff_api.patch(detail(linked), {"vapi_assistant_id": None, "name": "Renamed"}, format="json")
    assert response.status_code == 200
    linked.refresh_from_db()
    assert linked.vapi_assistant_id == "asst_real" and linked.name == "Renamed"


def test_list_is_paginated(staff_api):
    Agent.objects.bulk_create([Agent(name=f"Agent {i:03d}") for i in range(51)])
    body = staff_api.get(LIST).json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 51
    assert len(body["results"]) == 50
    assert body["previous"] is None
    assert body["next"].endswith("/api/agents/?page=2")
    assert set(body["results"][0]) == AGENT_FIELDS
    assert body["results"][0]["name"] == "Agent 000"

    page2 = staff_api.get(LIST, {"page": 2}).json()
    assert [a["name"] for a in page2["results"]] == ["Agent 050"]
    assert page2["next"] is None
    assert staff_api.get(LIST, {"page": 3}).status_code == 404


def test_empty_list(plain_api):
    assert plain_api.get(LIST).json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_missing_agent_is_404(staff_api):
    response = staff_api.get("/api/agents/424242/")
    assert response.status_code == 404
    assert staff_api.get("/api/agents/not-a-number/").status_code == 404


# --- Validation: 400 with field errors, never 500 ---------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "x" * 41}, "name"),
        ({"name": ""}, "name"),
        ({}, "name"),
        ({"name": None}, "name"),
        ({"name": "ok", "model_provider": "p" * 51}, "model_provider"),
        ({"name": "ok", "model": "m" * 101}, "model"),
        ({"name": "ok", "voice_id": "v" * 101}, "voice_id"),
        ({"name": ["a", "list"]}, "name"),
        ({"name": {"an": "object"}}, "name"),
    ],
)
def test_bad_input_is_a_400_with_field_errors(staff_api, payload, field):
    response = staff_api.post(LIST, payload, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid" and body["detail"].startswith("Invalid request: "), body
    body = body["errors"]
    assert field in body, body
    assert isinstance(body[field], list) and body[field]
    assert not Agent.objects.exists()


def test_name_of_exactly_40_characters_is_accepted(staff_api):
    assert staff_api.post(LIST, {"name": "x" * 40}, format="json").status_code == 201


def test_malformed_json_is_a_400(staff_api):
    response = staff_api.post(LIST, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_non_object_body_is_a_400(staff_api):
    response = staff_api.post(LIST, [1, 2, 3], format="json")
    assert response.status_code == 400
    assert "non_field_errors" in response.json()["errors"]


def test_update_with_a_too_long_name_is_a_400(staff_api):
    agent = AgentFactory(name="Short")
    response = staff_api.patch(detail(agent), {"name": "y" * 41}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()["errors"]
    agent.refresh_from_db()
    assert agent.name == "Short"


def test_deeply_nested_json_is_a_400_not_a_500(staff_api):
    body = "[" * 100_000 + "]" * 100_000
    response = staff_api.post("/api/agents/", body, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]


# --- Control characters: NUL is a field error (PostgreSQL cannot store it), never a 500/503 ----------


@pytest.mark.parametrize("field", ["name", "system_prompt", "first_message", "model", "voice_id"])
def test_nul_is_a_field_error(staff_api, field):
    payload = {"name": "ok", field: "bad\u0000value"}
    response = staff_api.post(LIST, payload, format="json")
    assert response.status_code == 400, response.content
    assert "Null characters are not allowed." in response.json()["errors"][field]
    assert not Agent.objects.exists()


def test_other_control_characters_are_kept(staff_api):
    # Vapi stores them; the app keeps text character for character (see e2e test_fuzz).
    prompt = "Rules:\n\t- be brief\r\n\t- Bell\u0007 Esc\u001b[31m DEL\u007f"
    response = staff_api.post(LIST, {"name": "Tab\there", "system_prompt": prompt}, format="json")
    assert response.status_code == 201, response.content
    assert Agent.objects.get().system_prompt == prompt


def test_json_nested_beyond_the_limit_is_a_400(staff_api):
    from globalvoice.parsers import MAX_JSON_DEPTH

    deep = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    response = staff_api.post(LIST, f'{{"name": {deep}}}', content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]
    shallow = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    response = staff_api.post(LIST, f'{{"name": {shallow}}}', content_type="application/json")
    assert response.status_code == 400 and "name" in response.json()["errors"]  # parsed; a list is not a name
