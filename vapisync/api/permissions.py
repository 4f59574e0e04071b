"""The sync API's permission classes: thin wrappers over the project's one rule (vapisync.permissions).

Anonymous callers are refused before these run (401).
"""

from rest_framework.permissions import BasePermission

from vapisync.permissions import user_can_run_sync, user_can_view_sync

__all__ = ["CanRunSync", "CanViewSync", "user_can_run_sync", "user_can_view_sync"]


class CanViewSync(BasePermission):
    """Read sync status, health, runs and conflicts: `run_sync` or `view_syncrun`."""

    message = "Reading the Vapi sync needs the 'vapisync.view_syncrun' or 'vapisync.run_sync' permission."

    def has_permission(self, request, view):
        return user_can_view_sync(request.user)


class CanRunSync(BasePermission):
    """Start syncs (dry runs too), roll back runs, resolve conflicts, delete in Vapi: `run_sync`."""

    message = "Running the Vapi sync needs the 'vapisync.run_sync' permission (staff status alone is not enough)."

    def has_permission(self, request, view):
        return user_can_run_sync(request.user)
