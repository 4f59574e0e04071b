import pytest

from agents.tests.factories import AgentFactory
from phonenumbers_app.models import PhoneNumber

from .factories import PhoneNumberFactory

pytestmark = pytest.mark.django_db

ADD = "/admin/phonenumbers_app/phonenumber/add/"


def form(**values):
    data = {"number": "", "sip_uri": "", "name": "", "provider": "vapi", "agent": ""}
    data.update(values)
    return data


def test_changelist_search_by_number_and_vapi_id(client, staff_user):
    PhoneNumberFactory(number="+16826269224", name="Fort Worth", vapi_phone_id="ph_fw")
    PhoneNumberFactory(number="+19724741424", name="Dallas")
    client.force_login(staff_user)
    response = client.get("/admin/phonenumbers_app/phonenumber/")
    assert response.status_code == 200
    assert b"+16826269224" in response.content and b"+19724741424" in response.content
    found = client.get("/admin/phonenumbers_app/phonenumber/", {"q": "ph_fw"})
    assert b"Fort Worth" in found.content and b"Dallas" not in found.content
    assert client.get("/admin/phonenumbers_app/phonenumber/", {"provider__exact": "vapi"}).status_code == 200


def test_add_form_normalises_the_number(client, staff_user):
    agent = AgentFactory()
    client.force_login(staff_user)
    assert client.get(ADD).status_code == 200
    response = client.post(ADD, form(number="(972) 474-1424", name="Dallas", agent=agent.pk))
    assert response.status_code == 302, response.content.decode()[:2000]
    phone = PhoneNumber.objects.get()
    assert (phone.number, phone.agent) == ("+19724741424", agent)
    assert client.get(f"/admin/phonenumbers_app/phonenumber/{phone.pk}/change/").status_code == 200


def test_add_form_shows_errors_beside_the_field(client, staff_user):
    PhoneNumberFactory(number="+16826269224")
    client.force_login(staff_user)
    for number, message in (("12", "not a valid phone number"), ("682-626-9224", "already exists"), ("", "SIP URI")):
        response = client.post(ADD, form(number=number))
        assert response.status_code == 200
        errors = response.context["adminform"].form.errors
        assert message in " ".join(errors.get("number", [])), (number, errors)
    assert PhoneNumber.objects.count() == 1


def test_agent_autocomplete(client, staff_user):
    AgentFactory(name="Reception")
    client.force_login(staff_user)
    response = client.get(
        "/admin/autocomplete/",
        {"app_label": "phonenumbers_app", "model_name": "phonenumber", "field_name": "agent", "term": "Rec"},
    )
    assert response.status_code == 200
    assert [r["text"] for r in response.json()["results"]] == ["Reception"]
