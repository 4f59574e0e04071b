from django.contrib import admin

from .forms import AgentAdminForm, VersionCheckedAdminMixin
from .models import Agent

SYNC_FIELDS = ("vapi_assistant_id", "sync_status", "last_synced_at", "sync_error")


@admin.register(Agent)
class AgentAdmin(VersionCheckedAdminMixin, admin.ModelAdmin):
    form = AgentAdminForm
    list_display = ("name", "model_provider", "model", "voice_provider", "voice_id", "sync_status", "last_synced_at", "updated_at")
    list_filter = ("sync_status", "model_provider", "voice_provider")
    search_fields = ("name", "vapi_assistant_id", "system_prompt")
    readonly_fields = ("uuid", *SYNC_FIELDS, "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "first_message", "system_prompt")}),
        ("Model and voice", {"fields": ("model_provider", "model", "voice_provider", "voice_id")}),
        ("Vapi sync", {"fields": SYNC_FIELDS, "classes": ("collapse",)}),
        ("Record", {"fields": ("uuid", "created_at", "updated_at"), "classes": ("collapse",)}),
    )
