"""Fault-injection building blocks of the emulator: a token bucket and scripted one-off faults."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


class TokenBucket:
    """`rate` requests per second with a burst of one second's worth (at least one request)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._tokens = self.capacity
        self._clock = clock
        self._last = clock()

    def take(self) -> int:
        """0 if the request may proceed, else the whole seconds to wait (the Retry-After value, >= 1)."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0
        return max(1, math.ceil((1 - self._tokens) / self.rate))


@dataclass
class ScriptedFault:
    """The next `remaining` requests matching `route` are answered with `status`.

    `route` is None (any request), a method ("POST"), a route template ("/assistant/{id}") or
    both ("PATCH /assistant/{id}"). With `after_apply` the request is processed first (its
    write happens) and only the answer is replaced: a response lost on the way back.
    """

    remaining: int
    status: int
    route: str | None
    after_apply: bool = False
    body: bytes | None = None  # the answer's body as sent (default: NestJS's error body for `status`)

    def matches(self, method: str, template: str | None) -> bool:
        if self.route is None:
            return True
        parts = self.route.split()
        if len(parts) == 2:
            return parts[0].upper() == method and parts[1] == template
        return parts[0] == template if parts[0].startswith("/") else parts[0].upper() == method
