"""`vapisync.resources`, called directly: the mappers (no engine, no run) and the registry's entries."""

import pytest

from agents.models import Agent
from phonenumbers_app.models import PhoneNumber
from vapisync import mapping
from vapisync.models import Resource
from vapisync.resources import (
    REGISTRY,
    RESOURCE_ORDER,
    AgentMapper,
    PhoneNumberMapper,
    resource_spec,
    resource_spec_by_public_name,
)

ASSISTANT = {
    "id": "asst-1", "name": "Support", "firstMessage": "Hi!",
    "model": {"provider": "openai", "model": "gpt-4o", "messages": [{"role": "system", "content": "Be kind."}]},
    "voice": {"provider": "vapi", "voiceId": "Elliot"},
}
NUMBER = {"id": "pn-1", "number": "+1 682-626-9224", "name": "Main line", "provider": "twilio", "assistantId": "asst-1"}


# --- Agents ---------------------------------------------------------------------------------------


def test_agent_mapper_reads_both_sides_into_the_same_fields():
    mapper = AgentMapper()
    agent = Agent(name="Support", system_prompt="Be kind.", first_message="Hi!", model_provider="openai", model="gpt-4o",
                  voice_provider="vapi", voice_id="Elliot")

    assert mapper.local_fields(agent) == mapper.remote_fields(ASSISTANT) == mapping.assistant_fields(ASSISTANT)
    assert mapper.fields == mapping.ASSISTANT_FIELDS


def test_agent_mapper_builds_an_unsaved_agent_linked_to_the_assistant():
    mapper = AgentMapper()
    fields = {**mapper.remote_fields(ASSISTANT), "name": "N" * 50}

    agent = mapper.new_local(ASSISTANT, fields)

    assert agent.pk is None
    assert agent.vapi_assistant_id == "asst-1"
    assert agent.name == "N" * 40  # the local column's length
    assert agent.system_prompt == "Be kind." and agent.voice_id == "Elliot"


def test_agent_mapper_applies_only_the_fields_given():
    agent = Agent(name="Old", first_message="Keep me")
    AgentMapper().apply_local(agent, {"name": "New", "system_prompt": None}, {"id": "asst-9"})

    assert (agent.name, agent.system_prompt, agent.first_message, agent.vapi_assistant_id) == ("New", "", "Keep me", "asst-9")


def test_agent_mapper_labels_a_record_or_a_document():
    mapper = AgentMapper()
    assert mapper.label(Agent(name="Support")) == "Support"
    assert mapper.label(doc={"id": "asst-1", "name": "Remote"}) == "Remote"
    assert mapper.label(doc={"id": "asst-1"}) == "asst-1"
    assert mapper.label() == ""
    assert mapper.local_state(Agent()) == {}


# --- Phone numbers ----------------------------------------------------------------------------------


def test_phone_mapper_compares_the_route_as_the_assistants_vapi_id():
    mapper = PhoneNumberMapper({"asst-1": 5})
    routed = PhoneNumber(number="+16826269224", name="Main line", provider="twilio", agent_id=5)
    unknown_agent = PhoneNumber(number="+16826269225", agent_id=6)
    kept = PhoneNumber(number="+16826269226", vapi_assistant_id="asst-elsewhere")

    assert mapper.local_fields(routed) == {"number": "+16826269224", "sip_uri": "", "name": "Main line",
                                           "provider": "twilio", "assistant_id": "asst-1"}
    assert mapper.local_fields(unknown_agent)["assistant_id"] is None  # its agent has no assistant yet
    assert mapper.local_fields(kept)["assistant_id"] == "asst-elsewhere"  # Vapi's assignment, not imported yet
    assert mapper.local_state(routed) == {"agent": 5}


def test_phone_mapper_normalises_vapis_number_and_keeps_what_it_cannot_parse():
    mapper = PhoneNumberMapper({})
    assert mapper.remote_fields(NUMBER)["number"] == "+16826269224"
    assert mapper.remote_fields({**NUMBER, "number": "not a number"})["number"] == "not a number"
    assert mapper.local_fields(PhoneNumber(number="+16826269224", name="Main line", provider="twilio",
                                           vapi_assistant_id="asst-1")) == mapper.remote_fields(NUMBER)


def test_phone_mapper_links_the_agent_it_knows_and_keeps_the_assignment_it_does_not():
    mapper = PhoneNumberMapper({"asst-1": 5})

    linked = mapper.new_local(NUMBER, mapper.remote_fields(NUMBER))
    assert (linked.agent_id, linked.vapi_assistant_id, linked.vapi_phone_id) == (5, "asst-1", "pn-1")
    assert linked.number == "+16826269224" and linked.keep_number_as_given

    other = {**NUMBER, "assistantId": "asst-unknown", "name": "X" * 60}
    waiting = mapper.new_local(other, mapper.remote_fields(other))
    assert (waiting.agent_id, waiting.vapi_assistant_id) == (None, "asst-unknown")
    assert waiting.name == "X" * 40

    mapper.apply_local(linked, {"assistant_id": None}, NUMBER)
    assert (linked.agent_id, linked.vapi_assistant_id) == (None, None)


def test_phone_mapper_labels_by_number_then_sip_uri_then_name_then_id():
    mapper = PhoneNumberMapper({})
    assert mapper.label(doc=NUMBER) == "+1 682-626-9224"
    assert mapper.label(doc={"id": "pn-2", "sipUri": "sip:a@b"}) == "sip:a@b"
    assert mapper.label(doc={"id": "pn-3", "name": "Named"}) == "Named"
    assert mapper.label(doc={"id": "pn-4"}) == "pn-4"


@pytest.mark.django_db
def test_the_current_phone_mapper_reads_the_agents_linked_to_assistants():
    linked = Agent.objects.create(name="Linked", vapi_assistant_id="asst-1")
    Agent.objects.create(name="Local only")

    mapper = PhoneNumberMapper.current()

    assert mapper.agent_by_vapi_id == {"asst-1": linked.pk}
    assert resource_spec(Resource.PHONE_NUMBERS).mapper().agent_by_vapi_id == {"asst-1": linked.pk}


# --- The registry -----------------------------------------------------------------------------------


def test_every_resource_is_registered_once_in_the_run_order():
    assert set(RESOURCE_ORDER) == set(REGISTRY) == set(Resource.values)
    assert len({spec.public_name for spec in REGISTRY.values()}) == len(REGISTRY)


@pytest.mark.parametrize("spec", list(REGISTRY.values()), ids=lambda spec: spec.public_name)
def test_each_entry_names_real_columns_and_is_found_by_both_names(spec):
    columns = {field.attname for field in spec.model._meta.concrete_fields}
    assert spec.vapi_id_field in columns
    assert set(spec.tracked_fields) <= columns
    assert resource_spec(spec.resource) is spec
    assert resource_spec_by_public_name(spec.public_name) is spec


def test_public_names_are_the_apis_and_unknown_names_are_none():
    assert resource_spec_by_public_name("agents").model is Agent
    assert resource_spec_by_public_name("phone_numbers").model is PhoneNumber
    assert resource_spec_by_public_name("assistants") is None
    assert resource_spec_by_public_name("tools") is None
