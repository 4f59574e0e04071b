from django.contrib import admin

from agents.forms import VersionCheckedAdminMixin

from .forms import PhoneNumberAdminForm
from .models import PhoneNumber

SYNC_FIELDS = ("vapi_phone_id", "vapi_assistant_id", "sync_status", "last_synced_at", "sync_error")


@admin.register(PhoneNumber)
class PhoneNumberAdmin(VersionCheckedAdminMixin, admin.ModelAdmin):
    form = PhoneNumberAdminForm
    list_display = ("__str__", "name", "provider", "agent", "sync_status", "last_synced_at")
    list_filter = ("sync_status", "provider")
    search_fields = ("number", "sip_uri", "name", "vapi_phone_id", "vapi_assistant_id")
    list_select_related = ("agent",)
    autocomplete_fields = ("agent",)
    readonly_fields = (*SYNC_FIELDS, "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("number", "sip_uri", "name", "provider", "agent")}),
        ("Vapi sync", {"fields": SYNC_FIELDS, "classes": ("collapse",)}),
        ("Record", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )
