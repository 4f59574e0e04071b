"""Load: 50 concurrent API clients create and edit agents for a fixed time while full syncs run.

Afterwards every agent's final state (as the clients last wrote it) is in the database and,
pushed by the automatic sync alone, in Vapi exactly once; no request got a 5xx. The API's
latency percentiles and throughput go to e2e/results.json.
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from collections import Counter

import pytest

from e2e import results
from e2e.checks import FIELDS, insert_agents_sql, local_agents, sync_until_succeeded, wait_consistent

CLIENTS = int(os.environ.get("E2E_LOAD_CLIENTS", "50"))
SECONDS = float(os.environ.get("E2E_LOAD_SECONDS", "30"))
SEEDED = 300
BULK = 600


def trigger_async(s) -> int:
    """Request a full sync and return its id once a worker has it (202), waiting out a busy lock."""
    api = s.session("admin")
    deadline = time.monotonic() + 90
    while True:
        resp = api.post("/api/vapi-sync/full", json={})
        if resp.status_code == 202 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert resp.status_code == 202, resp.text[:300]
    return resp.json()["id"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


@pytest.mark.timeout(600)
def test_fifty_clients_edit_agents_while_full_syncs_run(fresh):
    s = fresh
    s.emu("/__seed", {"assistants": SEEDED, "phones": 100, "prefix": "Imported"})
    sync_until_succeeded(s, max_runs=3, timeout=180)
    imported = [a["id"] for a in local_agents(s)]
    assert len(imported) == SEEDED
    # A full sync that is still running when the clients start: 600 agents loaded straight into the
    # table (no automatic push) that it has to create in Vapi, which answers with some latency.
    insert_agents_sql(s, BULK, "Bulk")
    s.emu_faults(latency_ms=20)
    full = trigger_async(s)

    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter = Counter()
    server_errors: list[str] = []
    expected: dict[int, dict] = {}  # agent id -> the fields its (only) writer last sent and got 2xx for
    stop_at = [0.0]
    barrier = threading.Barrier(CLIENTS + 2)  # the clients, the syncer and this thread
    sync_answers: Counter = Counter()

    def client(n: int):
        api = s.session("loader")
        rng = random.Random(n)
        mine = [i for i in imported if i % CLIENTS == n]  # disjoint: each agent has one writer
        seq = 0
        barrier.wait(timeout=60)
        while time.monotonic() < stop_at[0]:
            seq += 1
            roll = rng.random()
            if roll < 0.35 or not mine:
                fields = {"name": f"Load {n:02d}-{seq:04d}", "system_prompt": f"Prompt {n}/{seq}",
                          "first_message": f"Hi {n}/{seq}", "voice_id": rng.choice(["Elliot", "Kylie", "Rohan"])}
                method, path = "post", "/api/agents/"
            elif roll < 0.9:
                agent_id = rng.choice(mine)
                fields = {"system_prompt": f"Edited {n}/{seq} \u00e9\u00e8 \u2713", "first_message": f"Edit {seq}",
                          "model": rng.choice(["gpt-4o", "gpt-4o-mini"])}
                method, path = "patch", f"/api/agents/{agent_id}/"
            else:
                method, path, fields = "get", f"/api/agents/?page={rng.randint(1, 5)}", None
            started = time.perf_counter()
            resp = api.request(method, path, json=fields) if fields is not None else api.get(path)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[resp.status_code] += 1
                if resp.status_code >= 500:
                    server_errors.append(f"{method.upper()} {path} -> {resp.status_code}: {resp.text[:200]}")
            if resp.status_code in (200, 201) and method != "get":
                body = resp.json()
                if method == "post":
                    mine.append(body["id"])
                with lock:
                    expected.setdefault(body["id"], {}).update(fields)

    def syncer():
        api = s.session("admin")
        barrier.wait(timeout=60)
        while time.monotonic() < stop_at[0]:
            resp = api.post("/api/vapi-sync/full", json={})
            sync_answers[resp.status_code] += 1
            if resp.status_code >= 500:
                server_errors.append(f"POST /api/vapi-sync/full -> {resp.status_code}: {resp.text[:200]}")
            time.sleep(3)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    threads.append(threading.Thread(target=syncer, daemon=True))
    for t in threads:
        t.start()
    stop_at[0] = time.monotonic() + SECONDS
    window_start = time.monotonic()
    barrier.wait(timeout=60)
    for t in threads:
        t.join(timeout=SECONDS + 120)
    window = time.monotonic() - window_start
    assert not any(t.is_alive() for t in threads), "a load client hung"
    s.emu_faults(latency_ms=0)
    run = s.session("admin").get(f"/api/vapi-sync/runs/{full}/").json()
    overlapped = s.scalar(
        "select count(*) from vapisync_syncrun where direction = 'full' and trigger = 'api' and dry_run = false "
        "and started_at < now() - make_interval(secs => %s) + make_interval(secs => %s) "
        "and (finished_at is null or finished_at > now() - make_interval(secs => %s))",
        (time.monotonic() - window_start, window, time.monotonic() - window_start))

    assert not server_errors, server_errors[:20]
    assert set(statuses) <= {200, 201}, statuses

    # Every write the API acknowledged is in the database as written...
    by_id = {a["id"]: a for a in local_agents(s)}
    lost_local = [(i, f) for i, f in expected.items() if any(by_id.get(i, {}).get(k) != v for k, v in f.items())]
    assert not lost_local, lost_local[:10]
    # ...and reaches Vapi exactly once through the automatic sync (no manual sync after the load).
    caught_up_started = time.monotonic()
    c = wait_consistent(s, timeout=240, phones=True, exact=False)
    caught_up = time.monotonic() - caught_up_started
    assert c.agents == len(by_id) == SEEDED + BULK + sum(1 for i in expected if i not in set(imported))
    assert overlapped >= 1, "no full sync ran during the load"
    assert all(set(f) <= set(FIELDS) for f in expected.values())
    time.sleep(5)  # pushes still in flight land; a late duplicate would show below
    c = wait_consistent(s, timeout=30, phones=True, exact=False)

    requests_total = sum(statuses.values())
    figures = {
        "clients": CLIENTS, "seconds": round(window, 1), "requests": requests_total,
        "requests_per_second": round(requests_total / window, 1),
        "latency_ms_p50": round(statistics.median(latencies) * 1000, 1),
        "latency_ms_p95": round(percentile(latencies, 95) * 1000, 1),
        "latency_ms_p99": round(percentile(latencies, 99) * 1000, 1),
        "latency_ms_max": round(max(latencies) * 1000, 1),
        "agents_created": sum(1 for i in expected if i not in set(imported)),
        "agents_edited": sum(1 for i in expected if i in set(imported)),
        "agents_total": len(by_id), "bulk_agents_created_by_full_sync": BULK, "full_sync_status": run["status"],
        "full_syncs_during_load": overlapped, "full_sync_requests": {str(k): v for k, v in sync_answers.items()},
        "server_errors": len(server_errors),
        "seconds_until_vapi_matched": round(caught_up, 1), "duplicates": c.duplicates, "lost": len(c.problems),
        "status_codes": {str(k): v for k, v in statuses.items()},
    }
    results.record("load", figures)
    print(f"\nload: {figures}")
    assert c.exact, c.describe()  # exactly once: no second assistant for any agent, nothing extra
