import pytest
from django.db.models import F

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


def change_form_data(client, url) -> dict:
    form = client.get(url).context["adminform"].form
    return {name: ("" if form[name].value() is None else form[name].value()) for name in form.fields}


@pytest.mark.parametrize("odd", ["1234", "abc", "+001234567890"])
def test_an_imported_odd_number_stays_editable(client, staff_user, odd):
    [phone] = PhoneNumber.objects.bulk_create([PhoneNumber(number=odd, name="Imported", vapi_phone_id="ph_1")])
    agent = AgentFactory()
    client.force_login(staff_user)
    url = f"/admin/phonenumbers_app/phonenumber/{phone.pk}/change/"
    page = client.get(url)
    assert "not a valid E.164 number" in page.content.decode()
    response = client.post(url, {**change_form_data(client, url), "name": "Reception", "agent": agent.pk})
    assert response.status_code == 302, response.context["adminform"].form.errors
    phone.refresh_from_db()
    assert (phone.number, phone.name, phone.agent) == (odd, "Reception", agent)
    # Changing it to another invalid number is refused beside the field.
    response = client.post(url, {**change_form_data(client, url), "number": "5678"})
    assert response.status_code == 200
    assert "number" in response.context["adminform"].form.errors


def test_stale_phone_form_is_refused(client, staff_user):
    first, second = AgentFactory(name="First"), AgentFactory(name="Second")
    phone = PhoneNumberFactory(number="+16826269224", name="Main", agent=first)
    client.force_login(staff_user)
    url = f"/admin/phonenumbers_app/phonenumber/{phone.pk}/change/"
    data = change_form_data(client, url)
    # Meanwhile the number is routed to another agent (in Vapi, brought here by an import).
    PhoneNumber.objects.filter(pk=phone.pk).update(agent=second, version=F("version") + 1)
    response = client.post(url, {**data, "name": "Main line"})
    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert "Agent: your value “First” / current value “Second”" in errors
    assert "Name: your value “Main line” / current value “Main”" in errors
    phone.refresh_from_db()
    assert (phone.name, phone.agent, phone.version) == ("Main", second, 2)
