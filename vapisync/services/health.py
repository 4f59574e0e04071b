"""The health of the sync: Vapi (pinged, the answer cached for 15 s), the database and the broker.

A service, not a selector: it sends a request to Vapi. Used by `GET /api/vapi-sync/health/` and
`manage.py vapi_sync health`.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.db import connection

from globalvoice.celery import app as celery_app
from vapisync.conf import vapi_settings
from vapisync.exceptions import VapiSyncError
from vapisync.services.clients import sync_client

REACHABLE_CACHE_KEY = "vapisync:health:reachable"
REACHABLE_CACHE_SECONDS = 15


def sync_health_check() -> dict:
    """{"status": ok | degraded | disabled, "vapi", "database", "broker"}: each part checked now,
    except Vapi's reachability, which is cached briefly so that probes do not hammer Vapi."""
    conf = vapi_settings()
    result = {"vapi": {"configured": conf.configured, "reachable": None, "base_url": conf.base_url}}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        result["database"] = {"ok": True}
    except Exception as exc:
        result["database"] = {"ok": False, "error": type(exc).__name__}
    result["broker"] = _broker_health()
    if conf.configured:
        cached = cache.get(REACHABLE_CACHE_KEY)
        if cached is None:
            try:
                sync_client(interactive=True).ping()
                cached = {"reachable": True, "error": None}
            except VapiSyncError as exc:
                cached = {"reachable": False, "error": str(exc)}
            cache.set(REACHABLE_CACHE_KEY, cached, REACHABLE_CACHE_SECONDS)
        result["vapi"].update(cached)
    if not conf.configured:
        result["status"] = "disabled"
    elif result["vapi"]["reachable"] and result["database"]["ok"] and result["broker"]["ok"] is not False:
        result["status"] = "ok"
    else:
        result["status"] = "degraded"
    return result


def _broker_health() -> dict:
    url = getattr(settings, "CELERY_BROKER_URL", "")
    if not url:
        return {"configured": False, "ok": None, "mode": "in-process"}
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return {"configured": True, "ok": True, "mode": "worker"}
    except Exception as exc:
        return {"configured": True, "ok": False, "mode": "worker", "error": type(exc).__name__}
