"""API errors that escape validation become JSON, never a 500 page."""

import pytest
from django.db import IntegrityError, OperationalError

from phonenumbers_app.api.serializers import PhoneNumberSerializer
from phonenumbers_app.models import PhoneNumber

pytestmark = pytest.mark.django_db


@pytest.mark.django_db(transaction=True)  # the failed INSERT must not poison the test's own transaction
def test_unique_clash_that_validation_missed_is_a_409(staff_api, monkeypatch):
    """A concurrent insert of the same number passes validation and trips the unique index."""
    PhoneNumber.objects.create(number="+16826269224")
    monkeypatch.setattr(PhoneNumberSerializer, "validate_number", lambda self, value: "+16826269224")
    response = staff_api.post("/api/phone-numbers/", {"number": "682-626-9224"}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert PhoneNumber.objects.count() == 1


def test_database_outage_is_a_503(staff_api, monkeypatch):
    def broken(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr("agents.api.views.AgentViewSet.list", broken)
    response = staff_api.get("/api/agents/")
    assert response.status_code == 503
    assert response.json()["code"] == "database_error"


def test_integrity_error_is_not_reported_as_an_outage(staff_api, monkeypatch):
    def clash(*args, **kwargs):
        raise IntegrityError("duplicate key value violates unique constraint")

    monkeypatch.setattr("agents.api.views.AgentViewSet.list", clash)
    response = staff_api.get("/api/agents/")
    assert response.status_code == 409
    assert "connection" not in response.json()["detail"]
