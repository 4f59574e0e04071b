"""E.164 normalisation with the `phonenumbers` library."""

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError


def e164_normalize(value: str, *, region: str | None = None) -> str:
    """Return `value` in E.164 ("682-626-9224" -> "+16826269224") or raise ValidationError."""
    text = str(value or "").strip()
    if not text:
        raise ValidationError("Enter a phone number.", code="required")
    region = region or settings.PHONE_NUMBER_DEFAULT_REGION
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        reason = getattr(exc, "_msg", "") or str(exc)
        raise ValidationError(
            f"'{text}' is not a phone number: {reason.rstrip('.')}. Write it like +1 972 474 1424.", code="invalid"
        ) from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationError(
            f"'{text}' is not a valid phone number for region {region}; include the country code, e.g. +44 20 7946 0958.",
            code="invalid",
        )
    if parsed.extension:
        # E.164 has no extensions: dropping it silently would merge distinct lines into one.
        raise ValidationError(
            f"'{text}' has an extension ({parsed.extension}); E.164 numbers cannot carry one.", code="invalid"
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def e164_normalize_or_keep(value: str) -> str:
    """`value` in E.164, or `value` itself when it is not a number that can be normalised.

    A value that parses and formats back to itself is returned as it is whether it is valid or not,
    so the validity check (the costly part: a +1 number is tried against every NANP region) runs
    only for values written some other way."""
    try:
        if phonenumbers.format_number(phonenumbers.parse(value, None), phonenumbers.PhoneNumberFormat.E164) == value:
            return value
    except phonenumbers.NumberParseException:
        pass  # not in international form: parsed again below, with the default region
    try:
        return e164_normalize(value)
    except ValidationError:
        return value


def is_e164(value: str | None) -> bool:
    """True when `value` is a valid number written exactly in E.164 ("+16826269224")."""
    if not value:
        return False
    try:
        return e164_normalize(value) == value
    except ValidationError:
        return False
