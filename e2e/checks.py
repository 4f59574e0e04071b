"""What the suites assert, written independently of the code under test.

The oracle reads the database with plain SQL and Vapi through the emulator's /__state, and
compares them with its own field mapping (not vapisync.mapping), so a mapping bug cannot
hide itself.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from e2e.stack import Stack, StackError, wait_until

MARKER_KEY = "globalvoiceAgentUuid"  # the create marker the issue asks for (VAPI-NOTES §1 #10)
ACTIVE = ("queued", "running")
FINAL = ("succeeded", "partial", "failed", "interrupted")


# --- Runs through the API ---------------------------------------------------------------


def wait_run(s: Stack, run_id: int, *, timeout: float = 300, role: str = "admin") -> dict:
    api = s.session(role)

    def finished():
        resp = api.get(f"/api/vapi-sync/runs/{run_id}/")
        assert resp.status_code == 200, (resp.status_code, resp.text[:500])
        run = resp.json()
        return run if run["status"] in FINAL else None

    return wait_until(finished, timeout=timeout, interval=0.5, what=f"sync run {run_id} to finish")


def trigger(s: Stack, path: str = "/api/vapi-sync/full", *, role: str = "admin", body: dict | None = None,
            timeout: float = 300):
    """POST a sync trigger; waits out 429 (throttle) and 409 (another run) within `timeout`.

    Returns the finished run (dict)."""
    api = s.session(role)
    deadline = time.monotonic() + timeout
    while True:
        resp = api.post(path, json=body or {})
        if resp.status_code in (200, 202):
            run = resp.json()
            s.runs_started += 1
            return run if run["status"] in FINAL else wait_run(s, run["id"], timeout=max(1, deadline - time.monotonic()))
        if time.monotonic() > deadline:
            raise StackError(f"POST {path} kept answering {resp.status_code}: {resp.text[:500]}")
        if resp.status_code == 409:  # wait a while for the running run, then ask again
            running = resp.json().get("run_id")
            if running:
                try:
                    wait_run(s, running, timeout=min(30, max(1, deadline - time.monotonic())))
                except StackError:
                    pass
            else:
                time.sleep(2)
        elif resp.status_code == 429:
            time.sleep(min(float(resp.headers.get("Retry-After") or 2), max(0.5, deadline - time.monotonic())))
        elif resp.status_code in (502, 503):
            time.sleep(1)
        else:
            raise StackError(f"POST {path} answered {resp.status_code}: {resp.text[:1000]}")


def sync_until_succeeded(s: Stack, *, max_runs: int = 8, timeout: float = 300, role: str = "admin") -> list[dict]:
    """Full syncs until one succeeds; every run is returned (the last one succeeded)."""
    runs = []
    deadline = time.monotonic() + timeout
    for _ in range(max_runs):
        run = trigger(s, role=role, timeout=max(5, deadline - time.monotonic()))
        runs.append(run)
        if run["status"] == "succeeded":
            return runs
        if time.monotonic() > deadline:
            break
    summary = [(r["id"], r["status"], (r.get("message") or "")[:200], (r.get("errors") or [])[:3]) for r in runs]
    raise AssertionError(f"no full sync succeeded in {len(runs)} runs: {summary}")


# --- Reading both sides ---------------------------------------------------------------------


AGENT_COLUMNS = ("id", "uuid", "name", "system_prompt", "first_message", "model_provider", "model",
                 "voice_provider", "voice_id", "vapi_assistant_id", "sync_status", "sync_error")
FIELDS = ("name", "system_prompt", "first_message", "model_provider", "model", "voice_provider", "voice_id")


def local_agents(s: Stack) -> list[dict]:
    rows = s.sql(f"select {', '.join(AGENT_COLUMNS)} from agents_agent order by id")
    return [dict(zip(AGENT_COLUMNS, (str(v) if c == "uuid" else v for c, v in zip(AGENT_COLUMNS, row, strict=True)), strict=True))
            for row in rows]


def local_phones(s: Stack) -> list[dict]:
    cols = ("id", "number", "name", "agent_id", "vapi_phone_id", "vapi_assistant_id", "sync_status")
    return [dict(zip(cols, row, strict=True)) for row in s.sql(f"select {', '.join(cols)} from phonenumbers_app_phonenumber order by id")]


def remote_fields(doc: dict) -> dict:
    model = doc.get("model") or {}
    voice = doc.get("voice") or {}
    system = next((m.get("content") or "" for m in model.get("messages") or [] if m.get("role") == "system"), "")
    return {
        "name": doc.get("name") or "",
        "system_prompt": system,
        "first_message": doc.get("firstMessage") or "",
        "model_provider": model.get("provider") or "",
        "model": model.get("model") or "",
        "voice_provider": voice.get("provider") or "",
        "voice_id": str(voice.get("voiceId") or ""),
    }


@dataclass
class Consistency:
    agents: int = 0
    assistants: int = 0
    phones_local: int = 0
    phones_remote: int = 0
    duplicate_markers: dict = field(default_factory=dict)
    duplicate_names: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    orphans: list = field(default_factory=list)  # assistants no agent links to (extra copies, or never imported)

    @property
    def agents_match(self) -> bool:
        """Every agent has its assistant with equal fields (extra assistants aside)."""
        return not self.problems

    @property
    def exact(self) -> bool:
        """Exactly one assistant per agent and nothing else: nothing lost, nothing duplicated."""
        return (not self.problems and not self.orphans and not self.duplicate_markers and not self.duplicate_names
                and self.agents == self.assistants)

    @property
    def duplicates(self) -> int:
        """Extra assistants made for agents that already have one (same create marker)."""
        return sum(n - 1 for n in self.duplicate_markers.values())

    def describe(self, limit: int = 15) -> str:
        return (f"{self.agents} agents / {self.assistants} assistants, {self.phones_local} / {self.phones_remote} numbers; "
                f"duplicate markers {dict(list(self.duplicate_markers.items())[:5])}, duplicate names "
                f"{dict(list(self.duplicate_names.items())[:5])}; {len(self.orphans)} assistants without an agent: "
                f"{self.orphans[:5]}; {len(self.problems)} problems: {self.problems[:limit]}")


def consistency(s: Stack, *, phones: bool = True, names_unique: bool = True) -> Consistency:
    """Compare the database with Vapi: one assistant per agent, equal fields, no duplicates, nothing extra."""
    state = s.emu_state()
    agents = local_agents(s)
    remote = {d["id"]: d for d in state["assistants"]}
    c = Consistency(agents=len(agents), assistants=len(remote))
    markers = Counter(str((d.get("metadata") or {}).get(MARKER_KEY)) for d in remote.values()
                      if (d.get("metadata") or {}).get(MARKER_KEY))
    c.duplicate_markers = {m: n for m, n in markers.items() if n > 1}
    if names_unique and len({a["name"] for a in agents}) == len(agents):
        names = Counter(d.get("name") for d in remote.values())
        c.duplicate_names = {n: k for n, k in names.items() if k > 1}
    linked = Counter(a["vapi_assistant_id"] for a in agents if a["vapi_assistant_id"])
    for vapi_id, n in linked.items():
        if n > 1:
            c.problems.append(f"{n} agents linked to assistant {vapi_id}")
    for agent in agents:
        doc = remote.get(agent["vapi_assistant_id"]) if agent["vapi_assistant_id"] else None
        if doc is None:
            c.problems.append(f"agent {agent['id']} {agent['name']!r} ({agent['sync_status']}: {agent['sync_error'][:120]!r}) "
                              f"has no assistant in Vapi (linked to {agent['vapi_assistant_id']})")
            continue
        marker = (doc.get("metadata") or {}).get(MARKER_KEY)
        if marker and marker != agent["uuid"]:
            c.problems.append(f"agent {agent['id']} is linked to assistant {doc['id']} made for agent {marker}")
        theirs = remote_fields(doc)
        ours = {k: agent[k] or "" for k in FIELDS}
        if theirs != ours:
            diff = {k: (ours[k], theirs[k]) for k in FIELDS if ours[k] != theirs[k]}
            c.problems.append(f"agent {agent['id']} differs from its assistant: {diff}")
    for vapi_id in set(remote) - set(linked):
        c.orphans.append(f"assistant {vapi_id} {remote[vapi_id].get('name')!r} has no agent")
    if phones:
        local = local_phones(s)
        remote_phones = {d["id"]: d for d in state["phone_numbers"]}
        c.phones_local, c.phones_remote = len(local), len(remote_phones)
        by_agent = {a["id"]: a["vapi_assistant_id"] for a in agents}
        for phone in local:
            doc = remote_phones.get(phone["vapi_phone_id"])
            if doc is None:
                c.problems.append(f"number {phone['number']} has no Vapi number")
                continue
            expected = by_agent.get(phone["agent_id"]) if phone["agent_id"] else phone["vapi_assistant_id"]
            if (doc.get("assistantId") or None) != (expected or None):
                c.problems.append(f"number {phone['number']} routes to {doc.get('assistantId')} in Vapi, {expected} here")
        for vapi_id in set(remote_phones) - {p["vapi_phone_id"] for p in local}:
            c.problems.append(f"Vapi number {remote_phones[vapi_id].get('number')} has no local number")
    return c


def assert_consistent(s: Stack, **kw) -> Consistency:
    c = consistency(s, **kw)
    assert c.exact, c.describe()
    return c


def wait_consistent(s: Stack, *, timeout: float = 120, exact: bool = True, **kw) -> Consistency:
    """Until the automatic sync (push tasks, reconciler) has brought Vapi in line with the database:
    exactly (one assistant per agent, nothing else), or with exact=False until every agent's
    assistant has its values (extra assistants are then left to the caller to judge)."""
    last = [None]

    def ok():
        c = consistency(s, **kw)
        last[0] = c
        return c if (c.exact if exact else c.agents_match) else None

    try:
        return wait_until(ok, timeout=timeout, interval=1.0, what="Vapi to match the database")
    except StackError as exc:
        raise AssertionError(f"{exc}: {last[0].describe() if last[0] else 'no reading'}") from None


def sync_statuses(s: Stack, table: str = "agents_agent") -> dict:
    return dict(s.sql(f"select sync_status, count(*) from {table} group by sync_status"))


def insert_agents_sql(s: Stack, n: int, prefix: str) -> None:
    """Agents written straight into the table (a bulk load that bypasses signals): only a sync pushes them."""
    s.sql(
        "insert into agents_agent (uuid, name, system_prompt, first_message, model_provider, model, voice_provider, "
        "voice_id, sync_status, sync_error, created_at, updated_at) "
        "select gen_random_uuid(), %s || ' ' || lpad(g::text, 5, '0'), 'Prompt ' || g, 'Hello ' || g, 'openai', "
        "'gpt-4o', 'vapi', 'Elliot', 'local_only', '', now(), now() from generate_series(1, %s) g",
        (prefix, n),
    )
