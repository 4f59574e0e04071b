"""One place where API errors become JSON responses."""

import logging

from django.db import DatabaseError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


def api_exception_handler(exc, context):
    response = exception_handler(exc, context)
    if response is not None:
        return response
    # Domain errors know their own status code and safe message (vapisync.exceptions).
    status_code = getattr(exc, "http_status", None)
    if status_code is not None:
        body = {"detail": str(exc), "code": getattr(exc, "code", "error")}
        body.update(getattr(exc, "extra", {}) or {})
        return Response(body, status=status_code)
    if isinstance(exc, DatabaseError):
        logger.exception("Database error in %s", context.get("view").__class__.__name__)
        return Response(
            {"detail": "The database is unavailable; nothing was changed. Try again shortly.", "code": "database_error"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    return None
