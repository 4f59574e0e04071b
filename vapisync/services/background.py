"""Sync runs executed outside the request that started them, when there is no Celery worker.

`background_call(name, func, on_exit=...)` runs a function outside the request: once the
transaction that asked for it commits, a daemon thread of this web process calls it and closes
its database connections when it ends. `vapisync.services.runs.sync_run_submit` hands over the
runs it recorded this way (through `vapisync.services.dispatch`). The run's row is all the page and the API need to follow
it (status, progress, heartbeat); the request that started it has long answered 202.

Limits, by design: an in-process run lives as long as its web process. A restart (deploy,
gunicorn recycling a worker) stops it mid-way: the exiting process marks it `interrupted` and
frees the lease, so the next run can start at once. A crash or a SIGKILL leaves no time for
that: the reaper (`runs_reap_interrupted`) marks the run `interrupted` once its lease runs out
(VAPI_SYNC_LOCK_TTL). Either way the next run picks up the work, since runs re-read both
sides. With CELERY_BROKER_URL set, runs go to the worker instead.

VAPI_SYNC_BACKGROUND chooses how:
  "thread"          (default) a daemon thread per run, as above.
  "after_response"  the request's own thread runs it once its response is complete (Django's
                    request_finished), or at once outside a request. For the test suite: a test
                    gets the 202, then finds the run finished, inside its own transaction and with
                    no thread to wait for. Never in production: the web worker stays busy for the
                    whole run and gunicorn's timeout would kill it.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable

from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import connections, transaction

logger = logging.getLogger(__name__)

THREAD, AFTER_RESPONSE = "thread", "after_response"

_threads: dict[str, threading.Thread] = {}
_on_exit: dict[str, Callable[[], object]] = {}  # thread name -> what to record if the process exits first
_threads_lock = threading.Lock()
_local = threading.local()


def background_mode() -> str:
    mode = getattr(settings, "VAPI_SYNC_BACKGROUND", THREAD)
    if mode not in (THREAD, AFTER_RESPONSE):
        raise ValueError(f"VAPI_SYNC_BACKGROUND must be {THREAD!r} or {AFTER_RESPONSE!r}, not {mode!r}")
    return mode


def background_call(name: str, func: Callable[[], object], *, on_exit: Callable[[], object] | None = None) -> None:
    """Call `func` outside this request: in a thread after commit, or after the response. `on_exit`
    is called if the process exits while the thread still runs (a run records it was interrupted)."""
    if background_mode() == AFTER_RESPONSE:
        if getattr(_local, "in_request", False):
            _local.pending.append((name, func))
        else:
            _guarded(name, func)
        return
    transaction.on_commit(lambda: _spawn(name, func, on_exit), robust=True)


def background_running() -> list[str]:
    """Names of this process's background threads still alive."""
    with _threads_lock:
        return [name for name, thread in _threads.items() if thread.is_alive()]


def background_join(timeout: float | None = None) -> bool:
    """Wait for this process's background threads; True if none is left running.

    For tests and orderly shutdowns: a caller that must see a run finished waits here, not in a sleep."""
    with _threads_lock:
        threads = list(_threads.values())
    for thread in threads:
        thread.join(timeout)
    return not background_running()


def _spawn(name: str, func: Callable[[], object], on_exit: Callable[[], object] | None = None) -> None:
    def target():
        try:
            _guarded(name, func)
        finally:
            # A thread's connections are its own: close them, or each run would leak one.
            connections.close_all()
            with _threads_lock:
                if _threads.get(name) is threading.current_thread():
                    del _threads[name]
                    _on_exit.pop(name, None)

    thread = threading.Thread(target=target, name=name, daemon=True)
    with _threads_lock:
        _threads[name] = thread
        if on_exit is not None:
            _on_exit[name] = on_exit
    thread.start()


@atexit.register
def _interrupt_runs_on_exit() -> None:
    """The process is exiting (a restart, a deploy) with runs still in its threads: daemon threads stop
    with it, so record them as interrupted and free the lease now rather than after its expiry."""
    with _threads_lock:
        stopped = [(name, hook) for name, hook in _on_exit.items() if _threads.get(name) and _threads[name].is_alive()]
    if not stopped:
        return
    for name, hook in stopped:
        try:
            hook()
        except Exception:  # exiting anyway; the reaper notices a run after its lease
            logger.warning("Could not record that %s stopped on exit", name, exc_info=True)
    connections.close_all()


def _guarded(name: str, func: Callable[[], object]) -> None:
    try:
        func()
    except Exception:  # the run records its own failure; this is the last resort
        logger.exception("Background job %s failed", name)


# --- after_response mode ---------------------------------------------------------------------


def _request_started(**kwargs) -> None:
    _local.in_request, _local.pending = True, []


def _request_finished(**kwargs) -> None:
    pending = getattr(_local, "pending", [])
    _local.in_request, _local.pending = False, []
    for name, func in pending:
        _guarded(name, func)


def request_hooks_connect() -> None:
    """Follow requests for the after_response mode (called once the app is ready)."""
    request_started.connect(_request_started, dispatch_uid="vapisync.background.started")
    request_finished.connect(_request_finished, dispatch_uid="vapisync.background.finished")
