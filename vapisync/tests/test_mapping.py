"""`vapisync.mapping`, called directly: canonical fields of both sides, documents and PATCH bodies, hashes."""

from datetime import UTC, datetime
from types import SimpleNamespace

from vapisync import mapping

ASSISTANT = {
    "id": "asst-1",
    "name": "Support",
    "firstMessage": "Hi!",
    "model": {
        "provider": "openai", "model": "gpt-4o", "temperature": 0.3, "toolIds": ["t1"], "reasoningEffort": "low",
        "messages": [{"role": "system", "content": "Be kind."}, {"role": "assistant", "content": "Example."}],
    },
    "voice": {"provider": "vapi", "voiceId": "Elliot", "speed": 1.1},
    "transcriber": {"provider": "deepgram"},
    "metadata": {"team": "support"},
    "updatedAt": "2026-03-01T10:00:00.000Z",
}


def test_assistant_fields_read_the_modelled_keys_and_default_to_empty():
    assert mapping.assistant_fields(ASSISTANT) == {
        "name": "Support", "system_prompt": "Be kind.", "first_message": "Hi!", "model_provider": "openai",
        "model": "gpt-4o", "voice_provider": "vapi", "voice_id": "Elliot",
    }
    assert mapping.assistant_fields({}) == {name: "" for name in mapping.ASSISTANT_FIELDS}


def test_agent_fields_read_any_object_with_the_attributes():
    agent = SimpleNamespace(name="A", system_prompt=None, first_message="Hi", model_provider="openai", model="gpt-4o",
                            voice_provider="vapi", voice_id="Elliot")
    assert mapping.agent_fields(agent)["system_prompt"] == ""
    assert mapping.agent_fields(agent)["name"] == "A"


def test_a_document_keeps_every_unmodelled_key_and_the_other_messages():
    doc = mapping.assistant_document({"system_prompt": "Be brief.", "name": "Sales"}, ASSISTANT)

    assert doc["name"] == "Sales"
    assert doc["model"]["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "assistant", "content": "Example."}]
    assert doc["model"]["temperature"] == 0.3 and doc["transcriber"] == {"provider": "deepgram"}
    assert ASSISTANT["model"]["messages"][0]["content"] == "Be kind."  # the base is not modified


def test_a_system_prompt_is_inserted_first_only_when_there_is_one():
    assert mapping.assistant_document({"system_prompt": "Hello"}, {"model": {"messages": []}})["model"]["messages"] == [
        {"role": "system", "content": "Hello"}]
    assert mapping.assistant_document({"system_prompt": ""}, {"model": {"messages": []}})["model"]["messages"] == []


def test_a_new_model_provider_drops_provider_specific_settings_and_keeps_neutral_ones():
    model = mapping.assistant_document({"model_provider": "anthropic", "model": "claude"}, ASSISTANT)["model"]

    assert model["provider"] == "anthropic" and model["model"] == "claude"
    assert "reasoningEffort" not in model
    assert model["temperature"] == 0.3 and model["toolIds"] == ["t1"] and len(model["messages"]) == 2


def test_a_new_voice_provider_starts_the_voice_afresh_and_the_same_provider_keeps_it():
    assert mapping.assistant_document({"voice_provider": "11labs", "voice_id": "x"}, ASSISTANT)["voice"] == {
        "provider": "11labs", "voiceId": "x"}
    assert mapping.assistant_document({"voice_id": "Kai"}, ASSISTANT)["voice"] == {"provider": "vapi", "voiceId": "Kai", "speed": 1.1}


def test_the_update_payload_sends_only_changed_top_level_keys_whole():
    body = mapping.assistant_update_payload({"first_message": "Hello", "system_prompt": "Be brief."}, ASSISTANT)

    assert set(body) == {"firstMessage", "model"}
    assert body["model"]["temperature"] == 0.3  # whole object: Vapi's PATCH replaces each key it is given
    assert mapping.assistant_update_payload(mapping.assistant_fields(ASSISTANT), ASSISTANT) == {}


def test_the_create_payload_carries_the_marker_beside_the_metadata():
    body = mapping.assistant_create_payload({"name": "New"}, marker="uuid-1", metadata={"team": "sales"})

    assert body["metadata"] == {"team": "sales", mapping.MARKER_KEY: "uuid-1"}
    assert body["name"] == "New"


def test_phone_fields_normalise_the_number_when_asked():
    doc = {"id": "pn-1", "number": "+1 682-626-9224", "name": "Main", "provider": "twilio", "assistantId": "asst-1"}

    assert mapping.phone_fields(doc) == {"number": "+1 682-626-9224", "sip_uri": "", "name": "Main", "provider": "twilio",
                                         "assistant_id": "asst-1"}
    assert mapping.phone_fields(doc, normalize_number=lambda n: n.replace(" ", "").replace("-", ""))["number"] == "+16826269224"
    assert mapping.phone_fields({})["number"] is None and mapping.phone_fields({})["assistant_id"] is None


def test_phone_local_fields_take_the_assistant_id_given():
    phone = SimpleNamespace(number="", sip_uri=None, name="Main", provider="vapi")
    assert mapping.phone_local_fields(phone, assistant_id=None) == {
        "number": None, "sip_uri": "", "name": "Main", "provider": "vapi", "assistant_id": None}
    assert mapping.phone_local_fields(phone, assistant_id="asst-2")["assistant_id"] == "asst-2"


def test_the_phone_payload_holds_only_pushable_differences_and_null_clears_the_assignment():
    remote = {"name": "Main", "assistantId": "asst-1", "number": "+16826269224"}

    assert mapping.phone_update_payload({"name": "Main", "assistant_id": "asst-1", "number": "+1999"}, remote) == {}
    assert mapping.phone_update_payload({"name": "Sales", "assistant_id": None}, remote) == {"name": "Sales", "assistantId": None}


def test_hashes_ignore_key_order_and_see_every_value():
    assert mapping.fields_hash({"a": 1, "b": None}) == mapping.fields_hash({"b": None, "a": 1})
    assert mapping.fields_hash({"a": 1}) != mapping.fields_hash({"a": 2})
    assert mapping.document_hash(None) is None
    assert mapping.document_hash(ASSISTANT) == mapping.fields_hash(dict(ASSISTANT))


def test_remote_updated_at_parses_vapis_timestamp_and_ignores_the_rest():
    assert mapping.remote_updated_at(ASSISTANT) == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert mapping.remote_updated_at({"updatedAt": None}) is None
    assert mapping.remote_updated_at({}) is None


def test_diff_lists_old_and_new_for_differing_fields_only():
    assert mapping.diff({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == {"b": [2, 3], "c": [None, 4]}
    assert mapping.diff({"a": 1, "b": 2}, {"a": 2, "b": 3}, keys=["a"]) == {"a": [1, 2]}
    assert mapping.changed_top_level({"a": 1, "b": {"x": 1}}, {"a": 1, "b": {"x": 2}}) == {"b": {"x": 1}}
