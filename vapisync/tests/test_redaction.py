"""Vapi error text that echoes the API key: redacted before it is cut to length, so no part of the
key reaches a run's errors, a record's sync error, an API answer or a log line."""

import logging

import pytest
import responses
from rest_framework.test import APIClient

from agents.models import Agent
from globalvoice.tracking import SyncStatus
from vapi_emulator import VapiEmulator
from vapisync.models import SyncChange, SyncRun

from .factories import BASE_URL

pytestmark = pytest.mark.django_db

# 42 characters, like a real Vapi private key (a UUID plus a prefix).
KEY = "sk-live-3f9c2a71-58be-4d0e-9a13-c7e2b64f0d"
assert len(KEY) == 42


def key_fragments(text: str, size: int = 8) -> list[str]:
    return [KEY[i : i + size] for i in range(len(KEY) - size + 1) if KEY[i : i + size] in text]


@pytest.fixture
def emulator(settings):
    settings.VAPI_API_KEY = KEY
    emu = VapiEmulator(api_key=KEY, random_seed=7)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        emu.install(rsps, BASE_URL)
        yield emu


@pytest.fixture
def api(staff_user):
    client = APIClient()
    client.force_authenticate(staff_user)
    return client


def _echo(prefix_len: int) -> str:
    """A plain-text error page that quotes the request's Authorization header after `prefix_len` characters,
    longer than the 300 characters kept of an error body."""
    return "x" * (prefix_len - len("Authorization: Bearer ")) + f"Authorization: Bearer {KEY} was refused. " + "y" * 200


@pytest.mark.parametrize("prefix_len", [0, 150, 275, 290])
def test_error_body_echoing_the_key_leaves_no_fragment_anywhere(emulator, api, caplog, prefix_len):
    caplog.set_level(logging.DEBUG)
    agent = Agent.objects.create(name="Reception", system_prompt="Be brief.")
    emulator.fail_next(1, 400, "POST /assistant", body=_echo(max(prefix_len, len("Authorization: Bearer "))))

    response = api.post("/api/vapi-sync/agents/to-vapi", {}, format="json")

    assert response.status_code == 202  # queued; finished once the answer has been sent
    run = SyncRun.objects.get()
    assert run.errors, "the refused create is reported"
    agent.refresh_from_db()
    assert agent.sync_status == SyncStatus.ERROR
    shown = [
        response.content.decode(),
        str(run.errors),
        run.message,
        agent.sync_error,
        str(list(SyncChange.objects.values_list("error", "reason"))),
        api.get(f"/api/vapi-sync/runs/{run.pk}/").content.decode(),
        api.get(f"/api/agents/{agent.pk}/").content.decode(),
        caplog.text,
    ]
    for text in shown:
        assert key_fragments(text) == [], text
    assert "Bearer [redacted]" in agent.sync_error  # Vapi's words are kept, only the key is replaced


def test_a_non_json_answer_echoing_the_key_is_redacted_before_its_snippet_is_cut(emulator, api, caplog):
    caplog.set_level(logging.DEBUG)
    # A 200 that is not JSON (a proxy's page): the error quotes its first 200 characters.
    emulator.fail_next(1, 200, "GET /assistant", body="z" * 170 + f" token={KEY} " + "w" * 100)

    response = api.post("/api/vapi-sync/assistants/from-vapi", {}, format="json")

    assert response.status_code == 202
    finished = api.get(response["Location"])
    assert finished.json()["status"] == "failed"
    run = SyncRun.objects.get()
    for text in (response.content.decode(), finished.content.decode(), str(run.errors), run.message, caplog.text):
        assert key_fragments(text) == [], text
