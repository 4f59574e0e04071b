"""Named points inside a sync run where a test makes the world move on, deterministically.

A run reads both sides, decides, then writes; whatever a person, Vapi's dashboard or another
process does in between is what the engine's compare-and-set writes must survive. Tests
register a callable on a point (`seam_inject`) instead of sleeping into a race; in production
no callable is registered and a point costs one dict lookup.

Points (keyword arguments passed to the callable):
  "planned"        resource, plan            main thread, after the plan is made, before any write
  "local_write"    resource, ops             main thread, before each local batch is written
  "remote_chunk"   resource, ops             main thread, before each chunk of Vapi writes: after
                                             the local versions were checked, before Vapi's
  "remote_write"   resource, op              a client worker thread, right before one Vapi write
                                             (touch only the emulator here, not the database:
                                             the test's database connection is not this thread's)
  "rollback_step"  change                    main thread, before one change is undone
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator

_hooks: dict[str, list[Callable]] = defaultdict(list)
POINTS = frozenset({"planned", "local_write", "remote_chunk", "remote_write", "rollback_step"})


def seam(point: str, **context) -> None:
    for hook in tuple(_hooks.get(point, ())):
        hook(**context)


@contextlib.contextmanager
def seam_inject(point: str, hook: Callable, *, once: bool = False) -> Iterator[None]:
    """Call `hook(**context)` each time a run passes `point` (only the first time with `once`)."""
    if point not in POINTS:
        raise ValueError(f"Unknown seam {point!r}; known: {', '.join(sorted(POINTS))}")
    fired = []

    def wrapper(**context):
        if once and fired:
            return
        fired.append(True)
        hook(**context)

    _hooks[point].append(wrapper)
    try:
        yield
    finally:
        _hooks[point].remove(wrapper)
