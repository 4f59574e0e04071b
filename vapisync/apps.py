from django.apps import AppConfig


class VapiSyncConfig(AppConfig):
    name = "vapisync"
    verbose_name = "Vapi Sync"

    def ready(self):
        from . import actor, checks, signals  # noqa: F401  (register Celery hooks, system checks and receivers)
        from .models import Direction
        from .services import background, deletions, rollback, runs

        background.request_hooks_connect()  # runs after the response (VAPI_SYNC_BACKGROUND)
        # The run kinds beside the engine's sync, each applied by the module that owns it. Wired
        # here because those modules start runs too, so the run lifecycle cannot import them.
        runs.run_apply_register(Direction.DELETE, deletions.assistants_delete_apply)
        runs.run_apply_register(Direction.ROLLBACK, rollback.rollback_apply)
        runs.push_run_step_register(deletions.assistants_delete_tombstoned)
