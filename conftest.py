"""Fixtures shared by every app's tests."""

import pytest
from rest_framework.test import APIClient


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user("staff", "staff@example.com", "pw-staff-123", is_staff=True, is_superuser=True)


@pytest.fixture
def plain_user(django_user_model):
    return django_user_model.objects.create_user("plain", "plain@example.com", "pw-plain-123")


def _bearer_client(user):
    from rest_framework.authtoken.models import Token

    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.key}")
    return client


@pytest.fixture
def bearer_client():
    """`bearer_client(user)`: an API client sending that user's token; the one way tests authenticate."""
    return _bearer_client


@pytest.fixture
def staff_api(staff_user):
    return _bearer_client(staff_user)


@pytest.fixture
def plain_api(plain_user):
    return _bearer_client(plain_user)


@pytest.fixture
def anon_api():
    return APIClient()
