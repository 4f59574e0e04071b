"""/api/phone-numbers/: authentication, permissions, CRUD, E.164 and validation."""

import pytest

from agents.tests.factories import AgentFactory
from agents.tests.helpers import user_with_perms
from phonenumbers_app.models import PhoneNumber, Provider

from .factories import PhoneNumberFactory

pytestmark = pytest.mark.django_db

LIST = "/api/phone-numbers/"

PHONE_FIELDS = {
    "id",
    "number",
    "number_is_e164",
    "sip_uri",
    "name",
    "provider",
    "agent",
    "vapi_phone_id",
    "vapi_assistant_id",
    "sync_status",
    "last_synced_at",
    "sync_error",
    "created_at",
    "updated_at",
}


def detail(phone) -> str:
    return f"/api/phone-numbers/{phone.pk}/"


# --- Authentication and permissions -----------------------------------------------


def test_anonymous_gets_401_with_bearer_challenge(anon_api):
    phone = PhoneNumberFactory()
    for response in (
        anon_api.get(LIST),
        anon_api.post(LIST, {"number": "+16826269224"}, format="json"),
        anon_api.get(detail(phone)),
        anon_api.delete(detail(phone)),
    ):
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == "Bearer"
    assert PhoneNumber.objects.count() == 1


def test_user_without_perms_reads_but_cannot_write(plain_api):
    phone = PhoneNumberFactory(number="+16826269224")
    assert plain_api.get(LIST).json()["results"][0]["number"] == "+16826269224"
    assert plain_api.get(detail(phone)).status_code == 200
    assert plain_api.post(LIST, {"number": "+19724741424"}, format="json").status_code == 403
    assert plain_api.patch(detail(phone), {"name": "x"}, format="json").status_code == 403
    assert plain_api.put(detail(phone), {"number": "+19724741424"}, format="json").status_code == 403
    assert plain_api.delete(detail(phone)).status_code == 403
    assert PhoneNumber.objects.get().name == phone.name


def test_staff_with_model_perms_can_write(bearer_client):
    client = bearer_client(
        user_with_perms(
            "operator", "phonenumbers_app.add_phonenumber", "phonenumbers_app.change_phonenumber",
            "phonenumbers_app.delete_phonenumber",
        )
    )
    created = client.post(LIST, {"number": "682-626-9224", "name": "Main line"}, format="json")
    assert created.status_code == 201, created.content
    url = f"{LIST}{created.json()['id']}/"
    assert client.patch(url, {"name": "Front desk"}, format="json").status_code == 200
    assert PhoneNumber.objects.get().name == "Front desk"
    assert client.delete(url).status_code == 204
    assert not PhoneNumber.objects.exists()


def test_agent_perms_do_not_grant_phone_number_writes(bearer_client):
    client = bearer_client(user_with_perms("agent_admin", "agents.add_agent", "agents.change_agent"))
    assert client.post(LIST, {"number": "+16826269224"}, format="json").status_code == 403


def test_session_auth_works(client, staff_user):
    PhoneNumberFactory(number="+19724741424")
    client.force_login(staff_user)
    response = client.get(LIST)
    assert response.status_code == 200
    assert response.json()["count"] == 1


# --- CRUD and E.164 ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("682-626-9224", "+16826269224"),
        ("(972) 474-1424", "+19724741424"),
        ("+1 972 474 1424", "+19724741424"),
        ("972.474.1424", "+19724741424"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_number_in_any_format_is_stored_as_e164(staff_api, raw, stored):
    response = staff_api.post(LIST, {"number": raw}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["number"] == stored
    assert PhoneNumber.objects.get().number == stored


def test_create_with_every_writable_field(staff_api):
    agent = AgentFactory()
    response = staff_api.post(
        LIST,
        {
            "number": "(682) 626-9224",
            "sip_uri": "sip:main@example.com",
            "name": "Main line",
            "provider": "twilio",
            "agent": agent.pk,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == PHONE_FIELDS
    assert body["agent"] == agent.pk
    assert body["provider"] == "twilio"
    assert body["vapi_phone_id"] is None and body["vapi_assistant_id"] is None
    phone = PhoneNumber.objects.get()
    assert (phone.number, phone.sip_uri, phone.name, phone.provider, phone.agent) == (
        "+16826269224",
        "sip:main@example.com",
        "Main line",
        Provider.TWILIO,
        agent,
    )


@pytest.mark.parametrize("provider", [p.value for p in Provider])
def test_every_provider_is_accepted(staff_api, provider):
    response = staff_api.post(LIST, {"number": "+19724741424", "provider": provider}, format="json")
    assert response.status_code == 201, response.content
    assert PhoneNumber.objects.get().provider == provider


def test_sip_only_number(staff_api):
    response = staff_api.post(
        LIST, {"sip_uri": "sip:desk@example.com", "provider": "byo-phone-number"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["number"] is None
    for number in ("", None):
        response = staff_api.post(LIST, {"number": number, "sip_uri": f"sip:{number!r}@example.com"}, format="json")
        assert response.status_code == 201, response.content
    assert PhoneNumber.objects.filter(number__isnull=True).count() == 3


def test_update_keeps_its_own_number_in_another_format(staff_api):
    phone = PhoneNumberFactory(number="+16826269224", name="Old")
    response = staff_api.put(detail(phone), {"number": "682-626-9224", "name": "New"}, format="json")
    assert response.status_code == 200, response.content
    phone.refresh_from_db()
    assert (phone.number, phone.name) == ("+16826269224", "New")


def test_assign_and_unassign_an_agent(staff_api):
    agent = AgentFactory()
    phone = PhoneNumberFactory()
    assert staff_api.patch(detail(phone), {"agent": agent.pk}, format="json").status_code == 200
    phone.refresh_from_db()
    assert phone.agent == agent
    assert staff_api.patch(detail(phone), {"agent": None}, format="json").status_code == 200
    phone.refresh_from_db()
    assert phone.agent is None


def test_read_only_fields_are_ignored_on_write(staff_api):
    response = staff_api.post(
        LIST,
        {
            "number": "+16826269224",
            "vapi_phone_id": "ph_forged",
            "vapi_assistant_id": "asst_forged",
            "sync_status": "synced",
            "sync_error": "forged",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    phone = PhoneNumber.objects.get()
    assert phone.vapi_phone_id is None and phone.vapi_assistant_id is None
    assert phone.sync_status != "synced" and phone.sync_error == ""


def test_list_is_paginated_and_ordered_by_number(staff_api):
    PhoneNumber.objects.bulk_create([PhoneNumber(number=f"+1972474{i:04d}") for i in range(55, 0, -1)])
    body = staff_api.get(LIST).json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 55 and len(body["results"]) == 50
    assert body["results"][0]["number"] == "+19724740001"
    assert body["next"].endswith("/api/phone-numbers/?page=2")
    assert len(staff_api.get(body["next"]).json()["results"]) == 5


def test_list_does_not_query_per_row(staff_api, django_assert_max_num_queries):
    agents = AgentFactory.create_batch(3)
    for i in range(20):
        PhoneNumberFactory(agent=agents[i % 3])
    with django_assert_max_num_queries(6):
        assert staff_api.get(LIST).status_code == 200


# --- Validation: 400 with field errors, never 500 ---------------------------------


@pytest.mark.parametrize(
    ("payload", "field", "fragment"),
    [
        ({"number": "not a phone"}, "number", "is not a phone number"),
        ({"number": "555-555-5555"}, "number", "not a valid phone number"),
        ({"number": "123"}, "number", "not a valid phone number"),
        ({"number": "9" * 41}, "number", "no more than 40"),
        ({"number": ["+16826269224"]}, "number", "Not a valid string"),
        ({"number": "+16826269224", "provider": "sprint"}, "provider", "is not a valid choice"),
        ({"number": "+16826269224", "provider": None}, "provider", "may not be null"),
        ({"number": "+16826269224", "agent": 999999}, "agent", "does not exist"),
        ({"number": "+16826269224", "agent": "abc"}, "agent", "Incorrect type"),
        ({"number": "+16826269224", "agent": {"id": 1}}, "agent", "Incorrect type"),
        ({"number": "+16826269224", "name": "n" * 41}, "name", "no more than 40"),
        ({"number": "+16826269224", "sip_uri": "s" * 256}, "sip_uri", "no more than 255"),
        ({}, "number", "SIP URI"),
        ({"number": "", "sip_uri": ""}, "number", "SIP URI"),
        ({"number": None}, "number", "SIP URI"),
    ],
)
def test_bad_input_is_a_400_with_field_errors(staff_api, payload, field, fragment):
    response = staff_api.post(LIST, payload, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid" and body["detail"].startswith("Invalid request: "), body
    body = body["errors"]
    assert field in body, body
    assert fragment in " ".join(body[field]), body
    assert not PhoneNumber.objects.exists()


def test_integer_number_with_country_code_is_read(staff_api):
    # JSON numbers cannot carry a '+'; a bare 11-digit US number still reads correctly.
    response = staff_api.post(LIST, {"number": 16826269224}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["number"] == "+16826269224"


def test_duplicate_number_in_another_format_is_a_400(staff_api):
    PhoneNumberFactory(number="+16826269224")
    response = staff_api.post(LIST, {"number": "(682) 626-9224"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"]["number"] == ["+16826269224 is already registered."]
    assert PhoneNumber.objects.count() == 1


def test_clearing_the_number_of_a_number_without_sip_uri_is_a_400(staff_api):
    phone = PhoneNumberFactory(number="+16826269224")
    response = staff_api.patch(detail(phone), {"number": ""}, format="json")
    assert response.status_code == 400
    assert "number" in response.json()["errors"]
    phone.refresh_from_db()
    assert phone.number == "+16826269224"


def test_update_to_a_bad_number_is_a_400(staff_api):
    phone = PhoneNumberFactory(number="+16826269224")
    response = staff_api.patch(detail(phone), {"number": "12"}, format="json")
    assert response.status_code == 400
    assert "number" in response.json()["errors"]


def test_update_to_a_missing_agent_is_a_400(staff_api):
    phone = PhoneNumberFactory()
    response = staff_api.patch(detail(phone), {"agent": 424242}, format="json")
    assert response.status_code == 400
    assert "does not exist" in response.json()["errors"]["agent"][0]


@pytest.mark.parametrize("bad_agent", [1.5, "1.5", True, "one", [1]])
def test_agent_must_be_a_whole_number_id(staff_api, bad_agent):
    from agents.models import Agent

    Agent.objects.create(name="Reception")
    response = staff_api.post("/api/phone-numbers/", {"number": "+16826269224", "agent": bad_agent}, format="json")
    assert response.status_code == 400
    assert "agent" in response.json()["errors"]


# --- Numbers Vapi holds that are not valid E.164 -----------------------------------------------------


@pytest.mark.parametrize("odd", ["1234", "abc", "+001234567890"])
def test_an_imported_odd_number_stays_editable(staff_api, odd):
    # Stored by an import as Vapi holds it (bulk writes, no save()).
    [phone] = PhoneNumber.objects.bulk_create([PhoneNumber(number=odd, name="Imported", vapi_phone_id="ph_1")])
    agent = AgentFactory()
    response = staff_api.get(detail(phone))
    assert response.json()["number"] == odd and response.json()["number_is_e164"] is False

    response = staff_api.patch(detail(phone), {"name": "Reception", "agent": agent.pk}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["number"] == odd and response.json()["number_is_e164"] is False
    response = staff_api.put(detail(phone), {"number": odd, "name": "Put", "provider": "byo-phone-number"}, format="json")
    assert response.status_code == 200, response.content
    phone.refresh_from_db()
    assert (phone.number, phone.name, phone.agent) == (odd, "Put", agent)

    # A different number must still be a valid one.
    response = staff_api.patch(detail(phone), {"number": "5678"}, format="json")
    assert response.status_code == 400 and "number" in response.json()["errors"]
    phone.refresh_from_db()
    assert phone.number == odd


def test_new_numbers_are_still_validated_and_marked(staff_api):
    assert staff_api.post(LIST, {"number": "1234"}, format="json").status_code == 400
    response = staff_api.post(LIST, {"number": "682-626-9224"}, format="json")
    assert response.status_code == 201 and response.json()["number_is_e164"] is True


# --- NUL: a field error (PostgreSQL cannot store it), never a 500/503 --------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"number": "+16826269224", "name": "Main\u0000"}, "name"),
        ({"number": "+1682626\u00009224"}, "number"),
        ({"sip_uri": "sip:a@example.com\u0000"}, "sip_uri"),
    ],
)
def test_nul_is_a_field_error(staff_api, payload, field):
    response = staff_api.post(LIST, payload, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()
    assert not PhoneNumber.objects.exists()
