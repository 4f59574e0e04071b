"""Settings for the test suite: production settings with test-safe environment defaults."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("SECURE_HSTS_SECONDS", "0")
os.environ.setdefault("STATICFILES_BACKEND", "django.contrib.staticfiles.storage.StaticFilesStorage")
os.environ.setdefault("WHITENOISE_USE_FINDERS", "true")
# Tests must never pick up a developer's real Vapi credentials or broker from .env.
os.environ["VAPI_API_KEY"] = os.environ.get("TEST_VAPI_API_KEY", "test-vapi-key")
os.environ["VAPI_BASE_URL"] = "http://vapi.test"
os.environ["VAPI_WEBHOOK_SECRET"] = "test-webhook-secret"
os.environ.setdefault("CELERY_BROKER_URL", "")

from .settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
VAPI_RATE_LIMIT = 0.0  # no client-side pacing against the in-process emulator
VAPI_ADAPTIVE_RATE = False
VAPI_MAX_RETRY_WAIT = 2.0
# Background runs execute right after the response that answered 202, in the test's transaction
# (tests of the real thread set "thread" and wait with background_join()).
VAPI_SYNC_BACKGROUND = "after_response"
# Look static files up per request (finders) instead of scanning a STATIC_ROOT that
# collectstatic has not filled: no "No directory at: staticfiles/" warning per test client.
WHITENOISE_AUTOREFRESH = True

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, as in production: concurrent threads then wait on SQLite's lock (busy timeout)
    # instead of failing with "table is locked" as shared-cache memory databases do, and
    # worker subprocesses started by the tests can open the same database.
    import tempfile

    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"globalvoice-test-{os.getpid()}.sqlite3")
    }
