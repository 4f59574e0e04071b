"""Who may read the sync state and who may change things through it.

Policy as data (DRF's own habit): reads need one of VIEW_PERMS, writes one of RUN_PERMS;
staff status is enough for both. Anonymous callers are refused before this runs (401).
"""

from rest_framework.permissions import BasePermission

RUN_PERMS = ("vapisync.run_sync",)
VIEW_PERMS = ("vapisync.run_sync", "vapisync.view_syncrun")


def _allowed(user, perms) -> bool:
    if not (user and user.is_authenticated and user.is_active):
        return False
    return user.is_staff or any(user.has_perm(perm) for perm in perms)


def user_can_run_sync(user) -> bool:
    return _allowed(user, RUN_PERMS)


def user_can_view_sync(user) -> bool:
    return _allowed(user, VIEW_PERMS)


class CanViewSync(BasePermission):
    """Read sync status, health, runs and conflicts: staff, `run_sync` or `view_syncrun`."""

    message = "Reading the Vapi sync needs staff status or the 'vapisync.view_syncrun' or 'vapisync.run_sync' permission."

    def has_permission(self, request, view):
        return user_can_view_sync(request.user)


class CanRunSync(BasePermission):
    """Start syncs, roll back runs, resolve conflicts, delete in Vapi: staff or `run_sync`."""

    message = "Running the Vapi sync needs staff status or the 'vapisync.run_sync' permission."

    def has_permission(self, request, view):
        return user_can_run_sync(request.user)
