"""Settings for GlobalVoice Vapi Sync.

Every value comes from the environment (or a `.env` file beside manage.py) with an
explicit default; `.env.example` documents each variable.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Real environment variables win over the file. ENV_FILE names another file; ENV_FILE= (empty)
# reads none, which is how the settings tests see a truly clean environment.
ENV_FILE = env.str("ENV_FILE", default=str(BASE_DIR / ".env"))
if ENV_FILE:
    environ.Env.read_env(ENV_FILE, overwrite=False)
    # `make demo` writes its settings (the emulator's URL and key, DEBUG, its database) to .env.demo,
    # so manage.py in another terminal reaches the same demo. They only fill what the environment and
    # ENV_FILE leave unset, and are not read at all once VAPI_API_KEY is set there: a real key is
    # never paired with the emulator's URL.
    DEMO_ENV_FILE = env.str("DEMO_ENV_FILE", default=str(BASE_DIR / ".env.demo"))
    if DEMO_ENV_FILE and not env.str("VAPI_API_KEY", default="") and Path(DEMO_ENV_FILE).is_file():
        environ.Env.read_env(DEMO_ENV_FILE, overwrite=False)

# --- Core -------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=False)

# A development key is only acceptable when DEBUG is on.
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (see .env.example).")
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally, no CDN
    "django_celery_beat",
    "agents",
    "phonenumbers_app",
    "vapisync",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The request's user is recorded on the sync runs its saves cause (vapisync.actor).
    "vapisync.actor.ActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "globalvoice.urls"
WSGI_APPLICATION = "globalvoice.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------
# https://django-environ.readthedocs.io/en/latest/types.html#environ-env-db-url
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Wait for a competing writer instead of failing with "database is locked", and take
    # the write lock at BEGIN so read-then-write transactions cannot deadlock.
    # WAL lets readers (the admin page, status) proceed while a sync writes. A 64 MiB page cache (the
    # default is 2 MiB) keeps a large import's index pages in memory (README, "Performance").
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536;",
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# models.E034 caps index names at 30 characters for Oracle's sake. This project runs on
# SQLite and PostgreSQL (63), and keeps the seed schema's idx_phone_numbers_vapi_phone_id (31).
SILENCED_SYSTEM_CHECKS = ["models.E034"]

# --- Auth, i18n, static -----------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": env.str(
            "STATICFILES_BACKEND", default="whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# Serve admin assets straight from the apps when collectstatic has not run (demo, tests).
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=DEBUG)

# --- Security (on by default with DEBUG off; turn off by env for plain-HTTP hosting) ---
# https://docs.djangoproject.com/en/stable/howto/deployment/checklist/
_secure_default = not DEBUG
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_secure_default)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=_secure_default)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=_secure_default)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if _secure_default else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_secure_default)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=_secure_default)
if env.bool("SECURE_PROXY_SSL_HEADER", default=True):
    # Behind a TLS-terminating proxy (Heroku, Fly, nginx) the scheme arrives in this header.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
CSRF_FAILURE_VIEW = "globalvoice.errors.csrf_failure"
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)

# --- REST framework ---------------------------------------------------------------
# Bearer first: the first authentication class decides that anonymous calls get 401.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "globalvoice.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.DjangoModelPermissions"],
    "DEFAULT_PARSER_CLASSES": [
        "globalvoice.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=50),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"vapi_sync": env.str("VAPI_SYNC_THROTTLE_RATE", default="30/minute")},
    "EXCEPTION_HANDLER": "globalvoice.exceptions.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "GlobalVoice Vapi Sync API",
    "DESCRIPTION": "Agents, phone numbers and their two-way synchronisation with Vapi.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # /api/schema/ and /api/docs/ are public: they describe the API and hold no data (README, "API").
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    # https://drf-spectacular.readthedocs.io/en/latest/settings.html (self-contained assets)
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Phone numbers ----------------------------------------------------------------
# Region used to read numbers written without a country code ("682-626-9224").
PHONE_NUMBER_DEFAULT_REGION = env.str("PHONE_NUMBER_DEFAULT_REGION", default="US")

# --- Agents ----------------------------------------------------------------------
# Where the agents app finds the model and voice providers a person may choose (API and admin):
# those of the committed Vapi OpenAPI subset. Wiring, not configuration; "" accepts any value.
AGENT_CATALOGUE = "vapisync.providers.vapi_catalogue"

# --- Vapi ------------------------------------------------------------------------
# Read at call time through vapisync.conf, never frozen into defaults.
VAPI_API_KEY = env.str("VAPI_API_KEY", default="")
VAPI_BASE_URL = env.str("VAPI_BASE_URL", default="https://api.vapi.ai")
VAPI_WEBHOOK_SECRET = env.str("VAPI_WEBHOOK_SECRET", default="")
VAPI_SYNC_CONFLICT_POLICY = env.str("VAPI_SYNC_CONFLICT_POLICY", default="vapi_wins")
VAPI_SYNC_DELETE_REMOTE = env.bool("VAPI_SYNC_DELETE_REMOTE", default=False)
VAPI_TIMEOUT_CONNECT = env.float("VAPI_TIMEOUT_CONNECT", default=5.0)
VAPI_TIMEOUT_READ = env.float("VAPI_TIMEOUT_READ", default=30.0)
VAPI_MAX_RETRIES = env.int("VAPI_MAX_RETRIES", default=5)
VAPI_MAX_RETRY_WAIT = env.float("VAPI_MAX_RETRY_WAIT", default=60.0)
# Pacing: the client finds Vapi's rate limit from its 429s (AIMD), starting at VAPI_RATE_START
# requests per second; VAPI_RATE_LIMIT is a ceiling (0 = none), or the fixed rate when not adaptive.
VAPI_ADAPTIVE_RATE = env.bool("VAPI_ADAPTIVE_RATE", default=True)
VAPI_RATE_START = env.float("VAPI_RATE_START", default=10.0)
VAPI_RATE_LIMIT = env.float("VAPI_RATE_LIMIT", default=0.0)  # requests per second
VAPI_MAX_CONCURRENCY = env.int("VAPI_MAX_CONCURRENCY", default=8)
VAPI_WEBHOOK_MAX_BYTES = env.int("VAPI_WEBHOOK_MAX_BYTES", default=1_048_576)
VAPI_WEBHOOK_DEBOUNCE = env.float("VAPI_WEBHOOK_DEBOUNCE", default=2.0)  # seconds to gather a burst of events
VAPI_SYNC_RECONCILE_AFTER = env.float("VAPI_SYNC_RECONCILE_AFTER", default=60.0)
VAPI_SYNC_LOCK_TTL = env.float("VAPI_SYNC_LOCK_TTL", default=600.0)
# Before PATCHing from a copy of a Vapi document older than this, ask Vapi what changed since.
VAPI_SYNC_RECHECK_SECONDS = env.float("VAPI_SYNC_RECHECK_SECONDS", default=1.0)
# After connection failures (refused, DNS, TLS, timeouts) pages and status fail fast for this long.
VAPI_CIRCUIT_BREAKER_SECONDS = env.float("VAPI_CIRCUIT_BREAKER_SECONDS", default=30.0)
# Seconds a request a person waits on (status check, health, inline dry run) may take; no retries.
VAPI_INTERACTIVE_TIMEOUT = env.float("VAPI_INTERACTIVE_TIMEOUT", default=3.0)
# Without a broker, runs started from the API or the admin execute in a background thread of the
# web process ("thread"); "after_response" runs them in the request's thread after its response
# (the test suite only: see vapisync/services/background.py).
VAPI_SYNC_BACKGROUND = env.str("VAPI_SYNC_BACKGROUND", default="thread")
# The stored status (Vapi counts, drift) is shown as out of date after this many seconds.
VAPI_SYNC_STATUS_MAX_AGE = env.float("VAPI_SYNC_STATUS_MAX_AGE", default=900.0)

# --- Celery -----------------------------------------------------------------------
# Without a broker, tasks run in-process right after the transaction commits.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE

# --- Logging ----------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "globalvoice.logging.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_secrets"]}
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"urllib3": {"level": "WARNING"}},
}
