"""/api/vapi-sync/: the seed's endpoints, permissions, error shapes, and responses checked
against the served OpenAPI schema. Vapi is the in-process emulator (the `emulator` fixture)."""

import copy
import json

import jsonschema
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agents.models import Agent
from globalvoice.tracking import SyncStatus
from phonenumbers_app.models import PhoneNumber
from vapisync.models import Direction, RunStatus, SyncChange, SyncRecord, SyncRun
from vapisync.services.runs import sync_run_create

from .factories import make_assistant

pytestmark = pytest.mark.django_db

BASE = "/api/vapi-sync/"

# (method, path as the client calls it, path as the schema names it)
ENDPOINTS = [
    ("get", "status", "status"),
    ("get", "health", "health"),
    ("get", "runs/", "runs/"),
    ("get", "runs/1/", "runs/{id}/"),
    ("get", "runs/1/changes/", "runs/{id}/changes/"),
    ("get", "conflicts", "conflicts"),
    ("post", "phone-numbers/from-vapi", "phone-numbers/from-vapi"),
    ("post", "phone-numbers/to-vapi", "phone-numbers/to-vapi"),
    ("post", "assistants/from-vapi", "assistants/from-vapi"),
    ("post", "agents/to-vapi", "agents/to-vapi"),
    ("post", "full", "full"),
    ("post", "runs/1/rollback", "runs/{id}/rollback"),
    ("post", "conflicts/resolve", "conflicts/resolve"),
    ("post", "assistants/delete-in-vapi", "assistants/delete-in-vapi"),
]
READS = [e for e in ENDPOINTS if e[0] == "get"]
TRIGGERS = [e for e in ENDPOINTS if e[0] == "post"]
RESOURCE_ENDPOINTS = [  # path, direction, resource
    ("phone-numbers/from-vapi", "import", "phone_numbers"),
    ("phone-numbers/to-vapi", "export", "phone_numbers"),
    ("assistants/from-vapi", "import", "agents"),
    ("agents/to-vapi", "export", "agents"),
]


# --- Fixtures and helpers ----------------------------------------------------------------------


def _user(username, *perms, is_staff=False):
    user = get_user_model().objects.create_user(username, f"{username}@example.com", f"pw-{username}-123", is_staff=is_staff)
    for dotted in perms:
        app_label, codename = dotted.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


@pytest.fixture
def runner_api(bearer_client):
    """Not staff; holds only vapisync.run_sync."""
    return bearer_client(_user("runner", "vapisync.run_sync"))


@pytest.fixture
def viewer_api(bearer_client):
    """Not staff; holds only vapisync.view_syncrun."""
    return bearer_client(_user("viewer", "vapisync.view_syncrun"))


def remote_writes(emulator) -> int:
    return sum(n for route, n in emulator.counts.items() if not route.startswith("GET"))


def post(client, path, body=None):
    return client.post(BASE + path, body if body is not None else {}, format="json")


def finished(client, response) -> dict:
    """A trigger's 202 (the run executes after the response): the run as its Location shows it now."""
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued" and response["Location"] == response.json()["url"]
    polled = client.get(response["Location"])
    assert polled.status_code == 200
    return polled.json()


def run_post(client, path, body=None) -> dict:
    return finished(client, post(client, path, body))


# --- The OpenAPI schema as the contract -------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi():
    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def _to_json_schema(node):
    """OpenAPI 3.0 -> JSON Schema: `nullable` becomes a null alternative, and objects with
    declared properties refuse undeclared ones (so a response cannot drift from its schema)."""
    if isinstance(node, list):
        return [_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _to_json_schema(v) for k, v in node.items()}
    if "properties" in node and "additionalProperties" not in node:
        node["additionalProperties"] = False
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


def assert_matches_schema(openapi, response, method, schema_path):
    operation = openapi["paths"][BASE + schema_path][method]
    documented = operation["responses"].get(str(response.status_code))
    assert documented, f"{method.upper()} {schema_path} does not document status {response.status_code}"
    schema = documented["content"]["application/json"]["schema"]
    root = {**_to_json_schema(copy.deepcopy(schema)), "components": _to_json_schema(copy.deepcopy(openapi["components"]))}
    jsonschema.validate(response.json(), root, cls=jsonschema.Draft202012Validator)


def test_every_endpoint_is_in_the_schema_once_with_its_shapes(openapi):
    paths = {p for p in openapi["paths"] if p.startswith(BASE)} - {BASE + "webhook"}  # Vapi's, secret-authenticated
    assert paths == {BASE + schema_path for _, _, schema_path in ENDPOINTS}  # aliases hidden
    for method, _, schema_path in ENDPOINTS:
        operation = openapi["paths"][BASE + schema_path][method]
        assert operation["tags"] == ["vapi-sync"]
        assert {"401", "403"} <= set(operation["responses"])
        assert {"bearerAuth": []} in operation["security"]
    for _, _, schema_path in TRIGGERS:
        responses = openapi["paths"][BASE + schema_path]["post"]["responses"]
        assert responses["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Run"}
        assert {"400", "429", "503"} <= set(responses)
    full = openapi["paths"][BASE + "full"]["post"]
    assert full["requestBody"].get("required") is not True  # the seed's curl sends no body
    assert set(full["responses"]) >= {"200", "202", "409"}
    run = openapi["components"]["schemas"]["Run"]["properties"]
    assert {"id", "status", "direction", "dry_run", "trigger", "started_at", "finished_at", "counts", "errors", "plan"} <= set(run)
    counts = openapi["components"]["schemas"]["Counts"]["properties"]
    assert set(counts) == {"created", "updated", "unchanged", "deleted", "conflicts", "failed", "skipped"}
    assert set(openapi["components"]["schemas"]["ImportSyncRequest"]["properties"]) == {"dry_run", "ids", "delta"}
    assert set(openapi["components"]["schemas"]["Error"]["properties"]) >= {"detail", "code", "run_id"}


# --- The seed's curl examples, exactly -------------------------------------------------------------


def test_seed_curl_get_status(emulator, staff_user, openapi):
    make_assistant(emulator, "Support")
    emulator.add_phone_number(provider="vapi", number="+16826269224", name="Main line")
    token = Token.objects.create(user=staff_user).key

    # curl -H "Authorization: Bearer TOKEN" http://127.0.0.1:8000/api/vapi-sync/status
    response = Client().get("/api/vapi-sync/status", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["snapshot"] is None and body["agents"]["vapi"] is None and body["in_sync"] is None  # never compared
    assert emulator.counts == {}  # reading the status never waits on Vapi
    assert_matches_schema(openapi, response, "get", "status")

    # curl -H "Authorization: Bearer TOKEN" "http://127.0.0.1:8000/api/vapi-sync/status?refresh=true"
    response = Client().get("/api/vapi-sync/status?refresh=true", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["in_sync"] is False and body["configured"] is True and body["vapi_error"] is None
    assert body["snapshot"]["fresh"] is True and body["snapshot"]["source"] == "check" and body["vapi_last_ok_at"]
    assert body["agents"]["database"] == 0 and body["agents"]["vapi"] == 1 and body["agents"]["in_sync"] is False
    assert body["phone_numbers"]["vapi"] == 1 and body["phone_numbers"]["would_change"]["created"] == 1
    assert body["last_run"] is None and body["active_run"] is None
    assert_matches_schema(openapi, response, "get", "status")
    assert remote_writes(emulator) == 0


def test_seed_curl_post_full_without_body_or_content_type(emulator, staff_user, openapi):
    support = make_assistant(emulator, "Support")
    emulator.add_phone_number(provider="vapi", number="+16826269224", assistantId=support["id"])
    emulator.add_phone_number(provider="vapi", number="+19724741424")
    token = Token.objects.create(user=staff_user).key

    # curl -X POST -H "Authorization: Bearer TOKEN" http://127.0.0.1:8000/api/vapi-sync/full
    response = Client().generic("POST", "/api/vapi-sync/full", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 202, response.content
    assert_matches_schema(openapi, response, "post", "full")
    run = Client().get(response["Location"], HTTP_AUTHORIZATION=f"Bearer {token}").json()
    assert (run["status"], run["direction"], run["trigger"], run["user"]) == ("succeeded", "full", "api", "staff")
    assert run["resources"] == ["agents", "phone_numbers"]
    assert run["counts"]["agents"]["created"] == 1 and run["counts"]["phone_numbers"]["created"] == 2
    assert run["dry_run"] is False and run["plan"] == [] and run["errors"] == []
    assert run["url"].endswith(f"/api/vapi-sync/runs/{run['id']}/") and run["progress"]["phase"] == "finished"
    assert set(PhoneNumber.objects.values_list("number", flat=True)) == {"+16826269224", "+19724741424"}
    assert PhoneNumber.objects.get(number="+16826269224").agent == Agent.objects.get(vapi_assistant_id=support["id"])

    # ...and the status, stored by the run, now says everything is in sync.
    status = Client().get("/api/vapi-sync/status", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    assert status["in_sync"] is True and status["last_run"]["id"] == run["id"]
    assert status["snapshot"]["run_id"] == run["id"] and status["snapshot"]["source"] == "run"


def test_trailing_slash_variants_answer_too(emulator, staff_api):
    assert staff_api.get(BASE + "status/").status_code == 200
    assert staff_api.get(BASE + "runs").status_code == 200
    assert post(staff_api, "full/", {"dry_run": True}).status_code == 200


# --- Permissions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path, schema_path", ENDPOINTS)
def test_anonymous_gets_401_with_bearer_challenge(anon_api, openapi, method, path, schema_path):
    response = getattr(anon_api, method)(BASE + path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["code"] == "not_authenticated"
    assert_matches_schema(openapi, response, method, schema_path)


@pytest.mark.parametrize("method, path, schema_path", ENDPOINTS)
def test_plain_user_gets_403_everywhere(plain_api, openapi, method, path, schema_path):
    response = getattr(plain_api, method)(BASE + path)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "vapisync." in response.json()["detail"]
    assert_matches_schema(openapi, response, method, schema_path)


@pytest.mark.parametrize("method, path, schema_path", TRIGGERS)
def test_viewer_may_read_but_not_trigger(viewer_api, method, path, schema_path):
    response = post(viewer_api, path, {"dry_run": True})
    assert response.status_code == 403
    assert "vapisync.run_sync" in response.json()["detail"]
    assert not SyncRun.objects.exists()


def test_viewer_reads_status_runs_and_conflicts(emulator, viewer_api):
    SyncRun.objects.create(direction=Direction.IMPORT, trigger="cli", status=RunStatus.SUCCEEDED)
    for path in ("status", "health", "runs/", "conflicts"):
        assert viewer_api.get(BASE + path).status_code == 200, path


def test_run_sync_permission_without_staff_may_trigger(emulator, runner_api):
    make_assistant(emulator, "Support")
    run = run_post(runner_api, "assistants/from-vapi")
    assert run["user"] == "runner" and run["status"] == "succeeded"
    assert runner_api.get(BASE + "runs/").json()["count"] == 1


def test_staff_without_run_sync_may_not_start_or_delete_anything(emulator, bearer_client):
    """One rule (vapisync.permissions): staff status alone neither reads nor starts the sync."""
    remote = make_assistant(emulator, "Orphan")
    client = bearer_client(_user("ops", is_staff=True))
    for _method, path, _ in TRIGGERS:
        body = {"vapi_ids": [remote["id"]]} if path == "assistants/delete-in-vapi" else {}
        response = post(client, path, body)
        assert response.status_code == 403, path
        assert response.json()["code"] == "permission_denied" and "vapisync.run_sync" in response.json()["detail"]
    assert client.get(BASE + "status").status_code == 403
    assert not SyncRun.objects.exists() and remote["id"] in emulator.assistants


def test_session_login_works_and_needs_csrf_for_posts(emulator, staff_user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(staff_user)
    assert client.get(BASE + "status").status_code == 200
    response = client.post(BASE + "full", {}, format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]


# --- Each trigger ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path, direction, resource", RESOURCE_ENDPOINTS)
def test_resource_endpoints_run_their_direction_and_resource(emulator, staff_api, openapi, path, direction, resource):
    make_assistant(emulator, "Remote")
    emulator.add_phone_number(provider="vapi", number="+16826269224")
    Agent.objects.create(name="Local")

    response = post(staff_api, path)

    assert_matches_schema(openapi, response, "post", path)
    run = finished(staff_api, response)
    assert (run["direction"], run["resources"], run["trigger"]) == (direction, [resource], "api")
    assert run["status"] == "succeeded", run["errors"]
    assert list(run["counts"]) == [resource]


def test_import_assistants_creates_agents_and_export_creates_assistants(emulator, staff_api):
    remote = make_assistant(emulator, "Remote")
    local = Agent.objects.create(name="Local")

    assert run_post(staff_api, "assistants/from-vapi")["counts"]["agents"]["created"] == 1
    assert Agent.objects.filter(vapi_assistant_id=remote["id"]).exists()
    assert len(emulator.assistants) == 1  # an import never writes to Vapi

    assert run_post(staff_api, "agents/to-vapi")["counts"]["agents"]["created"] == 1
    local.refresh_from_db()
    assert local.vapi_assistant_id in emulator.assistants


def test_selected_ids_local_and_vapi(emulator, staff_api):
    wanted = make_assistant(emulator, "Wanted")
    make_assistant(emulator, "Other")
    response = post(staff_api, "assistants/from-vapi", {"ids": [wanted["id"]]})
    assert response.status_code == 202
    assert response.json()["selection"]["vapi_ids"] == {"agents": [wanted["id"]]}
    assert list(Agent.objects.values_list("name", flat=True)) == ["Wanted"]

    first, second = Agent.objects.create(name="First"), Agent.objects.create(name="Second")
    response = post(staff_api, "agents/to-vapi", {"ids": [first.pk, str(second.pk)]})  # "7" is a local id too
    assert response.json()["selection"]["local_ids"] == {"agents": [first.pk, second.pk]}
    assert {a["name"] for a in emulator.assistants.values()} == {"Wanted", "Other", "First", "Second"}


def test_full_sync_limited_to_agents_leaves_phone_numbers_out(emulator, staff_api):
    emulator.add_phone_number(provider="vapi", number="+16826269224")
    agent = Agent.objects.create(name="Only me")
    response = post(staff_api, "full", {"agent_ids": [agent.pk]})
    assert response.status_code == 202
    assert response.json()["resources"] == ["agents"]
    assert not PhoneNumber.objects.exists()
    agent.refresh_from_db()
    assert agent.vapi_assistant_id in emulator.assistants


def test_form_encoded_body_is_accepted(emulator, staff_api):
    make_assistant(emulator, "Remote")
    response = staff_api.post(BASE + "assistants/from-vapi", {"dry_run": "true"})  # multipart, like a form
    assert response.status_code == 200 and response.json()["dry_run"] is True
    assert not Agent.objects.exists()


def test_dry_run_changes_nothing_anywhere_and_returns_the_plan(emulator, staff_api, openapi):
    make_assistant(emulator, "Remote only")
    emulator.add_phone_number(provider="vapi", number="+16826269224")
    agent = Agent.objects.create(name="Local only")
    agent.refresh_from_db()
    status_before = agent.sync_status
    emulator.reset_counters()

    response = post(staff_api, "full", {"dry_run": True})

    assert response.status_code == 200
    run = response.json()
    assert run["dry_run"] is True and run["status"] == "succeeded"
    assert {(p["action"], p["label"]) for p in run["plan"]} >= {("create", "Remote only"), ("create", "Local only")}
    assert run["counts"]["agents"]["created"] == 2 and run["counts"]["phone_numbers"]["created"] == 1
    assert_matches_schema(openapi, response, "post", "full")
    assert remote_writes(emulator) == 0
    assert list(Agent.objects.all()) == [agent] and not PhoneNumber.objects.exists()
    agent.refresh_from_db()
    assert agent.vapi_assistant_id is None and agent.sync_status == status_before
    assert not SyncChange.objects.exists() and not SyncRecord.objects.exists()


# --- Errors ---------------------------------------------------------------------------------------------


def test_second_sync_while_one_runs_gets_409_with_its_id(emulator, staff_api, openapi):
    running = sync_run_create(direction=Direction.FULL, trigger="cli")

    response = post(staff_api, "phone-numbers/from-vapi")

    assert response.status_code == 409
    body = response.json()
    assert body == {"detail": body["detail"], "code": "sync_already_running", "run_id": running.pk}
    assert str(running.pk) in body["detail"]
    assert_matches_schema(openapi, response, "post", "phone-numbers/from-vapi")
    assert staff_api.get(BASE + "status").json()["active_run"]["id"] == running.pk
    # A preview does not need the lock.
    assert post(staff_api, "full", {"dry_run": True}).status_code == 200


def test_missing_api_key_gives_503_on_triggers_and_disabled_status(staff_api, settings, openapi):
    settings.VAPI_API_KEY = ""

    response = post(staff_api, "full")
    assert response.status_code == 503
    assert response.json()["code"] == "vapi_not_configured" and "VAPI_API_KEY" in response.json()["detail"]
    assert_matches_schema(openapi, response, "post", "full")

    status = staff_api.get(BASE + "status")
    assert status.status_code == 200 and status.json()["configured"] is False and status.json()["in_sync"] is None
    health = staff_api.get(BASE + "health")
    assert health.status_code == 200 and health.json()["status"] == "disabled"
    assert_matches_schema(openapi, health, "get", "health")
    assert not SyncRun.objects.exists()


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("full", {"dry_run": "maybe"}, "dry_run"),
        ("full", {"dryrun": True}, "dryrun"),
        ("full", {"ids": [1]}, "ids"),
        ("full", {"agent_ids": []}, "agent_ids"),
        ("agents/to-vapi", {"ids": "5"}, "ids"),
        ("agents/to-vapi", {"ids": [True]}, "ids"),
        ("agents/to-vapi", {"ids": [0]}, "ids"),
        ("agents/to-vapi", {"ids": [{"id": 1}]}, "ids"),
        ("agents/to-vapi", {"ids": [999999]}, "ids"),  # no such agent
        ("agents/to-vapi", {"ids": [2**80]}, "ids"),
        ("full", {"agent_ids": list(range(1, 1002))}, "agent_ids"),
        ("conflicts/resolve", {"resource": "agents", "id": 2**80, "keep": "vapi"}, "id"),
        ("full", {"phone_number_ids": ["abc", 999999]}, "phone_number_ids"),
        ("agents/to-vapi", {"delta": True}, "delta"),
        ("assistants/from-vapi", {"delta": True, "ids": ["x"]}, "delta"),
        ("assistants/from-vapi", {"delta": "often"}, "delta"),
        ("conflicts/resolve", {"resource": "agents", "id": 1, "keep": "both"}, "keep"),
        ("conflicts/resolve", {"resource": "calls", "id": 1, "keep": "vapi"}, "resource"),
        ("conflicts/resolve", {"resource": "agents", "keep": "vapi"}, "id"),
        ("assistants/delete-in-vapi", {}, "vapi_ids"),
        ("assistants/delete-in-vapi", {"vapi_ids": []}, "vapi_ids"),
        ("runs/1/rollback", {"force": True}, "force"),
        ("phone-numbers/from-vapi", [1, 2], "non_field_errors"),
    ],
)
def test_bad_bodies_get_400_with_field_errors(emulator, staff_api, openapi, path, body, field):
    SyncRun.objects.create(pk=1, direction=Direction.IMPORT, trigger="cli", status=RunStatus.SUCCEEDED)
    response = post(staff_api, path, body)
    assert response.status_code == 400, response.content
    error = response.json()
    assert error["code"] == "invalid" and field in error["errors"]
    assert error["detail"].startswith("Invalid request: ") and (field in error["detail"] or field == "non_field_errors")
    schema_path = "runs/{id}/rollback" if path.startswith("runs/") else path
    assert_matches_schema(openapi, response, "post", schema_path)
    assert SyncRun.objects.count() == 1


def test_malformed_json_and_json_sent_as_a_form_get_400(staff_api):
    response = staff_api.generic("POST", BASE + "full", '{"dry_run": tru', content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "parse_error"
    # curl -d '{"dry_run": true}' without -H 'Content-Type: application/json' sends a form.
    response = staff_api.generic("POST", BASE + "full", '{"dry_run": true}', content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "Content-Type: application/json" in response.json()["detail"]
    assert not SyncRun.objects.exists()


def test_deeply_nested_json_is_a_400_not_a_crash(staff_api):
    response = staff_api.generic("POST", BASE + "full", b"[" * 100_000 + b"]" * 100_000, content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "parse_error"


@pytest.mark.parametrize("path", ["runs/abc/", "runs/99999999999999999999999/", "runs/%EF%BC%91/", "nowhere", "runs/1/x"])
def test_unknown_paths_and_odd_run_ids_are_json_404s(staff_api, path):
    response = staff_api.get(BASE + path)
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert post(staff_api, "runs/99999999999999999999999/rollback").json()["code"] == "not_found"


def test_bad_query_parameters_get_400(staff_api):
    assert staff_api.get(BASE + "runs/?status=sleeping").json()["code"] == "invalid"
    assert staff_api.get(BASE + "status?remote=perhaps").status_code == 400


def test_trigger_endpoints_are_throttled_reads_are_not(emulator, staff_api, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"vapi_sync": "2/minute"}}
    assert post(staff_api, "full", {"dry_run": True}).status_code == 200
    assert post(staff_api, "agents/to-vapi", {"dry_run": True}).status_code == 200
    response = post(staff_api, "full", {"dry_run": True})
    assert response.status_code == 429
    assert response.json()["code"] == "throttled" and int(response["Retry-After"]) > 0
    for _ in range(3):
        assert staff_api.get(BASE + "runs/").status_code == 200


# --- Queued for a worker ---------------------------------------------------------------------------------


def test_with_a_broker_the_run_is_queued_and_answers_202(emulator, staff_api, settings, openapi,
                                                         django_capture_on_commit_callbacks):
    settings.CELERY_BROKER_URL = "memory://"

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(staff_api, "full")

    assert response.status_code == 202, response.content
    run = response.json()
    assert run["status"] == "queued" and run["started_at"] is None
    assert response["Location"] == run["url"]
    assert len(callbacks) == 1  # the worker is asked only after commit; nothing was sent here
    assert_matches_schema(openapi, response, "post", "full")
    polled = staff_api.get(run["url"])
    assert polled.status_code == 200 and polled.json()["status"] == "queued"
    # A preview is never queued.
    assert post(staff_api, "full", {"dry_run": True}).status_code == 200


# --- Runs, rollback -------------------------------------------------------------------------------------------


def test_runs_list_detail_and_changes(emulator, staff_api, openapi):
    for i in range(3):
        make_assistant(emulator, f"Remote {i}")
    imported = post(staff_api, "assistants/from-vapi").json()
    post(staff_api, "full", {"dry_run": True})

    listing = staff_api.get(BASE + "runs/")
    assert listing.status_code == 200
    assert listing.json()["count"] == 2 and listing.json()["results"][1]["id"] == imported["id"]
    assert_matches_schema(openapi, listing, "get", "runs/")
    assert staff_api.get(BASE + "runs/?dry_run=true").json()["count"] == 1
    assert staff_api.get(BASE + "runs/?direction=import&status=succeeded").json()["count"] == 1

    detail = staff_api.get(f"{BASE}runs/{imported['id']}/")
    assert detail.status_code == 200
    body = detail.json()
    assert body["changes_count"] == 3 and {c["label"] for c in body["changes"]} == {"Remote 0", "Remote 1", "Remote 2"}
    assert all(c["action"] == "create" and c["side"] == "local" for c in body["changes"])
    assert_matches_schema(openapi, detail, "get", "runs/{id}/")

    changes = staff_api.get(body["changes_url"] + "?resource=agents")
    assert changes.json()["count"] == 3 and {c["resource"] for c in changes.json()["results"]} == {"agents"}
    assert staff_api.get(body["changes_url"] + "?resource=assistants").json()["count"] == 3  # the old name, as an alias
    assert staff_api.get(body["changes_url"] + "?resource=phone_numbers").json()["count"] == 0
    assert_matches_schema(openapi, changes, "get", "runs/{id}/changes/")

    missing = staff_api.get(BASE + "runs/999999/")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert_matches_schema(openapi, missing, "get", "runs/{id}/")


def test_rollback_through_the_api(emulator, runner_api, openapi):
    make_assistant(emulator, "Imported")
    imported = post(runner_api, "assistants/from-vapi").json()
    assert Agent.objects.count() == 1

    response = post(runner_api, f"runs/{imported['id']}/rollback")

    assert response.status_code == 202, response.content  # a rollback is a run: it leaves the request
    assert_matches_schema(openapi, response, "post", "runs/{id}/rollback")
    rollback = runner_api.get(response["Location"]).json()
    assert (rollback["direction"], rollback["rollback_of"], rollback["status"]) == ("rollback", imported["id"], "succeeded")
    assert rollback["trigger"] == "api" and rollback["user"] == "runner"
    assert not Agent.objects.exists()

    again = post(runner_api, f"runs/{imported['id']}/rollback")
    assert again.status_code == 400 and again.json()["code"] == "rollback_not_possible"
    assert f"already rolled back by run {rollback['id']}" in again.json()["detail"]


def test_rollback_refusals(emulator, staff_api, openapi):
    preview = post(staff_api, "full", {"dry_run": True}).json()
    response = post(staff_api, f"runs/{preview['id']}/rollback")
    assert response.status_code == 400 and response.json()["code"] == "rollback_not_possible"
    assert "dry run" in response.json()["detail"]
    assert_matches_schema(openapi, response, "post", "runs/{id}/rollback")
    assert post(staff_api, "runs/999999/rollback").status_code == 404


# --- Conflicts and deletions -------------------------------------------------------------------------------------


def test_conflicts_listed_and_resolved_through_the_api(emulator, staff_api, settings, openapi):
    settings.VAPI_SYNC_CONFLICT_POLICY = "manual"
    remote = make_assistant(emulator, "Support")
    post(staff_api, "assistants/from-vapi")
    agent = Agent.objects.get()
    agent.first_message = "Local greeting"
    agent.save()
    emulator.edit_assistant(remote["id"], firstMessage="Vapi greeting")
    assert run_post(staff_api, "full")["counts"]["agents"]["conflicts"] == 1

    listing = staff_api.get(BASE + "conflicts")
    assert listing.status_code == 200
    conflict = listing.json()["results"][0]
    assert (conflict["resource"], conflict["id"], conflict["vapi_id"]) == ("agents", agent.pk, remote["id"])
    assert conflict["diff"] == {"first_message": ["Local greeting", "Vapi greeting"]}
    assert_matches_schema(openapi, listing, "get", "conflicts")

    response = post(staff_api, "conflicts/resolve", {"resource": "agents", "id": agent.pk, "keep": "local"})

    assert response.status_code == 200, response.content
    assert response.json()["direction"] == "resolve" and response.json()["status"] == "succeeded"
    assert_matches_schema(openapi, response, "post", "conflicts/resolve")
    assert emulator.assistants[remote["id"]]["firstMessage"] == "Local greeting"
    agent.refresh_from_db()
    assert agent.sync_status == SyncStatus.SYNCED
    assert staff_api.get(BASE + "conflicts").json()["count"] == 0

    again = post(staff_api, "conflicts/resolve", {"resource": "agents", "id": agent.pk, "keep": "vapi"})
    assert again.status_code == 400 and again.json()["code"] == "no_conflict"
    missing = post(staff_api, "conflicts/resolve", {"resource": "phone_numbers", "id": 999999, "keep": "vapi"})
    assert missing.status_code == 404


def test_delete_in_vapi_of_a_locally_deleted_agent(emulator, staff_api, openapi):
    kept = make_assistant(emulator, "Kept")
    gone = make_assistant(emulator, "Gone")
    post(staff_api, "assistants/from-vapi")
    Agent.objects.get(vapi_assistant_id=gone["id"]).delete()

    response = post(staff_api, "assistants/delete-in-vapi", {"vapi_ids": [gone["id"], kept["id"]]})

    assert response.status_code == 200, response.content
    run = response.json()
    assert run["direction"] == "delete" and run["counts"]["agents"]["deleted"] == 1
    assert run["counts"]["agents"]["failed"] == 1  # "Kept" still has its agent here
    assert_matches_schema(openapi, response, "post", "assistants/delete-in-vapi")
    assert set(emulator.assistants) == {kept["id"]}


# --- Health -----------------------------------------------------------------------------------------------------------


def test_health_reports_vapi_database_and_broker(emulator, staff_api, openapi):
    response = staff_api.get(BASE + "health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["vapi"]["configured"] is True and body["vapi"]["reachable"] is True
    assert body["database"]["ok"] is True and body["broker"]["mode"] == "in-process"
    assert "test-vapi-key" not in response.content.decode()
    assert_matches_schema(openapi, response, "get", "health")


def test_health_is_503_when_vapi_refuses_the_key(emulator, staff_api, settings, openapi):
    settings.VAPI_API_KEY = "wrong-key"
    response = staff_api.get(BASE + "health")
    assert response.status_code == 503
    assert response.json()["status"] == "degraded" and response.json()["vapi"]["reachable"] is False
    assert "wrong-key" not in response.content.decode()
    assert_matches_schema(openapi, response, "get", "health")
