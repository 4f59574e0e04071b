"""Pure helpers of the Vapi HTTP protocol, shared by the client, its listing and its breaker.

Payload hygiene (`strip_server_fields`: the server-managed keys Vapi returns but rejects on
POST/PATCH), Vapi's timestamps (`format_vapi_datetime`, `parse_vapi_datetime`), `Retry-After`
(`parse_retry_after`), the kinds of transient failure the retry policy and the circuit breaker
act on (`_RATE_LIMITED`, `_CONNECT`, ...; `_should_retry`, `_is_connect_failure`), Vapi's error
bodies (`_error_messages`) and item paths (`_item_path`). Nothing here sends a request.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

DEFAULT_BASE_URL = "https://api.vapi.ai"
EU_BASE_URL = "https://api.eu.vapi.ai"
MAX_PAGE_SIZE = 1000  # openapi.json: GET /assistant and GET /phone-number `limit` is 0..1000
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

# --- Payload hygiene --------------------------------------------------------------

# Server-managed keys Vapi returns but rejects on POST/PATCH ("property X should not exist").
# Source: VapiAI/gitops src/canonical.ts EXCLUDED_FIELDS (+ VapiAI/cli RemoveExcludedKeys), plus
# `latestVersion`, which openapi.json's Assistant has and Create/UpdateAssistantDTO lack.
SERVER_FIELDS = frozenset(
    {"id", "orgId", "createdAt", "updatedAt", "isServerUrlSecretSet", "isDeleted", "analyticsMetadata", "workflowIds"}
)
ASSISTANT_SERVER_FIELDS = SERVER_FIELDS | {"latestVersion"}
# Phone numbers also carry `status` (active/activating/blocked), read-only.
PHONE_NUMBER_SERVER_FIELDS = SERVER_FIELDS | {"status"}
# Keys a phone-number document of one provider carries that the provider's Create/Update DTO
# rejects. Source: openapi.json (vapi_emulator/openapi/vapi-openapi-subset.json) VapiPhoneNumber vs
# CreateVapiPhoneNumberDTO / UpdateVapiPhoneNumberDTO: `number` of a Vapi-bought number cannot
# be set or changed, `numberDesiredAreaCode` is create-only. The other providers' Update DTOs
# accept every non-server key of their documents. A denylist rather than an allowlist on
# purpose: fields Vapi adds later keep round-tripping.
PHONE_NUMBER_PROVIDER_READ_ONLY = {
    ("vapi", "create"): frozenset({"number"}),
    ("vapi", "update"): frozenset({"number", "numberDesiredAreaCode"}),
}
_RESOURCES = {"assistant": "assistant", "phone_number": "phone_number", "phone-number": "phone_number"}


def strip_server_fields(payload: dict, resource: str, *, for_create: bool = False) -> dict:
    """A copy of `payload` without the keys Vapi would reject on PATCH (or POST with `for_create`).

    `resource` is "assistant" or "phone_number" ("phone-number" also accepted). Only top-level
    keys are dropped; everything else, including fields unknown to us and nulls, is kept.
    """
    kind = _RESOURCES.get(resource)
    if kind is None:
        raise ValueError(f"Unknown Vapi resource {resource!r}: expected 'assistant' or 'phone_number'.")
    if kind == "assistant":
        drop = ASSISTANT_SERVER_FIELDS
    else:
        operation = "create" if for_create else "update"
        extra = PHONE_NUMBER_PROVIDER_READ_ONLY.get((payload.get("provider"), operation), frozenset())
        drop = PHONE_NUMBER_SERVER_FIELDS | extra
    return {key: value for key, value in payload.items() if key not in drop}


# --- Timestamps -------------------------------------------------------------------


def format_vapi_datetime(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and "Z", as Vapi writes it: 2025-01-31T12:00:00.123Z."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"Naive datetime {value!r}: pass an aware datetime (e.g. django.utils.timezone.now()) "
            "so the Vapi filter is not off by the server's UTC offset."
        )
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_vapi_datetime(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_retry_after(headers) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date; None if absent."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = (headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# --- Transient failures ---------------------------------------------------------------

# Why an attempt failed, as far as retrying is concerned (set on the raised VapiError).
_RATE_LIMITED = "rate_limited"  # 429: nothing was applied
_CONNECT = "connect"  # no connection was made, so the request was never sent
_SERVER = "server_error"  # 500/502/503/504: may have been applied
_TIMEOUT = "read_timeout"  # sent, no answer in time: may have been applied
_DROPPED = "connection_lost"  # connection broke after sending: may have been applied
_NOT_APPLIED = {_RATE_LIMITED, _CONNECT}
_UNREACHABLE = {_CONNECT, _TIMEOUT, _DROPPED}  # transport failures: they feed the circuit breaker


# --- small pure helpers -------------------------------------------------------------


def _should_retry(method: str, exc: BaseException) -> bool:
    reason = getattr(exc, "_transient", None)
    if reason is None:
        return False
    if method == "POST":  # no idempotency key: retry only what certainly did not apply
        return reason in _NOT_APPLIED
    return True


def _is_connect_failure(exc: requests.RequestException) -> bool:
    """True if the connection was never established, so nothing was sent."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError):
        return False
    pending: list[BaseException] = [exc]
    visited = set()
    while pending:
        current = pending.pop()
        if id(current) in visited:
            continue
        visited.add(id(current))
        if isinstance(current, (NewConnectionError, ConnectTimeoutError)):
            return True
        pending.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
        reason = getattr(current, "reason", None)  # urllib3 MaxRetryError.reason
        if isinstance(reason, BaseException):
            pending.append(reason)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return False


def _error_messages(response: requests.Response, redact: Callable[[Any], Any]) -> tuple[list[str], Any]:
    """Vapi's error text as a list, from a NestJS body {"message": [..] | "..", "error": ".."} or plain text.

    Everything is redacted before anything is cut to length: cutting first could split the key, and
    a split key is no longer found by the redaction (the rest of it would reach the run's errors)."""
    try:
        body = redact(response.json())
    except ValueError:
        text = redact(response.text).strip()[:300]
        return ([text] if text else []), text
    messages: list[str] = []
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, list):
            messages = [str(m) for m in message]
        elif isinstance(message, str) and message:
            messages = [message]
        elif message is not None:
            messages = [str(message)]
        if not messages and body.get("error"):
            messages = [str(body["error"])]
    elif isinstance(body, str) and body:
        messages = [body]
    return messages, body



def _item_path(collection: str, object_id: str) -> str:
    if not isinstance(object_id, str) or not object_id.strip():
        raise ValueError(f"A Vapi id is required for {collection}/<id>, got {object_id!r}")
    return f"{collection}/{quote(object_id, safe='')}"
