from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from phonenumbers_app.e164 import e164_normalize
from phonenumbers_app.models import PhoneNumber


class PhoneNumberSerializer(serializers.ModelSerializer):
    number = serializers.CharField(
        max_length=40, required=False, allow_null=True, allow_blank=True, help_text="Any common format; stored as E.164."
    )

    class Meta:
        model = PhoneNumber
        fields = [
            "id",
            "number",
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
