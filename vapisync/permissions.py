"""Who may look at the Vapi sync and who may start it: one rule for the API, the admin and the CLI.

- Starting anything that changes data (import, export, full sync, dry runs, rollback, resolving a
  conflict, deleting in Vapi): an active user with the `vapisync.run_sync` permission. Staff status
  alone is not enough (superusers have every permission).
- Reading the sync state (status, health, runs, changes, conflicts, the admin's Vapi Sync page):
  `vapisync.run_sync` or `vapisync.view_syncrun`.
"""

RUN_SYNC = "vapisync.run_sync"
VIEW_SYNC = ("vapisync.run_sync", "vapisync.view_syncrun")


def _active(user) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active)


def user_can_run_sync(user) -> bool:
    return _active(user) and user.has_perm(RUN_SYNC)


def user_can_view_sync(user) -> bool:
    return _active(user) and any(user.has_perm(perm) for perm in VIEW_SYNC)
