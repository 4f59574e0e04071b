"""`vapisync.services.selection`: the one "local ids must exist" rule the API and the command both apply."""

import io

import pytest
from django.core.management import CommandError, call_command

from agents.models import Agent
from phonenumbers_app.models import PhoneNumber
from vapisync.exceptions import UnknownLocalIds
from vapisync.models import Resource
from vapisync.services.selection import local_ids_check

pytestmark = pytest.mark.django_db


def test_known_ids_pass_and_unknown_ones_are_named_in_order():
    agent = Agent.objects.create(name="Support")
    local_ids_check(Resource.ASSISTANTS, [agent.pk])
    local_ids_check(Resource.ASSISTANTS, [])

    with pytest.raises(UnknownLocalIds) as raised:
        local_ids_check(Resource.ASSISTANTS, [agent.pk + 7, agent.pk, agent.pk + 2, 2**63])
    assert raised.value.missing == [agent.pk + 2, agent.pk + 7, 2**63]
    assert str(raised.value) == f"No agent with id {agent.pk + 2}, {agent.pk + 7}, {2**63} here."


def test_ids_are_checked_against_the_resources_own_table():
    agent = Agent.objects.create(name="Support")
    with pytest.raises(UnknownLocalIds, match="No phone number with id"):
        local_ids_check(Resource.PHONE_NUMBERS, [agent.pk])
    number = PhoneNumber.objects.create(number="+16826269224")
    local_ids_check(Resource.PHONE_NUMBERS, [number.pk])


def test_the_api_and_the_command_give_the_same_answer(staff_api, emulator, settings):
    settings.VAPI_API_KEY, settings.VAPI_BASE_URL = "test-vapi-key", "http://vapi.test"
    response = staff_api.post("/api/vapi-sync/agents/to-vapi", {"ids": [424242]}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"ids": ["No agent with id 424242 here."]}

    with pytest.raises(CommandError, match="--ids: No agent with id 424242 here."):
        call_command("vapi_sync", "export", "--resource", "agents", "--ids", "424242", "--user", "staff",
                     stdout=io.StringIO(), stderr=io.StringIO())
    assert not emulator.requests  # neither reached Vapi
