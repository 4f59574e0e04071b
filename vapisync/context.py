"""Marks writes made by the sync itself, so the save signals do not echo them back to Vapi."""

import contextlib
import contextvars

_sync_writing = contextvars.ContextVar("vapisync_sync_writing", default=False)


@contextlib.contextmanager
def sync_writes():
    token = _sync_writing.set(True)
    try:
        yield
    finally:
        _sync_writing.reset(token)


def is_sync_write() -> bool:
    return _sync_writing.get()
