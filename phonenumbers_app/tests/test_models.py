import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from agents.tests.factories import AgentFactory
from phonenumbers_app.models import PhoneNumber, Provider

from .factories import PhoneNumberFactory

pytestmark = pytest.mark.django_db


def test_number_is_stored_in_e164_on_every_save():
    phone = PhoneNumber.objects.create(number="(972) 474-1424")
    assert phone.number == "+19724741424"
    phone.refresh_from_db()
    assert phone.number == "+19724741424"
    phone.number = "682.626.9224"
    phone.save()
    phone.refresh_from_db()
    assert phone.number == "+16826269224"


def test_defaults():
    phone = PhoneNumber.objects.create(number="+16826269224")
    assert phone.provider == Provider.VAPI
    assert phone.agent is None
    assert phone.vapi_phone_id is None and phone.vapi_assistant_id is None
    assert phone.sip_uri == "" and phone.name == ""
    assert str(phone) == "+16826269224"


def test_invalid_number_cannot_be_saved():
    with pytest.raises(ValidationError):
        PhoneNumber.objects.create(number="not a number")
    assert not PhoneNumber.objects.exists()


def test_number_is_unique_whatever_the_format():
    PhoneNumber.objects.create(number="682-626-9224")
    with pytest.raises(IntegrityError), transaction.atomic():
        PhoneNumber.objects.create(number="+1 682 626 9224")
    assert PhoneNumber.objects.count() == 1


def test_unique_number_is_also_a_validation_error():
    PhoneNumberFactory(number="+16826269224")
    with pytest.raises(ValidationError) as excinfo:
        PhoneNumber(number="+16826269224").full_clean()
    assert "number" in excinfo.value.message_dict


def test_phone_number_needs_a_number_or_a_sip_uri():
    with pytest.raises(IntegrityError), transaction.atomic():
        PhoneNumber.objects.create(number=None, sip_uri="")
    with pytest.raises(IntegrityError), transaction.atomic():
        PhoneNumber.objects.create(number="", sip_uri="")  # "" is saved as NULL


def test_check_constraint_is_reported_by_full_clean():
    with pytest.raises(ValidationError) as excinfo:
        PhoneNumber(number=None, sip_uri="").full_clean()
    assert "number" in excinfo.value.message_dict or "__all__" in excinfo.value.message_dict


def test_check_constraint_holds_against_bulk_writes():
    phone = PhoneNumberFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        PhoneNumber.objects.filter(pk=phone.pk).update(number=None, sip_uri="")


def test_sip_only_numbers_may_share_a_null_number():
    first = PhoneNumber.objects.create(sip_uri="sip:reception@example.com")
    second = PhoneNumber.objects.create(sip_uri="sip:sales@example.com", number="")
    assert first.number is None and second.number is None
    assert str(first) == "sip:reception@example.com"


def test_vapi_phone_id_is_unique_when_set():
    PhoneNumberFactory(vapi_phone_id="ph_1")
    PhoneNumberFactory(vapi_phone_id=None)
    PhoneNumberFactory(vapi_phone_id=None)
    with pytest.raises(IntegrityError), transaction.atomic():
        PhoneNumberFactory(vapi_phone_id="ph_1")


def test_vapi_assistant_id_need_not_be_unique():
    PhoneNumberFactory(vapi_assistant_id="asst_1")
    PhoneNumberFactory(vapi_assistant_id="asst_1")
    assert PhoneNumber.objects.filter(vapi_assistant_id="asst_1").count() == 2


def test_deleting_the_agent_keeps_the_number():
    agent = AgentFactory()
    phone = PhoneNumberFactory(agent=agent)
    agent.delete()
    phone.refresh_from_db()
    assert phone.agent is None


def test_seed_indexes_exist():
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, PhoneNumber._meta.db_table)
    assert constraints["idx_phone_numbers_vapi_phone_id"]["columns"] == ["vapi_phone_id"]
    assert constraints["idx_phone_numbers_vapi_asst_id"]["columns"] == ["vapi_assistant_id"]


def test_name_is_limited_to_40_characters():
    with pytest.raises(ValidationError) as excinfo:
        PhoneNumber(number="+16826269224", name="n" * 41).full_clean()
    assert "name" in excinfo.value.message_dict


def test_clean_normalises_and_explains():
    phone = PhoneNumber(number="972.474.1424")
    phone.full_clean()
    assert phone.number == "+19724741424"
    with pytest.raises(ValidationError) as excinfo:
        PhoneNumber(number="12").full_clean()
    assert "not a valid phone number" in " ".join(excinfo.value.message_dict["number"])


# --- Numbers a provider holds that are not valid E.164 -------------------------------------------

ODD_NUMBERS = ["1234", "abc", "+001234567890"]


@pytest.mark.parametrize("odd", ODD_NUMBERS)
def test_a_stored_odd_number_survives_saves_that_do_not_change_it(odd):
    # An import stores what Vapi holds without save() (bulk writes).
    [phone] = PhoneNumber.objects.bulk_create([PhoneNumber(number=odd, name="Imported", vapi_phone_id="ph_1")])
    phone = PhoneNumber.objects.get(pk=phone.pk)
    assert phone.number_is_e164 is False
    phone.name = "Renamed"
    phone.agent = AgentFactory()
    phone.save()
    phone.full_clean()
    phone.refresh_from_db()
    assert (phone.number, phone.name) == (odd, "Renamed")


@pytest.mark.parametrize("odd", ODD_NUMBERS)
def test_a_new_or_changed_odd_number_is_still_refused(odd):
    with pytest.raises(ValidationError):
        PhoneNumber.objects.create(number=odd)
    phone = PhoneNumberFactory(number="+16826269224")
    phone.number = odd
    with pytest.raises(ValidationError):
        phone.save()
    phone.refresh_from_db()
    assert phone.number == "+16826269224"


def test_number_is_e164():
    assert PhoneNumber(number="+16826269224").number_is_e164 is True
    assert PhoneNumber(number="682-626-9224").number_is_e164 is False  # valid, but not written in E.164
    assert PhoneNumber(number=None, sip_uri="sip:a@example.com").number_is_e164 is False


def test_an_odd_number_may_be_replaced_by_a_valid_one():
    [phone] = PhoneNumber.objects.bulk_create([PhoneNumber(number="1234")])
    phone = PhoneNumber.objects.get(pk=phone.pk)
    phone.number = "(682) 626-9224"
    phone.save()
    phone.refresh_from_db()
    assert phone.number == "+16826269224" and phone.number_is_e164


def test_a_writer_copying_from_the_provider_may_keep_any_number():
    phone = PhoneNumber(number="abc", name="Restored")
    phone.keep_number_as_given = True
    phone.save()
    phone = PhoneNumber.objects.get(pk=phone.pk)
    assert phone.number == "abc" and not phone.number_is_e164
    phone.number = "+001234567890"
    with pytest.raises(ValidationError):  # a fresh instance validates again
        phone.save()
