"""How automatic work is handed on: the one place that decides "in this process, or a worker?".

Without a broker (CELERY_BROKER_URL unset) Celery runs every task eagerly: `task_send` then does the
work here and now, after the transaction that asked for it committed. With a broker the task is
queued for a worker. Services name the task (`vapisync.tasks.*`, as beat's schedules do) rather
than import it, so imports go one way: tasks -> services -> this module.

Also here: what an automatic operation reports (`Outcome`, `RetryLater`), its settings, and
`on_commit_once`, which gives a transaction one callback per kind of work however many saves it holds.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from celery import current_app
from django.conf import settings
from django.db import transaction

from vapisync.conf import vapi_settings
from vapisync.models import SyncRun
from vapisync.services.background import background_call

logger = logging.getLogger(__name__)

# The tasks services hand work to (vapisync.tasks); a test checks each is registered.
PUSH_TASK = "vapisync.tasks.pending_push_task"
SWEEP_TASK = "vapisync.tasks.automatic_sweep_task"
WEBHOOK_TASK = "vapisync.tasks.webhook_events_process_task"
DELETE_TASK = "vapisync.tasks.assistants_delete_task"
RUN_TASK = "vapisync.tasks.sync_run_execute_task"
TASKS = (PUSH_TASK, SWEEP_TASK, WEBHOOK_TASK, DELETE_TASK, RUN_TASK)


def broker_configured() -> bool:
    return bool(getattr(settings, "CELERY_BROKER_URL", ""))


def in_process() -> bool:
    """True without a broker: tasks run in this process right after commit (CELERY_TASK_ALWAYS_EAGER)."""
    return not broker_configured()


def task_send(name: str, *, countdown: float | None = None, **kwargs) -> None:
    """Run the task `name` with `kwargs`: here and now without a broker, else queued for a worker
    (after `countdown` seconds, if given)."""
    if name not in current_app.tasks:
        # Celery's autodiscovery of the apps' tasks modules; a web process has not run it yet.
        current_app.loader.import_default_modules()
    current_app.tasks[name].apply_async(kwargs=kwargs, countdown=None if in_process() else countdown)


def run_submit(run_id: int, *, execute_here: Callable[[], object], interrupt: Callable[[], object],
               here: bool = False) -> None:
    """Execute a recorded run outside this request: queued for a worker after commit when there is a
    broker, else in a background thread of this process (`here` forces that, e.g. for a given client)."""
    if broker_configured() and not here:
        transaction.on_commit(lambda: task_send(RUN_TASK, run_id=run_id))
    else:
        background_call(f"vapisync-run-{run_id}", execute_here, on_exit=interrupt)


class _Batch:
    """One transaction's callback for one kind of work, with the items every call added."""

    def __init__(self, send: Callable[[list], None]):
        self.send, self.items, self.sent = send, [], False

    def __call__(self) -> None:
        self.sent = True
        self.send(sorted(set(self.items)))


# connection -> kind -> the batch waiting for that connection's commit. Weak references: Django drops
# the callbacks of a transaction or savepoint that rolls back, and with them the batch, so a later
# save registers a new one instead of adding to a callback that will never run.
_batches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def on_commit_once(kind: str, send: Callable[[list], None], item=None) -> None:
    """Call `send(items)` once the transaction commits (at once outside one): one callback per
    transaction and `kind`, carrying the `item` of every call made in it. Nothing if it rolls back."""
    connection = transaction.get_connection()
    waiting = _batches.setdefault(connection, {})
    ref = waiting.get(kind)
    batch = ref() if ref is not None else None
    if batch is not None and not batch.sent:
        if item is not None:
            batch.items.append(item)
        return
    batch = _Batch(send)
    if item is not None:
        batch.items.append(item)
    waiting[kind] = weakref.ref(batch)
    # robust: a broker that is down must not turn a committed save into an error page; what was
    # asked for stays in the outbox and the reconciler takes it once the broker is back.
    transaction.on_commit(batch, robust=True)


# --- What automatic work reports ---------------------------------------------------------------


class RetryLater(Exception):
    """The work is not done but may succeed later (sync lock busy, Vapi unavailable).

    Tasks retry on it with backoff and jitter; in-process it is not raised: what is left stays in the
    outbox (pending records, unprocessed webhook events) for the next sweep or the reconciler."""


@dataclass
class Outcome:
    """What an automatic operation did, and whether what is left is worth retrying soon."""

    runs: list[SyncRun] = field(default_factory=list)
    lock_busy: bool = False
    retryable: list[str] = field(default_factory=list)  # messages of failures that may pass later

    @property
    def retry_reason(self) -> str | None:
        if self.lock_busy:
            return "another sync run holds the lock"
        if self.retryable:
            return f"{len(self.retryable)} retryable failure(s), e.g. {self.retryable[0]}"
        return None

    def merge(self, other: Outcome) -> Outcome:
        self.runs += other.runs
        self.lock_busy = self.lock_busy or other.lock_busy
        self.retryable += other.retryable
        return self


@dataclass(frozen=True)
class AutomaticSettings:
    reconcile_after: float  # seconds a pending record or webhook event waits before the reconciler takes it
    webhook_debounce: float  # seconds a worker waits before refreshing, so a burst of events makes one run


def automatic_settings() -> AutomaticSettings:
    """Read at call time (tests and the admin's settings may change them)."""
    return AutomaticSettings(
        reconcile_after=float(getattr(settings, "VAPI_SYNC_RECONCILE_AFTER", 60)),
        webhook_debounce=float(getattr(settings, "VAPI_WEBHOOK_DEBOUNCE", 2)),
    )


_not_configured_logged = False


def vapi_ready() -> bool:
    """Whether Vapi is configured; says once per process that automatic sync is idle if not."""
    global _not_configured_logged
    if vapi_settings().configured:
        return True
    if not _not_configured_logged:
        _not_configured_logged = True
        logger.info("Automatic Vapi sync is idle: VAPI_API_KEY is not set. Changes stay pending until it is.")
    return False
