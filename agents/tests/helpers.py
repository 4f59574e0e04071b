"""Test helpers shared by the domain apps' API tests (authenticated clients: the `bearer_client` fixture)."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission


def user_with_perms(username: str, *codenames: str, is_staff: bool = True):
    """A non-superuser holding exactly the named permissions ("agents.add_agent", ...)."""
    user = get_user_model().objects.create_user(username, f"{username}@example.com", f"pw-{username}-123", is_staff=is_staff)
    for dotted in codenames:
        app_label, codename = dotted.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user
