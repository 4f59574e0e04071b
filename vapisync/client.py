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

Listing (see `_iter_list`): Vapi's v1 lists return at most `limit` (<= 1000) items, newest
first, with createdAt/updatedAt range filters and no cursor. We page with `limit=1000` and
`createdAtLe=<oldest createdAt of the previous page>` (inclusive, so items sharing that
timestamp across a page boundary are not lost) and drop ids already yielded. A full page
that brings no new id means more than `page_size` items share one createdAt: the v1 filters
cannot step past them without losing some, so we raise `VapiProtocolError` rather than loop
or return a silently incomplete listing.

Circuit breaker (see `CircuitBreaker`): every client of a process reports its transport
failures (connection refused, DNS, TLS, timeouts, dropped connections) and answers to one
breaker per Vapi base URL. After `CIRCUIT_FAILURES` failures in a row it opens for
`VAPI_CIRCUIT_BREAKER_SECONDS`: a `fail_fast` client (the web pages, `GET status`, health,
dry runs answered inline) then fails at once with `VapiUnavailable` instead of waiting on
timeouts. Background runs and the command line are not fail-fast: they keep their patient
retries and only feed the breaker. Any HTTP answer from Vapi closes it again.

The API key never appears in a log line, an exception message, its details or a repr.
"""

from __future__ import annotations

import email.utils
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential_jitter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

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

logger = logging.getLogger("vapisync.client")

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_BASE_URL = "https://api.vapi.ai"
EU_BASE_URL = "https://api.eu.vapi.ai"
MAX_PAGE_SIZE = 1000  # openapi.json: GET /assistant and GET /phone-number `limit` is 0..1000
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_INITIAL = 1.0  # seconds; doubled per retry
BACKOFF_MAX = 30.0
BACKOFF_JITTER = 1.0  # + uniform(0, 1) s, so parallel workers do not retry in lockstep
# find_assistant_by_metadata looks this much further back than `created_since`,
# in case our clock and Vapi's disagree a little.
CLOCK_SKEW_MARGIN = timedelta(minutes=5)

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


# --- Pacing and counters ----------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One caller's turn from `RequestPacer.reserve`: when it may send, and how long it waited."""

    sent_at: float
    waited: float

    @property
    def held(self) -> bool:
        """True if the pacer, not the caller's own pace, decided when this request went out."""
        return self.waited > 0


class RequestPacer:
    """The request rate shared by every thread of one client; with `adaptive`, found by AIMD.

    Vapi publishes no rate limit. An adaptive pacer starts at `start_rate` requests per second
    and learns the limit from the answers:

    * clean answers to requests the pacer held back raise the rate: it triples every second
      until the first 429 (slow start), then grows by a tenth of the rate set at the last
      cut per second (additive increase), so it probes gently near the limit. Answers to
      requests it did not hold back (concurrency or the caller was the bottleneck) leave it
      alone, so the rate never runs far ahead of what was really sent;
    * a 429 cuts the rate (multiplicative decrease, `decrease` x the rate), and never above
      what Vapi accepted since the previous cut: a token bucket lets a burst through before
      answering 429, so the rate we overshot to says little about the limit. Once per
      episode: 429s for requests sent before the last cut were caused by the old rate;
    * a 429 with Retry-After pauses every thread until then (at most `max_pause` seconds),
      adaptive or not;
    * until the first 429, and unless `rate` sets a ceiling, a request with no other in
      flight is not held: one request at a time (paging through a list) is paced by its own
      round trip, and holding it would only slow reads down. The start rate is what keeps
      parallel writes from storming an unknown limit.

    `rate` bounds the adaptive rate (VAPI_RATE_LIMIT; 0 = no bound). Not adaptive, the rate
    is fixed at `rate`, and 0 means no spacing at all (Retry-After pauses still hold).

    Each caller reserves the next free start slot under the lock (slots are 1/rate apart,
    so no bursts), then sleeps outside the lock until its slot. Reserving instead of
    polling keeps it correct with an injected sleep that does not really wait.
    """

    SLOW_START_GROWTH = math.log(3)  # added per held-back clean answer: x3 per second at full pace
    PROBE_GROWTH = 0.1  # additive increase per second, as a share of the rate set at the last cut
    MIN_RATE = 0.2  # requests per second; a cut never goes below
    MIN_WINDOW = 1.0  # seconds of answers needed before "what Vapi accepted" bounds a cut

    def __init__(
        self,
        rate: float = 0.0,
        *,
        sleep: Callable[[float], None],
        clock: Callable[[], float] = time.monotonic,
        adaptive: bool = False,
        start_rate: float = 10.0,
        decrease: float = 0.7,
        max_pause: float = 60.0,
    ):
        if rate < 0:
            raise ValueError("rate must not be negative")
        if adaptive and start_rate <= 0:
            raise ValueError("start_rate must be above 0")
        if not 0 < decrease < 1:
            raise ValueError("decrease must be between 0 and 1")
        self.max_rate = float(rate) if rate > 0 else math.inf
        self.adaptive = adaptive
        self.decrease = decrease
        self.max_pause = max_pause
        self.rate = min(float(start_rate), self.max_rate) if adaptive else self.max_rate
        self.slow_start = adaptive
        self.cuts = 0  # 429 episodes that cut the rate
        self._step = 0.0  # additive increase, requests/s per second
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._next_slot = float("-inf")
        self._paused_until = float("-inf")
        self._pauses = 0
        self._last_cut = float("-inf")
        self._window_start: float | None = None  # the last cut, or the first request
        self._window_clean = 0  # clean answers since then
        self._in_flight = 0  # reserved and not yet released
        self._idle_since: float | None = None  # when the last request in flight ended
        self._sent: deque[float] = deque()  # send times of the last second
        self._first_sent: float | None = None

    @property
    def interval(self) -> float:
        return 1.0 / self.rate

    def wait(self) -> float:
        """Sleep until this caller may send; returns the seconds slept."""
        return self.reserve().waited

    def reserve(self, *, waited_out: int | None = None) -> Slot:
        """Sleep until this caller may send; hand the slot back to `succeeded` / `rate_limited`.

        `waited_out`: the pause (as returned by `rate_limited`) this caller already slept
        through in its own retry backoff, so it does not wait for it twice.
        """
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                paused_until = self._paused_until if self._pauses != waited_out else float("-inf")
                lone = self.slow_start and self._in_flight == 0 and self.max_rate == math.inf
                start = max(now, paused_until) if lone else max(now, self._next_slot, paused_until)
                self._next_slot = start + 1.0 / self.rate
                pauses = self._pauses
                idle = (  # nothing in flight for a while, and not because Vapi asked us to wait
                    self._in_flight == 0
                    and self._idle_since is not None
                    and now - max(self._idle_since, self._paused_until) >= self.MIN_WINDOW
                )
                if self._window_start is None or idle:
                    # What Vapi accepted while nothing was asked of it says nothing of its limit.
                    self._window_start, self._window_clean = start, 0
            delay = start - now
            if delay > 0:
                self._sleep(delay)
                waited += delay
            with self._lock:
                # A Retry-After pause that began while this caller slept holds it too.
                if self._pauses in (pauses, waited_out) or self._paused_until <= self._clock():
                    self._in_flight += 1
                    self._note_sent(start)
                    return Slot(sent_at=start, waited=waited)

    def _note_sent(self, at: float) -> None:
        if self._first_sent is None:
            self._first_sent = at
        self._sent.append(at)
        while self._sent and self._sent[0] < at - 1.0:
            self._sent.popleft()

    def _sending_rate(self, now: float) -> float:
        """Requests sent per second over the last second (or since the first, if sooner)."""
        if self._first_sent is None:
            return 0.0
        span = min(1.0, max(now - self._first_sent, 0.25))  # a few early requests are not a rate
        return sum(1 for at in self._sent if at >= now - 1.0) / span

    def release(self) -> None:
        """The request of a reserved slot is over (answered or failed)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            if self._in_flight == 0:
                self._idle_since = self._clock()

    def succeeded(self, slot: Slot) -> None:
        """A clean answer: probe upwards while the pacer is what holds requests back."""
        if not self.adaptive:
            return
        with self._lock:
            self._window_clean += 1
            if not slot.held:
                return
            if self.slow_start:
                self.rate += self.SLOW_START_GROWTH
            else:
                self.rate += self._step / self.rate
            self.rate = min(self.rate, self.max_rate)

    def rate_limited(self, slot: Slot | None, retry_after: float | None) -> int | None:
        """A 429: pause every thread for Retry-After and cut the rate, once per episode.

        Returns the pause this answer started (None if none), for the caller's
        `reserve(waited_out=...)` once it has slept out Retry-After in its own backoff.
        """
        with self._lock:
            self._cut(slot)
            if retry_after is None or retry_after <= 0:
                return None
            until = self._clock() + min(retry_after, self.max_pause)
            if until <= self._paused_until:
                return None  # a longer pause is already in force: this caller waits out the rest
            self._paused_until = until
            self._pauses += 1
            return self._pauses

    def _cut(self, slot: Slot | None) -> None:
        if not self.adaptive or (slot is not None and slot.sent_at < self._last_cut):
            return
        now = self._clock()
        # Requests not held by the pacer (lone ones, in slow start) may have gone out faster
        # than the rate: cut from what was really sent then.
        cut = max(self.rate, self._sending_rate(now)) * self.decrease
        elapsed = now - self._window_start if self._window_start is not None else 0.0
        if elapsed >= self.MIN_WINDOW:
            cut = min(cut, self._window_clean / elapsed)
        self.rate = min(self.max_rate, max(self.MIN_RATE, cut))
        self._step = self.PROBE_GROWTH * self.rate
        self.slow_start = False
        self._last_cut = now
        self._window_start, self._window_clean = now, 0
        self.cuts += 1
        logger.info("Vapi answered 429: pacing cut to %.1f requests/s", self.rate)


class ClientStats:
    """Thread-safe counters for benchmarks and run summaries; `snapshot()` gives a plain dict."""

    FIELDS = ("requests", "retries", "rate_limited", "retry_wait", "pacing_wait")

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0  # HTTP attempts sent (including retries)
            self.retries = 0  # retries scheduled
            self.rate_limited = 0  # 429 responses seen
            self.retry_wait = 0.0  # seconds slept in backoff
            self.pacing_wait = 0.0  # seconds slept by the rate ceiling

    def add(self, **deltas) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    @property
    def waited(self) -> float:
        """Total seconds slept, backoff plus pacing."""
        return self.retry_wait + self.pacing_wait

    def snapshot(self) -> dict:
        with self._lock:
            data = {name: getattr(self, name) for name in self.FIELDS}
        data["waited"] = data["retry_wait"] + data["pacing_wait"]
        return data

    def __getitem__(self, name):
        return self.snapshot()[name]

    def __repr__(self):
        return f"ClientStats({self.snapshot()})"


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


# --- Circuit breaker ----------------------------------------------------------------

CIRCUIT_FAILURES = 2  # transport failures in a row that open the breaker


class CircuitBreaker:
    """Per-process memory of whether Vapi is reachable, shared by every client and thread.

    Closed: calls go through. After `failures` transport failures in a row it opens for
    `cooldown` seconds, during which `check()` raises for fail-fast callers. When the time is
    up the next call goes through as a probe; its outcome closes or re-opens the breaker.
    """

    def __init__(self, base_url: str, *, failures: int = CIRCUIT_FAILURES, clock: Callable[[], float] = time.monotonic):
        self.base_url = base_url
        self.failures = failures
        self._clock = clock
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._open_until = 0.0
            self.last_error: str = ""
            self.last_error_at: datetime | None = None
            self.last_success_at: datetime | None = None

    def is_open(self) -> bool:
        with self._lock:
            return self._clock() < self._open_until

    def check(self, method: str, path: str) -> None:
        """Raise VapiUnavailable (nothing sent) while the breaker is open."""
        with self._lock:
            remaining = self._open_until - self._clock()
            if remaining <= 0:
                return
            error, since = self.last_error, self.last_error_at
        seen = f" at {since:%H:%M:%S} UTC" if since else ""
        exc = VapiUnavailable(
            f"Vapi at {self.base_url} is unreachable (last error{seen}: {error}); not trying again for "
            f"{remaining:.0f} s. {method} {path} was not sent.",
            method=method,
            path=path,
        )
        exc._transient = _CONNECT
        exc.circuit_open = True
        raise exc

    def record_success(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._open_until = 0.0
            self.last_success_at = datetime.now(UTC)

    def record_answer(self) -> None:
        """Vapi answered (even with an error status): it is reachable."""
        with self._lock:
            self._consecutive = 0
            self._open_until = 0.0

    def record_failure(self, message: str, cooldown: float) -> None:
        with self._lock:
            self._consecutive += 1
            self.last_error, self.last_error_at = message, datetime.now(UTC)
            if cooldown > 0 and self._consecutive >= self.failures:
                if self._clock() >= self._open_until:
                    logger.warning("Vapi at %s unreachable; failing fast for %.0f s: %s", self.base_url, cooldown, message)
                self._open_until = self._clock() + cooldown

    def state(self) -> dict:
        with self._lock:
            remaining = max(0.0, self._open_until - self._clock())
            return {
                "open": remaining > 0,
                "retry_in": round(remaining, 1),
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
                "last_success_at": self.last_success_at,
            }


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def circuit_breaker(base_url: str) -> CircuitBreaker:
    """The process-wide breaker of one Vapi base URL."""
    key = base_url.rstrip("/")
    with _breakers_lock:
        breaker = _breakers.get(key)
        if breaker is None:
            breaker = _breakers[key] = CircuitBreaker(key)
        return breaker


def circuit_breakers_reset() -> None:
    """Forget every breaker's state (tests; a process that knows Vapi is back)."""
    with _breakers_lock:
        for breaker in _breakers.values():
            breaker.reset()


# --- The client -------------------------------------------------------------------

# Why an attempt failed, as far as retrying is concerned (set on the raised VapiError).
_RATE_LIMITED = "rate_limited"  # 429: nothing was applied
_CONNECT = "connect"  # no connection was made, so the request was never sent
_SERVER = "server_error"  # 500/502/503/504: may have been applied
_TIMEOUT = "read_timeout"  # sent, no answer in time: may have been applied
_DROPPED = "connection_lost"  # connection broke after sending: may have been applied
_NOT_APPLIED = {_RATE_LIMITED, _CONNECT}
_UNREACHABLE = {_CONNECT, _TIMEOUT, _DROPPED}  # transport failures: they feed the circuit breaker

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

    # --- listing --------------------------------------------------------------------

    def _iter_list(
        self,
        path: str,
        *,
        updated_since: datetime | None = None,
        created_since: datetime | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[dict]:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
        base_params: dict[str, Any] = {"limit": page_size}
        if updated_since is not None:
            base_params["updatedAtGt"] = format_vapi_datetime(updated_since)
        if created_since is not None:
            base_params["createdAtGe"] = format_vapi_datetime(created_since)
        seen: set[str] = set()
        cursor: str | None = None
        while True:
            params = dict(base_params)
            if cursor is not None:
                params["createdAtLe"] = cursor
            page = _page_items(self._request("GET", path, params=params), "GET", path)
            fresh = 0
            for item in page:
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    raise VapiProtocolError(
                        f"Vapi listed an item without an id in GET {path}: {self._redact(str(item))[:200]}",
                        method="GET",
                        path=path,
                    )
                if item["id"] in seen:
                    continue
                seen.add(item["id"])
                fresh += 1
                yield item
            if len(page) < page_size:
                return
            if not fresh:
                raise VapiProtocolError(
                    f"Cannot list all of GET {path}: at least {page_size} items share createdAt {cursor}, and "
                    f"Vapi's v1 list (newest first, createdAt filters, no cursor) cannot page past them "
                    f"without skipping some. Stopped after {len(seen)} items; the listing is incomplete, "
                    "so nothing missing from it may be treated as deleted.",
                    method="GET",
                    path=path,
                    details={"createdAt": cursor, "listed": len(seen), "page_size": page_size},
                )
            cursor = _oldest_created_at(page, path)

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


def _page_items(body: Any, method: str, path: str) -> list:
    """A list page as a list: Vapi answers a plain array or {"results": [...], "metadata": {...}}."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict) and isinstance(body.get("results"), list):
        return body["results"]
    raise VapiProtocolError(
        f"Vapi answered {method} {path} with {type(body).__name__} JSON, expected a list or "
        '{"results": [...]}' + (f" (keys: {sorted(body)[:10]})" if isinstance(body, dict) else ""),
        method=method,
        path=path,
    )


def _oldest_created_at(page: list[dict], path: str) -> str:
    """The createdAt string (as Vapi wrote it, full precision) of the oldest item on a page."""
    oldest: tuple[datetime, str] | None = None
    for item in page:
        raw = item.get("createdAt")
        try:
            when = parse_vapi_datetime(raw)
        except (TypeError, ValueError):
            raise VapiProtocolError(
                f"Vapi listed {path} item {item.get('id')} with createdAt {raw!r}, which is not an ISO date; "
                "cannot page past it.",
                method="GET",
                path=path,
            ) from None
        if oldest is None or when < oldest[0]:
            oldest = (when, raw)
    return oldest[1]


def _item_path(collection: str, object_id: str) -> str:
    if not isinstance(object_id, str) or not object_id.strip():
        raise ValueError(f"A Vapi id is required for {collection}/<id>, got {object_id!r}")
    return f"{collection}/{quote(object_id, safe='')}"
