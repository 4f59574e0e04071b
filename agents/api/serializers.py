from rest_framework import serializers

from agents.catalogue import choice_errors
from agents.models import Agent

CHOICE_FIELDS = ("model_provider", "model", "voice_provider", "voice_id")
_checked = "Checked when it changes: a value the voice platform does not accept is a 400 that lists the allowed ones."


class AgentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Agent
        fields = [
            "id",
            "name",
            "system_prompt",
            "first_message",
            "model_provider",
            "model",
            "voice_provider",
            "voice_id",
            "vapi_assistant_id",
            "sync_status",
            "last_synced_at",
            "sync_error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["vapi_assistant_id", "sync_status", "last_synced_at", "sync_error", "created_at", "updated_at"]
        extra_kwargs = {
            "model_provider": {"help_text": f"E.g. openai. {_checked}"},
            "model": {"help_text": f"E.g. gpt-4o. {_checked} (where the provider publishes a list)"},
            "voice_provider": {"help_text": f"E.g. vapi or 11labs. {_checked}"},
            "voice_id": {"help_text": f"E.g. Elliot. {_checked} (where the provider publishes a list)"},
        }

    def validate(self, attrs):
        # Providers (and names where a closed list exists) as the platform accepts them; values an
        # existing agent already holds pass unchanged (see agents.catalogue).
        if self.instance is not None:
            previous = {name: getattr(self.instance, name) for name in CHOICE_FIELDS}
            base = previous
        else:
            previous = None
            base = {name: Agent._meta.get_field(name).get_default() for name in CHOICE_FIELDS}
        errors = choice_errors({**base, **{k: attrs[k] for k in CHOICE_FIELDS if k in attrs}}, previous)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs
