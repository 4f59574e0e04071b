"""Faults on the production stack; after each, nothing is lost and nothing is duplicated.

"Nothing lost, nothing duplicated" is checked by e2e.checks.consistency: every agent has
exactly one assistant in Vapi with the same field values, no two assistants carry the same
create marker (or, with unique local names, the same name), nothing exists on one side only,
and phone numbers route to the same assistants on both sides.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest
import requests

from e2e import results
from e2e.checks import (
    assert_consistent,
    insert_agents_sql,
    local_agents,
    sync_statuses,
    sync_until_succeeded,
    wait_consistent,
    wait_run,
)
from e2e.stack import wait_until


def _writes(counts: dict) -> dict:
    return {k: v for k, v in counts.items() if not k.startswith("GET")}


def _vapi(s, method: str, path: str, **kw) -> requests.Response:
    """Talk to the emulated Vapi directly, as a person in Vapi's dashboard would."""
    return requests.request(method, s.emulator_url + path, headers={"Authorization": f"Bearer {s.api_key}"}, timeout=30, **kw)


# --- 15% 5xx, latency and a 40 rps rate limit during a full sync of 1,000 + 500 ---------------


@pytest.mark.timeout(600)
def test_full_sync_under_5xx_latency_and_rate_limit(fresh):
    """1,000 assistants and 500 numbers: half of the assistants exist only in Vapi (imported),
    half only here (created in Vapi), every number only in Vapi (imported and linked)."""
    s = fresh
    s.emu("/__seed", {"assistants": 500, "phones": 500, "prefix": "Seeded"})
    insert_agents_sql(s, 500, "Local")
    s.emu_faults(error_rate=0.15, latency_ms=25, rate_limit=40)
    started = time.monotonic()

    runs = sync_until_succeeded(s, max_runs=8, timeout=400)
    first_phase = time.monotonic() - started
    c = assert_consistent(s)
    assert (c.agents, c.assistants, c.phones_local, c.phones_remote) == (1000, 1000, 500, 500)

    # Still under the same faults, through the API (pushed automatically): 100 edits, 50 numbers
    # moved to other agents, 50 new agents of which 10 creates reach Vapi but lose their answer
    # (a 502 after the write); then full syncs until one succeeds.
    api = s.session("admin")
    agents = local_agents(s)
    for agent in agents[:100]:
        resp = api.patch(f"/api/agents/{agent['id']}/", json={"first_message": f"Edited under faults {agent['id']}",
                                                               "system_prompt": f"New prompt {agent['id']}"})
        assert resp.status_code == 200, resp.text[:500]
    phones = s.sql("select id from phonenumbers_app_phonenumber order by id limit 50")
    for (phone_id,), agent in zip(phones, agents[-50:], strict=False):
        resp = api.patch(f"/api/phone-numbers/{phone_id}/", json={"agent": agent["id"]})
        assert resp.status_code == 200, resp.text[:500]
    s.emu_faults(script=[{"fault": "fail_after_apply_next", "n": 10, "status": 502, "route": "POST /assistant"}])
    for i in range(50):
        resp = api.post("/api/agents/", json={"name": f"Fault new {i:03d}", "system_prompt": f"Prompt {i}"})
        assert resp.status_code == 201, resp.text[:500]
    second_started = time.monotonic()
    runs += sync_until_succeeded(s, max_runs=8, timeout=400)
    second_phase = time.monotonic() - second_started

    s.emu_clear_faults()
    c = wait_consistent(s, timeout=120)  # pushes still retrying may land after the run; none may duplicate
    assert (c.agents, c.assistants, c.phones_local, c.phones_remote) == (1050, 1050, 500, 500)
    final = {a["id"]: a for a in local_agents(s)}
    assert all(final[a["id"]]["first_message"] == f"Edited under faults {a['id']}" for a in agents[:100])
    moved = dict(s.sql("select id, agent_id from phonenumbers_app_phonenumber where id = any(%s)", ([p[0] for p in phones],)))
    assert [moved[p[0]] for p in phones] == [a["id"] for a in agents[-50:]]
    state = s.emu_state()
    results.record("fault_rate_limit", {
        "assistants": 1050, "phone_numbers": 500, "imported": 500, "created_in_vapi": 550, "edited": 100,
        "numbers_reassigned": 50, "error_rate": 0.15, "latency_ms": 25, "rate_limit_rps": 40,
        "lost_responses_after_create": 10, "runs": len(runs), "run_statuses": [r["status"] for r in runs],
        "seconds_first_phase": round(first_phase, 1), "seconds_second_phase": round(second_phase, 1), "seconds_total": round(time.monotonic() - started, 1),
        "vapi_requests": sum(state["counts"].values()), "vapi_writes": sum(_writes(state["counts"]).values()),
        "duplicates": c.duplicates, "lost": len(c.problems),
    })


# --- Vapi down during a burst of edits, then back -----------------------------------------------


@pytest.mark.timeout(420)
def test_vapi_down_during_burst_of_edits_then_back(fresh):
    s = fresh
    api = s.session("admin")
    ids = []
    for i in range(20):
        resp = api.post("/api/agents/", json={"name": f"Outage {i:03d}", "system_prompt": "Before the outage"})
        assert resp.status_code == 201, resp.text[:500]
        ids.append(resp.json()["id"])
    wait_consistent(s, timeout=120)
    before = s.emu_state()

    s.emu_faults(down=True)
    outage_started = time.monotonic()
    for round_ in range(3):  # a burst: every agent edited three times, plus ten new agents
        for agent_id in ids:
            resp = api.patch(f"/api/agents/{agent_id}/", json={"system_prompt": f"Edit {round_} of {agent_id}",
                                                               "first_message": f"Round {round_}"})
            assert resp.status_code == 200, resp.text[:500]
    for i in range(10):
        resp = api.post("/api/agents/", json={"name": f"Outage new {i:03d}", "system_prompt": "Made during the outage"})
        assert resp.status_code == 201, resp.text[:500]
    time.sleep(max(0.0, 15 - (time.monotonic() - outage_started)))  # Vapi stays down for at least 15 s
    during = s.emu_state()
    assert {d["id"]: d for d in during["assistants"]} == {d["id"]: d for d in before["assistants"]}, "a write got through"
    statuses = sync_statuses(s)
    assert statuses.get("synced", 0) == 0, f"agents marked synced while Vapi was down: {statuses}"

    s.emu_faults(down=False)
    recovered = time.monotonic()
    counts_at_recovery = dict(s.emu_state()["counts"])
    c = wait_consistent(s, timeout=240)  # reconciler and retries, no manual sync
    caught_up = time.monotonic() - recovered
    after = s.emu_state()["counts"]
    writes = {k: after.get(k, 0) - counts_at_recovery.get(k, 0) for k in _writes(after)}
    assert c.agents == c.assistants == 30
    assert all(a["system_prompt"] == f"Edit 2 of {a['id']}" for a in local_agents(s) if a["id"] in ids)
    # Exactly once: after recovery, one create per new agent and at most one update per edited agent.
    assert writes.get("POST /assistant", 0) == 10, writes
    assert writes.get("PATCH /assistant/{id}", 0) <= 20, writes
    # What a user sees settle: every agent in sync and no run active. (Not an empty broker: retries the
    # outage pushed minutes out may still wait there; each finds nothing left to do.)
    wait_until(lambda: sync_statuses(s) == {"synced": 30} and not s.scalar(
        "select count(*) from vapisync_syncrun where status in ('queued', 'running')"),
        timeout=120, what="every agent in sync, no run active")
    results.record("fault_vapi_down", {
        "agents": 30, "edits_during_outage": 70, "outage_seconds": round(recovered - outage_started, 1),
        "seconds_to_catch_up": round(caught_up, 1), "creates_after_recovery": writes.get("POST /assistant", 0),
        "updates_after_recovery": writes.get("PATCH /assistant/{id}", 0), "duplicates": c.duplicates, "lost": len(c.problems),
    })


# --- A long run interrupted: worker SIGKILLed, database connections dropped ----------------------


def _start_long_full_sync(s, n_local: int):
    """Agents loaded straight into the table (no automatic push), so a full sync has to create
    them all in Vapi; with latency it takes long enough to be interrupted."""
    insert_agents_sql(s, n_local, "Bulk")
    s.emu_faults(latency_ms=60)
    api = s.session("admin")
    deadline = time.monotonic() + 90
    while True:  # beat's scheduled runs (delta import, reconciler) may hold the lock for a moment
        resp = api.post("/api/vapi-sync/full", json={})
        if resp.status_code != 409 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert resp.status_code == 202, resp.text[:500]
    run_id = resp.json()["id"]

    def some_created():
        posts = s.emu_state()["counts"].get("POST /assistant", 0)
        return posts >= n_local // 5 and posts

    wait_until(some_created, timeout=120, interval=0.3, what="the run to create some assistants")
    return run_id


@pytest.mark.timeout(600)
def test_worker_killed_and_restarted_mid_run(fresh):
    s = fresh
    s.emu("/__seed", {"assistants": 100, "phones": 20, "prefix": "Remote"})
    run_id = _start_long_full_sync(s, 400)
    posts_at_kill = s.emu_state()["counts"].get("POST /assistant", 0)
    s.kill_worker()
    killed_at = time.monotonic()
    assert posts_at_kill < 400, "the run finished before the worker could be killed; make it longer"
    time.sleep(2)
    s.start_worker()
    s.emu_faults(latency_ms=0)

    # A full sync requested now gets through once the interrupted run's lease is given up or
    # lapses (VAPI_SYNC_LOCK_TTL, 60 s in this stack), and finishes the job without creating
    # anything twice...
    runs = sync_until_succeeded(s, max_runs=5, timeout=240)
    recovered = time.monotonic() - killed_at
    c = assert_consistent(s)
    assert (c.agents, c.assistants) == (500, 500)
    # ...and the interrupted run is not left "running" once its lease has lapsed.
    run = s.session("admin").get(f"/api/vapi-sync/runs/{run_id}/").json()
    status = s.session("admin").get("/api/vapi-sync/status", params={"remote": "false"}).json()
    results.record("fault_worker_killed", {
        "agents": 500, "created_before_kill": posts_at_kill, "interrupted_run_status": run["status"],
        "seconds_until_recovered": round(recovered, 1), "runs_after": len(runs), "lock_ttl_seconds": 60,
        "duplicates": c.duplicates, "lost": len(c.problems),
    })
    assert run["status"] in ("interrupted", "failed", "partial", "succeeded"), \
        f"run {run_id} still {run['status']} {recovered:.0f}s after the kill, after run {runs[-1]['id']} succeeded"
    assert (status.get("active_run") or {}).get("id") != run_id, status.get("active_run")


@pytest.mark.timeout(600)
def test_database_connections_dropped_mid_run(fresh):
    s = fresh
    s.emu("/__seed", {"assistants": 100, "phones": 20, "prefix": "Remote"})
    run_id = _start_long_full_sync(s, 400)
    terminated = s.sql(
        "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity "
        "where datname = %s and pid <> pg_backend_pid()) t", (s.db_name,))[0][0]
    dropped_at = time.monotonic()
    assert terminated >= 1
    s.emu_faults(latency_ms=0)

    run = wait_run(s, run_id, timeout=300)
    assert run["status"] in ("interrupted", "failed", "partial", "succeeded")
    runs = sync_until_succeeded(s, max_runs=5, timeout=300)
    c = assert_consistent(s)
    assert (c.agents, c.assistants) == (500, 500)
    # The web processes recovered too.
    assert s.session("admin").get("/api/agents/?page_size=1").status_code == 200
    results.record("fault_db_dropped", {
        "agents": 500, "connections_terminated": terminated, "interrupted_run_status": run["status"],
        "seconds_until_recovered": round(time.monotonic() - dropped_at, 1), "runs_after": len(runs),
        "duplicates": c.duplicates, "lost": len(c.problems),
    })


# --- Two full syncs at once --------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_two_full_syncs_requested_at_once(fresh):
    s = fresh
    s.emu("/__seed", {"assistants": 200, "phones": 50, "prefix": "Pair"})
    insert_agents_sql(s, 100, "Local")
    s.emu_faults(latency_ms=30)
    answers = [None, None]
    for _attempt in range(3):
        # A run beat started on its own (scheduled delta import) would refuse both: wait it out.
        wait_until(lambda: not s.scalar("select count(*) from vapisync_syncrun where status in ('queued', 'running')"),
                   timeout=60, what="no run in progress")
        barrier = threading.Barrier(2)

        def request(i, role, barrier=barrier):
            api = s.session(role)
            barrier.wait(timeout=30)
            answers[i] = api.post("/api/vapi-sync/full", json={})

        threads = [threading.Thread(target=request, args=(i, role)) for i, role in enumerate(("admin", "runner"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        if any(a.status_code != 409 for a in answers):
            break
    codes = sorted(a.status_code for a in answers)
    assert codes in ([200, 409], [202, 409]), [(a.status_code, a.text[:300]) for a in answers]
    accepted = next(a for a in answers if a.status_code != 409).json()
    refused = next(a for a in answers if a.status_code == 409).json()
    assert refused.get("run_id") == accepted["id"], refused
    assert refused.get("detail") and refused.get("code")
    run = wait_run(s, accepted["id"], timeout=240)
    assert run["status"] == "succeeded", run
    s.emu_faults(latency_ms=0)
    assert s.scalar("select count(*) from vapisync_syncrun where dry_run = false and direction = 'full' "
                    "and trigger = 'api'") == 1
    c = assert_consistent(s)
    assert (c.agents, c.assistants, c.phones_local) == (300, 300, 50)
    results.record("fault_concurrent_syncs", {"answers": codes, "runs_created": 1, "duplicates": c.duplicates})


# --- The same webhook three times at once ----------------------------------------------------------


@pytest.mark.timeout(300)
def test_same_webhook_delivered_three_times_concurrently(fresh):
    s = fresh
    s.emu("/__seed", {"assistants": 3, "phones": 3, "prefix": "Hook"})
    sync_until_succeeded(s, max_runs=3, timeout=120)
    state = s.emu_state()
    phone = state["phone_numbers"][0]
    assistant = next(a for a in state["assistants"] if a["id"] == phone["assistantId"])
    # Someone edits the assistant in Vapi's dashboard; the webhook names it.
    resp = _vapi(s, "PATCH", f"/assistant/{assistant['id']}", json={"firstMessage": "Changed in the Vapi dashboard"})
    assert resp.status_code == 200, resp.text
    message = {"message": {
        "type": "status-update", "status": "in-progress", "timestamp": int(time.time() * 1000),
        "phoneNumber": {"id": phone["id"], "number": phone["number"], "assistantId": assistant["id"]},
        "assistant": {"id": assistant["id"], "name": assistant["name"], "firstMessage": "stale copy, never trusted"},
        "call": {"id": "call-e2e-1", "type": "inboundPhoneCall", "phoneNumberId": phone["id"], "assistantId": assistant["id"]},
        "customer": {"number": "+16826269224"},
    }}
    body = json.dumps(message).encode()
    barrier = threading.Barrier(3)
    answers = [None] * 3

    def deliver(i):
        session = requests.Session()
        barrier.wait(timeout=30)
        answers[i] = session.post(f"{s.base_url}/api/vapi-sync/webhook", data=body, timeout=30,
                                  headers={"Content-Type": "application/json", "X-Vapi-Secret": s.webhook_secret})
        s.scan_response(answers[i])

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [a.status_code for a in answers] == [200, 200, 200], [(a.status_code, a.text[:300]) for a in answers]
    digest = hashlib.sha256(body).hexdigest()
    rows = s.sql("select body_sha256, duplicates, assistant_id, phone_number_id from vapisync_webhookevent")
    assert len(rows) == 1, rows
    assert rows[0][0] == digest and rows[0][1] == 2, rows
    # The refresh re-reads Vapi (not the payload's stale copy) and is done once.
    agent_message = lambda: s.scalar("select first_message from agents_agent where vapi_assistant_id = %s", (assistant["id"],))
    wait_until(lambda: agent_message() == "Changed in the Vapi dashboard", timeout=60, what="the webhook refresh")
    s.wait_idle(timeout=60)
    assert s.scalar("select count(*) from vapisync_webhookevent where processed_at is not null") == 1
    webhook_runs = s.scalar("select count(*) from vapisync_syncrun where trigger = 'webhook'")
    assert webhook_runs == 1, webhook_runs
    assert_consistent(s)
    results.record("fault_webhook_replay", {"deliveries": 3, "events_stored": 1, "duplicates_counted": rows[0][1],
                                            "refresh_runs": webhook_runs})
