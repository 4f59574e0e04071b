"""System checks (including the database-dependent ones) and migrations match the models."""

import io

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_system_checks_pass_with_the_database():
    out = io.StringIO()
    call_command("check", "--database", "default", "--fail-level", "WARNING", stdout=out)
    assert "no issues" in out.getvalue()


def test_migrations_match_the_models():
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
