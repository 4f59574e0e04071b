import uuid

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from agents.models import Agent
from globalvoice.tracking import SyncStatus

from .factories import AgentFactory

pytestmark = pytest.mark.django_db


def test_defaults_match_vapi_defaults():
    agent = Agent.objects.create(name="Reception")
    agent.refresh_from_db()
    assert (agent.model_provider, agent.model, agent.voice_provider, agent.voice_id) == (
        "openai",
        "gpt-4o",
        "vapi",
        "Elliot",
    )
    assert agent.system_prompt == "" and agent.first_message == ""
    assert agent.vapi_assistant_id is None
    # Saving queues the push to Vapi: the new agent waits as "pending" until it is synced.
    assert agent.sync_status == SyncStatus.PENDING
    assert agent.last_synced_at is None and agent.sync_error == ""
    assert isinstance(agent.uuid, uuid.UUID)
    assert agent.created_at is not None and agent.updated_at >= agent.created_at
    assert str(agent) == "Reception"


def test_two_agents_cannot_share_a_vapi_assistant_id():
    AgentFactory(vapi_assistant_id="asst_123")
    with pytest.raises(IntegrityError), transaction.atomic():
        AgentFactory(vapi_assistant_id="asst_123")
    assert Agent.objects.filter(vapi_assistant_id="asst_123").count() == 1


def test_unique_vapi_assistant_id_is_also_a_validation_error():
    AgentFactory(vapi_assistant_id="asst_123")
    with pytest.raises(ValidationError) as excinfo:
        Agent(name="Copy", vapi_assistant_id="asst_123").validate_unique()
    assert "vapi_assistant_id" in excinfo.value.message_dict


def test_many_agents_may_have_no_vapi_assistant_id():
    AgentFactory(vapi_assistant_id=None)
    AgentFactory(vapi_assistant_id=None)
    AgentFactory(vapi_assistant_id=None)
    assert Agent.objects.filter(vapi_assistant_id__isnull=True).count() == 3


def test_uuid_is_unique():
    first = AgentFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        AgentFactory(uuid=first.uuid)


def test_name_is_limited_to_40_characters():
    agent = Agent(name="x" * 41)
    with pytest.raises(ValidationError) as excinfo:
        agent.full_clean()
    assert "name" in excinfo.value.message_dict
    Agent(name="x" * 40).full_clean()


def test_name_is_required():
    with pytest.raises(ValidationError) as excinfo:
        Agent(name="").full_clean()
    assert "name" in excinfo.value.message_dict


def test_vapi_assistant_id_is_indexed_under_the_seed_name():
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Agent._meta.db_table)
    assert "idx_agents_vapi_assistant_id" in constraints
    assert constraints["idx_agents_vapi_assistant_id"]["columns"] == ["vapi_assistant_id"]
    assert any(c["unique"] and c["columns"] == ["vapi_assistant_id"] for c in constraints.values())


def test_agents_are_listed_by_name():
    AgentFactory(name="Zed")
    AgentFactory(name="Alpha")
    AgentFactory(name="Mid")
    assert list(Agent.objects.values_list("name", flat=True)) == ["Alpha", "Mid", "Zed"]
