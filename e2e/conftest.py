"""Fixtures of the end-to-end suites: one production stack per session (see e2e/stack.py).

`make e2e` runs them (pytest e2e). Logs of every process go to files under the stack's
temporary directory; a failing test gets their tails appended to its report, and the
directory is kept (its path printed) when anything failed.
"""

from __future__ import annotations

import os
import time

import pytest

from e2e import results
from e2e.stack import Stack

_failed = {"any": False}
# The whole session is bounded: once this many seconds have passed, the remaining tests fail at
# once instead of starting (each test is also bounded by pytest-timeout).
BUDGET_SECONDS = float(os.environ.get("E2E_BUDGET_SECONDS", "900"))
_session_started = time.monotonic()


@pytest.fixture(scope="session")
def stack():
    started = time.monotonic()
    s = Stack()
    try:
        s.start()
    except BaseException:
        print(f"\ne2e: the stack did not start; logs in {s.logs}\n{s.log_tails()}")
        _failed["any"] = True
        s.stop()
        raise
    results.record("stack", {"start_seconds": s.timings["start"]})
    try:
        yield s
    finally:
        s.stop()
        results.record("stack", {"start_seconds": s.timings["start"], "session_seconds": round(time.monotonic() - started, 1)})
        if _failed["any"] or os.environ.get("E2E_KEEP_LOGS"):
            print(f"\ne2e: logs kept in {s.logs}")
        else:
            s.remove_workdir()


@pytest.fixture
def fresh(stack):
    """The stack with empty application state and no emulator faults (see Stack.reset).

    Afterwards the test's whole database (run history and stored payloads included) and every
    response it received are checked for the API key and the webhook secret.
    """
    stack.reset()
    stack.leaks.clear()
    yield stack
    stack.emu_clear_faults()
    leaks = stack.leaks + stack.database_leaks()
    results.add("secrets", "databases_scanned", 1)
    assert not leaks, leaks


def pytest_runtest_setup(item):
    elapsed = time.monotonic() - _session_started
    if elapsed > BUDGET_SECONDS:
        pytest.fail(f"e2e time budget of {BUDGET_SECONDS:.0f}s used up ({elapsed:.0f}s); not starting {item.name}",
                    pytrace=False)


_outcomes: dict[str, dict] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    name = item.nodeid.split("::", 1)[-1] if "::" in item.nodeid else item.nodeid
    key = f"{item.module.__name__.rsplit('.', 1)[-1]}::{name}"
    if hasattr(report, "wasxfail") and report.skipped:
        _outcomes[key] = {"outcome": "xfailed", "reason": report.wasxfail}
    elif report.when == "call" or report.failed:
        if not (report.when == "teardown" and report.passed):
            outcome = report.outcome if report.when == "call" else f"{report.when} error"
            if _outcomes.get(key, {}).get("outcome") in (None, "passed") or report.failed:
                _outcomes[key] = {"outcome": outcome, "seconds": round(report.duration, 1)}
    if report.when == "call" and key in _outcomes:
        _outcomes[key]["seconds"] = round(report.duration, 1)
    if report.failed:
        _failed["any"] = True
        s = item.funcargs.get("stack") or item.funcargs.get("fresh")
        if s is not None:
            report.sections.append(("e2e stack logs", f"(full logs in {s.logs})\n{s.log_tails()}"))
    return report


def pytest_sessionfinish(session, exitstatus):
    if _outcomes:
        results.record("tests", {"outcomes": dict(sorted(_outcomes.items()))})
    results.write()
