"""One place where API errors become JSON responses."""

import logging

from django.db import DatabaseError, IntegrityError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

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
    if isinstance(exc, IntegrityError):
        # A unique or check constraint caught what validation could not see (a concurrent
        # write): the request conflicts with the data, the database itself is fine.
        logger.warning("Integrity error in %s: %s", context.get("view").__class__.__name__, exc)
        set_rollback()
        return Response(
            {"detail": "This conflicts with an existing record (a value that must be unique is taken); nothing was changed.", "code": "conflict"},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, DatabaseError):
        logger.exception("Database error in %s", context.get("view").__class__.__name__)
        set_rollback()
        return Response(
            {"detail": "The database is unavailable; nothing was changed. Try again shortly.", "code": "database_error"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    return None
