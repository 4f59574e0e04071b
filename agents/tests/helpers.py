"""Test helpers shared by the domain apps' API tests."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


def user_with_perms(username: str, *codenames: str, is_staff: bool = True):
    """A non-superuser holding exactly the named permissions ("agents.add_agent", ...)."""
    user = get_user_model().objects.create_user(username, f"{username}@example.com", f"pw-{username}-123", is_staff=is_staff)
    for dotted in codenames:
        app_label, codename = dotted.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def bearer_client(user) -> APIClient:
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.key}")
    return client
