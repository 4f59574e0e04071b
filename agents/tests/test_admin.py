import pytest
from django.db.models import F

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


# --- Optimistic saves: a change form saves only over the version it was opened on -------------------


def change_form_data(client, url) -> dict:
    """What the browser would post back unchanged: the rendered form's values, hidden version included."""
    form = client.get(url).context["adminform"].form
    return {name: ("" if form[name].value() is None else form[name].value()) for name in form.fields}


def test_stale_form_is_refused_after_an_import_renamed_the_agent(client, staff_user):
    agent = AgentFactory(name="Old name", first_message="Hello")
    client.force_login(staff_user)
    url = f"/admin/agents/agent/{agent.pk}/change/"
    data = change_form_data(client, url)
    assert data["seen_version"] == agent.version == 1
    # While the form is open, an import brings a rename from Vapi (written as the sync writes).
    Agent.objects.filter(pk=agent.pk).update(name="Renamed in Vapi", version=F("version") + 1)
    # The person changed only the first message; the form still carries the old name.
    response = client.post(url, {**data, "first_message": "Welcome!"})

    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    text = " ".join(errors)
    assert "changed (by someone else or by a sync) after you opened this page" in text
    assert "Nothing was saved" in text
    assert "Name: your value “Old name” / current value “Renamed in Vapi”" in errors
    assert "First message: your value “Welcome!” / current value “Hello”" in errors
    html = response.content.decode()
    assert 'class="errorlist nonfield"' in html and "Please correct the error below." in html
    agent.refresh_from_db()
    assert (agent.name, agent.first_message, agent.version) == ("Renamed in Vapi", "Hello", 2)

    # Reloading shows the current values; saving that form keeps the rename.
    fresh = change_form_data(client, url)
    assert fresh["name"] == "Renamed in Vapi" and fresh["seen_version"] == 2
    assert client.post(url, {**fresh, "first_message": "Welcome!"}).status_code == 302
    agent.refresh_from_db()
    assert (agent.name, agent.first_message, agent.version) == ("Renamed in Vapi", "Welcome!", 3)


def test_current_form_saves_and_moves_the_version(client, staff_user):
    agent = AgentFactory(name="Reception")
    client.force_login(staff_user)
    url = f"/admin/agents/agent/{agent.pk}/change/"
    response = client.post(url, {**change_form_data(client, url), "first_message": "Hi there"})
    assert response.status_code == 302
    agent.refresh_from_db()
    assert (agent.first_message, agent.version) == ("Hi there", 2)
    # The same form posted again (a double click) holds nothing the record does not: accepted.
    assert client.post(url, {**change_form_data(client, url), "seen_version": 1, "first_message": "Hi there"}).status_code == 302
    # The old form with another change is stale.
    response = client.post(url, {**change_form_data(client, url), "seen_version": 1, "first_message": "Again"})
    assert response.status_code == 200
    assert "First message: your value “Again” / current value “Hi there”" in response.context["adminform"].form.non_field_errors()
    agent.refresh_from_db()
    assert agent.first_message == "Hi there"


def test_form_without_its_version_is_refused(client, staff_user):
    agent = AgentFactory(name="Reception")
    client.force_login(staff_user)
    url = f"/admin/agents/agent/{agent.pk}/change/"
    data = change_form_data(client, url)
    del data["seen_version"]
    response = client.post(url, {**data, "name": "Changed"})
    assert response.status_code == 200
    assert "does not say which version" in " ".join(response.context["adminform"].form.non_field_errors())
    agent.refresh_from_db()
    assert agent.name == "Reception"
