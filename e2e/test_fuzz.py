"""Bad input against the running gunicorn: schemathesis over /api/schema/, then hand-written cases.

Every generated request (valid and invalid ones, for every operation of the schema) must get
an answer below 500, and every 4xx must carry a JSON body. The hand-written cases cover what a
generator rarely produces: huge and deeply nested bodies, wrong content types, unicode and
control characters (round-tripped through Vapi), phone numbers in odd formats, ids of other
types, and SQL and HTML stored as plain text and escaped in the admin.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from e2e import results
from e2e.checks import remote_fields, sync_until_succeeded, wait_consistent
from e2e.stack import wait_until

EXAMPLES = {GenerationMode.POSITIVE: int(os.environ.get("E2E_FUZZ_EXAMPLES", "25")),
            GenerationMode.NEGATIVE: int(os.environ.get("E2E_FUZZ_NEGATIVE_EXAMPLES", "15"))}
FUZZ_BUDGET_SECONDS = float(os.environ.get("E2E_FUZZ_BUDGET_SECONDS", "270"))


def _content_type(resp) -> str:
    """Content-Type of a requests.Response or a schemathesis Response (lower-case keys, list values)."""
    value = resp.headers.get("Content-Type") or resp.headers.get("content-type") or ""
    return ", ".join(value) if isinstance(value, list) else value


def _json_body(resp) -> bool:
    if "json" not in _content_type(resp):
        return False
    try:
        json.loads(resp.content)
    except ValueError:
        return False
    return True


def _judge(resp) -> str | None:
    if resp.status_code >= 500:
        return f"server error {resp.status_code}"
    if 400 <= resp.status_code < 500 and not _json_body(resp):
        return f"{resp.status_code} without a JSON body ({_content_type(resp)!r}: {resp.content[:120]!r})"
    return None


def _seed_some_data(s) -> None:
    s.emu("/__seed", {"assistants": 5, "phones": 5, "prefix": "Fuzz"})
    sync_until_succeeded(s, max_runs=3, timeout=120)


# --- schemathesis -----------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_schemathesis_no_server_error_and_json_4xx(fresh):
    s = fresh
    _seed_some_data(s)
    tokens = [s.users[f"fuzzer{i}"].token for i in range(10)]  # the trigger throttle is per user
    schema = schemathesis.openapi.from_url(f"{s.base_url}/api/schema/?format=json", timeout=30,
                                           headers={"Authorization": f"Bearer {tokens[0]}"})
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]

    failures: dict[tuple, str] = {}
    statuses: Counter = Counter()
    calls = [0]
    session = requests.Session()
    started = time.monotonic()
    skipped_modes = []

    for operation in operations:
        for mode, examples in EXAMPLES.items():
            if time.monotonic() - started > FUZZ_BUDGET_SECONDS:
                pytest.fail(f"fuzzing exceeded its {FUZZ_BUDGET_SECONDS:.0f}s budget at {operation.label}")
            try:
                strategy = operation.as_strategy(generation_mode=mode)
            except Exception as exc:
                skipped_modes.append(f"{operation.label} {mode}: {exc}")
                continue

            @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def run(case):  # called within this iteration only: the loop variables are current
                headers = {"Authorization": f"Bearer {tokens[calls[0] % len(tokens)]}"}
                if operation.path.endswith("/webhook") and mode is GenerationMode.POSITIVE:  # noqa: B023
                    headers["X-Vapi-Secret"] = s.webhook_secret
                calls[0] += 1
                resp = case.call(base_url=s.base_url, session=session, headers=headers, timeout=60)
                s.scan_body(f"{case.method} {case.formatted_path}", resp.status_code, resp.content, resp.headers)
                statuses[resp.status_code] += 1
                problem = _judge(resp)
                if problem:
                    key = (operation.label, resp.status_code)  # noqa: B023
                    failures.setdefault(key, f"{operation.label} [{mode}] {problem}\n    {case.as_curl_command()[:600]}")  # noqa: B023

            try:
                run()
            except Exception as exc:
                if "Unsatisfiable" in type(exc).__name__ or "unsatisf" in str(exc).lower():
                    skipped_modes.append(f"{operation.label} {mode}: {type(exc).__name__}")
                else:
                    failures.setdefault((operation.label, "error"), f"{operation.label} [{mode}] {type(exc).__name__}: {exc}")

    # Work the fuzzer queued (sync runs with odd selections) must not crash in the worker either.
    s.wait_idle(timeout=120)
    crashed = s.sql("select id, message from vapisync_syncrun where message like 'Unexpected error%%'")
    elapsed = time.monotonic() - started
    results.record("fuzz", {
        "operations": len(operations), "requests": calls[0], "seconds": round(elapsed, 1),
        "examples_per_operation": {str(k): v for k, v in EXAMPLES.items()},
        "status_codes": {str(k): v for k, v in sorted(statuses.items())}, "failures": len(failures),
        "runs_crashed": len(crashed), "modes_without_cases": len(skipped_modes),
    })
    print(f"\nfuzz: {calls[0]} requests over {len(operations)} operations in {elapsed:.0f}s: {dict(statuses)}")
    assert not failures, "\n".join(failures.values())
    assert not crashed, crashed
    assert calls[0] >= len(operations) * 10


# --- Hand-written cases ---------------------------------------------------------------------------


def _post_streaming(s, path: str, body: bytes, *, token: str | None = None, extra: dict | None = None):
    """POST `body` while reading the answer, as a browser or curl does: a server may answer a body it
    refuses (over DATA_UPLOAD_MAX_MEMORY_SIZE) before reading it, and close the connection; a client
    that only reads after sending everything would see a reset instead of that answer."""
    import http.client
    import socket
    import threading

    sock = socket.create_connection(("127.0.0.1", s.web_port), timeout=120)
    headers = {"Host": f"127.0.0.1:{s.web_port}", "Content-Type": "application/json", "Content-Length": str(len(body)),
               "Accept": "application/json", "Connection": "close", **(extra or {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"

    def send():
        try:
            sock.sendall(head.encode())
            view = memoryview(body)
            for start in range(0, len(body), 65536):
                sock.sendall(view[start:start + 65536])
        except OSError:
            pass  # the server answered and closed before the whole body went out

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        response = http.client.HTTPResponse(sock)
        response.begin()
        content = response.read()
        return response.status, response.getheader("Content-Type") or "", content
    finally:
        sender.join(timeout=60)
        sock.close()


@pytest.mark.timeout(300)
def test_huge_and_deeply_nested_bodies(fresh):
    s = fresh
    api = s.session("admin")
    cases = {
        "5 MB name": ("/api/agents/", json.dumps({"name": "x" * 5_000_000}).encode()),
        "3 MB prompt": ("/api/agents/", json.dumps({"name": "Big prompt", "system_prompt": "p" * 3_000_000}).encode()),
        "20 MB prompt": ("/api/agents/", json.dumps({"name": "Huge prompt", "system_prompt": "p" * 20_000_000}).encode()),
        "nested 100k": ("/api/agents/", b"[" * 100_000 + b"]" * 100_000),
        "nested object 50k": ("/api/agents/", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        "100k ids": ("/api/vapi-sync/full", json.dumps({"agent_ids": list(range(1, 100_001))}).encode()),
        "nested sync body": ("/api/vapi-sync/full", b"[" * 100_000 + b"]" * 100_000),
    }
    answers = {}
    for label, (path, body) in cases.items():
        status, ctype, content = _post_streaming(s, path, body, token=s.users["admin"].token)
        answers[label] = status
        s.scan_body(f"POST {path}", status, content, {"Content-Type": ctype})
        assert 400 <= status < 500 and "json" in ctype, (label, status, ctype, content[:300])
        json.loads(content)
    form = "&".join(f"vapi_ids=x{i}" for i in range(1001))  # one field more than DATA_UPLOAD_MAX_NUMBER_FIELDS
    resp = api.post("/api/vapi-sync/assistants/delete-in-vapi", data=form,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 400 and _json_body(resp), resp.text[:300]
    # Bodies over the configured request limit (DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB) are refused, not stored.
    assert s.scalar("select count(*) from agents_agent where length(system_prompt) > 2621440") == 0
    status, ctype, content = _post_streaming(s, "/api/vapi-sync/webhook",
                                             b'{"message": {"type": "x", "pad": "' + b"a" * 2_000_000 + b'"}}',
                                             extra={"X-Vapi-Secret": s.webhook_secret})
    s.scan_body("POST /api/vapi-sync/webhook", status, content, {"Content-Type": ctype})
    assert status == 413 and "json" in ctype, (status, ctype, content[:300])
    assert s.session("admin").get("/api/vapi-sync/health").status_code == 200
    results.record("bad_input_huge", {"cases": len(cases) + 2, "answers": answers})


@pytest.mark.timeout(120)
def test_wrong_content_types(fresh):
    s = fresh
    api = s.session("admin")
    agent_body = json.dumps({"name": "Typed"})
    cases = [
        ("/api/agents/", "text/plain", agent_body, (415,)),
        ("/api/agents/", "application/xml", "<agent><name>x</name></agent>", (415,)),
        ("/api/agents/", "application/json", "{not json", (400,)),
        ("/api/agents/", "application/json", "", (400,)),
        ("/api/agents/", "application/json", "null", (400,)),
        ("/api/agents/", "application/json", "[1, 2]", (400,)),
        ("/api/agents/", "application/json", '"a string"', (400,)),
        ("/api/agents/", "application/json; charset=utf-16", "{\"name\": \"\u00e9\"}".encode("utf-16"), (201, 400, 415)),
        ("/api/agents/", "application/json; charset=klingon", agent_body, (201, 400, 415)),
        ("/api/agents/", "application/json", b'{"name": "\xff\xfe bad utf-8"}', (400,)),
        ("/api/agents/", "application/x-www-form-urlencoded", "%%%name=%zz", (400,)),
        ("/api/agents/", "multipart/form-data", "no boundary here", (400,)),
        ("/api/agents/", "multipart/form-data; boundary=xyz", "--xyz\r\nbroken", (400,)),
        ("/api/vapi-sync/full", "text/plain", "{}", (415,)),
        ("/api/vapi-sync/full", "application/json", "{not json", (400,)),
        ("/api/vapi-sync/full", "application/json", "[]", (400,)),
        ("/api/vapi-sync/full", "application/x-www-form-urlencoded", '{"dry_run": true}=', (400,)),
        ("/api/phone-numbers/", "image/png", b"\x89PNG\r\n\x1a\n", (415,)),
    ]
    seen = []
    for path, ctype, body, expected in cases:
        resp = api.post(path, data=body, headers={"Content-Type": ctype})
        seen.append((path, ctype, resp.status_code))
        assert resp.status_code in expected and _json_body(resp), (path, ctype, resp.status_code, resp.text[:300])
    for body, ctype in (("{}", "text/plain"), ("{not json", "application/json"), ("[]", "application/json"),
                        ('{"message": "not an object"}', "application/json"), (b"\xff\xfe", "application/json")):
        resp = requests.post(f"{s.base_url}/api/vapi-sync/webhook", data=body, timeout=30,
                             headers={"Content-Type": ctype, "X-Vapi-Secret": s.webhook_secret})
        s.scan_response(resp)
        assert resp.status_code in (400, 415) and _json_body(resp), (ctype, body, resp.status_code, resp.text[:300])
    assert s.scalar("select count(*) from agents_agent where name not in ('\u00e9', 'Typed')") == 0
    assert s.scalar("select count(*) from vapisync_webhookevent") == 0
    results.record("bad_input_content_types", {"cases": len(cases) + 5})


UNICODE_CASES = {
    "emoji": ("Agent \U0001F916\U0001F30D", "Speak \U0001F600 with emoji \u2764\ufe0f and ZWJ \U0001F468\u200d\U0001F469\u200d\U0001F467"),
    "rtl": ("\u0648\u0643\u064a\u0644 \u202eevil\u202c", "Right-to-left \u05e9\u05dc\u05d5\u05dd and override \u202e!dlrow\u202c"),
    "cjk": ("\u5ba2\u670d\u4ee3\u7406 \u30a8\u30fc\u30b8\u30a7\u30f3\u30c8", "\u4f60\u597d\uff0c\u6211\u80fd\u5e2e\u4f60\u4ec0\u4e48\uff1f"),
    "combining": ("Zalgo Z\u0351\u0367\u0337a\u0334\u0308l\u0336", "e\u0301 vs \u00e9, A\u030a, \u1100\u1161\u11a8"),
    "controls": ("Tab\there", "Line 1\nLine 2\r\nTab\tBell\u0007 Esc\u001b[31m Vertical\u000b FF\u000c US\u001f DEL\u007f"),
    "separators": ("Zero\u200bwidth\u2060joiner\ufeff", "Para\u2029Line\u2028NBSP\u00a0thin\u2009"),
    "astral": ("\U0001D400\U0001D401\U0001D402 math", "\U00010348 Gothic, \U0001F9D1\U0001F3FD skin tone"),
    "quotes": ("O'Brien \"Q\" `tick`", "Backslash \\ and \\u0000 text and %s %d {0} ${x}"),
    "max length": ("\U0001F916" * 40, "forty robots"),
}


@pytest.mark.timeout(240)
def test_unicode_and_control_characters_round_trip_to_vapi(fresh):
    s = fresh
    api = s.session("admin")
    created = {}
    for label, (name, prompt) in UNICODE_CASES.items():
        resp = api.post("/api/agents/", json={"name": name, "system_prompt": prompt, "first_message": prompt[:50]})
        assert resp.status_code == 201, (label, resp.status_code, resp.text[:300])
        body = resp.json()
        # DRF trims leading and trailing whitespace (its CharField default); everything else is kept.
        assert (body["name"], body["system_prompt"]) == (name.strip(), prompt.strip()), label
        created[label] = body["id"]
    refused = {}
    for label, fields in {
        "nul in name": {"name": "nul\u0000byte"},
        "nul in prompt": {"name": "ok", "system_prompt": "nul \u0000 byte"},
        "lone surrogate": {"name": "half \ud800 pair"},
        "41 characters": {"name": "x" * 41},
        "41 emoji": {"name": "\U0001F916" * 41},
        "empty name": {"name": ""},
        "only spaces": {"name": "   "},
        "name is a list": {"name": ["a"]},
        "name is an object": {"name": {"$ne": None}},
        "name is null": {"name": None},
        "prompt is an object": {"name": "ok", "system_prompt": {"role": "system"}},
    }.items():
        data = json.dumps(fields, ensure_ascii=True)  # \ud800 travels as a JSON escape
        resp = api.post("/api/agents/", data=data, headers={"Content-Type": "application/json"})
        refused[label] = resp.status_code
        assert 400 <= resp.status_code < 500 and _json_body(resp), (label, resp.status_code, resp.text[:300])
    assert s.scalar("select count(*) from agents_agent") == len(UNICODE_CASES), refused
    coerced = api.post("/api/agents/", json={"name": 12345.5})  # DRF's CharField takes a number as its text
    assert coerced.status_code == 201 and coerced.json()["name"] == "12345.5", coerced.text[:300]
    created["number as name"] = coerced.json()["id"]

    # Pushed automatically; Vapi holds exactly what was written, character for character.
    wait_consistent(s, timeout=120)
    remote = {d["id"]: d for d in s.emu_state()["assistants"]}
    for label, agent_id in created.items():
        vapi_id = s.scalar("select vapi_assistant_id from agents_agent where id = %s", (agent_id,))
        name, prompt = (v.strip() for v in UNICODE_CASES.get(label, ("12345.5", "")))
        theirs = remote_fields(remote[vapi_id])
        assert theirs["name"] == name, label
        assert theirs["system_prompt"] == prompt, label
        assert api.get(f"/api/agents/{agent_id}/").json()["system_prompt"] == prompt, label
    results.record("bad_input_unicode", {"round_tripped": len(created), "refused": len(refused)})


PHONE_CASES = {
    # input -> expected E.164, or None when it must be refused with a 400
    "682-626-9224": "+16826269224",
    "(972) 474-1424": "+19724741424",
    "+1 972 474 1424": "+19724741424",
    "+1.415.555.0199": "+14155550199",
    "1-415-555-0123": "+14155550123",
    "  +44 20 7946 0958  ": "+442079460958",
    "+33 1 42 68 53 00": "+33142685300",
    "tel:+1-212-555-0100": "+12125550100",
    "\uff0b\uff11 \uff12\uff11\uff12 \uff15\uff15\uff15 \uff10\uff11\uff10\uff11": "+12125550101",  # full-width digits
    "abc": None,
    "+1-800-FLOWERS": "+18003569377",
    "+999 999 999 9999": None,
    "0": None,
    "-1 682 626 9224": "+16826269224",  # punctuation, as in 682-626-9224
    "+1 682 626 9224 ext. 12345678901234567890": None,
    "1" * 39: None,
    "1e10": None,
    "\u0000+16826269224": None,
    "<script>+16826269224</script>": None,
    "+16826269224'; DROP TABLE phonenumbers_app_phonenumber; --": None,
}
PHONE_TYPES = [16826269224, 1.5e10, True, ["+16826269224"], {"number": "+16826269224"}, -1, 2**80]


@pytest.mark.timeout(120)
def test_phone_numbers_in_odd_formats(fresh):
    s = fresh
    api = s.session("admin")
    for raw, expected in PHONE_CASES.items():
        resp = api.post("/api/phone-numbers/", json={"number": raw, "name": "Odd", "provider": "vapi"})
        assert resp.status_code < 500, (raw, resp.status_code, resp.text[:300])
        if expected is None:
            assert resp.status_code == 400 and _json_body(resp) and "number" in resp.json()["errors"], (raw, resp.status_code, resp.text[:300])
        elif expected == "+18003569377" and resp.status_code == 400:
            pass  # vanity letters may be refused; what matters is a clear 400
        else:
            assert resp.status_code == 201, (raw, resp.status_code, resp.text[:300])
            assert resp.json()["number"] == expected, (raw, resp.json()["number"])
            assert api.delete(f"/api/phone-numbers/{resp.json()['id']}/").status_code == 204
    for value in PHONE_TYPES:
        resp = api.post("/api/phone-numbers/", json={"number": value, "provider": "vapi"})
        assert resp.status_code in (201, 400) and _json_body(resp), (value, resp.status_code, resp.text[:300])
        if resp.status_code == 201:
            api.delete(f"/api/phone-numbers/{resp.json()['id']}/")
    for provider in ("VAPI", "skype", "", None, 7, "byo-phone-number "):
        resp = api.post("/api/phone-numbers/", json={"number": "+16826269224", "provider": provider})
        assert resp.status_code == 400 and "provider" in resp.json()["errors"], (provider, resp.status_code, resp.text[:300])
    assert s.scalar("select count(*) from phonenumbers_app_phonenumber") == 0
    results.record("bad_input_phone_numbers", {"formats": len(PHONE_CASES), "types": len(PHONE_TYPES)})


ODD_IDS = ["abc", "1.5", "-1", "0", "99999999999999999999999", "1e3", "%00", "null", "true", "[1]",
           "1;DROP TABLE agents_agent", "%2e%2e%2f", "0x1", "1_000"]
# Spellings of 1 that Python's int() reads (full-width digit, whitespace, sign, underscore): the same record
# or a JSON 404 are both acceptable answers.
ALIAS_IDS = ["%EF%BC%91", "%201", "1%0A", "%091", "+1", "0_1"]


@pytest.mark.timeout(180)
def test_ids_of_other_types(fresh):
    s = fresh
    api = s.session("admin")
    agent = api.post("/api/agents/", json={"name": "Target"}).json()
    assert agent["id"] == 1
    seen = Counter()
    for odd in ODD_IDS + ["1.2.3", "-4.5e-244"]:
        for method, path in (("get", f"/api/agents/{odd}/"), ("patch", f"/api/agents/{odd}/"),
                             ("delete", f"/api/agents/{odd}/"), ("get", f"/api/phone-numbers/{odd}/"),
                             ("get", f"/api/vapi-sync/runs/{odd}/"), ("post", f"/api/vapi-sync/runs/{odd}/rollback")):
            resp = api.request(method, path, json={"name": "x"} if method == "patch" else None)
            seen[resp.status_code] += 1
            assert 400 <= resp.status_code < 500 and _json_body(resp), (method, path, resp.status_code, resp.text[:200])
    for alias in ALIAS_IDS:
        resp = api.get(f"/api/agents/{alias}/")
        seen[resp.status_code] += 1
        assert (resp.status_code == 200 and resp.json()["id"] == agent["id"]) or (resp.status_code == 404 and _json_body(resp)), \
            (alias, resp.status_code, resp.text[:200])
    for value in ("abc", 1.5, 1.999, True, -1, 0, 2**63, 2**80, [agent["id"]], {"id": agent["id"]}, str(agent["id"]) + "x",
                  "1.5", "1e0"):
        resp = api.post("/api/phone-numbers/", json={"number": "+16826269224", "provider": "vapi", "agent": value})
        seen[resp.status_code] += 1
        assert resp.status_code == 400 and "agent" in resp.json()["errors"], (value, resp.status_code, resp.text[:300])
    for body in ({"agent_ids": ["abc"], "dry_run": True}, {"agent_ids": [1.5]}, {"agent_ids": [True]},
                 {"agent_ids": [-1]}, {"agent_ids": [2**80], "dry_run": True}, {"agent_ids": [2**63], "dry_run": True},
                 {"agent_ids": []}, {"agent_ids": "1"}, {"agent_ids": [{"id": 1}]}, {"phone_number_ids": ["x" * 101]},
                 {"dry_run": "maybe"}, {"dry_run": 2}, {"ids": [1]}):
        resp = api.post("/api/vapi-sync/full", json=body)
        seen[resp.status_code] += 1
        assert resp.status_code < 500 and _json_body(resp), (body, resp.status_code, resp.text[:300])
        if resp.status_code == 202:
            run = api.get(f"/api/vapi-sync/runs/{resp.json()['id']}/").json()
            wait_until(lambda run=run: api.get(f"/api/vapi-sync/runs/{run['id']}/").json()["status"] not in ("queued", "running"),
                       timeout=60, what="the odd-id run")
    for body in ({"resource": "agents", "id": "abc", "keep": "vapi"}, {"resource": "agents", "id": 2**80, "keep": "vapi"},
                 {"resource": "robots", "id": 1, "keep": "vapi"}, {"resource": "agents", "id": agent["id"], "keep": "both"}):
        resp = api.post("/api/vapi-sync/conflicts/resolve", json=body)
        assert 400 <= resp.status_code < 500 and _json_body(resp), (body, resp.status_code, resp.text[:300])
    s.wait_idle(timeout=60)
    assert s.scalar("select count(*) from agents_agent") == 1
    assert not s.sql("select id, message from vapisync_syncrun where message like 'Unexpected error%%'")
    results.record("bad_input_ids", {"requests": sum(seen.values()), "status_codes": {str(k): v for k, v in seen.items()}})


SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'
SQL = "Robert'); DROP TABLE agents_agent;--"


@pytest.mark.timeout(240)
def test_sql_and_html_stored_as_text_and_escaped_in_admin(fresh):
    s = fresh
    api = s.session("admin")
    resp = api.post("/api/agents/", json={"name": SCRIPT, "system_prompt": SQL + "\n" + IMG, "first_message": IMG})
    assert resp.status_code == 201, resp.text[:300]
    agent = resp.json()
    resp = api.post("/api/agents/", json={"name": SQL[:40], "system_prompt": "1; SELECT pg_sleep(10);"})
    assert resp.status_code == 201, resp.text[:300]
    phone = api.post("/api/phone-numbers/", json={"number": "+16826269224", "name": IMG[:40], "provider": "vapi",
                                                 "agent": agent["id"]})
    assert phone.status_code == 201, phone.text[:300]
    # Stored and served back verbatim; the tables are all there.
    back = api.get(f"/api/agents/{agent['id']}/").json()
    assert (back["name"], back["system_prompt"], back["first_message"]) == (SCRIPT, SQL + "\n" + IMG, IMG)
    assert s.scalar("select count(*) from agents_agent") == 2
    search = api.get("/api/agents/", params={"search": SQL}).json()
    assert search["count"] in (1, 2)
    wait_consistent(s, timeout=120, phones=False)
    sync_until_succeeded(s, max_runs=3, timeout=120)  # history rows carry the names too

    admin = s.admin_login("admin")
    pages = ["/admin/agents/agent/", f"/admin/agents/agent/{agent['id']}/change/",
             "/admin/phonenumbers_app/phonenumber/", f"/admin/phonenumbers_app/phonenumber/{phone.json()['id']}/change/",
             "/admin/vapisync/syncrun/", f"/admin/agents/agent/?q={requests.utils.quote(SCRIPT)}"]
    run_id = s.scalar("select max(id) from vapisync_syncrun")
    pages.append(f"/admin/vapisync/syncrun/{run_id}/change/")
    index = admin.get("/admin/").text
    pages += sorted({href for href in _hrefs(index) if "vapi" in href.lower() and "sync" in href.lower()})
    checked = []
    for page in pages:
        resp = admin.get(page)
        assert resp.status_code == 200, (page, resp.status_code)
        for raw in (SCRIPT, IMG):
            assert raw not in resp.text, (page, raw)
        checked.append(page)
    changelist = admin.get("/admin/agents/agent/").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in changelist
    results.record("bad_input_sql_html", {"admin_pages_checked": len(checked)})


def _hrefs(html: str) -> list[str]:
    import re

    return [h for h in re.findall(r'href="(/admin/[^"#?]*)"', html)]
