"""The circuit breaker of the Vapi client: one per Vapi base URL, shared by the whole process.

Every client of a process reports its transport failures (connection refused, DNS, TLS,
timeouts, dropped connections) and answers to one breaker per Vapi base URL. After
`CIRCUIT_FAILURES` failures in a row it opens for `VAPI_CIRCUIT_BREAKER_SECONDS`: a
`fail_fast` client (the web pages, `GET status`, health, dry runs answered inline) then fails
at once with `VapiUnavailable` instead of waiting on timeouts. Background runs and the command
line are not fail-fast: they keep their patient retries and only feed the breaker. Any HTTP
answer from Vapi closes it again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from vapisync.exceptions import VapiUnavailable
from vapisync.vapi_http import _CONNECT

# The client's logger: the breaker opening is part of the client's story (and its log settings).
logger = logging.getLogger("vapisync.client")

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
