"""`VapiEmulator`: an in-memory stand-in for the parts of api.vapi.ai the sync uses.

Routes: GET/POST /assistant, GET/PATCH/DELETE /assistant/{id}, GET/POST /phone-number,
GET/PATCH/DELETE /phone-number/{id}, GET /v2/phone-number. Behaviour follows Vapi's OpenAPI
(the trimmed subset in `vapi_emulator.openapi`, refreshed with the official SDK's types) and what users
report (shared/VAPI-NOTES.md section 3). Resources it does not model (`/credential`, `/tool`,
`/squad`) answer an empty list, and 404 in Vapi's error shape by id, so third-party Vapi clients
that look at them on start-up can run against it.

- Bearer auth; NestJS error bodies `{"message", "error", "statusCode"}`; unknown routes answer
  404 "Cannot GET /x" before any auth, as Express does.
- Request bodies are checked against the Create/Update DTOs like Vapi's ValidationPipe: unknown or
  read-only properties give "property X should not exist", constraints give class-validator messages.
  `modelDeprecations` (read-only, in what GET answers) is the exception: clients that send a fetched
  assistant back include it, and Vapi accepts and ignores it. Phone-number PATCHes are checked
  against the Update DTO of the stored number's provider.
- PATCH replaces each top-level key it is given (no deep merge: a `model` without `temperature`
  loses it); a top-level `null` is stored as `null`, as Vapi does (a POST leaves null keys out).
  updatedAt strictly increases on every write, even within one millisecond.
- v1 lists are plain arrays, newest first, `limit` 0..1000 (default 100), createdAt/updatedAt
  Gt/Ge/Lt/Le filters; equal createdAt values are ordered most recently inserted first. Unknown query
  parameters are ignored (undocumented whether Vapi rejects them). `paginated_lists = True` answers
  v1 lists in the `{results, metadata}` shape announced by Vapi's changelog instead.
- Phone-number secrets (`twilioAuthToken`, `twilioApiSecret`, SIP `authentication`) are stored but
  never returned.

Faults, settable at any time from any thread. Checked in this order, all before the request is applied:
`down` -> 503; `rate_limit` (token bucket: that many requests per second, burst of one second)
-> 429 `{"message": "Rate limit exceeded", ...}` with an integer Retry-After >= 1; bad key -> 401;
`fail_next(n, status, route)`; `error_rate` -> random 500/502/503; `fail_writes` -> 503 for
POST/PATCH/DELETE. After the request was applied: `fail_after_apply_next(n, status, route)`
replaces the answer (the write happened: a lost response), else `malformed_next(n)` turns it into
a 200 with truncated JSON. `latency_ms` and `slow_next(n, seconds)` delay the answer outside the lock.
Every received request is recorded in `requests`/`counts`; `write_attempts` counts all
POST/PATCH/DELETE received, `write_count` only those that changed state.
"""

from __future__ import annotations

import hmac
import itertools
import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from .faults import ScriptedFault, TokenBucket
from .nest import JSON_HEADERS, error_body, internal_error_body, validation_messages
from .openapi import request_errors, schema_errors
from .store import (
    Collection,
    TimeFilter,
    format_timestamp,
    parse_timestamp,
    to_micros,
    truncate_to_millis,
)

Response = tuple[int, dict[str, str], bytes]

DEFAULT_ORG_ID = str(uuid.uuid5(uuid.NAMESPACE_DNS, "org.globalvoice.example"))
INVALID_KEY_MESSAGE = "Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa."
ASSISTANT_NOT_FOUND = "Couldn't Get Assistant. Assistant Not Found"
PHONE_NUMBER_NOT_FOUND = "Couldn't Get Phone Number. Phone Number Not Found"
# Resources the emulator does not model: listed as empty, never found by id (Vapi's wording).
UNMODELLED = {"credential": "Credential", "tool": "Tool", "squad": "Squad"}
IGNORED_READ_ONLY = ("modelDeprecations",)
LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 1000
WRITE_METHODS = frozenset({"POST", "PATCH", "DELETE"})
SERVER_FIELDS = frozenset({"id", "orgId", "createdAt", "updatedAt"})
RANDOM_ERROR_STATUSES = (500, 502, 503)
TIME_FILTERS = tuple(f"{field}{op}" for field in ("createdAt", "updatedAt") for op in ("Gt", "Ge", "Lt", "Le"))
PHONE_DTO_PREFIX = {"vapi": "Vapi", "twilio": "Twilio", "vonage": "Vonage", "telnyx": "Telnyx", "byo-phone-number": "Byo"}
PHONE_SECRET_FIELDS = ("twilioAuthToken", "twilioApiSecret", "authentication")
V2_SORT_ORDERS = ("ASC", "DESC")
V2_SORT_BY = ("createdAt", "duration", "cost")  # phone numbers have only createdAt; the others sort by it too
V2_SEARCH_MAX_LENGTH = 100


class _HttpError(Exception):
    """Ends request handling with a ready response."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None):
        super().__init__(status)
        self.response: Response = (status, {**JSON_HEADERS, **(headers or {})}, body)


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    template: str | None
    resource_id: str | None
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class _ListQuery:
    limit: int
    created: TimeFilter
    updated: TimeFilter
    page: int = 1
    newest_first: bool = True
    search: str | None = None


class VapiEmulator:
    """See the module docstring. Every public attribute may be read or set from any thread."""

    def __init__(
        self,
        api_key: str = "test-vapi-key",
        latency_ms: float = 0,
        error_rate: float = 0.0,
        rate_limit: float | None = None,
        seed: str | None = None,
        clock: Callable[[], datetime] | None = None,
        random_seed: int | None = None,
        org_id: str = DEFAULT_ORG_ID,
    ):
        self.api_key = api_key
        self.org_id = org_id
        self.latency_ms = latency_ms
        self.error_rate = error_rate
        self.down = False
        self.fail_writes = False
        self.paginated_lists = False
        self.pinned: set[str] = set()  # assistant ids whose DELETE answers 409 assistant_pinned
        self._clock = clock or (lambda: datetime.now(UTC))
        self._rng = random.Random(random_seed)
        self._lock = threading.RLock()
        self._assistants = Collection()
        self._phone_numbers = Collection()
        self.assistants: dict[str, dict[str, Any]] = self._assistants.docs
        self.phone_numbers: dict[str, dict[str, Any]] = self._phone_numbers.docs
        self._scripted: list[ScriptedFault] = []
        self._slow: list[list[float]] = []  # [remaining, seconds]
        self._malformed = 0
        self._bucket: TokenBucket | None = None
        self._rate_limit: float | None = None
        self.rate_limit = rate_limit
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.counts: Counter[str] = Counter()
        self.write_count = 0
        self.write_attempts = 0
        self._handlers: dict[tuple[str, str], Callable[[_Request], Response]] = {
            ("GET", "/assistant"): self._list_assistants,
            ("POST", "/assistant"): self._create_assistant,
            ("GET", "/assistant/{id}"): self._get_assistant,
            ("PATCH", "/assistant/{id}"): self._update_assistant,
            ("DELETE", "/assistant/{id}"): self._delete_assistant,
            ("GET", "/phone-number"): self._list_phone_numbers,
            ("POST", "/phone-number"): self._create_phone_number,
            ("GET", "/phone-number/{id}"): self._get_phone_number,
            ("PATCH", "/phone-number/{id}"): self._update_phone_number,
            ("DELETE", "/phone-number/{id}"): self._delete_phone_number,
            ("GET", "/v2/phone-number"): self._list_phone_numbers_v2,
            **{("GET", f"/{name}"): self._list_unmodelled for name in UNMODELLED},
            **{("GET", f"/{name}/{{id}}"): self._get_unmodelled for name in UNMODELLED},
        }
        if seed == "demo":
            self.load_demo()
        elif seed is not None:
            raise ValueError(f"unknown seed {seed!r} (expected 'demo' or None)")

    # --- fault controls ---------------------------------------------------------------------

    @property
    def rate_limit(self) -> float | None:
        return self._rate_limit

    @rate_limit.setter
    def rate_limit(self, value: float | None) -> None:
        with self._lock:
            self._rate_limit = value
            self._bucket = TokenBucket(value) if value else None

    def fail_next(self, n: int, status: int = 503, route: str | None = None, body: str | bytes | None = None) -> None:
        """The next `n` requests matching `route` fail with `status` before anything is applied;
        `body` replaces the error body (e.g. plain text, as a proxy in front of Vapi may answer)."""
        with self._lock:
            self._scripted.append(ScriptedFault(n, status, route, body=body.encode() if isinstance(body, str) else body))

    def fail_after_apply_next(self, n: int, status: int = 502, route: str | None = None) -> None:
        """The next `n` matching requests are applied, then answered with `status` (the answer was lost)."""
        with self._lock:
            self._scripted.append(ScriptedFault(n, status, route, after_apply=True))

    def slow_next(self, n: int, seconds: float) -> None:
        """The next `n` requests are answered `seconds` late (on top of `latency_ms`)."""
        with self._lock:
            self._slow.append([n, seconds])

    def malformed_next(self, n: int) -> None:
        """The next `n` handled requests are answered 200 with truncated JSON (after being applied)."""
        with self._lock:
            self._malformed += n

    def clear_faults(self) -> None:
        """Forget scripted faults that have not fired yet (fail_next, fail_after_apply_next, slow_next)."""
        with self._lock:
            self._scripted.clear()
            self._slow.clear()

    def reset_counters(self) -> None:
        with self._lock:
            self.requests = []
            self.counts = Counter()
            self.write_count = 0
            self.write_attempts = 0

    # --- direct state access (no HTTP, no counters, no validation) ----------------------------

    def add_assistant(self, **fields: Any) -> dict[str, Any]:
        """Insert an assistant as if created earlier. `id`, `createdAt`, `updatedAt` (ISO string or datetime) may be given."""
        with self._lock:
            doc, created, updated = self._new_document(fields)
            doc.setdefault("isServerUrlSecretSet", False)
            self._assistants.insert(doc, created, updated)
            return copy_json(doc)

    def add_phone_number(self, **fields: Any) -> dict[str, Any]:
        """Insert a phone number (secrets allowed); returns what the API would return."""
        if fields.get("provider") not in PHONE_DTO_PREFIX:
            raise ValueError(f"provider must be one of {sorted(PHONE_DTO_PREFIX)}")
        with self._lock:
            doc, created, updated = self._new_document(_with_phone_defaults(fields))
            self._phone_numbers.insert(doc, created, updated)
            return copy_json(_public_phone_number(doc))

    def edit_assistant(self, assistant_id: str, **fields: Any) -> dict[str, Any]:
        """Change an assistant as a dashboard user would (top-level replace, updatedAt bumped)."""
        with self._lock:
            return copy_json(self._apply_update(self._assistants, assistant_id, fields))

    def edit_phone_number(self, phone_number_id: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            return copy_json(_public_phone_number(self._apply_update(self._phone_numbers, phone_number_id, fields)))

    def remove_assistant(self, assistant_id: str) -> None:
        """Delete an assistant as a dashboard user would."""
        with self._lock:
            self._assistants.remove(assistant_id)

    def remove_phone_number(self, phone_number_id: str) -> None:
        with self._lock:
            self._phone_numbers.remove(phone_number_id)

    def load_demo(self) -> None:
        from .demo import load_demo

        load_demo(self)

    # --- transports ---------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str] | str, headers: dict[str, str], body: bytes | None) -> Response:
        """Answer one request: (status, headers, body bytes). Sleeps for injected latency."""
        response, delay = self._respond(method, path, query, headers, body)
        if delay > 0:
            time.sleep(delay)
        return response

    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        status, response_headers, payload = self.handle(
            environ["REQUEST_METHOD"], environ.get("PATH_INFO") or "/", environ.get("QUERY_STRING", ""), headers, body
        )
        start_response(f"{status} {_phrase(status)}", [*response_headers.items(), ("Content-Length", str(len(payload)))])
        return [payload]

    def install(self, rsps: Any, base_url: str = "http://vapi.test") -> None:
        """Route every `requests` call under `base_url` (any method, path, query) to this emulator.

        Registers one catch-all `responses` callback. A request whose injected delay exceeds its read
        timeout raises `requests.exceptions.ReadTimeout` after waiting that timeout (the request is still
        applied, as on a real server). With `assert_all_requests_are_fired=True`, the test must call Vapi
        at least once.
        """
        from responses import CallbackResponse  # a test-only dependency

        base = urlsplit(base_url.rstrip("/"))
        pattern = re.compile(re.escape(f"{base.scheme}://{base.netloc}{base.path}") + r"(?:[/?].*)?$")
        emulator = self

        class EmulatorRoute(CallbackResponse):
            """Matches every method, so one registration serves all routes."""

            def matches(self, request: Any) -> tuple[bool, str]:
                return (True, "") if pattern.match(str(request.url)) else (False, "URL does not match")

        def callback(request: Any) -> Response:
            url = urlsplit(request.url)
            body = request.body.encode() if isinstance(request.body, str) else request.body
            response, delay = emulator._respond(
                request.method, url.path[len(base.path):] or "/", url.query, dict(request.headers), body
            )
            read_timeout = _read_timeout(getattr(request, "req_kwargs", {}).get("timeout"))
            if read_timeout is not None and delay > read_timeout:
                time.sleep(read_timeout)
                raise requests.exceptions.ReadTimeout(f"Read timed out. (read timeout={read_timeout}) [emulated]", request=request)
            if delay > 0:
                time.sleep(delay)
            return response

        rsps.add(EmulatorRoute("GET", pattern, callback=callback, content_type=None))

    # --- request pipeline ---------------------------------------------------------------------

    def _respond(self, method: str, path: str, query: dict[str, str] | str, headers: dict[str, str], body: bytes | None) -> tuple[Response, float]:
        method = method.upper()
        path, _, inline_query = path.partition("?")
        template, resource_id = _route(path)
        handler = self._handlers.get((method, template or ""))
        request = _Request(
            method=method,
            path=path,
            template=template,
            resource_id=resource_id,
            query=_parse_query(query if query else inline_query),
            headers={str(k).lower(): str(v) for k, v in headers.items()},
            body=body or b"",
        )
        with self._lock:
            self.requests.append((method, path, request.query))
            self.counts[f"{method} {template}" if handler else f"{method} {path}"] += 1
            if method in WRITE_METHODS:
                self.write_attempts += 1
            delay = max(0.0, self.latency_ms) / 1000 + self._take_slow()
            try:
                if handler is None:  # Express' answer for an unknown route, before any guard runs
                    raise _HttpError(404, error_body(404, f"Cannot {method} {path}"))
                self._check_faults(request)
            except _HttpError as error:
                return error.response, delay
            try:
                response = handler(request)
            except _HttpError as error:
                response = error.response
            return self._after_handler(request, response), delay

    def _take_slow(self) -> float:
        if not self._slow:
            return 0.0
        self._slow[0][0] -= 1
        seconds = self._slow[0][1]
        if self._slow[0][0] <= 0:
            self._slow.pop(0)
        return seconds

    def _check_faults(self, request: _Request) -> None:
        if self.down:
            raise _HttpError(503, error_body(503, "Service Unavailable"))
        if self._bucket is not None and (wait := self._bucket.take()):
            raise _HttpError(429, error_body(429, "Rate limit exceeded"), {"Retry-After": str(wait)})
        if not self._authorized(request.headers.get("authorization", "")):
            raise _HttpError(401, error_body(401, INVALID_KEY_MESSAGE))
        if (fault := self._take_scripted(request, after_apply=False)) is not None:
            status, body, headers = _fault_response(fault.status)
            if fault.body is not None:
                body, headers = fault.body, {**headers, "Content-Type": "text/plain; charset=utf-8"}
            raise _HttpError(status, body, headers)
        if self.error_rate > 0 and self._rng.random() < self.error_rate:
            raise _HttpError(*_fault_response(self._rng.choice(RANDOM_ERROR_STATUSES)))
        if self.fail_writes and request.method in WRITE_METHODS:
            raise _HttpError(503, error_body(503, "Service Unavailable"))

    def _after_handler(self, request: _Request, response: Response) -> Response:
        if (fault := self._take_scripted(request, after_apply=True)) is not None:
            status, body, headers = _fault_response(fault.status)
            return status, {**JSON_HEADERS, **headers}, body
        if self._malformed > 0:
            self._malformed -= 1
            payload = response[2]
            return 200, dict(JSON_HEADERS), payload[: max(1, len(payload) // 2)]
        return response

    def _take_scripted(self, request: _Request, after_apply: bool) -> ScriptedFault | None:
        for fault in self._scripted:
            if fault.after_apply == after_apply and fault.matches(request.method, request.template):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._scripted.remove(fault)
                return fault
        return None

    def _authorized(self, authorization: str) -> bool:
        scheme, _, token = authorization.strip().partition(" ")
        return scheme.lower() == "bearer" and _constant_time_equal(token.strip(), self.api_key)

    # --- assistants -----------------------------------------------------------------------------

    def _list_assistants(self, request: _Request) -> Response:
        return self._list_v1(self._assistants, request, lambda doc: doc)

    def _create_assistant(self, request: _Request) -> Response:
        body = _without_ignored(_json_body(request))
        _raise_for(schema_errors("CreateAssistantDTO", body, strict=True))
        doc, created, updated = self._new_document({k: v for k, v in body.items() if v is not None})
        doc["isServerUrlSecretSet"] = False
        self._assistants.insert(doc, created, updated)
        self.write_count += 1
        return _json(201, doc)

    def _get_assistant(self, request: _Request) -> Response:
        return _json(200, _find(self._assistants, request.resource_id, ASSISTANT_NOT_FOUND))

    def _update_assistant(self, request: _Request) -> Response:
        body = _without_ignored(_json_body(request))
        _raise_for(schema_errors("UpdateAssistantDTO", body, strict=True))  # the pipe runs before the lookup
        _find(self._assistants, request.resource_id, ASSISTANT_NOT_FOUND)
        doc = self._apply_update(self._assistants, request.resource_id, body)
        self.write_count += 1
        return _json(200, doc)

    def _delete_assistant(self, request: _Request) -> Response:
        _find(self._assistants, request.resource_id, ASSISTANT_NOT_FOUND)
        if request.resource_id in self.pinned:
            conflict = {"error": "assistant_pinned", "message": "Assistant is pinned and cannot be deleted. Unpin it first."}
            raise _HttpError(409, json.dumps(conflict).encode())
        doc = self._assistants.remove(request.resource_id)
        self.write_count += 1
        return _json(200, doc)

    # --- phone numbers --------------------------------------------------------------------------

    def _list_phone_numbers(self, request: _Request) -> Response:
        return self._list_v1(self._phone_numbers, request, _public_phone_number)

    def _list_phone_numbers_v2(self, request: _Request) -> Response:
        query = _list_query(request.query, v2=True)
        matching = self._phone_numbers.select(query.created, query.updated, query.newest_first)
        if query.search:
            needle = query.search.lower()
            matching = (d for d in matching if any(needle in str(d.get(f, "")).lower() for f in ("name", "number", "sipUri")))
        docs = list(matching)
        start = (query.page - 1) * query.limit
        results = [_public_phone_number(d) for d in docs[start:start + query.limit]]
        metadata = _pagination(query, len(docs))
        metadata["sortOrder"] = "DESC" if query.newest_first else "ASC"
        return _json(200, {"results": results, "metadata": metadata})

    def _create_phone_number(self, request: _Request) -> Response:
        body = _json_body(request)
        _raise_for(request_errors("POST", "/phone-number", body))
        fields = {k: v for k, v in body.items() if v is not None}
        provider = fields["provider"]
        if provider == "twilio" and not (fields.get("twilioAuthToken") or (fields.get("twilioApiKey") and fields.get("twilioApiSecret"))):
            raise _HttpError(400, error_body(400, ["twilioAuthToken or twilioApiKey and twilioApiSecret must be provided"]))
        if provider == "vapi":
            if "numberDesiredAreaCode" not in fields and "sipUri" not in fields:
                raise _HttpError(400, error_body(400, ["numberDesiredAreaCode or sipUri must be provided"]))
            if "numberDesiredAreaCode" in fields:  # Vapi buys a free US number in that area code
                fields["number"] = f"+1{fields['numberDesiredAreaCode']}{self._rng.randrange(2_000_000, 9_999_999)}"
        doc, created, updated = self._new_document(_with_phone_defaults(fields))
        self._phone_numbers.insert(doc, created, updated)
        self.write_count += 1
        return _json(201, _public_phone_number(doc))

    def _get_phone_number(self, request: _Request) -> Response:
        return _json(200, _public_phone_number(_find(self._phone_numbers, request.resource_id, PHONE_NUMBER_NOT_FOUND)))

    def _update_phone_number(self, request: _Request) -> Response:
        stored = _find(self._phone_numbers, request.resource_id, PHONE_NUMBER_NOT_FOUND)
        body = _json_body(request)
        # Validated against the Update DTO of the stored number's provider (the body need not name it),
        # so e.g. `number` is rejected on vapi numbers ("property number should not exist").
        _raise_for(schema_errors(f"Update{PHONE_DTO_PREFIX[stored['provider']]}PhoneNumberDTO", body, strict=True))
        doc = self._apply_update(self._phone_numbers, request.resource_id, body)
        self.write_count += 1
        return _json(200, _public_phone_number(doc))

    def _delete_phone_number(self, request: _Request) -> Response:
        _find(self._phone_numbers, request.resource_id, PHONE_NUMBER_NOT_FOUND)
        doc = self._phone_numbers.remove(request.resource_id)
        self.write_count += 1
        return _json(200, _public_phone_number(doc))

    # --- resources not modelled -----------------------------------------------------------------

    def _list_unmodelled(self, request: _Request) -> Response:
        query = _list_query(request.query, v2=False)  # same parameter checks as the modelled lists
        if not self.paginated_lists:
            return _json(200, [])
        return _json(200, {"results": [], "metadata": _pagination(query, 0)})

    def _get_unmodelled(self, request: _Request) -> Response:
        noun = UNMODELLED[request.template.strip("/").split("/")[0]]
        raise _HttpError(404, error_body(404, f"Couldn't Get {noun}. {noun} Not Found"))

    # --- shared helpers -------------------------------------------------------------------------

    def _list_v1(self, collection: Collection, request: _Request, present: Callable[[dict[str, Any]], dict[str, Any]]) -> Response:
        query = _list_query(request.query, v2=False)
        matching = collection.select(query.created, query.updated)
        if not self.paginated_lists:
            return _json(200, [present(d) for d in itertools.islice(matching, query.limit)])
        docs = list(matching)
        return _json(200, {"results": [present(d) for d in docs[: query.limit]], "metadata": _pagination(query, len(docs))})

    def _now(self) -> int:
        return truncate_to_millis(to_micros(self._clock()))

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _new_document(self, fields: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
        """A stored document with server fields; honours id/orgId/createdAt/updatedAt overrides."""
        fields = copy_json(fields)
        created = _override_time(fields.pop("createdAt", None))
        created = self._now() if created is None else created
        updated = _override_time(fields.pop("updatedAt", None))
        updated = created if updated is None else updated
        doc_id = fields.pop("id", None) or self._new_id()
        if doc_id in self.assistants or doc_id in self.phone_numbers:
            raise ValueError(f"duplicate id {doc_id}")
        doc = {"id": doc_id, "orgId": fields.pop("orgId", self.org_id), **fields}
        doc["createdAt"], doc["updatedAt"] = format_timestamp(created), format_timestamp(updated)
        return doc, created, updated

    def _apply_update(self, collection: Collection, doc_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Top-level replace (null is kept as null), updatedAt strictly after the previous one."""
        if SERVER_FIELDS & changes.keys():
            raise ValueError(f"server fields cannot be changed: {sorted(SERVER_FIELDS & changes.keys())}")
        doc = dict(collection.docs[doc_id])
        doc.update(copy_json(changes))
        updated = max(self._now(), collection.updated_micros(doc_id) + 1000)
        doc["updatedAt"] = format_timestamp(updated)
        collection.replace(doc, updated)
        return doc


# --- module helpers -----------------------------------------------------------------------------

def _route(path: str) -> tuple[str | None, str | None]:
    """(route template, id) for a request path; Express ignores a trailing slash."""
    parts = [p for p in path.split("/") if p]
    match parts:
        case ["assistant"]:
            return "/assistant", None
        case ["assistant", resource_id]:
            return "/assistant/{id}", resource_id
        case ["phone-number"]:
            return "/phone-number", None
        case ["phone-number", resource_id]:
            return "/phone-number/{id}", resource_id
        case ["v2", "phone-number"]:
            return "/v2/phone-number", None
        case [name] if name in UNMODELLED:
            return f"/{name}", None
        case [name, resource_id] if name in UNMODELLED:
            return f"/{name}/{{id}}", resource_id
    return None, None


def _parse_query(query: dict[str, Any] | str) -> dict[str, str]:
    if isinstance(query, str):
        return dict(parse_qsl(query.lstrip("?"), keep_blank_values=True))
    return {str(k): str(v[-1] if isinstance(v, list | tuple) else v) for k, v in query.items()}


def _list_query(params: dict[str, str], v2: bool) -> _ListQuery:
    errors: list[str] = []
    limit = _bounded_int(params, "limit", LIST_LIMIT_DEFAULT, 0, LIST_LIMIT_MAX, errors)
    bounds: dict[str, int] = {}
    for name in TIME_FILTERS:
        if name in params:
            micros = parse_timestamp(params[name])
            if micros is None:
                errors.append(f"{name} must be a valid ISO 8601 date string")
            else:
                bounds[name] = micros
    page, newest_first, search = 1, True, None
    if v2:
        page = _bounded_int(params, "page", 1, 1, None, errors)
        if params.get("sortOrder", "DESC") not in V2_SORT_ORDERS:
            errors.append(f"sortOrder must be one of the following values: {', '.join(V2_SORT_ORDERS)}")
        if params.get("sortBy", "createdAt") not in V2_SORT_BY:
            errors.append(f"sortBy must be one of the following values: {', '.join(V2_SORT_BY)}")
        newest_first = params.get("sortOrder", "DESC") != "ASC"
        search = params.get("search") or None
        if search and len(search) > V2_SEARCH_MAX_LENGTH:
            errors.append(f"search must be shorter than or equal to {V2_SEARCH_MAX_LENGTH} characters")
    if errors:
        raise _HttpError(400, error_body(400, errors))
    return _ListQuery(limit, _time_filter(bounds, "createdAt"), _time_filter(bounds, "updatedAt"), page, newest_first, search)


def _bounded_int(params: dict[str, str], name: str, default: int, minimum: int, maximum: int | None, errors: list[str]) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if value != value or raw.strip() == "":  # NaN: class-transformer's Number("abc")
        errors.append(f"{name} must be a number conforming to the specified constraints")
    elif maximum is not None and value > maximum:
        errors.append(f"{name} must not be greater than {maximum}")
    elif value < minimum:
        errors.append(f"{name} must not be less than {minimum}")
    elif not value.is_integer():
        errors.append(f"{name} must be an integer number")
    else:
        return int(value)
    return default


def _time_filter(bounds: dict[str, int], field: str) -> TimeFilter:
    """Gt/Ge/Lt/Le as a half-open interval of whole microseconds."""
    lowers = [bounds[f"{field}Gt"] + 1] if f"{field}Gt" in bounds else []
    lowers += [bounds[f"{field}Ge"]] if f"{field}Ge" in bounds else []
    uppers = [bounds[f"{field}Lt"]] if f"{field}Lt" in bounds else []
    uppers += [bounds[f"{field}Le"] + 1] if f"{field}Le" in bounds else []
    return TimeFilter(max(lowers) if lowers else None, min(uppers) if uppers else None)


def _pagination(query: _ListQuery, total: int) -> dict[str, Any]:
    total_pages = -(-total // query.limit) if query.limit else 0
    return {
        "itemsPerPage": query.limit,
        "totalItems": total,
        "currentPage": query.page,
        "totalPages": total_pages,
        "hasNextPage": query.page < total_pages,
    }


def _json_body(request: _Request) -> dict[str, Any]:
    """The parsed body as Express' json parser would hand it over (it ignores non-JSON content types)."""
    if not request.body or "json" not in request.headers.get("content-type", "").lower():
        return {}
    try:
        value = json.loads(request.body)
    except ValueError as error:
        position = getattr(error, "pos", 0)
        raise _HttpError(400, error_body(400, f"Unexpected token in JSON at position {position}")) from None
    if not isinstance(value, dict):
        raise _HttpError(400, error_body(400, ["an unknown value was passed to the validate function"]))
    return value


def _without_ignored(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in IGNORED_READ_ONLY}


def _raise_for(errors: list[Any]) -> None:
    if errors:
        raise _HttpError(400, error_body(400, validation_messages(errors)))


def _find(collection: Collection, doc_id: str | None, not_found: str) -> dict[str, Any]:
    doc = collection.docs.get(doc_id or "")
    if doc is None:
        raise _HttpError(404, error_body(404, not_found))
    return doc


def _with_phone_defaults(fields: dict[str, Any]) -> dict[str, Any]:
    defaults: dict[str, Any] = {"status": "active"}
    if fields.get("provider") == "twilio":
        defaults["smsEnabled"] = True
    elif fields.get("provider") == "byo-phone-number":
        defaults["numberE164CheckEnabled"] = True
    return {**fields, **{k: v for k, v in defaults.items() if k not in fields}}


def _public_phone_number(doc: dict[str, Any]) -> dict[str, Any]:
    """What the API shows of a stored number (shares values with it: copy before handing it out)."""
    return {k: v for k, v in doc.items() if k not in PHONE_SECRET_FIELDS}


def copy_json(value: Any) -> Any:
    """Deep copy of JSON-shaped data (dicts, lists, scalars), faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


def _override_time(value: str | datetime | None) -> int | None:
    if value is None:
        return None
    micros = parse_timestamp(value)
    if micros is None:
        raise ValueError(f"not an ISO 8601 timestamp: {value!r}")
    return truncate_to_millis(micros)


def _fault_response(status: int) -> tuple[int, bytes, dict[str, str]]:
    if status == 500:
        return 500, internal_error_body(), {}
    headers = {"Retry-After": "1"} if status == 429 else {}
    message = "Rate limit exceeded" if status == 429 else _phrase(status)
    return status, error_body(status, message), headers


def _json(status: int, payload: Any) -> Response:
    return status, dict(JSON_HEADERS), json.dumps(payload).encode()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _read_timeout(timeout: Any) -> float | None:
    if isinstance(timeout, tuple):
        return timeout[1]
    return timeout


def _constant_time_equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
