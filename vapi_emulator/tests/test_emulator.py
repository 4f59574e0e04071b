"""Behaviour of the Vapi emulator: auth, lists, writes, validation errors, secrets, faults, counters, transports."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses
from django.core.management import call_command

from vapi_emulator import DEFAULT_ORG_ID, VapiEmulator, make_server, openapi
from vapi_emulator.demo import DEMO_ASSISTANTS, demo_id
from vapisync.management.commands.vapi_emulator import Command as EmulatorCommand

KEY = "test-vapi-key"
AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
MODEL = {"provider": "openai", "model": "gpt-4o", "temperature": 0.7, "maxTokens": 300,
         "messages": [{"role": "system", "content": "You are Riley."}], "tools": [{"type": "endCall"}]}
VOICE = {"provider": "vapi", "voiceId": "Elliot"}


class Api:
    """Thin JSON caller around VapiEmulator.handle."""

    def __init__(self, emulator: VapiEmulator):
        self.emu = emulator

    def __call__(self, method, path, body=None, query=None, headers=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        status, response_headers, payload = self.emu.handle(method, path, query or {}, AUTH if headers is None else headers, data)
        return status, json.loads(payload), response_headers


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
def emu():
    return VapiEmulator(api_key=KEY, random_seed=11)


@pytest.fixture
def api(emu):
    return Api(emu)


# --- auth ------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"}])
def test_requests_without_the_right_bearer_key_get_401(api, headers):
    status, body, _ = api("GET", "/assistant", headers=headers)
    assert status == 401
    assert body == {
        "message": "Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa.",
        "error": "Unauthorized",
        "statusCode": 401,
    }


def test_bearer_scheme_is_case_insensitive(api):
    assert api("GET", "/assistant", headers={"authorization": f"bearer {KEY}"})[0] == 200


# --- lists -----------------------------------------------------------------------------------

def test_list_is_newest_first_with_limit_default_100_and_max_1000(emu, api):
    for i in range(120):
        emu.add_assistant(name=f"A{i}", createdAt=T0 + timedelta(seconds=i))
    status, listed, _ = api("GET", "/assistant")
    assert status == 200 and len(listed) == 100
    assert [a["name"] for a in listed[:3]] == ["A119", "A118", "A117"]
    assert len(api("GET", "/assistant", query={"limit": "1000"})[1]) == 120
    assert api("GET", "/assistant", query={"limit": "0"})[1] == []


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ("1001", "limit must not be greater than 1000"),
        ("-1", "limit must not be less than 0"),
        ("2.5", "limit must be an integer number"),
        ("ten", "limit must be a number conforming to the specified constraints"),
    ],
)
def test_limit_out_of_bounds_is_a_400(api, limit, message):
    status, body, _ = api("GET", "/phone-number", query={"limit": limit})
    assert (status, body) == (400, {"message": [message], "error": "Bad Request", "statusCode": 400})


def test_unknown_query_parameters_are_ignored(api):
    assert api("GET", "/assistant", query={"page": "2", "sortBy": "name"})[0] == 200


@pytest.fixture
def timeline(emu):
    """Five assistants created one minute apart; each updated 30 s after its creation."""
    for i in range(5):
        created = T0 + timedelta(minutes=i)
        emu.add_assistant(name=f"A{i}", createdAt=created, updatedAt=created + timedelta(seconds=30))
    return lambda i, seconds=0: iso(T0 + timedelta(minutes=i, seconds=seconds))


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"createdAtGt": (2,)}, ["A4", "A3"]),
        ({"createdAtGe": (2,)}, ["A4", "A3", "A2"]),
        ({"createdAtLt": (2,)}, ["A1", "A0"]),
        ({"createdAtLe": (2,)}, ["A2", "A1", "A0"]),
        ({"updatedAtGt": (2, 30)}, ["A4", "A3"]),
        ({"updatedAtGe": (2, 30)}, ["A4", "A3", "A2"]),
        ({"updatedAtLt": (2, 30)}, ["A1", "A0"]),
        ({"updatedAtLe": (2, 30)}, ["A2", "A1", "A0"]),
        ({"createdAtGe": (1,), "createdAtLt": (4,), "updatedAtLe": (2, 30)}, ["A2", "A1"]),
    ],
)
def test_the_eight_time_filters(api, timeline, filters, expected):
    query = {name: timeline(*at) for name, at in filters.items()}
    assert [a["name"] for a in api("GET", "/assistant", query=query)[1]] == expected


def test_time_filters_accept_iso_variants_and_reject_garbage(api, timeline):
    assert len(api("GET", "/assistant", query={"createdAtGe": "2025-01-01T12:02:00+00:00"})[1]) == 3
    assert len(api("GET", "/assistant", query={"createdAtLt": "2025-01-01"})[1]) == 0
    status, body, _ = api("GET", "/assistant", query={"createdAtGt": "yesterday", "updatedAtLe": "2025-13-01T00:00:00Z"})
    assert status == 400
    assert body["message"] == ["createdAtGt must be a valid ISO 8601 date string", "updatedAtLe must be a valid ISO 8601 date string"]


def test_paging_2500_assistants_across_a_30_item_createdat_tie(emu, api):
    """A cursor on createdAt must be inclusive (Le) and dedupe by id; Lt silently skips tie members."""
    tie = T0 + timedelta(seconds=1500)
    for i in range(2500):
        # newest-first positions 985..1014 share one timestamp: the tie straddles the first page boundary
        emu.add_assistant(name=f"A{i}", createdAt=tie if 1485 <= i < 1515 else T0 + timedelta(seconds=i))
    emu.add_assistant(name="too old", createdAt=T0 - timedelta(days=1))
    floor = {"createdAtGe": iso(T0)}  # a filter active on every page

    def crawl(cursor_op):
        seen, pages, query = {}, 0, {"limit": "1000", **floor}
        while True:
            status, page, _ = api("GET", "/assistant", query=query)
            assert status == 200
            pages += 1
            fresh = [a for a in page if a["id"] not in seen]
            seen.update((a["id"], a) for a in page)
            if len(page) < 1000 or not fresh:
                return seen, pages
            query = {"limit": "1000", **floor, cursor_op: page[-1]["createdAt"]}

    inclusive, pages = crawl("createdAtLe")
    assert len(inclusive) == 2500 and pages == 3
    assert "too old" not in {a["name"] for a in inclusive.values()}
    strict, _ = crawl("createdAtLt")
    assert len(strict) == 2500 - 15  # the tie members after the first page boundary are lost


def test_ties_are_listed_most_recently_inserted_first():
    frozen = VapiEmulator(api_key=KEY, clock=lambda: T0)
    for name in ("first", "second", "third"):
        Api(frozen)("POST", "/assistant", {"name": name})
    listed = Api(frozen)("GET", "/assistant")[1]
    assert [a["name"] for a in listed] == ["third", "second", "first"]
    assert {a["createdAt"] for a in listed} == {"2025-01-01T12:00:00.000Z"}


def test_paginated_list_mode_answers_results_and_metadata(emu, api):
    for i in range(5):
        emu.add_assistant(name=f"A{i}", createdAt=T0 + timedelta(seconds=i))
    emu.paginated_lists = True
    body = api("GET", "/assistant", query={"limit": "2"})[1]
    assert [a["name"] for a in body["results"]] == ["A4", "A3"]
    assert body["metadata"] == {"itemsPerPage": 2, "totalItems": 5, "currentPage": 1, "totalPages": 3, "hasNextPage": True}
    openapi.validate_schema("PaginationMeta", body["metadata"])


# --- assistants: writes and validation ----------------------------------------------------------

def test_create_sets_server_fields(api):
    status, created, _ = api("POST", "/assistant", {"name": "Riley", "model": MODEL, "voice": VOICE})
    assert status == 201
    assert created["orgId"] == DEFAULT_ORG_ID and created["isServerUrlSecretSet"] is False
    assert created["createdAt"] == created["updatedAt"]
    assert len(created["createdAt"]) == len("2025-01-01T12:00:00.000Z") and created["createdAt"].endswith("Z")
    assert api("GET", f"/assistant/{created['id']}")[1] == created


def test_patch_replaces_nested_objects_wholesale(emu, api):
    created = api("POST", "/assistant", {"name": "Riley", "firstMessage": "Hi", "model": MODEL, "voice": VOICE})[1]
    new_model = {"provider": "openai", "model": "gpt-4o", "messages": [{"role": "system", "content": "New prompt"}]}
    status, patched, _ = api("PATCH", f"/assistant/{created['id']}", {"model": new_model})
    assert status == 200
    assert patched["model"] == new_model  # temperature, maxTokens and tools are gone
    assert patched["voice"] == VOICE and patched["firstMessage"] == "Hi"
    assert emu.assistants[created["id"]]["model"] == new_model


def test_patch_null_is_kept_as_null_and_updated_at_strictly_increases():
    emulator = VapiEmulator(api_key=KEY, clock=lambda: T0)
    frozen = Api(emulator)
    created = frozen("POST", "/assistant", {"name": "Riley", "firstMessage": "Hi"})[1]
    first = frozen("PATCH", f"/assistant/{created['id']}", {"firstMessage": None})[1]
    second = frozen("PATCH", f"/assistant/{created['id']}", {"name": "Riley 2"})[1]
    assert first["firstMessage"] is None  # Vapi keeps the key, as null
    assert frozen("GET", f"/assistant/{created['id']}")[1]["firstMessage"] is None
    assert second["firstMessage"] is None and emulator.assistants[created["id"]]["firstMessage"] is None
    assert created["updatedAt"] < first["updatedAt"] < second["updatedAt"]
    assert second["createdAt"] == created["createdAt"]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_read_only_and_unknown_properties_should_not_exist(api, method):
    path = "/assistant" if method == "POST" else f"/assistant/{api('POST', '/assistant', {'name': 'x'})[1]['id']}"
    body = {"id": "x", "orgId": "y", "createdAt": "2025-01-01T00:00:00Z", "updatedAt": None, "isServerUrlSecretSet": False,
            "model": {**MODEL, "foo": 1}}
    status, error, _ = api(method, path, body)
    assert status == 400 and error["error"] == "Bad Request" and error["statusCode"] == 400
    assert error["message"] == [
        "property id should not exist",
        "property orgId should not exist",
        "property createdAt should not exist",
        "property updatedAt should not exist",
        "property isServerUrlSecretSet should not exist",
        "model.property foo should not exist",
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x" * 41}, "name must be shorter than or equal to 40 characters"),
        ({"model": {"model": "gpt-4o"}}, "model.provider must be one of the following values: "),
        ({"model": {"provider": "openai"}}, "model.model must be one of the following values: "),
        ({"model": {**MODEL, "temperature": 3}}, "model.temperature must not be greater than 2"),
        ({"voice": {"provider": "vapi"}}, "voice.voiceId must be a string"),
        ({"firstMessage": 5}, "firstMessage must be a string"),
        ({"clientMessages": ["transcript", "nope"]}, "each value in clientMessages must be one of the following values: "),
        ({"model": {**MODEL, "messages": [{"role": "boss", "content": "x"}]}}, "model.messages.0.role must be one of the following values: "),
    ],
)
def test_constraint_violations_get_class_validator_messages(api, body, message):
    status, error, _ = api("POST", "/assistant", body)
    assert status == 400
    assert any(m.startswith(message) for m in error["message"]), error["message"]


def test_malformed_json_and_non_json_bodies(api):
    status, error, _ = api("POST", "/assistant", raw=b'{"name": ')
    assert status == 400 and error["message"].startswith("Unexpected token in JSON at position")
    # Express only parses application/json: anything else arrives as an empty body
    status, created, _ = api("POST", "/assistant", raw=b'{"name": "x"}', headers={"Authorization": f"Bearer {KEY}", "Content-Type": "text/plain"})
    assert status == 201 and "name" not in created


def test_unknown_ids_and_routes_are_404(api):
    missing = "00000000-0000-4000-8000-000000000000"
    for method in ("GET", "PATCH", "DELETE"):
        status, error, _ = api(method, f"/assistant/{missing}", {} if method == "PATCH" else None)
        assert (status, error) == (404, {"message": "Couldn't Get Assistant. Assistant Not Found", "error": "Not Found", "statusCode": 404})
        assert api(method, f"/phone-number/{missing}", {} if method == "PATCH" else None)[0] == 404
    assert api("GET", "/call")[1] == {"message": "Cannot GET /call", "error": "Not Found", "statusCode": 404}
    assert api("PUT", "/assistant")[0] == 404


def test_delete_returns_the_deleted_assistant_unless_pinned(emu, api):
    created = api("POST", "/assistant", {"name": "Riley"})[1]
    emu.pinned.add(created["id"])
    status, conflict, _ = api("DELETE", f"/assistant/{created['id']}")
    assert status == 409 and conflict["error"] == "assistant_pinned"
    emu.pinned.clear()
    assert api("DELETE", f"/assistant/{created['id']}")[1:2] == (created,)
    assert api("GET", f"/assistant/{created['id']}")[0] == 404
    assert created["id"] not in emu.assistants


# --- phone numbers -------------------------------------------------------------------------------

def test_phone_number_secrets_are_stored_but_never_returned(emu, api):
    body = {"provider": "twilio", "number": "+19724741424", "twilioAccountSid": "AC1", "twilioAuthToken": "tok-secret",
            "twilioApiKey": "SK1", "twilioApiSecret": "api-secret"}
    created = api("POST", "/phone-number", body)[1]
    sip = api("POST", "/phone-number", {"provider": "vapi", "sipUri": "sip:gv@sip.vapi.ai",
                                        "authentication": {"username": "u" * 20, "password": "p" * 20}})[1]
    assert emu.phone_numbers[created["id"]]["twilioAuthToken"] == "tok-secret"
    assert emu.phone_numbers[sip["id"]]["authentication"]["password"] == "p" * 20
    answers = [
        created, sip,
        api("GET", f"/phone-number/{created['id']}")[1],
        api("GET", "/phone-number")[1],
        api("GET", "/v2/phone-number")[1],
        api("PATCH", f"/phone-number/{created['id']}", {"twilioAuthToken": "rotated"})[1],
        api("DELETE", f"/phone-number/{sip['id']}")[1],
    ]
    text = json.dumps(answers)
    for secret in ("tok-secret", "rotated", "api-secret", "p" * 20, "twilioAuthToken", "twilioApiSecret", "authentication"):
        assert secret not in text
    assert created["status"] == "active" and created["smsEnabled"] is True


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"number": "+15550100"}, "provider must be one of the following values: "),
        ({"provider": "twilio", "number": "+15550100", "twilioAccountSid": "AC1"}, "twilioAuthToken or twilioApiKey and twilioApiSecret must be provided"),
        ({"provider": "vonage", "number": "+15550100"}, "credentialId must be a string"),
        ({"provider": "byo-phone-number", "number": "+15550100"}, "credentialId must be a string"),
        ({"provider": "vapi", "number": "+15550100"}, "property number should not exist"),
        ({"provider": "vapi"}, "numberDesiredAreaCode or sipUri must be provided"),
    ],
)
def test_phone_number_create_checks_the_provider_specific_fields(api, body, message):
    status, error, _ = api("POST", "/phone-number", body)
    assert status == 400
    assert any(m.startswith(message) for m in error["message"]), error["message"]


def test_vapi_numbers_get_a_number_in_the_area_code_and_cannot_change_it(api):
    created = api("POST", "/phone-number", {"provider": "vapi", "numberDesiredAreaCode": "682"})[1]
    assert created["number"].startswith("+1682") and len(created["number"]) == 12
    status, error, _ = api("PATCH", f"/phone-number/{created['id']}", {"number": "+19724741424"})
    assert (status, error["message"]) == (400, ["property number should not exist"])


def test_phone_number_assistant_link_can_be_set_and_cleared(emu, api):
    assistant = emu.add_assistant(name="Riley")
    phone = emu.add_phone_number(provider="twilio", number="+19724741424", twilioAccountSid="AC1", twilioAuthToken="t")
    assert api("PATCH", f"/phone-number/{phone['id']}", {"assistantId": assistant["id"]})[1]["assistantId"] == assistant["id"]
    cleared = api("PATCH", f"/phone-number/{phone['id']}", {"assistantId": None, "number": "+19724741425"})[1]
    assert cleared["assistantId"] is None and cleared["number"] == "+19724741425"
    status, error, _ = api("PATCH", f"/phone-number/{phone['id']}", {"provider": "vapi"})
    assert status == 400 and error["message"] == ["provider must be one of the following values: twilio"]


def test_v2_phone_number_pages_sorts_and_searches(emu, api):
    for i in range(7):
        emu.add_phone_number(provider="vapi", number=f"+1682555010{i}", name=f"Line {i}", createdAt=T0 + timedelta(hours=i))
    body = api("GET", "/v2/phone-number", query={"limit": "3", "page": "2"})[1]
    assert [p["name"] for p in body["results"]] == ["Line 3", "Line 2", "Line 1"]
    assert body["metadata"] == {"itemsPerPage": 3, "totalItems": 7, "currentPage": 2, "totalPages": 3, "hasNextPage": True, "sortOrder": "DESC"}
    ascending = api("GET", "/v2/phone-number", query={"limit": "3", "page": "3", "sortOrder": "ASC"})[1]
    assert [p["name"] for p in ascending["results"]] == ["Line 6"] and ascending["metadata"]["hasNextPage"] is False
    assert [p["name"] for p in api("GET", "/v2/phone-number", query={"search": "LINE 4"})[1]["results"]] == ["Line 4"]
    assert api("GET", "/v2/phone-number", query={"createdAtGe": iso(T0 + timedelta(hours=5))})[1]["metadata"]["totalItems"] == 2
    status, error, _ = api("GET", "/v2/phone-number", query={"page": "0", "sortOrder": "UP"})
    assert status == 400
    assert error["message"] == ["page must not be less than 1", "sortOrder must be one of the following values: ASC, DESC"]


# --- faults --------------------------------------------------------------------------------------

def test_rate_limit_answers_429_with_retry_after(emu, api):
    emu.rate_limit = 40
    statuses = [api("GET", "/assistant") for _ in range(45)]
    assert [s for s, _, _ in statuses[:40]] == [200] * 40
    status, body, headers = statuses[40]
    assert status == 429 and body["message"] == "Rate limit exceeded" and body["statusCode"] == 429
    assert int(headers["Retry-After"]) >= 1
    emu.rate_limit = None
    assert api("GET", "/assistant")[0] == 200


def test_error_rate_fails_before_any_write(emu, api):
    emu.error_rate = 1.0
    status, body, _ = api("POST", "/assistant", {"name": "never stored"})
    assert status in (500, 502, 503) and body["statusCode"] == status
    assert not emu.assistants and emu.write_count == 0 and emu.write_attempts == 1
    emu.error_rate = 0.25
    failures = sum(api("GET", "/assistant")[0] >= 500 for _ in range(400))
    assert 60 < failures < 140


def test_fail_next_is_deterministic_and_route_scoped(emu, api):
    emu.fail_next(2, status=503, route="POST /assistant")
    assert api("GET", "/assistant")[0] == 200
    assert [api("POST", "/assistant", {"name": "x"})[0] for _ in range(3)] == [503, 503, 201]
    emu.fail_next(1, status=429)
    status, _, headers = api("GET", "/phone-number")
    assert status == 429 and headers["Retry-After"] == "1"
    emu.fail_next(1, status=500, route="/assistant/{id}")
    assert api("GET", "/assistant")[0] == 200
    assert api("GET", f"/assistant/{next(iter(emu.assistants))}")[1] == {"statusCode": 500, "message": "Internal server error"}


def test_fail_after_apply_loses_the_answer_but_keeps_the_write(emu, api):
    emu.fail_after_apply_next(1, status=502, route="POST /assistant")
    assert api("POST", "/assistant", {"name": "created anyway"})[0] == 502
    assert [a["name"] for a in emu.assistants.values()] == ["created anyway"]
    assert emu.write_count == 1


def test_malformed_next_answers_200_with_truncated_json(emu, api):
    emu.add_assistant(name="Riley")
    emu.malformed_next(1)
    status, headers, payload = emu.handle("GET", "/assistant", {}, AUTH, None)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(payload)
    assert api("GET", "/assistant")[0] == 200


def test_down_and_fail_writes(emu, api):
    emu.down = True
    assert api("GET", "/assistant")[0] == 503
    emu.down = False
    emu.fail_writes = True
    assert api("GET", "/assistant")[0] == 200
    assert api("POST", "/assistant", {"name": "x"})[0] == 503 and not emu.assistants
    emu.fail_writes = False
    assert api("POST", "/assistant", {"name": "x"})[0] == 201


def test_latency_and_slow_next_delay_answers(emu, api):
    emu.latency_ms = 30
    emu.slow_next(1, 0.1)
    started = time.monotonic()
    api("GET", "/assistant")
    assert time.monotonic() - started >= 0.13
    started = time.monotonic()
    api("GET", "/assistant")
    assert 0.03 <= time.monotonic() - started < 0.5


# --- counters --------------------------------------------------------------------------------------

def test_counters_by_route_template(emu, api):
    created = api("POST", "/assistant", {"name": "x"})[1]
    api("PATCH", f"/assistant/{created['id']}", {"name": "y"})
    api("PATCH", f"/assistant/{created['id']}", {"id": "not allowed"})
    api("GET", "/assistant", query={"limit": "5"})
    assert emu.counts == {"POST /assistant": 1, "PATCH /assistant/{id}": 2, "GET /assistant": 1}
    assert emu.requests[-1] == ("GET", "/assistant", {"limit": "5"})
    assert (emu.write_count, emu.write_attempts) == (2, 3)
    emu.reset_counters()
    assert (emu.requests, emu.counts, emu.write_count, emu.write_attempts) == ([], {}, 0, 0)


def test_concurrent_writes_are_safe(emu):
    def create(worker):
        for i in range(25):
            assert Api(emu)("POST", "/assistant", {"name": f"w{worker}-{i}"})[0] == 201

    threads = [threading.Thread(target=create, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(emu.assistants) == 200 and emu.write_count == 200 and emu.counts["POST /assistant"] == 200


# --- direct state access and demo -----------------------------------------------------------------

def test_add_and_edit_bypass_http(emu):
    added = emu.add_assistant(name="Riley", createdAt="2024-05-01T12:00:00.123456Z")
    assert added["createdAt"] == added["updatedAt"] == "2024-05-01T12:00:00.123Z"
    added["name"] = "changed by the caller"
    assert emu.assistants[added["id"]]["name"] == "Riley"
    edited = emu.edit_assistant(added["id"], firstMessage="Hello")
    assert edited["firstMessage"] == "Hello" and edited["updatedAt"] > added["updatedAt"]
    emu.remove_assistant(added["id"])
    assert not emu.assistants and emu.counts == {} and emu.write_count == 0
    with pytest.raises(ValueError):
        emu.add_phone_number(number="+15550100")


def test_demo_org():
    demo = VapiEmulator(seed="demo")
    assert len(demo.assistants) == len(DEMO_ASSISTANTS) == 4
    assert all(a["model"]["provider"] == "openai" and a["model"]["model"] == "gpt-4o" for a in demo.assistants.values())
    numbers = {p["number"]: p for p in demo.phone_numbers.values()}
    assert {"+16826269224", "+19724741424"} <= set(numbers)
    assert numbers["+16826269224"]["assistantId"] in demo.assistants
    assert numbers["+19724741424"]["assistantId"] in demo.assistants
    assert any("assistantId" not in p for p in numbers.values())
    assert set(VapiEmulator(seed="demo").assistants) == set(demo.assistants)  # stable ids across restarts
    assert demo_id("assistant/front-desk") in demo.assistants


# --- transports ------------------------------------------------------------------------------------

BASE = "http://vapi.test"


def test_install_routes_requests_calls_to_the_emulator(emu):
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        emu.install(rsps, BASE)
        created = requests.post(f"{BASE}/assistant", json={"name": "Riley"}, headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
        assert created.status_code == 201
        listed = requests.get(f"{BASE}/assistant", params={"limit": 5}, headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
        assert listed.json()[0]["id"] == created.json()["id"]
        assert requests.delete(f"{BASE}/assistant/{created.json()['id']}", headers={"Authorization": f"Bearer {KEY}"}, timeout=5).ok
    assert emu.requests[1] == ("GET", "/assistant", {"limit": "5"})


def test_install_emulates_a_read_timeout_after_the_write_happened(emu):
    emu.slow_next(1, 5.0)
    with responses.RequestsMock() as rsps:
        emu.install(rsps, f"{BASE}/api")
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(f"{BASE}/api/assistant", json={"name": "x"}, headers={"Authorization": f"Bearer {KEY}"}, timeout=(1, 0.05))
        assert time.monotonic() - started < 1
    assert len(emu.assistants) == 1


@pytest.fixture
def served():
    emulator = VapiEmulator(api_key=KEY, seed="demo")
    server = make_server(emulator, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield emulator, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_wsgi_server_on_a_loopback_port(served):
    emulator, base = served
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {KEY}"
    listed = session.get(f"{base}/assistant", params={"limit": 2}, timeout=5)
    assert listed.status_code == 200 and len(listed.json()) == 2
    phone = next(p for p in emulator.phone_numbers.values() if p["provider"] == "twilio")
    patched = session.patch(f"{base}/phone-number/{phone['id']}", json={"name": "Renamed"}, timeout=5)
    assert patched.json()["name"] == "Renamed" and "twilioAuthToken" not in patched.json()
    assert session.get(f"{base}/assistant", headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
    emulator.slow_next(1, 1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(f"{base}/assistant", timeout=(2, 0.1))
    assert emulator.counts["GET /assistant"] == 3


def test_management_command_serves_and_never_prints_a_configured_key(settings):
    settings.VAPI_API_KEY = "sk-real-looking-secret"
    command, out = EmulatorCommand(), io.StringIO()
    thread = threading.Thread(target=call_command, args=(command, "--port", "0", "--seed", "demo"), kwargs={"stdout": out}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while command.server is None or "listening" not in out.getvalue():
        assert time.monotonic() < deadline, out.getvalue()
        time.sleep(0.01)
    try:
        base = out.getvalue().split("listening on ")[1].split()[0]
        listed = requests.get(f"{base}/phone-number", headers={"Authorization": "Bearer sk-real-looking-secret"}, timeout=5)
        assert listed.status_code == 200 and len(listed.json()) == 3
    finally:
        command.server.shutdown()
        thread.join(5)
    assert "sk-real-looking-secret" not in out.getvalue() and "set; not shown" in out.getvalue()


def test_management_command_prints_the_built_in_key(settings):
    settings.VAPI_API_KEY = ""
    command, out = EmulatorCommand(), io.StringIO()
    thread = threading.Thread(target=call_command, args=(command, "--port", "0"), kwargs={"stdout": out}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while command.server is None or "Accepts" not in out.getvalue():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    command.server.shutdown()
    thread.join(5)
    assert "'emulator-key'" in out.getvalue()


# --- what current Vapi accepts (vapi-server-sdk 3.0.0 types, overlaid on the published OpenAPI) -----

@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"model": {**MODEL, "serviceTier": "priority"}}, id="model.serviceTier"),
        pytest.param({"model": {**MODEL, "speaker": {"instructions": "Speak warmly."}}}, id="openai speaker"),
        pytest.param({"model": {**MODEL, "reasoner": {"skills": []}}}, id="openai reasoner"),
        pytest.param({"model": {**MODEL, "model": "gpt-live-1"}}, id="model gpt-live-1"),
        pytest.param({"voice": {"provider": "deepgram", "voiceId": "asteria", "speed": 1.2, "expressivity": 0.5}},
                     id="deepgram speed and expressivity"),
        pytest.param({"voice": {"provider": "11labs", "voiceId": "burt", "model": "eleven_v4_turbo"}}, id="eleven_v4_turbo"),
        pytest.param({"transcriber": {"provider": "soniox", "endpointSensitivity": 0.4, "confidenceThreshold": 0.6,
                                      "endpointLatencyAdjustmentLevel": 2}}, id="soniox options"),
        pytest.param({"transcriber": {"provider": "assembly-ai", "agentContextAutoUpdateEnabled": True,
                                      "speechModel": "universal-3-6-pro"}}, id="assemblyai options"),
    ],
)
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_fields_and_values_added_since_the_published_document_are_accepted(emu, api, method, body):
    path = "/assistant" if method == "POST" else f"/assistant/{emu.add_assistant(name='Riley')['id']}"
    status, saved, _ = api(method, path, {"name": "Riley", **body})
    assert status == (201 if method == "POST" else 200), saved
    for key, value in body.items():
        assert saved[key] == value and emu.assistants[saved["id"]][key] == value


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": {**MODEL, "serviceTier": 3}}, "model.serviceTier must be"),
        ({"voice": {"provider": "deepgram", "voiceId": "asteria", "speed": "fast"}}, "voice.speed must be a number"),
        ({"model": {**MODEL, "speaker": {"tone": "warm"}}}, "model.speaker.property tone should not exist"),
        ({"transcriber": {"provider": "soniox", "shout": True}}, "transcriber.property shout should not exist"),
        ({"colour": "blue"}, "property colour should not exist"),
    ],
)
def test_what_vapi_rejects_is_still_rejected(api, body, message):
    status, error, _ = api("POST", "/assistant", {"name": "Riley", **body})
    assert status == 400
    assert any(m.startswith(message) for m in error["message"]), error["message"]


def test_a_sent_back_model_deprecations_is_accepted_and_ignored(emu, api):
    deprecations = [{"provider": "openai", "model": "gpt-4o", "deprecationDate": "2026-12-31T00:00:00.000Z"}]
    created = api("POST", "/assistant", {"name": "Riley", "modelDeprecations": deprecations})
    assert created[0] == 201 and "modelDeprecations" not in created[1]
    fetched = {**api("GET", f"/assistant/{created[1]['id']}")[1], "modelDeprecations": deprecations}
    editable = {k: v for k, v in fetched.items() if k not in ("id", "orgId", "createdAt", "updatedAt", "isServerUrlSecretSet")}
    status, patched, _ = api("PATCH", f"/assistant/{created[1]['id']}", {**editable, "name": "Riley 2"})
    assert status == 200 and patched["name"] == "Riley 2" and "modelDeprecations" not in patched
    assert "modelDeprecations" not in emu.assistants[created[1]["id"]]


@pytest.mark.parametrize("resource", ["credential", "tool", "squad"])
def test_resources_not_modelled_list_empty_and_404_by_id(emu, api, resource):
    assert api("GET", f"/{resource}") [:2] == (200, [])
    assert api("GET", f"/{resource}/", query={"limit": "10"})[:2] == (200, [])
    status, error, _ = api("GET", f"/{resource}/00000000-0000-4000-8000-000000000000")
    noun = resource.capitalize()
    assert (status, error) == (404, {"message": f"Couldn't Get {noun}. {noun} Not Found", "error": "Not Found", "statusCode": 404})
    assert api("GET", f"/{resource}", headers={})[0] == 401  # still behind the API key
    emu.paginated_lists = True
    assert api("GET", f"/{resource}")[1]["results"] == []
