"""The Celery app. With CELERY_BROKER_URL unset, tasks run in-process (always-eager)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "globalvoice.settings")

app = Celery("globalvoice")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
