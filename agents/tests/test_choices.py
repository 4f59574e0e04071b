"""Model and voice providers (and published model or voice names) are checked when a person saves:
a 400 naming the allowed values in the API, choices and field errors in the admin. Values an agent
already holds pass while unchanged. The catalogue comes from settings.AGENT_CATALOGUE (here: the
committed Vapi OpenAPI subset)."""

import pytest

from agents.catalogue import get_catalogue
from agents.models import Agent

from .factories import AgentFactory

pytestmark = pytest.mark.django_db

LIST = "/api/agents/"
ADD = "/admin/agents/agent/add/"

FORM = {
    "name": "From admin",
    "first_message": "Hi",
    "system_prompt": "",
    "model_provider": "openai",
    "model": "gpt-4o",
    "voice_provider": "vapi",
    "voice_id": "Elliot",
}


def test_unknown_model_provider_is_a_400_listing_the_allowed_ones(staff_api):
    response = staff_api.post(LIST, {"name": "Bad", "model_provider": "nonsense-ai"}, format="json")
    assert response.status_code == 400, response.content
    [message] = response.json()["errors"]["model_provider"]
    assert "nonsense-ai" in message and "Allowed:" in message
    for provider in ("openai", "anthropic", "google", "groq", "vapi"):
        assert provider in message
    assert not Agent.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field", "listed"),
    [
        ({"model_provider": "openai", "model": "gpt-9000"}, "model", "gpt-4o"),
        ({"model_provider": "anthropic", "model": "claude-sonnet"}, "model", "claude-sonnet-4-6"),
        ({"voice_provider": "no-such-voices"}, "voice_provider", "11labs"),
        ({"voice_provider": "deepgram", "voice_id": "nobody"}, "voice_id", "asteria"),
        # custom-llm needs a server URL the app does not hold: it would only fail later in Vapi.
        ({"model_provider": "custom-llm", "model": "mine"}, "model_provider", "openai"),
        ({"voice_provider": "custom-voice"}, "voice_provider", "cartesia"),
    ],
)
def test_values_vapi_would_refuse_are_400s(staff_api, payload, field, listed):
    response = staff_api.post(LIST, {"name": "Bad", **payload}, format="json")
    assert response.status_code == 400, response.content
    assert listed in response.json()["errors"][field][0]
    assert not Agent.objects.exists()


@pytest.mark.parametrize(
    "payload",
    [
        {},  # the defaults: openai / gpt-4o, vapi / Elliot
        {"model_provider": "anthropic", "model": "claude-sonnet-4-6"},
        {"model_provider": "openrouter", "model": "any/model-name"},  # Vapi publishes no list for it
        {"voice_provider": "11labs", "voice_id": "21m00Tcm4TlvDq8ikWAM"},  # a list, or any voice id
        {"voice_provider": "deepgram", "voice_id": "asteria"},
    ],
)
def test_values_vapi_accepts_are_created(staff_api, payload):
    response = staff_api.post(LIST, {"name": "Good", **payload}, format="json")
    assert response.status_code == 201, response.content
    assert Agent.objects.get().name == "Good"


def test_stored_values_outside_the_catalogue_stay_editable(staff_api):
    # E.g. imported from Vapi with a provider the app does not offer.
    agent = AgentFactory(model_provider="custom-llm", model="my-model", voice_provider="custom-voice", voice_id="x")
    response = staff_api.patch(f"{LIST}{agent.pk}/", {"name": "Renamed"}, format="json")
    assert response.status_code == 200, response.content
    agent.refresh_from_db()
    assert (agent.name, agent.model_provider, agent.voice_provider) == ("Renamed", "custom-llm", "custom-voice")
    # ...but a change is checked.
    response = staff_api.patch(f"{LIST}{agent.pk}/", {"model": "other"}, format="json")
    assert response.status_code == 200  # the provider is unknown, so its names cannot be checked
    response = staff_api.patch(f"{LIST}{agent.pk}/", {"model_provider": "nonsense-ai"}, format="json")
    assert response.status_code == 400 and "model_provider" in response.json()["errors"]


def test_changing_the_provider_checks_the_model_against_it(staff_api):
    agent = AgentFactory(model_provider="openai", model="gpt-4o")
    response = staff_api.patch(f"{LIST}{agent.pk}/", {"model_provider": "anthropic"}, format="json")
    assert response.status_code == 400
    assert "gpt-4o" in response.json()["errors"]["model"][0] and "anthropic" in response.json()["errors"]["model"][0]
    agent.refresh_from_db()
    assert agent.model_provider == "openai"
    ok = staff_api.patch(f"{LIST}{agent.pk}/", {"model_provider": "anthropic", "model": "claude-sonnet-4-6"}, format="json")
    assert ok.status_code == 200, ok.content


def test_without_a_catalogue_any_value_is_accepted(staff_api, settings):
    settings.AGENT_CATALOGUE = ""
    assert get_catalogue() is None
    response = staff_api.post(LIST, {"name": "Free", "model_provider": "nonsense-ai"}, format="json")
    assert response.status_code == 201


# --- Admin -----------------------------------------------------------------------------------------


def test_admin_offers_providers_as_choices(client, staff_user):
    client.force_login(staff_user)
    form = client.get(ADD).context["adminform"].form
    providers = dict(form.fields["model_provider"].choices)
    assert {"openai", "anthropic", "vapi"} <= set(providers) and "custom-llm" not in providers
    assert {"vapi", "11labs", "deepgram"} <= set(dict(form.fields["voice_provider"].choices))
    html = client.get(ADD).content.decode()
    assert '<select name="model_provider"' in html and 'value="openai" selected' in html


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"model_provider": "nonsense-ai"}, "model_provider", "Select a valid choice"),
        ({"model": "gpt-9000"}, "model", "gpt-4o"),
        ({"voice_provider": "deepgram", "voice_id": "nobody"}, "voice_id", "asteria"),
    ],
)
def test_admin_refuses_values_vapi_would_refuse(client, staff_user, values, field, message):
    client.force_login(staff_user)
    response = client.post(ADD, {**FORM, **values})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors[field]), errors
    assert not Agent.objects.exists()


def test_admin_keeps_a_stored_provider_outside_the_catalogue(client, staff_user):
    agent = AgentFactory(model_provider="custom-llm", model="my-model")
    client.force_login(staff_user)
    url = f"/admin/agents/agent/{agent.pk}/change/"
    form = client.get(url).context["adminform"].form
    assert form.fields["model_provider"].choices[0] == ("custom-llm", "custom-llm (current; not offered by Vapi)")
    data = {**FORM, "model_provider": "custom-llm", "model": "my-model", "first_message": "Changed",
            "seen_version": agent.version}
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    agent.refresh_from_db()
    assert (agent.first_message, agent.model_provider) == ("Changed", "custom-llm")


def test_admin_suggests_the_names_each_provider_publishes(client, staff_user):
    client.force_login(staff_user)
    html = client.get(ADD).content.decode()
    assert 'data-names-from="id_model_provider"' in html and 'data-names-from="id_voice_provider"' in html
    assert 'id="id_model-names-openai"' in html and '<option value="gpt-4o">' in html
    assert 'id="id_voice_id-names-deepgram"' in html and '<option value="asteria">' in html
    assert 'id="id_model-names-openrouter"' not in html  # takes any name
    assert "agents/provider_names.js" in html
    assert client.get("/static/agents/provider_names.js").status_code == 200
