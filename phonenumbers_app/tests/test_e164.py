import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from phonenumbers_app.e164 import e164_normalize, e164_normalize_or_keep


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # The seed's two numbers, in every way people write them.
        ("682-626-9224", "+16826269224"),
        ("(682) 626-9224", "+16826269224"),
        ("6826269224", "+16826269224"),
        ("+16826269224", "+16826269224"),
        ("972-474-1424", "+19724741424"),
        ("(972) 474-1424", "+19724741424"),
        ("+1 972 474 1424", "+19724741424"),
        ("972.474.1424", "+19724741424"),
        ("1-972-474-1424", "+19724741424"),
        ("+1 (972) 474-1424", "+19724741424"),
        ("  972 474 1424  ", "+19724741424"),
        ("tel:+1-972-474-1424", "+19724741424"),
        # A number with its country code needs no region.
        ("+44 20 7946 0958", "+442079460958"),
        ("+33 1 42 68 53 00", "+33142685300"),
    ],
)
def test_normalises_to_e164(raw, expected):
    assert e164_normalize(raw) == expected


def test_is_idempotent():
    once = e164_normalize("(972) 474-1424")
    assert e164_normalize(once) == once


@pytest.mark.parametrize("raw", ["", "   ", None])
def test_empty_input_is_required(raw):
    with pytest.raises(ValidationError) as excinfo:
        e164_normalize(raw)
    assert excinfo.value.code == "required"
    assert excinfo.value.messages == ["Enter a phone number."]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("abc", "is not a phone number"),
        ("+", "is not a phone number"),
        ("+999 123", "is not a phone number"),
        ("123", "not a valid phone number for region US"),
        ("555-555-5555", "not a valid phone number for region US"),
        ("+1 555 0100", "not a valid phone number"),
        ("972 474 1424 ext 5", "extension"),
    ],
)
def test_invalid_input_is_a_clear_validation_error(raw, fragment):
    with pytest.raises(ValidationError) as excinfo:
        e164_normalize(raw)
    assert excinfo.value.code == "invalid"
    (message,) = excinfo.value.messages
    assert fragment in message
    assert repr(raw.strip()) in message or f"'{raw.strip()}'" in message
    assert "(0)" not in message and "(1)" not in message  # no library error codes


@override_settings(PHONE_NUMBER_DEFAULT_REGION="GB")
def test_default_region_comes_from_settings():
    assert e164_normalize("020 7946 0958") == "+442079460958"
    with pytest.raises(ValidationError, match="region GB"):
        e164_normalize("682-626-9224")
    # Country codes still win over the region.
    assert e164_normalize("+1 682 626 9224") == "+16826269224"


def test_region_argument_overrides_settings():
    assert e164_normalize("020 7946 0958", region="GB") == "+442079460958"
    with pytest.raises(ValidationError):
        e164_normalize("020 7946 0958")  # not a US number


def test_region_is_read_at_call_time():
    with override_settings(PHONE_NUMBER_DEFAULT_REGION="FR"):
        assert e164_normalize("01 42 68 53 00") == "+33142685300"
    assert e164_normalize("682-626-9224") == "+16826269224"


def _normalize_or_keep_by_validating(value):
    try:
        return e164_normalize(value)
    except ValidationError:
        return value


@pytest.mark.parametrize("value", [
    "+16826269224", "+1 682 626 9224", "(682) 626-9224", "+4407911123456", "+447911123456", "+390612345678",
    "+5491123456789", "+999123", "+1", "+14155550123 ext 5", "sip:line@example.com", "+0123", "not a number",
])
def test_normalize_or_keep_skips_the_validity_check_only_where_it_cannot_change_the_answer(value):
    assert e164_normalize_or_keep(value) == _normalize_or_keep_by_validating(value)


@settings(max_examples=500, deadline=None)
@given(st.from_regex(r"\A\+?[0-9][0-9 ()-]{0,16}\Z"))
def test_normalize_or_keep_gives_what_validating_every_number_gives(value):
    assert e164_normalize_or_keep(value) == _normalize_or_keep_by_validating(value)
