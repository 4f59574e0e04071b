import pytest

from agents.models import Agent

from .factories import AgentFactory

pytestmark = pytest.mark.django_db


def test_changelist_search_and_filters(client, staff_user):
    AgentFactory(name="Reception", vapi_assistant_id="asst_reception")
    AgentFactory(name="Sales")
    client.force_login(staff_user)
    response = client.get("/admin/agents/agent/")
    assert response.status_code == 200
    assert b"Reception" in response.content and b"Sales" in response.content

    by_id = client.get("/admin/agents/agent/", {"q": "asst_reception"})
    assert b"Reception" in by_id.content and b"Sales" not in by_id.content
    by_status = client.get("/admin/agents/agent/", {"sync_status__exact": "local_only"})
    assert by_status.status_code == 200


def test_add_and_change_pages(client, staff_user):
    client.force_login(staff_user)
    assert client.get("/admin/agents/agent/add/").status_code == 200
    response = client.post(
        "/admin/agents/agent/add/",
        {
            "name": "From admin",
            "first_message": "Hi",
            "system_prompt": "",
            "model_provider": "openai",
            "model": "gpt-4o",
            "voice_provider": "vapi",
            "voice_id": "Elliot",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    agent = Agent.objects.get(name="From admin")
    assert client.get(f"/admin/agents/agent/{agent.pk}/change/").status_code == 200


def test_admin_needs_staff(client, plain_user):
    client.force_login(plain_user)
    response = client.get("/admin/agents/agent/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
