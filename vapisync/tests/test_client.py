"""VapiClient against scripted HTTP (`responses`): retries, typed errors, paging, pacing, logging.

Every client here gets a recording sleep, so backoff is asserted, never waited for.
"""

import email.utils
import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses
from responses import matchers
from responses.registries import OrderedRegistry
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from vapi_emulator.faults import TokenBucket
from vapisync.client import VapiClient
from vapisync.exceptions import (
    VapiAuthError,
    VapiConflict,
    VapiError,
    VapiNotConfigured,
    VapiNotFound,
    VapiProtocolError,
    VapiRateLimited,
    VapiUnavailable,
    VapiValidationError,
)
from vapisync.pacing import ClientStats, RequestPacer
from vapisync.vapi_http import format_vapi_datetime, parse_retry_after, strip_server_fields

BASE = "http://vapi.test"
KEY = "sk-test-0123456789abcdef"


class RecordingSleep:
    """Records each sleep and moves a fake clock forward by it (no real waiting)."""

    def __init__(self):
        self.calls = []
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self, seconds):
        with self._lock:
            self.calls.append(seconds)
            self.now += seconds

    def clock(self):
        with self._lock:
            return self.now


@pytest.fixture
def sleep():
    return RecordingSleep()


@pytest.fixture
def make_client(sleep):
    def make(**kwargs):
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("base_url", BASE)
        kwargs.setdefault("sleep", sleep)
        kwargs.setdefault("clock", sleep.clock)
        return VapiClient(**kwargs)

    return make


@pytest.fixture
def client(make_client):
    return make_client()


def assistant(n, created="2025-01-01T00:00:00.000Z", **extra):
    return {"id": f"a{n}", "orgId": "org", "name": f"Agent {n}", "createdAt": created, "updatedAt": created, **extra}


def connect_refused():
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    return requests.ConnectionError(MaxRetryError(None, f"{BASE}/assistant", reason))


# --- transport basics ------------------------------------------------------------------


@responses.activate
def test_sends_bearer_key_json_and_timeouts(make_client):
    responses.post(f"{BASE}/assistant", json={"id": "a1", "name": "x"}, status=201)
    client = make_client(timeout=(2.0, 7.0))

    assert client.create_assistant({"name": "x"}) == {"id": "a1", "name": "x"}

    request = responses.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Accept"] == "application/json"
    assert json.loads(request.body) == {"name": "x"}
    assert request.req_kwargs["timeout"] == (2.0, 7.0)


def test_session_pool_sized_to_concurrency(make_client):
    client = make_client(max_concurrency=13)
    adapter = client.session.get_adapter(f"{BASE}/assistant")
    assert adapter._pool_maxsize == 13
    assert adapter.max_retries.total == 0  # retries are ours, not urllib3's


def test_repr_and_auth_never_show_key(client):
    assert KEY not in repr(client)
    assert KEY not in repr(client._auth)
    assert KEY not in repr(client.__dict__.get("stats"))


def test_empty_key_is_not_configured():
    with pytest.raises(VapiNotConfigured):
        VapiClient(api_key="")


def test_from_settings_reads_vapi_settings(settings):
    settings.VAPI_TIMEOUT_CONNECT = 3.0
    settings.VAPI_TIMEOUT_READ = 9.0
    settings.VAPI_MAX_CONCURRENCY = 4
    client = VapiClient.from_settings(max_retries=1)
    assert client.base_url == "http://vapi.test"
    assert client._api_key == settings.VAPI_API_KEY
    assert client.timeout == (3.0, 9.0)
    assert client.max_concurrency == 4
    assert client.max_retries == 1


def test_from_settings_without_key_raises(settings):
    settings.VAPI_API_KEY = ""
    with pytest.raises(VapiNotConfigured):
        VapiClient.from_settings()


@responses.activate
def test_ids_are_quoted_and_required(client):
    responses.get(f"{BASE}/assistant/a%2Fb%3F", json={"id": "a/b?"})
    assert client.get_assistant("a/b?") == {"id": "a/b?"}
    with pytest.raises(ValueError):
        client.get_assistant("")  # would otherwise hit the list endpoint


# --- retries -----------------------------------------------------------------------------


@responses.activate(registry=OrderedRegistry)
def test_429_honours_retry_after_seconds(client, sleep):
    responses.get(f"{BASE}/assistant/a1", status=429, headers={"Retry-After": "2"}, json={"message": "Rate limit exceeded"})
    responses.get(f"{BASE}/assistant/a1", json={"id": "a1"})

    assert client.get_assistant("a1") == {"id": "a1"}
    assert sleep.calls == [2.0]
    assert client.stats.snapshot() == {
        "requests": 2,
        "retries": 1,
        "rate_limited": 1,
        "retry_wait": 2.0,
        "pacing_wait": 0.0,
        "waited": 2.0,
    }


@responses.activate(registry=OrderedRegistry)
def test_429_honours_retry_after_http_date(client, sleep):
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    responses.get(f"{BASE}/assistant/a1", status=429, headers={"Retry-After": when})
    responses.get(f"{BASE}/assistant/a1", json={"id": "a1"})

    client.get_assistant("a1")
    assert len(sleep.calls) == 1
    assert 8.0 <= sleep.calls[0] <= 10.0


@responses.activate(registry=OrderedRegistry)
def test_retry_after_is_capped_by_max_retry_wait(make_client, sleep):
    responses.get(f"{BASE}/assistant/a1", status=429, headers={"Retry-After": "3600"})
    responses.get(f"{BASE}/assistant/a1", json={"id": "a1"})

    make_client(max_retry_wait=10).get_assistant("a1")
    assert sleep.calls == [10.0]


@responses.activate(registry=OrderedRegistry)
def test_503_then_200_backs_off_with_jitter(client, sleep):
    responses.get(f"{BASE}/assistant/a1", status=503)
    responses.get(f"{BASE}/assistant/a1", status=502)
    responses.get(f"{BASE}/assistant/a1", json={"id": "a1"})

    assert client.get_assistant("a1") == {"id": "a1"}
    assert len(sleep.calls) == 2
    assert 1.0 <= sleep.calls[0] <= 2.0  # 1 s + jitter
    assert 2.0 <= sleep.calls[1] <= 3.0  # 2 s + jitter


@responses.activate(registry=OrderedRegistry)
def test_read_timeout_on_get_is_retried(client, sleep):
    responses.get(f"{BASE}/assistant/a1", body=requests.ReadTimeout("read timed out"))
    responses.get(f"{BASE}/assistant/a1", json={"id": "a1"})

    assert client.get_assistant("a1") == {"id": "a1"}
    assert len(sleep.calls) == 1


@responses.activate(registry=OrderedRegistry)
def test_patch_and_delete_are_retried_on_503(client):
    responses.patch(f"{BASE}/assistant/a1", status=503)
    responses.patch(f"{BASE}/assistant/a1", json={"id": "a1", "name": "n"})
    responses.delete(f"{BASE}/assistant/a1", status=504)
    responses.delete(f"{BASE}/assistant/a1", json={"id": "a1"})

    assert client.update_assistant("a1", {"name": "n"})["name"] == "n"
    assert client.delete_assistant("a1") == {"id": "a1"}
    assert len(responses.calls) == 4


@responses.activate(registry=OrderedRegistry)
def test_post_503_is_not_retried_and_may_have_applied(client, sleep):
    responses.post(f"{BASE}/assistant", status=503)
    responses.post(f"{BASE}/assistant", json={"id": "dup"})

    with pytest.raises(VapiUnavailable) as caught:
        client.create_assistant({"name": "x"})
    assert caught.value.maybe_applied is True
    assert caught.value.status == 503
    assert "may have been applied" in str(caught.value)
    assert len(responses.calls) == 1
    assert sleep.calls == []


@responses.activate(registry=OrderedRegistry)
def test_post_read_timeout_is_not_retried(client):
    responses.post(f"{BASE}/assistant", body=requests.ReadTimeout("read timed out"))
    responses.post(f"{BASE}/assistant", json={"id": "dup"})

    with pytest.raises(VapiUnavailable) as caught:
        client.create_assistant({"name": "x"})
    assert caught.value.maybe_applied is True
    assert "did not answer POST /assistant" in str(caught.value)
    assert len(responses.calls) == 1


@responses.activate(registry=OrderedRegistry)
def test_post_dropped_connection_is_not_retried(client):
    aborted = requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")))
    responses.post(f"{BASE}/assistant", body=aborted)
    responses.post(f"{BASE}/assistant", json={"id": "dup"})

    with pytest.raises(VapiUnavailable) as caught:
        client.create_assistant({"name": "x"})
    assert caught.value.maybe_applied is True
    assert len(responses.calls) == 1


@responses.activate(registry=OrderedRegistry)
def test_post_429_is_retried(client, sleep):
    responses.post(f"{BASE}/assistant", status=429, headers={"Retry-After": "1"})
    responses.post(f"{BASE}/assistant", json={"id": "a1"}, status=201)

    assert client.create_assistant({"name": "x"}) == {"id": "a1"}
    assert sleep.calls == [1.0]


@pytest.mark.parametrize(
    "failure",
    [connect_refused, lambda: requests.ConnectTimeout("connect timed out")],
    ids=["refused", "connect-timeout"],
)
@responses.activate(registry=OrderedRegistry)
def test_post_connect_failure_is_retried(client, sleep, failure):
    responses.post(f"{BASE}/assistant", body=failure())
    responses.post(f"{BASE}/assistant", json={"id": "a1"}, status=201)

    assert client.create_assistant({"name": "x"}) == {"id": "a1"}
    assert len(responses.calls) == 2
    assert len(sleep.calls) == 1


@responses.activate
def test_connect_failures_exhausted_did_not_apply(make_client):
    responses.post(f"{BASE}/assistant", body=connect_refused())

    with pytest.raises(VapiUnavailable) as caught:
        make_client(max_retries=2).create_assistant({"name": "x"})
    assert caught.value.maybe_applied is False
    assert "Could not connect to Vapi at http://vapi.test" in str(caught.value)
    assert "gave up after 3 attempts" in str(caught.value)
    assert len(responses.calls) == 3


@responses.activate
def test_retries_are_bounded_by_max_retries(make_client, sleep):
    responses.get(f"{BASE}/assistant/a1", status=503)

    with pytest.raises(VapiUnavailable) as caught:
        make_client(max_retries=3).get_assistant("a1")
    assert len(responses.calls) == 4
    assert len(sleep.calls) == 3
    assert caught.value.maybe_applied is False  # a GET applies nothing
    assert "gave up after 4 attempts" in str(caught.value)


@responses.activate
def test_patch_exhausted_may_have_applied(make_client):
    responses.patch(f"{BASE}/assistant/a1", status=500)
    with pytest.raises(VapiUnavailable) as caught:
        make_client(max_retries=1).update_assistant("a1", {"name": "n"})
    assert caught.value.maybe_applied is True


@responses.activate
def test_total_wait_is_bounded_by_max_retry_wait(make_client, sleep):
    responses.get(f"{BASE}/assistant/a1", status=429, headers={"Retry-After": "30"})

    with pytest.raises(VapiRateLimited) as caught:
        make_client(max_retries=10, max_retry_wait=60).get_assistant("a1")
    assert sleep.calls == [30.0, 30.0]  # a third 30 s wait would pass the 60 s budget
    assert len(responses.calls) == 3
    assert caught.value.retry_after == 30.0
    assert caught.value.status == 429


@responses.activate
def test_max_retries_zero_means_one_attempt(make_client, sleep):
    responses.get(f"{BASE}/assistant/a1", status=503)
    with pytest.raises(VapiUnavailable):
        make_client(max_retries=0).get_assistant("a1")
    assert len(responses.calls) == 1
    assert sleep.calls == []


def test_parse_retry_after_forms():
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"Retry-After": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


# --- typed errors ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
@responses.activate
def test_auth_errors(client, status):
    responses.get(f"{BASE}/assistant", status=status, json={"message": "Invalid Key.", "statusCode": status})

    with pytest.raises(VapiAuthError) as caught:
        client.list_assistants()
    message = str(caught.value)
    assert message.startswith(f"Vapi rejected the API key ({status}) for GET /assistant: check VAPI_API_KEY")
    assert "https://api.eu.vapi.ai" in message
    assert caught.value.status == status
    assert len(responses.calls) == 1  # never retried


@responses.activate
def test_not_found(client):
    responses.get(f"{BASE}/phone-number/p1", status=404, json={"message": "Not Found", "statusCode": 404})
    with pytest.raises(VapiNotFound) as caught:
        client.get_phone_number("p1")
    assert caught.value.path == "/phone-number/p1"
    assert caught.value.method == "GET"


@responses.activate
def test_validation_error_carries_vapi_messages(client):
    body = {
        "message": ["name must be shorter than or equal to 40 characters", "property foo should not exist"],
        "error": "Bad Request",
        "statusCode": 400,
    }
    responses.patch(f"{BASE}/assistant/abc", status=400, json=body)

    with pytest.raises(VapiValidationError) as caught:
        client.update_assistant("abc", {"name": "x" * 41, "foo": 1})
    assert str(caught.value) == (
        "Vapi rejected PATCH /assistant/abc: name must be shorter than or equal to 40 characters; "
        "property foo should not exist"
    )
    assert caught.value.messages == body["message"]
    assert caught.value.status == 400
    assert len(responses.calls) == 1


@responses.activate
def test_validation_error_with_string_message_and_422(client):
    responses.post(f"{BASE}/phone-number", status=422, json={"message": "number is invalid", "statusCode": 422})
    with pytest.raises(VapiValidationError) as caught:
        client.create_phone_number({"provider": "byo-phone-number", "number": "12"})
    assert caught.value.messages == ["number is invalid"]


@responses.activate
def test_api_key_is_redacted_from_errors(client):
    echo = {"message": [f"invalid header Authorization: Bearer {KEY}", f"token {KEY} is odd"], "statusCode": 400}
    responses.post(f"{BASE}/assistant", status=400, json=echo)

    with pytest.raises(VapiValidationError) as caught:
        client.create_assistant({"name": "x"})
    error = caught.value
    everything = " ".join([str(error), repr(error), json.dumps(error.details), *error.messages])
    assert KEY not in everything
    assert "[redacted]" in str(error)


@responses.activate
def test_conflict(client):
    responses.delete(f"{BASE}/assistant/a1", status=409, json={"error": "assistant_pinned", "statusCode": 409})
    with pytest.raises(VapiConflict) as caught:
        client.delete_assistant("a1")
    assert "assistant_pinned" in str(caught.value)


@responses.activate
def test_other_4xx_is_a_plain_vapi_error(client):
    responses.get(f"{BASE}/assistant/a1", status=405, body="Method Not Allowed")
    with pytest.raises(VapiError) as caught:
        client.get_assistant("a1")
    assert type(caught.value) is VapiError
    assert "405" in str(caught.value)


@responses.activate
def test_malformed_json_is_a_protocol_error(client, sleep):
    responses.get(f"{BASE}/assistant/a1", body="<html>Cloudflare says hi", content_type="text/html")
    with pytest.raises(VapiProtocolError) as caught:
        client.get_assistant("a1")
    message = str(caught.value)
    assert "GET /assistant/a1" in message
    assert "not valid JSON" in message
    assert "text/html" in message
    assert "VAPI_BASE_URL" in message
    assert len(responses.calls) == 1
    assert sleep.calls == []


@responses.activate
def test_wrong_json_shape_is_a_protocol_error(client):
    responses.get(f"{BASE}/assistant/a1", json=["not", "an", "object"])
    responses.get(f"{BASE}/assistant", json={"unexpected": True})
    with pytest.raises(VapiProtocolError):
        client.get_assistant("a1")
    with pytest.raises(VapiProtocolError, match="expected a list"):
        client.list_assistants()


# --- real sockets: what urllib3 actually raises -------------------------------------------


@pytest.fixture
def slow_server():
    """A local HTTP server that answers every request after 1 s; yields its base URL and a hit counter."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits = []

    class Slow(BaseHTTPRequestHandler):
        def _answer(self):
            hits.append(self.command)
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            time.sleep(1.0)
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"id": "late"}')
            except OSError:
                pass  # the client gave up already

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def test_real_read_timeout_get_retried_post_not(sleep, slow_server):
    base_url, hits = slow_server
    client = VapiClient(api_key=KEY, base_url=base_url, timeout=(2.0, 0.3), max_retries=1, sleep=sleep)

    with pytest.raises(VapiUnavailable) as caught:
        client.get_assistant("a1")
    assert hits == ["GET", "GET"]
    assert caught.value.maybe_applied is False
    assert "within the 0.3 s read timeout" in str(caught.value)

    hits.clear()
    with pytest.raises(VapiUnavailable) as caught:
        client.create_assistant({"name": "x"})
    assert hits == ["POST"]
    assert caught.value.maybe_applied is True


def test_real_connection_refused_post_is_retried(sleep):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = VapiClient(api_key=KEY, base_url=f"http://127.0.0.1:{port}", max_retries=2, sleep=sleep)

    with pytest.raises(VapiUnavailable) as caught:
        client.create_assistant({"name": "x"})
    assert caught.value.maybe_applied is False
    assert client.stats.requests == 3
    assert len(sleep.calls) == 2


# --- payload hygiene -----------------------------------------------------------------------


def test_strip_server_fields_assistant_keeps_unknown_fields():
    remote = assistant(1, latestVersion=3, isServerUrlSecretSet=False, isDeleted=False, analyticsMetadata={}, workflowIds=[], futureField={"x": 1}, voicemailMessage=None)
    payload = strip_server_fields(remote, "assistant")
    assert payload == {"name": "Agent 1", "futureField": {"x": 1}, "voicemailMessage": None}
    assert "id" in remote  # the input is not modified


def test_strip_server_fields_phone_numbers():
    remote = {"id": "p", "orgId": "o", "createdAt": "t", "updatedAt": "t", "status": "active", "provider": "vapi", "number": "+14155550100", "numberDesiredAreaCode": "415", "name": "Main", "assistantId": "a1"}
    assert strip_server_fields(remote, "phone_number") == {"provider": "vapi", "name": "Main", "assistantId": "a1"}
    twilio = dict(remote, provider="twilio", twilioAccountSid="AC1")
    assert strip_server_fields(twilio, "phone-number") == {"provider": "twilio", "number": "+14155550100", "numberDesiredAreaCode": "415", "name": "Main", "assistantId": "a1", "twilioAccountSid": "AC1"}
    # numberDesiredAreaCode is create-only on Vapi-bought numbers
    assert strip_server_fields(remote, "phone_number", for_create=True) == {"provider": "vapi", "numberDesiredAreaCode": "415", "name": "Main", "assistantId": "a1"}
    with pytest.raises(ValueError):
        strip_server_fields(remote, "squad")


@responses.activate
def test_update_sends_a_stripped_full_document(client):
    remote = assistant(7, isServerUrlSecretSet=True, model={"provider": "openai", "model": "gpt-4o"})
    responses.patch(f"{BASE}/assistant/a7", json=remote)
    client.update_assistant("a7", remote)
    assert json.loads(responses.calls[0].request.body) == {"name": "Agent 7", "model": {"provider": "openai", "model": "gpt-4o"}}


# --- listing ---------------------------------------------------------------------------------


def _ts(i):
    """Distinct createdAt per index, larger index = older."""
    return format_vapi_datetime(datetime(2025, 6, 1, tzinfo=UTC) - timedelta(seconds=i))


def _serve_list(items, *, paginated=False, path="/assistant"):
    """A tiny stand-in for Vapi's v1 list: newest first, limit, createdAtLe/Ge, updatedAtGt."""

    def callback(request):
        params = request.params
        chosen = sorted(items, key=lambda a: a["createdAt"], reverse=True)
        if "createdAtLe" in params:
            chosen = [a for a in chosen if a["createdAt"] <= params["createdAtLe"]]
        if "createdAtGe" in params:
            chosen = [a for a in chosen if a["createdAt"] >= params["createdAtGe"]]
        if "updatedAtGt" in params:
            chosen = [a for a in chosen if a["updatedAt"] > params["updatedAtGt"]]
        page = chosen[: int(params.get("limit", 100))]
        body = {"results": page, "metadata": {"itemsPerPage": len(page)}} if paginated else page
        return 200, {}, json.dumps(body)

    responses.add_callback(responses.GET, f"{BASE}{path}", callback=callback)


@pytest.mark.parametrize("paginated", [False, True], ids=["array", "results"])
@responses.activate
def test_lists_every_item_once_across_a_createdat_tie(client, paginated):
    items = [assistant(i, created=_ts(i)) for i in range(25)]
    for i in range(8, 12):  # four items share a timestamp across the first page boundary (10)
        items[i]["createdAt"] = _ts(8)
    _serve_list(items, paginated=paginated)

    listed = client.list_assistants(page_size=10)

    assert sorted(a["id"] for a in listed) == sorted(a["id"] for a in items)
    assert len(listed) == 25
    params = [c.request.params for c in responses.calls]
    assert params[0] == {"limit": "10"}
    assert params[1] == {"limit": "10", "createdAtLe": _ts(8)}  # inclusive bound on the oldest seen
    assert len(responses.calls) == 3  # [a0-a9], [a8-a17] (2 repeats dropped), then the short page [a17-a24]


@responses.activate
def test_exact_multiple_of_page_size_needs_one_more_short_page(client):
    _serve_list([assistant(i, created=_ts(i)) for i in range(20)])
    assert len(client.list_assistants(page_size=10)) == 20
    assert len(responses.calls) == 3  # 10, 10 + 1 repeat, then the short page [a19]


@responses.activate
def test_list_raises_rather_than_loop_when_a_tie_fills_a_page(client):
    items = [assistant(i, created=_ts(0)) for i in range(15)]  # 15 share one createdAt, page of 10
    _serve_list(items)

    listed = []
    with pytest.raises(VapiProtocolError) as caught:
        for item in client.iter_assistants(page_size=10):
            listed.append(item)
    assert len(listed) == 10
    message = str(caught.value)
    assert "share createdAt" in message and "incomplete" in message
    assert len(responses.calls) == 2


@responses.activate
def test_delta_list_filters_by_updated_at(client):
    items = [assistant(i, created=_ts(i)) for i in range(5)]
    items[3]["updatedAt"] = "2025-07-01T00:00:00.000Z"
    _serve_list(items)

    since = datetime(2025, 6, 15, 12, 30, 1, 123456, tzinfo=UTC)
    changed = client.list_assistants(updated_since=since)

    assert [a["id"] for a in changed] == ["a3"]
    assert responses.calls[0].request.params == {"limit": "1000", "updatedAtGt": "2025-06-15T12:30:01.123Z"}


@responses.activate
def test_phone_numbers_list_and_crud_paths(client):
    _serve_list([{"id": "p1", "createdAt": _ts(1), "updatedAt": _ts(1), "number": "+1"}], path="/phone-number")
    responses.patch(f"{BASE}/phone-number/p1", json={"id": "p1", "name": "Main"})
    responses.delete(f"{BASE}/phone-number/p1", json={"id": "p1"})
    responses.post(f"{BASE}/phone-number", json={"id": "p2"}, status=201)

    assert [p["id"] for p in client.list_phone_numbers()] == ["p1"]
    assert client.update_phone_number("p1", {"id": "p1", "status": "active", "name": "Main"}) == {"id": "p1", "name": "Main"}
    assert json.loads(responses.calls[1].request.body) == {"name": "Main"}
    assert client.delete_phone_number("p1") == {"id": "p1"}
    assert client.create_phone_number({"provider": "byo-phone-number", "number": "+1"}) == {"id": "p2"}


def test_format_vapi_datetime():
    assert format_vapi_datetime(datetime(2025, 1, 2, 3, 4, 5, 678999, tzinfo=UTC)) == "2025-01-02T03:04:05.678Z"
    cet = datetime(2025, 1, 2, 4, 4, 5, tzinfo=UTC).astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert format_vapi_datetime(cet) == "2025-01-02T04:04:05.000Z"
    with pytest.raises(ValueError, match="aware"):
        format_vapi_datetime(datetime(2025, 1, 1))


@pytest.mark.parametrize("bad", [0, 1001])
def test_page_size_bounds(client, bad):
    with pytest.raises(ValueError):
        client.list_assistants(page_size=bad)


@responses.activate
def test_find_assistant_by_metadata(client):
    items = [assistant(i, created=_ts(i), metadata={"globalvoice_id": f"u{i}"}) for i in range(5)]
    items.append(assistant(99, created=_ts(99)))  # no metadata at all
    _serve_list(items)

    found = client.find_assistant_by_metadata("globalvoice_id", "u3", created_since=datetime(2025, 6, 1, tzinfo=UTC))
    assert found["id"] == "a3"
    # searched from 5 minutes before created_since (clock skew margin)
    assert responses.calls[0].request.params["createdAtGe"] == "2025-05-31T23:55:00.000Z"
    assert client.find_assistant_by_metadata("globalvoice_id", "nope") is None


@responses.activate
def test_ping(client):
    responses.get(f"{BASE}/assistant", json=[], match=[matchers.query_param_matcher({"limit": "1"})])
    client.ping()
    responses.replace(responses.GET, f"{BASE}/assistant", status=401, json={"message": "Invalid Key"})
    with pytest.raises(VapiAuthError):
        client.ping()


# --- pacing, concurrency, stats ------------------------------------------------------------


def test_pacer_spaces_requests_with_a_fake_clock():
    now = [100.0]
    slept = []

    def fake_sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    pacer = RequestPacer(4.0, sleep=fake_sleep, clock=lambda: now[0])
    for _ in range(5):
        pacer.wait()
    assert slept == [0.25, 0.25, 0.25, 0.25]
    now[0] += 10  # idle: no debt carried over, no burst beyond one
    assert pacer.wait() == 0
    assert pacer.wait() == 0.25


@responses.activate
def test_rate_limit_paces_requests(make_client, sleep):
    responses.get(f"{BASE}/assistant/a1", json={"id": "a1"})
    client = make_client(rate_limit=10)
    client._pacer._clock = lambda: 50.0  # frozen: the recording sleep does not advance time either
    for _ in range(5):
        client.get_assistant("a1")
    # each request reserves the next slot 0.1 s after the previous one
    assert sleep.calls == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert client.stats.pacing_wait == pytest.approx(sum(sleep.calls))
    assert client.stats.retry_wait == 0


@responses.activate
def test_rate_limit_zero_and_not_adaptive_does_not_pace(client, sleep):
    responses.get(f"{BASE}/assistant/a1", json={"id": "a1"})
    for _ in range(50):
        client.get_assistant("a1")
    assert sleep.calls == []
    assert client.stats.pacing_wait == 0
    assert client.pacing_rate == float("inf")


class FakeTime:
    """A clock that only the pacer's sleeps move forward."""

    def __init__(self):
        self.now = 0.0
        self.slept = []

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds

    def clock(self):
        return self.now


def adaptive_pacer(fake, **kwargs):
    kwargs.setdefault("start_rate", 10.0)
    return RequestPacer(kwargs.pop("rate", 0.0), sleep=fake.sleep, clock=fake.clock, adaptive=True, **kwargs)


def test_adaptive_pacer_starts_safe_and_speeds_up_while_answers_are_clean():
    fake = FakeTime()
    pacer = adaptive_pacer(fake)
    assert pacer.rate == 10.0
    while fake.now < 1.0:  # one caller, back to back: the pacer is what holds it
        pacer.succeeded(pacer.reserve())
    assert 25 < pacer.rate < 35  # slow start: about x3 a second
    while fake.now < 2.0:
        pacer.succeeded(pacer.reserve())
    assert 70 < pacer.rate < 100


def test_adaptive_pacer_does_not_speed_up_when_it_holds_nothing_back():
    fake = FakeTime()
    pacer = adaptive_pacer(fake)
    for _ in range(100):
        fake.now += 1.0  # the caller is slower than the pacer (one request a second)
        slot = pacer.reserve()
        assert not slot.held
        pacer.succeeded(slot)
    assert pacer.rate == 10.0


def test_lone_requests_are_not_held_until_the_first_429():
    fake = FakeTime()
    pacer = adaptive_pacer(fake, start_rate=2.0)
    for _ in range(10):  # one at a time, each answered before the next: paging through a list
        slot = pacer.reserve()
        assert not slot.held
        fake.now += 0.01
        pacer.succeeded(slot)
        pacer.release()
    first = pacer.reserve()
    second = pacer.reserve()  # a second one while the first is in flight is paced
    assert second.waited == pytest.approx(0.5)
    pacer.rate_limited(second, None)
    pacer.release()
    pacer.release()
    assert first.sent_at < second.sent_at
    lone = pacer.reserve()  # after a 429, even a lone request keeps the pace
    assert lone.held


def test_adaptive_pacer_never_exceeds_the_configured_ceiling():
    fake = FakeTime()
    pacer = adaptive_pacer(fake, rate=20.0, start_rate=50.0)
    assert pacer.rate == 20.0
    while fake.now < 5.0:
        slot = pacer.reserve()  # one at a time: with a ceiling, even lone requests keep to it
        pacer.succeeded(slot)
        pacer.release()
    assert pacer.rate == 20.0
    assert fake.slept[-1] == pytest.approx(0.05)
    pacer.rate_limited(pacer.reserve(), None)
    assert pacer.rate <= 20.0


def test_429_cuts_the_rate_once_per_episode_then_probes_additively():
    fake = FakeTime()
    pacer = adaptive_pacer(fake)
    slots = []
    while fake.now < 2.0:
        slot = pacer.reserve()
        slots.append(slot)
        pacer.succeeded(slot)
    before = pacer.rate
    accepted = len(slots) / fake.now
    pacer.rate_limited(slots[-1], None)
    cut = pacer.rate
    assert cut == pytest.approx(min(0.7 * before, accepted), rel=0.02)
    assert not pacer.slow_start and pacer.cuts == 1

    pacer.rate_limited(slots[-2], None)  # sent before the cut: same episode, no second cut
    assert pacer.rate == cut and pacer.cuts == 1

    start = fake.now
    while fake.now < start + 1.0:
        pacer.succeeded(pacer.reserve())
    assert pacer.rate == pytest.approx(cut * 1.1, rel=0.02)  # + a tenth of the cut rate per second

    pacer.rate_limited(pacer.reserve(), None)  # a request sent after the cut: a new episode
    assert pacer.cuts == 2 and pacer.rate < cut * 1.1


def test_retry_after_pauses_every_caller_even_one_already_waiting_for_its_slot():
    fake = FakeTime()
    pacer = adaptive_pacer(fake, start_rate=2.0)
    first = pacer.reserve()
    assert first.waited == 0

    def sleep_during_which_another_thread_gets_a_429(seconds):
        fake.sleep(seconds)
        if len(fake.slept) == 1:
            pacer.rate_limited(first, 3.0)  # at t=0.5: everyone waits until t=3.5

    pacer._sleep = sleep_during_which_another_thread_gets_a_429
    second = pacer.reserve()  # its slot was t=0.5; the pause began while it slept
    assert second.sent_at == pytest.approx(3.5)
    assert fake.now == pytest.approx(3.5)
    third = pacer.reserve()
    assert third.sent_at == pytest.approx(3.5 + 1 / pacer.rate)


def test_the_caller_that_got_the_429_does_not_wait_twice():
    fake = FakeTime()
    pacer = adaptive_pacer(fake)
    slot = pacer.reserve()
    pause = pacer.rate_limited(slot, 2.0)
    fake.sleep(2.0)  # its own retry backoff: Retry-After
    fake.now -= 0.001  # ...measured by a clock a hair behind
    retried = pacer.reserve(waited_out=pause)
    assert retried.waited < 0.2  # one slot at the cut rate, not the pause again


def test_retry_after_pause_is_capped_by_max_pause():
    fake = FakeTime()
    pacer = adaptive_pacer(fake, max_pause=5.0)
    pacer.rate_limited(pacer.reserve(), 3600.0)
    assert pacer.reserve().sent_at == pytest.approx(5.0)


@pytest.mark.parametrize(("limit", "max_share_429"), [(50, 0.01), (10, 0.05), (3, 0.10)])
def test_adaptive_pacer_finds_the_emulators_token_bucket_limit(limit, max_share_429):
    """A minute against the emulator's own token bucket, on a fake clock."""
    fake = FakeTime()
    pacer = adaptive_pacer(fake)
    bucket = TokenBucket(limit, clock=fake.clock)
    accepted = limited = 0
    pause = None
    while fake.now < 60:
        slot = pacer.reserve(waited_out=pause)
        pause = None
        retry_after = bucket.take()
        fake.now += 0.002  # the answer's round trip
        if retry_after:
            limited += 1
            pause = pacer.rate_limited(slot, retry_after)
            pacer.release()
            fake.sleep(retry_after)
        else:
            accepted += 1
            pacer.succeeded(slot)
            pacer.release()
    assert accepted / fake.now >= 0.9 * limit
    assert limited / (accepted + limited) <= max_share_429


@responses.activate(registry=OrderedRegistry)
def test_adaptive_client_cuts_its_rate_and_pauses_on_429(make_client, sleep):
    responses.get(f"{BASE}/assistant/a1", json={"id": "a1"})
    responses.get(f"{BASE}/assistant/a1", status=429, headers={"Retry-After": "2"}, json={"message": "Rate limit exceeded"})
    responses.get(f"{BASE}/assistant/a1", json={"id": "a1"})
    responses.get(f"{BASE}/assistant/a1", json={"id": "a1"})
    client = make_client(adaptive_rate=True, start_rate=4.0, rate_limit=100)
    client.get_assistant("a1")
    sleep.now += 1.0  # the caller's own pace: one request a second
    client.get_assistant("a1")  # 429, retried after Retry-After
    assert client.pacing_rate == pytest.approx(0.7 * 4.0, rel=0.05)
    assert 2.0 in sleep.calls
    sleep.calls.clear()
    client.get_assistant("a1")
    assert sleep.calls == [pytest.approx(1 / (0.7 * 4.0))]  # one slot at the cut rate
    assert client.stats.rate_limited == 1


def test_from_settings_reads_the_pacing_settings(settings):
    settings.VAPI_ADAPTIVE_RATE = True
    settings.VAPI_RATE_START = 7.0
    settings.VAPI_RATE_LIMIT = 30.0
    client = VapiClient.from_settings()
    assert client.adaptive_rate and client.rate_limit == 30.0
    assert client.pacing_rate == 7.0


@responses.activate
def test_map_concurrent_bounds_in_flight_and_keeps_order(make_client):
    in_flight = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def slow(request):
        with lock:
            in_flight["now"] += 1
            in_flight["peak"] = max(in_flight["peak"], in_flight["now"])
        time.sleep(0.02)
        with lock:
            in_flight["now"] -= 1
        object_id = request.path_url.rsplit("/", 1)[1]
        if object_id == "a5":
            return 404, {}, json.dumps({"message": "Not Found"})
        return 200, {}, json.dumps({"id": object_id})

    responses.add_callback(responses.GET, __import__("re").compile(rf"{BASE}/assistant/a\d+"), callback=slow)
    client = make_client(max_concurrency=3)

    results = client.map_concurrent(lambda i: client.get_assistant(f"a{i}"), range(12))

    assert [item for item, _, _ in results] == list(range(12))
    assert [r["id"] for i, r, e in results if e is None] == [f"a{i}" for i in range(12) if i != 5]
    item, result, error = results[5]
    assert result is None and isinstance(error, VapiNotFound)
    assert 1 < in_flight["peak"] <= 3
    assert client.stats.requests == 12


def test_map_concurrent_empty(client):
    assert client.map_concurrent(lambda x: x, []) == []


def test_stats_are_thread_safe():
    stats = ClientStats()

    def bump():
        for _ in range(1000):
            stats.add(requests=1, retry_wait=0.5)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stats["requests"] == 8000
    assert stats.waited == 4000.0
    stats.reset()
    assert stats.requests == 0


# --- logging -----------------------------------------------------------------------------------


@responses.activate(registry=OrderedRegistry)
def test_logs_each_request_and_retries_without_the_key(client, caplog):
    responses.get(f"{BASE}/assistant/a1", status=503, json={"message": f"echo {KEY}"})
    responses.get(f"{BASE}/assistant/a1", json={"id": "a1"})
    responses.post(f"{BASE}/assistant", status=400, json={"message": [f"Bearer {KEY}"]})

    with caplog.at_level(logging.DEBUG):
        client.get_assistant("a1")
        with pytest.raises(VapiValidationError):
            client.create_assistant({"name": "x"})

    records = [r for r in caplog.records if r.name == "vapisync.client"]
    debug = [r.getMessage() for r in records if r.levelno == logging.DEBUG]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert debug[0].startswith("GET /assistant/a1 -> 503 in ") and debug[0].endswith("ms (attempt 1)")
    assert debug[1].startswith("GET /assistant/a1 -> 200 in ") and debug[1].endswith("ms (attempt 2)")
    assert debug[2].startswith("POST /assistant -> 400 in ")
    assert len(warnings) == 1
    assert "503" in warnings[0] and "retrying in" in warnings[0] and "attempt 1 of 6" in warnings[0]
    assert KEY not in caplog.text
    assert "Authorization" not in caplog.text
