"""Runs never live inside a web request, under gunicorn started exactly as the Procfile's web line says.

No broker for this web server (CELERY_BROKER_URL empty: the default), so a run started from the API
executes in a background thread of the web process. An export of 1,500 agents with 150 ms Vapi
latency, paced to take longer than gunicorn's --timeout, answers JSON at once and completes; the
page and the status answer while it runs; afterwards nothing is left running.
"""

from __future__ import annotations

import shlex
import time

import pytest
import requests

from e2e import results
from e2e.checks import insert_agents_sql
from e2e.stack import BIN, ROOT, free_port, wait_until

AGENTS = 1500
LATENCY_MS = 150
# Three Vapi requests in flight at 150 ms each: about 75 s of creates, beyond the Procfile's --timeout 60.
CONCURRENCY = 3


def procfile_web(stack, port: int):
    """The Procfile's `web:` command, run by a shell as a platform would (PORT, WEB_CONCURRENCY from the env)."""
    line = next(l for l in (ROOT / "Procfile").read_text().splitlines() if l.startswith("web:"))
    command = line.split(":", 1)[1].strip()
    assert command.startswith("gunicorn "), command
    env = stack.env(CELERY_BROKER_URL="", PORT=str(port), VAPI_MAX_CONCURRENCY=str(CONCURRENCY))
    env.pop("WEB_CONCURRENCY", None)
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    proc = stack._spawn("procfile-web", ["sh", "-c", "exec " + command], env=env)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: proc.alive and requests.get(f"{base}/healthz", timeout=2).status_code == 200,
               timeout=90, what=f"the Procfile's gunicorn on {base} ({shlex.join(['sh', '-c', command])})")
    return proc, base


@pytest.mark.timeout(600)
def test_export_of_1500_agents_answers_at_once_and_completes_in_the_background(fresh):
    s = fresh
    insert_agents_sql(s, AGENTS, "Background")
    s.emu_faults(latency_ms=LATENCY_MS)
    proc, base = procfile_web(s, free_port())
    api = requests.Session()
    api.headers.update({"Authorization": f"Bearer {s.users['admin'].token}", "Accept": "application/json"})

    def call(method, path, **kw):
        resp = api.request(method, path if path.startswith("http") else base + path, timeout=30, **kw)
        s.scan_response(resp)
        return resp

    try:
        # The stack's own worker may hold the sync lock for a moment (its reconciler): ask again then.
        deadline = time.monotonic() + 120
        while True:
            started = time.monotonic()
            resp = call("POST", "/api/vapi-sync/agents/to-vapi", json={})
            answered = time.monotonic() - started
            if resp.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert resp.status_code == 202, resp.text[:500]
        assert resp.headers["Content-Type"].startswith("application/json")
        assert answered < 5, f"the request took {answered:.1f} s"
        run = resp.json()
        assert run["status"] in ("queued", "running") and resp.headers["Location"].endswith(f"/runs/{run['id']}/")

        # While it runs: the run moves forward, and the status and the page answer quickly.
        admin = s.admin_login()
        seen_done, slowest, began = [], 0.0, time.monotonic()

        def finished():
            nonlocal slowest
            t0 = time.monotonic()
            status = call("GET", "/api/vapi-sync/status")
            page = admin.get(base + "/admin/vapisync/sync/", timeout=30)
            slowest = max(slowest, time.monotonic() - t0)
            assert status.status_code == 200 and page.status_code == 200
            current = call("GET", resp.headers["Location"]).json()
            seen_done.append((current["progress"] or {}).get("done"))
            return current if current["status"] not in ("queued", "running") else None

        done = wait_until(finished, timeout=420, interval=2, what=f"run {run['id']} to finish")
        took = time.monotonic() - began
        assert done["status"] == "succeeded", (done["status"], done["errors"][:3], done["message"])
        assert done["counts"]["agents"]["created"] == AGENTS
        assert done["progress"]["phase"] == "finished" and done["progress"]["done"] == done["progress"]["total"]
        assert len([d for d in seen_done if d]) >= 2, seen_done  # progress was visible while it ran
        assert slowest < 5, f"status and page took up to {slowest:.1f} s during the run"
        assert len(s.emu_state()["assistants"]) == AGENTS

        # Nothing stays running: no active run, no lease held, the web process still serves.
        assert s.scalar("select count(*) from vapisync_syncrun where status in ('queued', 'running')") == 0
        assert s.scalar("select count(*) from vapisync_synclock where owner = %s", (f"run:{run['id']}",)) == 0
        assert call("GET", "/api/vapi-sync/status").json()["active_run"] is None
        assert proc.alive
        results.record("background_run", {"agents": AGENTS, "latency_ms": LATENCY_MS, "answered_seconds": round(answered, 2),
                                          "run_seconds": round(took, 1), "slowest_status_and_page_seconds": round(slowest, 2)})
    finally:
        proc.stop()
