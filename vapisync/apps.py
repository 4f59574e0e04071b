from django.apps import AppConfig


class VapiSyncConfig(AppConfig):
    name = "vapisync"
    verbose_name = "Vapi Sync"

    def ready(self):
        from . import actor, checks, signals  # noqa: F401  (register system checks and receivers)
        from .services import background  # noqa: F401  (runs after the response, VAPI_SYNC_BACKGROUND)
