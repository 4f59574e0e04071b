from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from agents.models import Agent
from phonenumbers_app.e164 import e164_normalize
from phonenumbers_app.models import PhoneNumber


class IntegerPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A primary key that must be a whole number: 1.5 or "1.5" is an error, not agent 1."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not (isinstance(data, int) or (isinstance(data, str) and data.strip().isdigit())):
            self.fail("incorrect_type", data_type=type(data).__name__)
        return super().to_internal_value(data)


class PhoneNumberSerializer(serializers.ModelSerializer):
    agent = IntegerPrimaryKeyRelatedField(
        queryset=Agent.objects.all(), required=False, allow_null=True, help_text="The agent that answers this number."
    )
    number = serializers.CharField(
        max_length=40, required=False, allow_null=True, allow_blank=True,
        help_text="Any common format; stored as E.164. A number imported as the voice platform holds it "
        "(not valid E.164, see number_is_e164) may be sent back unchanged.",
    )
    number_is_e164 = serializers.BooleanField(
        read_only=True,
        help_text="False for a number kept exactly as the voice platform holds it (e.g. a bring-your-own number "
        "such as \"1234\"); such a record stays editable, and a new number must be valid.",
    )

    class Meta:
        model = PhoneNumber
        fields = [
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
        ]
        read_only_fields = [
            "vapi_phone_id",
            "vapi_assistant_id",
            "sync_status",
            "last_synced_at",
            "sync_error",
            "created_at",
            "updated_at",
        ]

    def validate_number(self, value):
        if not value:
            return None
        if self.instance is not None and value == self.instance.number:
            return value  # unchanged: kept as stored, even when it is not valid E.164
        try:
            normalized = e164_normalize(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc
        clash = PhoneNumber.objects.filter(number=normalized)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError(f"{normalized} is already registered.")
        return normalized

    def validate(self, attrs):
        number = attrs.get("number", getattr(self.instance, "number", None))
        sip_uri = attrs.get("sip_uri", getattr(self.instance, "sip_uri", ""))
        if not number and not sip_uri:
            raise serializers.ValidationError({"number": ["Enter a phone number, or a SIP URI for a SIP-only number."]})
        return attrs
