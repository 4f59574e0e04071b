"""Vapi's official Python SDK (`vapi-server-sdk`, pinned in requirements-dev.txt) against the emulator.

A third-party client, not ours: it sends what current Vapi accepts and parses what Vapi answers with
its own (pydantic) types. The emulator is served over HTTP on a loopback port, as `make demo` does.
"""

from __future__ import annotations

import threading

import pytest
import vapi  # vapi-server-sdk, from requirements-dev.txt: a missing install fails here, never skips
from vapi.core.api_error import ApiError

from vapi_emulator import VapiEmulator, make_server

# The SDK itself still reads pydantic v1 attributes; that is its business, not this suite's.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:vapi.*")]

KEY = "sdk-contract-key"
MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def served():
    emulator = VapiEmulator(api_key=KEY, seed="demo", random_seed=5)
    server = make_server(emulator, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = vapi.Vapi(token=KEY, base_url=f"http://127.0.0.1:{server.server_port}", timeout=10)
    yield emulator, client
    server.shutdown()
    server.server_close()


def test_the_sdk_lists_creates_updates_and_deletes_assistants(served):
    emulator, client = served
    listed = client.assistants.list(limit=3)
    assert len(listed) == 3 and {a.id for a in listed} <= set(emulator.assistants)
    assert all(isinstance(a, vapi.Assistant) for a in listed)

    created = client.assistants.create(
        name="Concierge",
        first_message="Hello!",
        model={"provider": "openai", "model": "gpt-live-1", "serviceTier": "priority",
               "speaker": {"instructions": "Warm and brief."}},
        voice={"provider": "11labs", "voiceId": "burt", "model": "eleven_v4_turbo"},
        transcriber={"provider": "soniox", "endpointSensitivity": 0.4},
    )
    stored = emulator.assistants[created.id]
    assert stored["model"]["serviceTier"] == "priority" and stored["voice"]["model"] == "eleven_v4_turbo"
    assert created.model.service_tier == "priority" and created.model.speaker.instructions == "Warm and brief."

    updated = client.assistants.update(created.id, name="Concierge 2",
                                       voice={"provider": "deepgram", "voiceId": "asteria", "speed": 1.1, "expressivity": 0.3})
    assert updated.name == "Concierge 2" and updated.first_message == "Hello!"
    assert emulator.assistants[created.id]["voice"] == {"provider": "deepgram", "voiceId": "asteria", "speed": 1.1, "expressivity": 0.3}
    assert client.assistants.get(created.id).name == "Concierge 2"

    assert client.assistants.delete(created.id).id == created.id
    with pytest.raises(ApiError) as missing:
        client.assistants.get(created.id)
    assert missing.value.status_code == 404
    assert missing.value.body["message"] == "Couldn't Get Assistant. Assistant Not Found"


def test_the_sdk_reads_phone_numbers_of_every_provider(served):
    emulator, client = served
    numbers = client.phone_numbers.list(limit=100)
    assert {n.id for n in numbers} == set(emulator.phone_numbers)
    first = next(iter(emulator.phone_numbers.values()))
    assert client.phone_numbers.get(first["id"]).id == first["id"]


def test_resources_the_emulator_does_not_model_answer_empty_lists(served):
    emulator, client = served
    assert client.tools.list() == []
    assert client.squads.list() == []
    with pytest.raises(ApiError) as missing:
        client.tools.get(MISSING)
    assert missing.value.status_code == 404 and missing.value.body["statusCode"] == 404
    assert emulator.counts["GET /tool"] == 1 and emulator.counts["GET /squad"] == 1


def test_a_wrong_type_is_rejected_as_vapi_does(served):
    _, client = served
    with pytest.raises(ApiError) as rejected:
        client.assistants.create(name="Bad", voice={"provider": "deepgram", "voiceId": "asteria", "speed": "fast"})
    assert rejected.value.status_code == 400
    assert rejected.value.body["message"] == ["voice.speed must be a number conforming to the specified constraints"]
