"""Settings parsing, checked in a fresh interpreter with a clean environment.

Settings are read once per process, so each case starts `python` with only the variables it
names (plus ENV_FILE= so a developer's `.env` cannot leak in) and reads the result as JSON.
"""

import json

import pytest

from .helpers import BASE_DIR, REAL_KEY, load_settings, run_python


def test_debug_off_without_secret_key_refuses_to_start():
    result = run_python("import django; django.setup()")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_debug_off_with_empty_secret_key_refuses_to_start():
    result = run_python("import django; django.setup()", SECRET_KEY="", DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_debug_on_falls_back_to_a_development_key():
    values = load_settings("DEBUG", "SECRET_KEY", DEBUG="true")
    assert values["DEBUG"] is True
    assert values["SECRET_KEY"].startswith("django-insecure-")


def test_defaults_with_debug_off():
    values = load_settings(
        "DEBUG",
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
        "DATABASES",
        "VAPI_API_KEY",
        "VAPI_BASE_URL",
        "VAPI_WEBHOOK_SECRET",
        "VAPI_SYNC_CONFLICT_POLICY",
        "CELERY_BROKER_URL",
        "CELERY_TASK_ALWAYS_EAGER",
        "PHONE_NUMBER_DEFAULT_REGION",
        "TIME_ZONE",
        SECRET_KEY=REAL_KEY,
    )
    assert values["DEBUG"] is False
    assert values["SECRET_KEY"] == REAL_KEY
    assert values["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost"]
    assert values["CSRF_TRUSTED_ORIGINS"] == []
    db = values["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == str(BASE_DIR / "db.sqlite3")
    assert db["OPTIONS"] == {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536;",
    }
    assert values["VAPI_API_KEY"] == ""
    assert values["VAPI_BASE_URL"] == "https://api.vapi.ai"
    assert values["VAPI_WEBHOOK_SECRET"] == ""
    assert values["VAPI_SYNC_CONFLICT_POLICY"] == "vapi_wins"
    assert values["CELERY_BROKER_URL"] == ""
    assert values["CELERY_TASK_ALWAYS_EAGER"] is True
    assert values["PHONE_NUMBER_DEFAULT_REGION"] == "US"
    assert values["TIME_ZONE"] == "UTC"


def test_security_is_on_by_default_with_debug_off():
    values = load_settings(
        "SECURE_SSL_REDIRECT",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_HSTS_PRELOAD",
        "SECURE_PROXY_SSL_HEADER",
        "WHITENOISE_USE_FINDERS",
        SECRET_KEY=REAL_KEY,
    )
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_HSTS_SECONDS"] == 31536000
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SECURE_HSTS_PRELOAD"] is True
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["WHITENOISE_USE_FINDERS"] is False


def test_security_is_off_by_default_with_debug_on():
    values = load_settings(
        "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS", DEBUG="true"
    )
    assert values == {
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
    }


def test_each_security_setting_can_be_turned_off_for_plain_http():
    values = load_settings(
        "SECURE_SSL_REDIRECT",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS",
        "SECURE_PROXY_SSL_HEADER",
        SECRET_KEY=REAL_KEY,
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        SECURE_HSTS_SECONDS="0",
        SECURE_PROXY_SSL_HEADER="false",
    )
    assert values == {
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_PROXY_SSL_HEADER": None,
    }


def test_postgres_url_selects_the_psycopg_backend():
    code = """
import json
import django
from django.conf import settings
django.setup()
from django.db import connection
from django.db.backends.postgresql import base
print(json.dumps({"db": settings.DATABASES["default"], "psycopg3": base.is_psycopg3,
                  "vendor": connection.vendor, "module": base.Database.__name__}))
"""
    result = run_python(
        code, SECRET_KEY=REAL_KEY, DATABASE_URL="postgres://gv:s3cret@db.example.com:6543/globalvoice"
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    db = values["db"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "globalvoice",
        "gv",
        "s3cret",
        "db.example.com",
        6543,
    )
    assert db["CONN_MAX_AGE"] == 60
    assert db["CONN_HEALTH_CHECKS"] is True
    assert "transaction_mode" not in db.get("OPTIONS", {})
    assert values["vendor"] == "postgresql"
    assert values["psycopg3"] is True
    assert values["module"] == "psycopg"


def test_postgresql_scheme_alias_and_conn_max_age():
    values = load_settings(
        "DATABASES", SECRET_KEY=REAL_KEY, DATABASE_URL="postgresql://postgres@127.0.0.1:5432/test", CONN_MAX_AGE="0"
    )
    db = values["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert db["NAME"] == "test"
    assert db["CONN_MAX_AGE"] == 0


def test_sqlite_url_is_honoured(tmp_path):
    path = tmp_path / "other.sqlite3"
    values = load_settings("DATABASES", SECRET_KEY=REAL_KEY, DATABASE_URL=f"sqlite:///{path}")
    db = values["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == str(path)


def test_lists_and_vapi_values_come_from_the_environment():
    values = load_settings(
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
        "VAPI_API_KEY",
        "VAPI_BASE_URL",
        "VAPI_SYNC_CONFLICT_POLICY",
        "CELERY_BROKER_URL",
        "CELERY_TASK_ALWAYS_EAGER",
        "PHONE_NUMBER_DEFAULT_REGION",
        SECRET_KEY=REAL_KEY,
        ALLOWED_HOSTS="example.com,api.example.com",
        CSRF_TRUSTED_ORIGINS="https://example.com,https://api.example.com",
        VAPI_API_KEY="vapi-key-123",
        VAPI_BASE_URL="https://vapi.example.com",
        VAPI_SYNC_CONFLICT_POLICY="manual",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
        PHONE_NUMBER_DEFAULT_REGION="GB",
    )
    assert values["ALLOWED_HOSTS"] == ["example.com", "api.example.com"]
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://example.com", "https://api.example.com"]
    assert values["VAPI_API_KEY"] == "vapi-key-123"
    assert values["VAPI_BASE_URL"] == "https://vapi.example.com"
    assert values["VAPI_SYNC_CONFLICT_POLICY"] == "manual"
    assert values["CELERY_BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert values["CELERY_TASK_ALWAYS_EAGER"] is False
    assert values["PHONE_NUMBER_DEFAULT_REGION"] == "GB"


def test_env_file_is_read_but_real_environment_wins(tmp_path):
    env_file = tmp_path / "custom.env"
    env_file.write_text(f"SECRET_KEY={REAL_KEY}\nVAPI_BASE_URL=https://from-file.example.com\nTIME_ZONE=Europe/London\n")
    values = load_settings(
        "SECRET_KEY", "VAPI_BASE_URL", "TIME_ZONE", ENV_FILE=str(env_file), TIME_ZONE="America/Chicago"
    )
    assert values["SECRET_KEY"] == REAL_KEY
    assert values["VAPI_BASE_URL"] == "https://from-file.example.com"
    assert values["TIME_ZONE"] == "America/Chicago"


@pytest.mark.parametrize("value", ["yes", "1", "true", "True", "on"])
def test_debug_accepts_the_usual_truthy_spellings(value):
    assert load_settings("DEBUG", DEBUG=value)["DEBUG"] is True
