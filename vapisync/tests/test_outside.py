"""The outside of the sync, the same everywhere: one permission rule (API, admin, CLI), one public name
per resource, one error shape on every /api/ error, and the user who caused a run."""

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from agents.models import Agent
from globalvoice.tracking import SyncStatus
from phonenumbers_app.models import PhoneNumber
from vapisync.actor import acting_as
from vapisync.models import SyncRun, Trigger

from .factories import make_assistant

pytestmark = pytest.mark.django_db

SYNC = "/api/vapi-sync/"
ADMIN_RUN = "/admin/vapisync/sync/run/"


def make_user(username, *perms, is_staff=False):
    user = get_user_model().objects.create_user(username, f"{username}@example.com", f"pw-{username}-123", is_staff=is_staff)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def vapi_sync(*args):
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("vapi_sync", *args, stdout=out, stderr=err)
        return out.getvalue(), err.getvalue(), 0
    except CommandError as exc:
        return out.getvalue(), str(exc), exc.returncode


# --- One permission rule ------------------------------------------------------------------------


def test_staff_without_run_sync_may_start_nothing_in_the_api_the_admin_or_the_cli(emulator, client, bearer_client):
    remote = make_assistant(emulator, "Orphan")
    ops = make_user("ops", "view_syncrun", is_staff=True)

    api = bearer_client(ops)
    assert api.get(SYNC + "status?remote=false").status_code == 200  # reading is allowed
    assert api.post(SYNC + "full", {"dry_run": True}, format="json").status_code == 403
    assert api.post(SYNC + "assistants/delete-in-vapi", {"vapi_ids": [remote["id"]]}, format="json").status_code == 403

    client.force_login(ops)
    assert client.post(ADMIN_RUN, {"operation": "full"}).status_code == 403
    deleting = client.post("/admin/vapisync/sync/delete-in-vapi/", {"vapi_id": remote["id"], "post": "yes"})
    assert deleting.status_code == 403

    out, err, code = vapi_sync("full", "--user", "ops")
    assert code == 2 and "vapisync.run_sync" in err
    out, err, code = vapi_sync("delete-in-vapi", remote["id"], "--no-input", "--user", "ops")
    assert code == 2

    assert not SyncRun.objects.exists() and remote["id"] in emulator.assistants


def test_run_sync_without_staff_starts_syncs_in_the_api_and_the_cli(emulator, bearer_client):
    make_assistant(emulator, "Support")
    runner = make_user("runner", "run_sync")

    response = bearer_client(runner).post(SYNC + "full", {"dry_run": True}, format="json")
    assert response.status_code == 200 and response.json()["user"] == "runner"

    out, err, code = vapi_sync("import", "--resource", "agents", "--user", "runner", "--json")
    assert code == 0, err
    assert json.loads(out)["user"] == "runner"
    assert SyncRun.objects.filter(user=runner).count() == 2


def test_staff_with_run_sync_starts_a_run_from_the_admin_page(emulator, client):
    make_assistant(emulator, "Support")
    operator = make_user("operator", "run_sync", is_staff=True)
    client.force_login(operator)
    response = client.post(ADMIN_RUN, {"operation": "full"})
    assert response.status_code == 302
    run = SyncRun.objects.get()
    assert run.user == operator and Agent.objects.filter(name="Support").exists()


def test_schema_and_docs_are_public_and_everything_else_needs_credentials(anon_api):
    assert anon_api.get("/api/schema/").status_code == 200
    assert anon_api.get("/api/docs/").status_code == 200
    for path in ("/api/agents/", "/api/phone-numbers/", SYNC + "status", SYNC + "runs/"):
        response = anon_api.get(path)
        assert response.status_code == 401, path
        assert response.json()["code"] == "not_authenticated" and response["WWW-Authenticate"].startswith("Bearer")


# --- One name per resource ----------------------------------------------------------------------


def test_runs_name_agents_agents_everywhere_and_accept_assistants_as_input(emulator, staff_api):
    make_assistant(emulator, "Remote")
    agent = Agent.objects.create(name="Local")  # not pushed: the test database does not commit
    emulator.fail_next(1, 400, "POST /assistant")

    plan = staff_api.post(SYNC + "full", {"dry_run": True}, format="json").json()
    assert plan["resources"] == ["agents", "phone_numbers"] and set(plan["counts"]) == {"agents", "phone_numbers"}
    assert {item["resource"] for item in plan["plan"]} == {"agents"}

    queued = staff_api.post(SYNC + "agents/to-vapi", {"ids": [agent.pk]}, format="json")
    assert queued.status_code == 202 and queued.json()["resources"] == ["agents"]
    run = staff_api.get(queued["Location"]).json()
    assert run["resources"] == ["agents"] and run["selection"]["local_ids"] == {"agents": [agent.pk]}
    assert [e["resource"] for e in run["errors"]] == ["agents"]

    detail = staff_api.get(run["url"]).json()
    assert {c["resource"] for c in detail["changes"]} <= {"agents"}
    listing = staff_api.get(SYNC + "runs/").json()["results"]
    assert all(set(r["counts"]) <= {"agents", "phone_numbers"} and "assistants" not in r["resources"] for r in listing)
    status = staff_api.get(SYNC + "status?remote=false").json()
    assert set(status["last_run"]["counts"]) == {"agents"}

    kept = staff_api.post(SYNC + "conflicts/resolve", {"resource": "assistants", "id": agent.pk, "keep": "vapi"},
                          format="json")
    assert kept.status_code == 400 and kept.json()["code"] == "no_conflict"  # the alias is understood

    out, _, _ = vapi_sync("runs", "--json")
    assert "assistants" not in json.dumps([r["counts"] for r in json.loads(out)])


# --- One error shape ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/agents/", "/api/phone-numbers/"])
def test_every_error_on_the_domain_resources_has_detail_and_code(staff_api, plain_api, path):
    def shaped(response, status, code):
        assert response.status_code == status, response.content
        body = response.json()
        assert isinstance(body["detail"], str) and body["detail"], body
        assert body["code"] == code, body
        return body

    body = shaped(staff_api.post(path, "{not json", content_type="application/json"), 400, "parse_error")
    assert "JSON parse error" in body["detail"]
    shaped(staff_api.post(path, "name=x", content_type="text/plain"), 415, "unsupported_media_type")
    shaped(staff_api.get(f"{path}999999/"), 404, "not_found")
    shaped(staff_api.get(f"{path}abc/"), 404, "not_found")
    shaped(staff_api.put(path, {}, format="json"), 405, "method_not_allowed")
    shaped(staff_api.get(path, HTTP_ACCEPT="application/xml"), 406, "not_acceptable")
    shaped(plain_api.post(path, {}, format="json"), 403, "permission_denied")
    shaped(APIClient().get(path), 401, "not_authenticated")
    invalid = shaped(staff_api.post(path, {"name": "x" * 41}, format="json"), 400, "invalid")
    assert "name" in invalid["errors"] and invalid["detail"].startswith("Invalid request: ")
    shaped(staff_api.post(path, "[1, 2]", content_type="application/json"), 400, "invalid")


def test_sync_endpoint_errors_keep_the_same_shape(staff_api):
    for response, code in (
        (staff_api.post(SYNC + "full", "{", content_type="application/json"), "parse_error"),
        (staff_api.get(SYNC + "full"), "method_not_allowed"),
        (staff_api.get(SYNC + "runs/424242/"), "not_found"),
        (staff_api.get(SYNC + "nowhere"), "not_found"),
        (staff_api.post(SYNC + "full", {"dryrun": True}, format="json"), "invalid"),
    ):
        assert response.json()["code"] == code and response.json()["detail"], response.content


# --- The user who caused a run ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_api_save_records_its_user_on_the_automatic_push(emulator, bearer_client):
    alice = make_user("alice", "add_agent", "change_agent")
    api = bearer_client(alice)

    created = api.post("/api/agents/", {"name": "Reception", "system_prompt": "Be brief."}, format="json")
    assert created.status_code == 201
    run = SyncRun.objects.get()
    assert (run.trigger, run.user) == (Trigger.SIGNAL, alice)
    agent = Agent.objects.get()
    assert agent.sync_status == SyncStatus.SYNCED and agent.vapi_assistant_id in emulator.assistants


@pytest.mark.django_db(transaction=True)
def test_an_admin_save_records_its_user_on_the_automatic_push(emulator, client):
    bob = make_user("bob", "add_agent", "change_agent", "view_agent", is_staff=True)
    client.force_login(bob)
    response = client.post("/admin/agents/agent/add/", {
        "name": "From admin", "system_prompt": "Greet.", "first_message": "Hello", "model_provider": "openai",
        "model": "gpt-4o", "voice_provider": "vapi", "voice_id": "Elliot",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    assert SyncRun.objects.get().user == bob


@pytest.mark.django_db(transaction=True)
def test_a_save_outside_any_request_records_no_user(emulator):
    Agent.objects.create(name="From a script")
    assert SyncRun.objects.get().user is None
    carol = make_user("carol")
    with acting_as(carol):  # what the middleware and the worker do around a request or task
        Agent.objects.create(name="On behalf of carol")
    assert SyncRun.objects.order_by("id").last().user == carol


def test_the_cli_records_the_os_user_or_user(emulator, monkeypatch):
    make_assistant(emulator, "Support")
    dana = make_user("dana", "run_sync")
    erin = make_user("erin", "run_sync")
    monkeypatch.setenv("LOGNAME", "dana")

    out, err, code = vapi_sync("import", "--json")
    assert code == 0, err
    assert json.loads(out)["user"] == "dana"
    out, err, code = vapi_sync("full", "--dry-run", "--json", "--user", "erin")
    assert code == 0, err
    assert json.loads(out)["user"] == "erin"
    assert list(SyncRun.objects.order_by("id").values_list("user", flat=True)) == [dana.pk, erin.pk]

    out, err, code = vapi_sync("full", "--user", "nobody")
    assert code == 2 and "no user of that name" in err
    monkeypatch.setenv("LOGNAME", "someone-without-a-django-user")
    out, err, code = vapi_sync("full", "--json")
    assert code == 0 and json.loads(out)["user"] is None
    assert SyncRun.objects.count() == 3


def test_the_cli_refuses_an_os_user_without_run_sync(emulator, monkeypatch):
    make_user("frank", "view_syncrun", is_staff=True)
    monkeypatch.setenv("LOGNAME", "frank")
    out, err, code = vapi_sync("full", "--json")
    assert code == 2 and "may not start syncs" in err and json.loads(out)["code"] == "permission_denied"
    assert not SyncRun.objects.exists() and not PhoneNumber.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_push_made_by_a_worker_records_the_user_who_saved(emulator, settings, bearer_client):
    """With a broker the push runs in a Celery worker: the saving user travels in the task's headers."""
    from celery.contrib.testing.worker import start_worker

    from globalvoice.celery import app

    settings.CELERY_BROKER_URL = "memory://"
    alice = make_user("alice", "add_agent")
    saved = {k: app.conf[k] for k in ("task_always_eager", "broker_url", "result_backend", "task_default_queue")}
    app.conf.update(task_always_eager=False, broker_url="memory://", result_backend="cache+memory://",
                    task_default_queue="actor-test")
    _forget_connections(app)  # pools and queues made earlier in this process follow the previous settings
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            response = bearer_client(alice).post("/api/agents/", {"name": "Queued"}, format="json")
            assert response.status_code == 201
            run = _wait_for_run()
    finally:
        app.conf.update(saved)
        _forget_connections(app)
    assert (run.trigger, run.user, run.status) == (Trigger.SIGNAL, alice, "succeeded")


def _forget_connections(app):
    """The app caches its connection pool and its AMQP helper (queues, producer pool): drop both, so the
    next use follows the current settings. Nothing is closed: kombu shares pools process-wide by URL."""
    app._pool = None
    app.__dict__.pop("amqp", None)  # a cached property


def _wait_for_run(timeout=20.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = SyncRun.objects.filter(finished_at__isnull=False).first()
        if run is not None:
            return run
        time.sleep(0.05)
    raise AssertionError("the worker did not run the push")
