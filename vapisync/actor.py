"""Who caused what runs now, so a sync run started indirectly still records its user.

A person's save pushes the record to Vapi after the transaction commits (vapisync.services.outbox):
in the same request when no broker is configured, or later in a Celery worker. `ActorMiddleware`
remembers the request for its duration; `current_user()` reads the request's user when a run is
created (by then DRF has authenticated a Bearer token too). Tasks published meanwhile carry the
user's id in a message header and the worker restores it around the task, so a push made by a
worker records the same user. `vapisync.services.runs.sync_run_create` falls back to
`current_user()` when its caller names no user.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

from celery.signals import before_task_publish, task_postrun, task_prerun
from django.contrib.auth import get_user_model

HEADER = "vapisync_actor_id"

# A request (its user is read when needed), a user, or a user id (in a worker).
_actor: ContextVar = ContextVar("vapisync_actor", default=None)


def current_user():
    """The authenticated user behind the current request or task, or None."""
    value = _actor.get()
    if value is None:
        return None
    if isinstance(value, int):
        return get_user_model().objects.filter(pk=value, is_active=True).first()
    user = getattr(value, "user", value)  # a request, or a user
    return user if getattr(user, "is_authenticated", False) else None


def _current_user_id() -> int | None:
    value = _actor.get()
    if isinstance(value, int):
        return value
    user = current_user()
    return user.pk if user is not None else None


@contextmanager
def acting_as(user_or_request):
    """Runs created inside this block record this user (a user, a user id or a request)."""
    token = _actor.set(user_or_request)
    try:
        yield
    finally:
        _actor.reset(token)


class ActorMiddleware:
    """Makes the request's user the actor of whatever the request causes (after AuthenticationMiddleware)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with acting_as(request):
            return self.get_response(request)


@before_task_publish.connect(dispatch_uid="vapisync.actor.publish")
def _carry_actor(headers=None, **kwargs):
    user_id = _current_user_id()
    if user_id is not None and headers is not None:
        headers.setdefault(HEADER, user_id)


@task_prerun.connect(dispatch_uid="vapisync.actor.prerun")
def _restore_actor(task=None, **kwargs):
    user_id = getattr(task.request, HEADER, None) if task is not None else None
    if isinstance(user_id, int):
        task.request.vapisync_actor_token = _actor.set(user_id)


@task_postrun.connect(dispatch_uid="vapisync.actor.postrun")
def _forget_actor(task=None, **kwargs):
    token = getattr(task.request, "vapisync_actor_token", None) if task is not None else None
    if token is not None:
        _actor.reset(token)
        task.request.vapisync_actor_token = None
