"""One place where API errors become JSON responses, all of one shape:

    {"detail": "a sentence for people", "code": "a_stable_code", ...extras}

DRF's own errors (401, 403, 404, 405, 406, 415, 429, malformed JSON) keep their message and get
their code; invalid input is a 400 {"detail": summary, "code": "invalid", "errors": {field: [messages]}};
domain errors (vapisync.exceptions) carry their status, code and extras (`run_id`); database errors
become 409 or 503. Errors raised before a view runs (unknown URL, CSRF, body too large) get the same
shape from globalvoice.errors.
"""

import logging

from django.db import DatabaseError, IntegrityError
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

logger = logging.getLogger(__name__)

# Django's Http404 and PermissionDenied reach DRF's handler as NotFound / PermissionDenied.
_CODE_OF_STATUS = {400: "bad_request", 401: "not_authenticated", 403: "permission_denied", 404: "not_found",
                   405: "method_not_allowed", 406: "not_acceptable", 415: "unsupported_media_type", 429: "throttled"}


def api_exception_handler(exc, context):
    response = exception_handler(exc, context)
    if response is not None:
        response.data = _shaped(exc, response)
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


def _shaped(exc, response) -> dict:
    if isinstance(exc, ValidationError):
        errors = as_field_errors(exc.detail)
        return {"detail": summary(errors), "code": "invalid", "errors": errors}
    data = response.data if isinstance(response.data, dict) else {"detail": str(response.data)}
    if "code" not in data:
        codes = exc.get_codes() if isinstance(exc, APIException) else None
        fallback = getattr(exc, "default_code", None) or _CODE_OF_STATUS.get(response.status_code, "error")
        data = {**data, "code": codes if isinstance(codes, str) else fallback}
    return data


def as_field_errors(detail) -> dict:
    """A ValidationError's detail as {field: [messages]} (non-field messages under non_field_errors)."""
    if isinstance(detail, dict):
        return detail
    return {"non_field_errors": detail if isinstance(detail, list) else [detail]}


def summary(errors: dict) -> str:
    parts = []
    for field, messages in errors.items():
        messages = messages if isinstance(messages, list) else [messages]
        flat = [str(m).rstrip(".") if not isinstance(m, (dict, list)) else "invalid item" for m in messages]
        parts.append(f"{field}: {'; '.join(flat)}" if field != "non_field_errors" else "; ".join(flat))
    return "Invalid request: " + "; ".join(parts) + "."
