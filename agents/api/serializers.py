from rest_framework import serializers

from agents.models import Agent


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
