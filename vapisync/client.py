"""The only module in the project that speaks HTTP to Vapi.

One `VapiClient` holds one `requests.Session` (connection pool sized to `max_concurrency`),
sends `Authorization: Bearer <key>` with connect/read timeouts, paces requests (a
requests-per-second rate shared by every thread using the client, found from Vapi's 429s
when adaptive: see `RequestPacer`; plus a semaphore bounding requests in flight), retries
transient failures through tenacity, and turns every failure into one of the typed errors
of `vapisync.exceptions`. JSON goes in and out as
plain dicts, so fields we do not know about round-trip untouched.

Retry policy (see `_should_retry`, `_wait`, `_stop`):

* Retried: 429, 500, 502, 503, 504, connection errors and timeouts, with exponential
  backoff plus jitter (1 s, 2 s, 4 s, ... capped at 30 s, each + 0-1 s random). A 429's
  `Retry-After` (seconds or HTTP date; also `retry-after-ms`) replaces the backoff, capped
  at `max_retry_wait`, and pauses every other thread of the client until then too.
* At most `max_retries` retries (`max_retries + 1` attempts), and the backoff slept for one
  call never exceeds `max_retry_wait`: a retry whose wait would cross it is not made.
* POST (create) is retried ONLY on 429 or on a connection error raised before the request
  was sent (urllib3 NewConnectionError / ConnectTimeoutError). Vapi has no Idempotency-Key,
  so a POST that got a 5xx, a read timeout or a dropped connection is never repeated: it
  raises `VapiUnavailable(maybe_applied=True)` and the caller looks for its marker
  (`find_assistant_by_metadata`) before creating again.

Listing (see `vapisync.listing`): page by page with createdAt filters, each item once, and a
`VapiProtocolError` rather than a silently incomplete listing.

Pacing (see `vapisync.pacing`) and the process-wide circuit breaker per Vapi base URL (see
`vapisync.breaker`): a `fail_fast` client fails at once with `VapiUnavailable` while Vapi is
known to be unreachable; the others keep their patient retries and only feed the breaker.
Payload hygiene, timestamps and the other pure helpers of the protocol: `vapisync.vapi_http`.

The API key never appears in a log line, an exception message, its details or a repr.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential_jitter

from vapisync.breaker import circuit_breaker
from vapisync.exceptions import (
    VapiAuthError,
    VapiConflict,
    VapiError,
    VapiNotConfigured,
    VapiNotFound,
    VapiProtocolError,
    VapiRateLimited,
    VapiUnavailable,
    VapiValidationError,
)
from vapisync.listing import _page_items, iter_list
from vapisync.pacing import ClientStats, RequestPacer
from vapisync.vapi_http import (
    _CONNECT,
    _DROPPED,
    _NOT_APPLIED,
    _RATE_LIMITED,
    _SERVER,
    _TIMEOUT,
    _UNREACHABLE,
    DEFAULT_BASE_URL,
    EU_BASE_URL,
    MAX_PAGE_SIZE,
    RETRY_STATUSES,
    _error_messages,
    _is_connect_failure,
    _item_path,
    _should_retry,
    parse_retry_after,
    strip_server_fields,
)

logger = logging.getLogger("vapisync.client")

T = TypeVar("T")
R = TypeVar("R")

BACKOFF_INITIAL = 1.0  # seconds; doubled per retry
BACKOFF_MAX = 30.0
BACKOFF_JITTER = 1.0  # + uniform(0, 1) s, so parallel workers do not retry in lockstep
# find_assistant_by_metadata looks this much further back than `created_since`,
# in case our clock and Vapi's disagree a little.
CLOCK_SKEW_MARGIN = timedelta(minutes=5)


class _BearerAuth(AuthBase):
    """Sets the Authorization header. Passing an auth object also stops requests from
    replacing it with credentials from ~/.netrc. Its repr hides the key."""

    def __init__(self, api_key: str):
        self._value = f"Bearer {api_key}"

    def __call__(self, request):
        request.headers["Authorization"] = self._value
        return request

    def __repr__(self):
        return "_BearerAuth(<redacted>)"



# --- The client -------------------------------------------------------------------

_BEARER_RE = re.compile(r"Bearer\s+[^\s\"',;]+", re.IGNORECASE)


class VapiClient:
    """Thread-safe Vapi REST client. Create one per sync run (or process) and share it."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: tuple[float, float] = (5.0, 30.0),
        max_retries: int = 5,
        max_retry_wait: float = 60.0,
        rate_limit: float = 0.0,
        adaptive_rate: bool = False,
        start_rate: float = 10.0,
        max_concurrency: int = 8,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
        fail_fast: bool = False,
        circuit_seconds: float = 30.0,
    ):
        if not api_key:
            raise VapiNotConfigured()
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if max_retries < 0 or max_retry_wait < 0 or rate_limit < 0:
            raise ValueError("max_retries, max_retry_wait and rate_limit must not be negative")
        if adaptive_rate and start_rate <= 0:
            raise ValueError("start_rate must be above 0")
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = (float(timeout[0]), float(timeout[1]))
        self.max_retries = int(max_retries)
        self.max_retry_wait = float(max_retry_wait)
        self.rate_limit = float(rate_limit)  # a ceiling when adaptive, else the fixed rate; 0 = none
        self.adaptive_rate = bool(adaptive_rate)
        self.max_concurrency = int(max_concurrency)
        self.fail_fast = bool(fail_fast)
        self.circuit_seconds = float(circuit_seconds)
        self.breaker = circuit_breaker(self.base_url)
        self._sleep = sleep
        self._auth = _BearerAuth(api_key)
        self._headers = {"Accept": "application/json", "User-Agent": "globalvoice-vapisync"}
        self._pacer = RequestPacer(
            rate_limit,
            sleep=self._sleep_pacing,
            clock=clock,
            adaptive=self.adaptive_rate,
            start_rate=start_rate,
            max_pause=self.max_retry_wait,
        )
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self._backoff = wait_exponential_jitter(initial=BACKOFF_INITIAL, max=BACKOFF_MAX, jitter=BACKOFF_JITTER)
        self.stats = ClientStats()
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=self.max_concurrency, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self.session = session

    @classmethod
    def from_settings(cls, *, interactive: bool = False, **overrides) -> VapiClient:
        """A client configured from the VAPI_* settings; keyword arguments override them.

        `interactive` is for callers a person waits on (a page, `GET status`, health, a dry run
        answered inline): each request gets at most VAPI_INTERACTIVE_TIMEOUT seconds, no retry
        and no backoff, and the open circuit breaker fails it at once."""
        from vapisync.conf import vapi_settings  # keeps this module importable without Django settings

        conf = vapi_settings()
        kwargs = {
            "api_key": conf.api_key,
            "base_url": conf.base_url,
            "timeout": (conf.timeout_connect, conf.timeout_read),
            "max_retries": conf.max_retries,
            "max_retry_wait": conf.max_retry_wait,
            "rate_limit": conf.rate_limit,
            "adaptive_rate": conf.adaptive_rate,
            "start_rate": conf.rate_start,
            "max_concurrency": conf.max_concurrency,
            "circuit_seconds": conf.circuit_breaker_seconds,
        }
        if interactive:
            budget = conf.interactive_timeout
            kwargs.update(
                timeout=(min(conf.timeout_connect, budget), min(conf.timeout_read, budget)),
                max_retries=0, max_retry_wait=0.0, fail_fast=True,
            )
        kwargs.update(overrides)
        if not kwargs["api_key"]:
            raise VapiNotConfigured()
        return cls(**kwargs)

    def __repr__(self):
        return (
            f"VapiClient(base_url={self.base_url!r}, max_concurrency={self.max_concurrency}, "
            f"rate_limit={self.rate_limit}, adaptive_rate={self.adaptive_rate}, max_retries={self.max_retries})"
        )

    @property
    def pacing_rate(self) -> float:
        """Requests per second the pacer allows now (inf: no spacing)."""
        return self._pacer.rate

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # --- assistants ---------------------------------------------------------------

    def iter_assistants(
        self, *, updated_since: datetime | None = None, created_since: datetime | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[dict]:
        return self._iter_list("/assistant", updated_since=updated_since, created_since=created_since,
                               page_size=page_size)

    def list_assistants(self, **kw) -> list[dict]:
        return list(self.iter_assistants(**kw))

    def get_assistant(self, assistant_id: str) -> dict:
        return self._object("GET", _item_path("/assistant", assistant_id))

    def create_assistant(self, payload: dict) -> dict:
        return self._object("POST", "/assistant", strip_server_fields(payload, "assistant", for_create=True))

    def update_assistant(self, assistant_id: str, payload: dict) -> dict:
        return self._object("PATCH", _item_path("/assistant", assistant_id), strip_server_fields(payload, "assistant"))

    def delete_assistant(self, assistant_id: str) -> dict:
        return self._object("DELETE", _item_path("/assistant", assistant_id))

    # --- phone numbers ------------------------------------------------------------

    def iter_phone_numbers(self, *, updated_since: datetime | None = None, page_size: int = MAX_PAGE_SIZE) -> Iterator[dict]:
        return self._iter_list("/phone-number", updated_since=updated_since, page_size=page_size)

    def list_phone_numbers(self, **kw) -> list[dict]:
        return list(self.iter_phone_numbers(**kw))

    def get_phone_number(self, phone_number_id: str) -> dict:
        return self._object("GET", _item_path("/phone-number", phone_number_id))

    def create_phone_number(self, payload: dict) -> dict:
        return self._object("POST", "/phone-number", strip_server_fields(payload, "phone_number", for_create=True))

    def update_phone_number(self, phone_number_id: str, payload: dict) -> dict:
        path = _item_path("/phone-number", phone_number_id)
        return self._object("PATCH", path, strip_server_fields(payload, "phone_number"))

    def delete_phone_number(self, phone_number_id: str) -> dict:
        return self._object("DELETE", _item_path("/phone-number", phone_number_id))

    # --- helpers --------------------------------------------------------------------

    def find_assistant_by_metadata(self, key: str, value: str, *, created_since: datetime | None = None) -> dict | None:
        """The newest assistant whose `metadata[key] == value`, or None.

        Use it after a create raised `VapiUnavailable(maybe_applied=True)`: pass the marker the
        payload carried and the time just before the POST. The search starts
        `CLOCK_SKEW_MARGIN` before `created_since`; without it, every assistant is scanned.
        """
        since = created_since - CLOCK_SKEW_MARGIN if created_since is not None else None
        for assistant in self._iter_list("/assistant", created_since=since, page_size=MAX_PAGE_SIZE):
            metadata = assistant.get("metadata")
            if isinstance(metadata, dict) and metadata.get(key) == value:
                return assistant
        return None

    def ping(self) -> None:
        """Cheap credential and reachability probe (GET /assistant?limit=1); raises the typed error."""
        body = self._request("GET", "/assistant", params={"limit": 1})
        _page_items(body, "GET", "/assistant")

    def map_concurrent(self, fn: Callable[[T], R], items: Iterable[T]) -> list[tuple[T, R | None, Exception | None]]:
        """Run `fn` over `items` on at most `max_concurrency` threads; results in input order.

        Every call `fn` makes through this client shares its pacing and in-flight limit.
        Exceptions are captured per item as (item, None, exc), never raised. `fn` runs in
        worker threads: if it uses the Django ORM, each thread opens its own connection.
        """
        items = list(items)
        if not items:
            return []

        def run(item):
            try:
                return item, fn(item), None
            except Exception as exc:
                return item, None, exc

        workers = min(self.max_concurrency, len(items))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vapi-client") as pool:
            return list(pool.map(run, items))

    # --- listing (see vapisync.listing) -------------------------------------------------

    def _iter_list(
        self,
        path: str,
        *,
        updated_since: datetime | None = None,
        created_since: datetime | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[dict]:
        return iter_list(
            self._request, self._redact, path,
            updated_since=updated_since, created_since=created_since, page_size=page_size,
        )

    # --- one request, with retries ----------------------------------------------------

    def _object(self, method: str, path: str, payload: dict | None = None) -> dict:
        body = self._request(method, path, json_body=payload)
        if not isinstance(body, dict):
            raise VapiProtocolError(
                f"Vapi answered {method} {path} with JSON that is not an object ({type(body).__name__}).",
                method=method,
                path=path,
            )
        return body

    def _request(self, method: str, path: str, *, params: dict | None = None, json_body: dict | None = None) -> Any:
        call = {"maybe_applied": False}
        retrying = Retrying(
            retry=retry_if_exception(lambda exc: _should_retry(method, exc)),
            wait=self._wait,
            stop=self._stop,
            sleep=self._sleep_backoff,
            before_sleep=self._before_sleep,
            retry_error_callback=lambda state: self._give_up(state, call),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                return self._send_once(method, path, params, json_body, attempt.retry_state.attempt_number, call)
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    def _send_once(self, method, path, params, json_body, attempt_number, call) -> Any:
        shown = f"{path}?{urlencode(params)}" if params else path
        if self.fail_fast:
            self.breaker.check(method, path)
        slot = self._pacer.reserve(waited_out=call.get("pause"))
        try:
            return self._send_in_slot(method, path, params, json_body, attempt_number, call, slot, shown)
        finally:
            self._pacer.release()

    def _send_in_slot(self, method, path, params, json_body, attempt_number, call, slot, shown) -> Any:
        with self._slots:
            started = time.monotonic()
            self.stats.add(requests=1)
            try:
                response = self.session.request(
                    method,
                    self.base_url + path,
                    params=params,
                    json=json_body,
                    headers=self._headers,
                    auth=self._auth,
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                elapsed_ms = (time.monotonic() - started) * 1000
                logger.debug("%s %s -> %s after %.0f ms (attempt %d)", method, shown, type(exc).__name__, elapsed_ms, attempt_number)
                error = self._transport_error(exc, method, path)
                if getattr(error, "_transient", None) in _UNREACHABLE or isinstance(exc, requests.exceptions.SSLError):
                    self.breaker.record_failure(str(error), self.circuit_seconds)
                if getattr(error, "_transient", None) not in _NOT_APPLIED and method != "GET":
                    call["maybe_applied"] = True
                raise error from exc
            elapsed_ms = (time.monotonic() - started) * 1000
        logger.debug("%s %s -> %s in %.0f ms (attempt %d)", method, shown, response.status_code, elapsed_ms, attempt_number)
        if 200 <= response.status_code < 300:
            self.breaker.record_success()
            self._pacer.succeeded(slot)
            return self._decode(response, method, path)
        self.breaker.record_answer()
        error = self._http_error(response, method, path)
        if response.status_code == 429:
            call["pause"] = self._pacer.rate_limited(slot, error.retry_after)
        if response.status_code != 429 and method != "GET":
            call["maybe_applied"] = call["maybe_applied"] or response.status_code >= 500
        raise error

    # tenacity hooks

    def _wait(self, state: RetryCallState) -> float:
        retry_after = getattr(state.outcome.exception(), "retry_after", None)
        if retry_after is not None:
            return min(retry_after, self.max_retry_wait)
        return self._backoff(state)

    def _stop(self, state: RetryCallState) -> bool:
        return state.attempt_number > self.max_retries or state.idle_for + state.upcoming_sleep > self.max_retry_wait

    def _sleep_backoff(self, seconds: float) -> None:
        self.stats.add(retry_wait=seconds)
        self._sleep(seconds)

    def _sleep_pacing(self, seconds: float) -> None:
        self.stats.add(pacing_wait=seconds)
        self._sleep(seconds)

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats.add(retries=1)
        logger.warning(
            "%s; retrying in %.1f s (attempt %d of %d failed)",
            state.outcome.exception(),
            state.upcoming_sleep,
            state.attempt_number,
            self.max_retries + 1,
        )

    def _give_up(self, state: RetryCallState, call: dict):
        exc = state.outcome.exception()
        note = f"gave up after {state.attempt_number} attempt{'s' if state.attempt_number != 1 else ''}"
        if state.idle_for:
            note += f" and {state.idle_for:.1f} s of backoff"
        if isinstance(exc, VapiRateLimited) and exc.retry_after is not None:
            note += f"; Vapi asked to wait {exc.retry_after:.0f} s"
        exc.args = (f"{exc.args[0]} ({note})", *exc.args[1:])
        if isinstance(exc, VapiUnavailable) and call["maybe_applied"]:
            exc.maybe_applied = True
        raise exc

    # --- turning responses and failures into typed errors --------------------------------

    def _decode(self, response: requests.Response, method: str, path: str) -> Any:
        if response.status_code == 204 or (not response.content and method == "DELETE"):
            return {}
        try:
            return response.json()
        except ValueError:
            # Redact before cutting: a cut can leave part of the key where the whole one is no longer found.
            snippet = self._redact(response.text)[:200].strip()
            raise self._error(
                VapiProtocolError,
                f"Vapi answered {method} {path} with {response.status_code} but the body is not valid JSON "
                f"(Content-Type {response.headers.get('Content-Type') or 'missing'}; starts with {snippet!r}). "
                f"Check VAPI_BASE_URL ({self.base_url}) points at the Vapi API, not a proxy or web page.",
                status=response.status_code,
                method=method,
                path=path,
                details={"body": snippet},
            ) from None

    def _http_error(self, response: requests.Response, method: str, path: str) -> VapiError:
        status = response.status_code
        messages, body = _error_messages(response, self._redact)
        said = "; ".join(messages)
        common = {"status": status, "method": method, "path": path, "details": {"status": status, "body": body}}
        if status in (401, 403):
            return self._error(
                VapiAuthError,
                f"Vapi rejected the API key ({status}) for {method} {path}: check VAPI_API_KEY and VAPI_BASE_URL "
                f"(EU orgs use {EU_BASE_URL})" + (f". Vapi said: {said}" if said else ""),
                **common,
            )
        if status == 404:
            return self._error(VapiNotFound, f"Vapi has nothing at {method} {path} (404)" + (f": {said}" if said else ""), **common)
        if status in (400, 422):
            return self._error(
                VapiValidationError,
                f"Vapi rejected {method} {path}: {said or f'{status} with no message'}",
                messages=[self._redact(m) for m in messages],
                **common,
            )
        if status == 409:
            return self._error(VapiConflict, f"Vapi refused {method} {path} with 409 Conflict" + (f": {said}" if said else ""), **common)
        if status == 429:
            retry_after = parse_retry_after(response.headers)
            self.stats.add(rate_limited=1)
            error = self._error(
                VapiRateLimited,
                f"Vapi rate limit (429) for {method} {path}" + (f": {said}" if said else ""),
                retry_after=retry_after,
                **common,
            )
            error._transient = _RATE_LIMITED
            return error
        if status >= 500:
            text = f"Vapi is unavailable: {status} {response.reason or ''}".rstrip() + f" for {method} {path}"
            if said:
                text += f": {said}"
            maybe_applied = method != "GET"
            if method == "POST":
                text += " (the create may have been applied: look for it before creating again)"
            error = self._error(VapiUnavailable, text, maybe_applied=maybe_applied, **common)
            if status in RETRY_STATUSES:
                error._transient = _SERVER
            return error
        return self._error(VapiError, f"Vapi answered {status} to {method} {path}" + (f": {said}" if said else ""), **common)

    def _transport_error(self, exc: requests.RequestException, method: str, path: str) -> VapiError:
        where = f"{method} {path}"
        if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)):
            return self._error(VapiError, f"Invalid VAPI_BASE_URL {self.base_url!r} for {where}: {exc}", method=method, path=path)
        if isinstance(exc, requests.exceptions.SSLError):
            return self._error(
                VapiUnavailable, f"TLS handshake with {self.base_url} failed for {where}: {exc}", method=method, path=path
            )
        if _is_connect_failure(exc):
            error = self._error(
                VapiUnavailable,
                f"Could not connect to Vapi at {self.base_url} for {where} ({type(exc).__name__}); "
                "the request was not sent",
                method=method,
                path=path,
            )
            error._transient = _CONNECT
            return error
        maybe_applied = method != "GET"
        after = " (the create may have been applied: look for it before creating again)" if method == "POST" else ""
        if isinstance(exc, requests.Timeout):
            error = self._error(
                VapiUnavailable,
                f"Vapi did not answer {where} within the {self.timeout[1]:g} s read timeout{after}",
                maybe_applied=maybe_applied,
                method=method,
                path=path,
            )
            error._transient = _TIMEOUT
            return error
        error = self._error(
            VapiUnavailable,
            f"Connection to Vapi broke during {where} ({type(exc).__name__}){after}",
            maybe_applied=maybe_applied,
            method=method,
            path=path,
        )
        error._transient = _DROPPED
        return error

    def _error(self, cls, message: str, **kwargs) -> VapiError:
        if "details" in kwargs:
            kwargs["details"] = self._redact(kwargs["details"])
        return cls(self._redact(message), **kwargs)

    def _redact(self, value):
        """Remove the API key (and any Bearer token) from strings, recursively through dicts and lists."""
        if isinstance(value, str):
            if self._api_key in value:
                value = value.replace(self._api_key, "[redacted]")
            return _BEARER_RE.sub("Bearer [redacted]", value)
        if isinstance(value, dict):
            return {self._redact(k): self._redact(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._redact(v) for v in value]
        return value

