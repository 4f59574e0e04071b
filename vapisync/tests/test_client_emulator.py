"""VapiClient against the Vapi emulator: paging at scale, both list shapes, deltas, CRUD, faults,
and real timeouts over a real socket (the emulator's WSGI app on a local threaded server)."""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import responses

from vapi_emulator import VapiEmulator, make_server
from vapisync.client import VapiClient
from vapisync.exceptions import (
    VapiAuthError,
    VapiNotFound,
    VapiProtocolError,
    VapiRateLimited,
    VapiUnavailable,
    VapiValidationError,
)
from vapisync.vapi_http import format_vapi_datetime

from .factories import ManualClock

BASE = "http://vapi.test"
KEY = "emu-secret-key-42"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    return ManualClock(T0)


@pytest.fixture
def emu(clock):
    return VapiEmulator(api_key=KEY, clock=clock)


@pytest.fixture
def slept():
    return []


@pytest.fixture
def client(emu, slept):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        emu.install(rsps, BASE)
        yield VapiClient(api_key=KEY, base_url=BASE, sleep=slept.append)


def _seed_with_tie(emu, total, tie_positions):
    """`total` assistants, newest first by position; those at `tie_positions` share one createdAt."""
    tie_at = T0 - timedelta(seconds=tie_positions.start)
    for position in range(total - 1, -1, -1):  # oldest first, as they would have been created
        created = tie_at if position in tie_positions else T0 - timedelta(seconds=position)
        emu.add_assistant(name=f"Agent {position}", createdAt=format_vapi_datetime(created), metadata={"pos": position})


@pytest.mark.parametrize("paginated", [False, True], ids=["array", "results-metadata"])
def test_lists_2500_assistants_once_across_a_tie_at_the_page_boundary(emu, client, paginated):
    _seed_with_tie(emu, 2500, range(985, 1015))  # 30 share createdAt, straddling item 1000
    emu.paginated_lists = paginated
    emu.reset_counters()

    listed = client.list_assistants()

    ids = [a["id"] for a in listed]
    assert len(ids) == 2500
    assert set(ids) == set(emu.assistants)
    # [0-999], then createdAtLe=<tie> gives [985-1984] (15 repeats dropped), then [1984-2499]: short, done
    assert emu.counts["GET /assistant"] == 3
    assert [query.get("limit") for _, _, query in emu.requests] == ["1000"] * 3
    assert emu.requests[1][2]["createdAtLe"] == format_vapi_datetime(T0 - timedelta(seconds=985))


def test_tie_larger_than_a_page_is_an_error_not_a_loop(emu, client):
    for n in range(12):
        emu.add_assistant(name=f"Same {n}", createdAt=format_vapi_datetime(T0))
    with pytest.raises(VapiProtocolError, match="share createdAt"):
        client.list_assistants(page_size=10)
    assert emu.counts["GET /assistant"] == 2


def test_delta_list_returns_only_updated_items(emu, client, clock):
    ids = [emu.add_assistant(name=f"Agent {n}", createdAt=format_vapi_datetime(T0 - timedelta(hours=n)))["id"] for n in range(20)]
    last_sync = clock.now = T0 + timedelta(minutes=5)
    clock.now = T0 + timedelta(minutes=10)
    emu.edit_assistant(ids[3], name="Renamed 3")
    emu.edit_assistant(ids[17], firstMessage="Hi")

    changed = client.list_assistants(updated_since=last_sync)

    assert sorted(a["id"] for a in changed) == sorted([ids[3], ids[17]])
    assert emu.requests[-1][2]["updatedAtGt"] == "2025-03-01T12:05:00.000Z"


def test_assistant_crud_round_trip_with_full_documents(emu, client):
    created = client.create_assistant({"name": "Front desk", "firstMessage": "Hello", "metadata": {"globalvoice_id": "u-1"}})
    assert created["name"] == "Front desk"
    fetched = client.get_assistant(created["id"])
    assert fetched == created

    # push back the whole remote document: server fields must be stripped or Vapi says "should not exist"
    updated = client.update_assistant(created["id"], {**fetched, "name": "Front desk 2"})
    assert updated["name"] == "Front desk 2"
    assert updated["metadata"] == {"globalvoice_id": "u-1"}
    assert updated["updatedAt"] >= created["updatedAt"]

    assert client.delete_assistant(created["id"])["id"] == created["id"]
    with pytest.raises(VapiNotFound, match="Assistant Not Found"):
        client.get_assistant(created["id"])
    assert emu.counts["POST /assistant"] == 1 and emu.counts["PATCH /assistant/{id}"] == 1


def test_phone_number_crud_round_trip(emu, client):
    created = client.create_phone_number({"provider": "vapi", "numberDesiredAreaCode": "415", "name": "Main line"})
    assert created["number"].startswith("+1415")
    assistant = client.create_assistant({"name": "Reception"})

    updated = client.update_phone_number(created["id"], {**created, "assistantId": assistant["id"]})
    assert updated["assistantId"] == assistant["id"]
    assert updated["number"] == created["number"]

    twilio = client.create_phone_number({"provider": "twilio", "number": "+14155550100", "twilioAccountSid": "AC1", "twilioAuthToken": "tok"})
    assert "twilioAuthToken" not in twilio
    assert client.update_phone_number(twilio["id"], {**twilio, "name": "Sales"})["name"] == "Sales"

    assert {p["id"] for p in client.list_phone_numbers()} == {created["id"], twilio["id"]}
    client.delete_phone_number(created["id"])
    with pytest.raises(VapiNotFound):
        client.get_phone_number(created["id"])


def test_validation_error_from_vapi(client):
    created = client.create_assistant({"name": "Short"})
    with pytest.raises(VapiValidationError) as caught:
        client.update_assistant(created["id"], {"name": "x" * 41})
    assert str(caught.value).startswith(f"Vapi rejected PATCH /assistant/{created['id']}: ")
    assert "name must be shorter than or equal to 40 characters" in caught.value.messages


def test_wrong_key_is_an_auth_error_without_the_key(emu):
    with responses.RequestsMock() as rsps:
        emu.install(rsps, BASE)
        wrong = VapiClient(api_key="wrong-key-123", base_url=BASE, sleep=lambda s: None)
        with pytest.raises(VapiAuthError) as caught:
            wrong.ping()
    assert "wrong-key-123" not in str(caught.value)
    assert "check VAPI_API_KEY" in str(caught.value)


def test_transient_failures_are_retried(emu, client, slept):
    emu.add_assistant(name="A")
    emu.fail_next(2, status=503, route="GET /assistant")
    assert len(client.list_assistants()) == 1
    assert emu.counts["GET /assistant"] == 3
    assert len(slept) == 2

    emu.fail_next(1, status=429, route="POST /assistant")
    client.create_assistant({"name": "B"})
    assert emu.counts["POST /assistant"] == 2
    assert slept[-1] == 1.0  # the emulator's Retry-After


def test_lost_create_answer_is_found_by_marker(emu, client):
    before = T0
    emu.fail_after_apply_next(1, status=502, route="POST /assistant")

    with pytest.raises(VapiUnavailable) as caught:
        client.create_assistant({"name": "Lost", "metadata": {"globalvoice_id": "u-9"}})
    assert caught.value.maybe_applied is True
    assert emu.counts["POST /assistant"] == 1  # never re-sent

    found = client.find_assistant_by_metadata("globalvoice_id", "u-9", created_since=before)
    assert found is not None and found["name"] == "Lost"
    assert len(emu.assistants) == 1


def test_malformed_answer_is_a_protocol_error(emu, client):
    emu.add_assistant(name="A")
    emu.malformed_next(1)
    with pytest.raises(VapiProtocolError, match="not valid JSON"):
        client.list_assistants()


def test_emulated_read_timeout_via_responses(emu, client):
    emu.add_assistant(name="A", id="a-1")
    emu.slow_next(1, 0.3)
    quick = VapiClient(api_key=KEY, base_url=BASE, timeout=(1.0, 0.05), sleep=lambda s: None)
    assert quick.get_assistant("a-1")["id"] == "a-1"
    assert emu.counts["GET /assistant/{id}"] == 2


def test_retries_exhausted_when_vapi_is_down(emu, client, slept):
    emu.down = True
    with pytest.raises(VapiUnavailable, match="gave up after 6 attempts"):
        client.list_assistants()
    assert emu.counts["GET /assistant"] == 6
    assert len(slept) == 5


def test_pacing_keeps_under_the_emulators_rate_limit(emu):
    emu.add_assistant(name="A", id="a-1")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        emu.install(rsps, BASE)

        emu.rate_limit = 5  # burst 5, then 5/s
        unpaced = VapiClient(api_key=KEY, base_url=BASE, max_retries=0, sleep=lambda s: None)
        results = unpaced.map_concurrent(lambda _: unpaced.get_assistant("a-1"), range(10))
        assert any(isinstance(error, VapiRateLimited) for _, _, error in results)
        assert unpaced.stats.rate_limited > 0

        emu.rate_limit = 5  # fresh bucket
        paced = VapiClient(api_key=KEY, base_url=BASE, rate_limit=4, max_retries=0)
        started = time.monotonic()
        results = paced.map_concurrent(lambda _: paced.get_assistant("a-1"), range(8))
        assert [error for _, _, error in results] == [None] * 8
        assert paced.stats.rate_limited == 0
        assert time.monotonic() - started >= 1.5  # 8 requests at 4/s: starts 0.25 s apart
        assert paced.stats.pacing_wait > 0


# --- over a real socket -------------------------------------------------------------------------


@pytest.fixture
def served(emu):
    """The emulator's WSGI app on a threaded local server; yields its base URL."""
    server = make_server(emu, port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_real_read_timeout_get_is_retried(emu, served, slept):
    emu.add_assistant(name="A", id="a-1")
    emu.slow_next(1, 1.0)
    client = VapiClient(api_key=KEY, base_url=served, timeout=(2.0, 0.4), sleep=slept.append)

    assert client.get_assistant("a-1")["id"] == "a-1"
    assert emu.counts["GET /assistant/{id}"] == 2
    assert len(slept) == 1


def test_real_read_timeout_on_create_is_not_retried_and_recoverable(emu, served, slept):
    emu.slow_next(1, 1.0)
    client = VapiClient(api_key=KEY, base_url=served, timeout=(2.0, 0.4), sleep=slept.append)

    with pytest.raises(VapiUnavailable) as caught:
        client.create_assistant({"name": "Slow", "metadata": {"globalvoice_id": "u-slow"}})
    assert caught.value.maybe_applied is True
    assert slept == []
    assert emu.counts["POST /assistant"] == 1

    # the emulator applied the create before its slow answer; the lookup finds it, no second POST
    found = client.find_assistant_by_metadata("globalvoice_id", "u-slow", created_since=T0)
    assert found is not None and found["name"] == "Slow"


def test_concurrent_requests_over_a_pooled_session(emu, served):
    ids = [emu.add_assistant(name=f"A{n}")["id"] for n in range(40)]
    emu.latency_ms = 10
    client = VapiClient(api_key=KEY, base_url=served, max_concurrency=4, sleep=lambda s: None)

    results = client.map_concurrent(client.get_assistant, ids)

    assert [result["id"] for _, result, _ in results] == ids
    assert all(error is None for _, _, error in results)
    assert client.stats.requests == 40
