"""Settings for the Celery worker that test_worker.py starts (DJANGO_SETTINGS_MODULE of the worker).

The production settings, read from the environment the test passes (database, broker, Vapi URL),
plus the test's own queue, and a short sync-lock lease, so that the lock of a worker killed in the
middle of a run expires within the test instead of after the production lease of 10 minutes.
"""

import os

from globalvoice.settings import *  # noqa: F403

CELERY_TASK_DEFAULT_QUEUE = os.environ.get("GLOBALVOICE_TEST_QUEUE", "celery")
VAPI_SYNC_LOCK_TTL = float(os.environ.get("VAPI_SYNC_LOCK_TTL", "8"))
