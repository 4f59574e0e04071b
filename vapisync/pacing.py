"""Pacing and counters of a `VapiClient`: the request rate its threads share, and its statistics.

`RequestPacer` spaces requests at a rate shared by every thread using one client; adaptive,
it finds that rate from Vapi's 429s (AIMD: slow start, additive increase, multiplicative
decrease) and pauses every thread for a 429's Retry-After. `Slot` is one caller's turn.
`ClientStats` counts requests, retries, 429s and the seconds slept, for benchmarks and run
summaries.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# The client's logger: what the pacer logs is part of the client's story (and its log settings).
logger = logging.getLogger("vapisync.client")


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
