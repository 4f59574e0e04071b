"""The sync admin through Django's test client, against the in-process Vapi emulator:
the Vapi Sync page, its buttons and JSON endpoints, the change-list actions, rollback,
conflicts, deletions in Vapi, and what must never happen (GET syncing, a 500, the key shown)."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import constants as levels
from django.contrib.messages import get_messages

from agents.models import Agent
from globalvoice.tracking import SyncStatus
from phonenumbers_app.models import PhoneNumber
from vapisync.models import ChangeAction, Direction, Resource, RunStatus, SyncChange, SyncRun
from vapisync.services.runs import sync_run_create, sync_run_start

from .factories import make_assistant

pytestmark = pytest.mark.django_db

PAGE = "/admin/vapisync/sync/"
RUN = PAGE + "run/"
AGENTS = "/admin/agents/agent/"
PHONES = "/admin/phonenumbers_app/phonenumber/"


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def fast_failures(settings):
    """No retry back-off when the emulator is made to fail."""
    settings.VAPI_MAX_RETRIES = 0


def writes(emulator) -> int:
    return emulator.write_attempts


def message_list(response):
    return [(m.level, str(m)) for m in get_messages(response.wsgi_request)]


def import_all(emulator):
    return sync_run_start(direction=Direction.IMPORT, trigger="cli")


def seed(emulator):
    support = make_assistant(emulator, "Support")
    make_assistant(emulator, "Sales", prompt="Sell politely.")
    emulator.add_phone_number(provider="vapi", number="+16826269224", name="Main line", assistantId=support["id"])
    return support


def select(action, *objs, **extra):
    return {"action": action, "_selected_action": [o.pk for o in objs], **extra}


def assert_started_in_background(response, run):
    """A real run answers at once (it ran after the response here): one message linking the run."""
    level, text = message_list(response)[-1]
    assert level == levels.INFO and "runs in the background" in text, text
    assert f'href="/admin/vapisync/syncrun/{run.pk}/change/"' in text


# --- The page ----------------------------------------------------------------------------------


def test_page_is_linked_from_admin_index_and_sidebar(staff):
    index = staff.get("/admin/").content.decode()
    assert f'href="{PAGE}"' in index and "Vapi Sync" in index
    sidebar = staff.get(AGENTS).content.decode()  # nav sidebar on every admin page
    assert f'href="{PAGE}"' in sidebar


def test_page_shows_counts_on_both_sides(staff, emulator):
    seed(emulator)
    Agent.objects.create(name="Local only")
    staff.post(PAGE + "check/")  # compare with Vapi now and store it; the page then reads that

    response = staff.get(PAGE)

    assert response.status_code == 200
    cards = {c["key"]: c for c in response.context["cards"]}
    assert (cards["agents"]["database"], cards["agents"]["vapi"]) == (1, 2)
    assert (cards["phone_numbers"]["database"], cards["phone_numbers"]["vapi"]) == (0, 1)
    assert cards["agents"]["in_sync"] is False
    html = response.content.decode()
    assert "Out of sync" in html and "Not synced yet" in html
    for label in ("Import phone numbers", "Export phone numbers", "Import assistants", "Export agents",
                  "Full Synchronization", "Preview (dry run)"):
        assert f'value="{label}"' in html
    assert "Best practices" in html and 'id="vs-autorefresh"' in html
    assert writes(emulator) == 0 and not SyncRun.objects.exists()  # the status check only reads


def test_page_in_sync_after_full_sync(staff, emulator):
    seed(emulator)
    sync_run_start(direction=Direction.FULL, trigger="cli")
    response = staff.get(PAGE)
    assert response.context["status"]["in_sync"] is True
    assert "In sync" in response.content.decode()


@pytest.mark.parametrize("url", [PAGE, PAGE + "status.json", PAGE + "runs/active.json", "/admin/vapisync/syncrun/"])
def test_non_staff_and_anonymous_are_sent_to_login(client, plain_user, url):
    assert "/admin/login/" in client.get(url)["Location"]
    client.force_login(plain_user)
    response = client.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_non_staff_cannot_post_a_run(client, plain_user, emulator):
    client.force_login(plain_user)
    response = client.post(RUN, {"operation": "full"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not SyncRun.objects.exists() and writes(emulator) == 0


def test_staff_without_run_permission_sees_disabled_buttons_and_gets_403(client, django_user_model, emulator):
    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer-123", is_staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_syncrun"), Permission.objects.get(codename="view_agent"))
    client.force_login(viewer)

    html = client.get(PAGE).content.decode()
    assert "Can run Vapi syncs" in html
    assert all(" disabled" in tag for tag in re.findall(r'<input type="submit"[^>]*>', html))
    assert client.post(RUN, {"operation": "full"}).status_code == 403
    changelist = client.get(AGENTS).content.decode()
    assert "push_to_vapi" not in changelist  # actions need vapisync.run_sync
    assert not SyncRun.objects.exists()


def test_get_never_starts_a_sync(staff, emulator):
    seed(emulator)
    assert staff.get(RUN, {"operation": "full"}).status_code == 405
    assert staff.get(PAGE, {"operation": "full"}).status_code == 200
    assert staff.get(PAGE + "resolve/", {"resource": "assistants", "local_id": 1, "keep": "vapi"}).status_code == 405
    assert not SyncRun.objects.exists() and not Agent.objects.exists() and writes(emulator) == 0


def test_posts_need_csrf_token(client, staff_user, emulator):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(staff_user)
    assert csrf_client.post(RUN, {"operation": "full"}).status_code == 403
    assert not SyncRun.objects.exists()


# --- Buttons ------------------------------------------------------------------------------------


def test_full_synchronization_button_runs_and_reports(staff, emulator, staff_user):
    support = seed(emulator)
    Agent.objects.create(name="Made here")

    response = staff.post(RUN, {"operation": "full"})

    run = SyncRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"{PAGE}?run={run.pk}#progress"
    assert_started_in_background(response, run)
    run.refresh_from_db()
    assert (run.direction, run.trigger, run.user, run.status) == (Direction.FULL, "admin", staff_user, RunStatus.SUCCEEDED)
    assert Agent.objects.count() == 3 and PhoneNumber.objects.get().agent.vapi_assistant_id == support["id"]
    assert len(emulator.assistants) == 3  # "Made here" was created in Vapi
    assert run.progress["phase"] == "finished"

    page = staff.get(f"{PAGE}?run={run.pk}")
    assert page.context["results"]["run"] == run
    html = page.content.decode()
    assert "Results: Full synchronization" in html and f'data-run-id="{run.pk}"' in html


@pytest.mark.parametrize(
    "operation, direction, resources",
    [
        ("import_phone_numbers", Direction.IMPORT, [Resource.PHONE_NUMBERS]),
        ("export_phone_numbers", Direction.EXPORT, [Resource.PHONE_NUMBERS]),
        ("import_assistants", Direction.IMPORT, [Resource.ASSISTANTS]),
        ("export_agents", Direction.EXPORT, [Resource.ASSISTANTS]),
    ],
)
def test_direction_buttons(staff, emulator, operation, direction, resources):
    seed(emulator)
    Agent.objects.create(name="Made here")
    staff.post(RUN, {"operation": operation})
    run = SyncRun.objects.get()
    assert (run.direction, run.resources, run.dry_run) == (direction, resources, False)
    if operation == "import_assistants":
        assert Agent.objects.count() == 3 and writes(emulator) == 0
    if operation == "export_agents":
        assert len(emulator.assistants) == 3 and Agent.objects.count() == 1
    if operation == "import_phone_numbers":
        assert PhoneNumber.objects.count() == 1 and writes(emulator) == 0


def test_unknown_operation_is_a_400(staff, emulator):
    assert staff.post(RUN, {"operation": "drop_everything"}).status_code == 400
    assert not SyncRun.objects.exists()


def test_preview_button_changes_nothing_and_shows_the_plan(staff, emulator):
    seed(emulator)
    Agent.objects.create(name="Made here")
    emulator.reset_counters()

    response = staff.post(RUN, {"operation": "preview"}, follow=True)

    run = SyncRun.objects.get()
    assert run.dry_run and run.status == RunStatus.SUCCEEDED
    assert writes(emulator) == 0 and len(emulator.assistants) == 2
    assert list(Agent.objects.values_list("name", flat=True)) == ["Made here"]
    assert not PhoneNumber.objects.exists() and not SyncChange.objects.exists()
    html = response.content.decode()
    assert "Results: Preview of full synchronization" in html
    assert "to create" in html and "Made here" in html and "Support" in html


def test_second_run_while_one_runs_is_refused_with_a_link(staff, emulator):
    running = sync_run_create(direction=Direction.FULL, trigger="cli")
    response = staff.post(RUN, {"operation": "full"})
    [(level, text)] = message_list(response)
    assert level == levels.ERROR and f"sync run {running.pk}</a> is already in progress" in text
    assert SyncRun.objects.count() == 1


# --- Live progress JSON --------------------------------------------------------------------------


def test_json_endpoints(staff, emulator):
    seed(emulator)
    assert staff.get(PAGE + "status.json").json()["agents"]["vapi"] is None  # never compared yet
    staff.post(PAGE + "check/")
    status = staff.get(PAGE + "status.json").json()
    assert status["agents"]["vapi"] == 2 and status["configured"] is True
    local = staff.get(PAGE + "status.json", {"remote": "0"}).json()
    assert local["agents"]["vapi"] is None
    assert staff.get(PAGE + "runs/active.json").json() == {"run": None}

    queued = sync_run_create(direction=Direction.FULL, trigger="api")
    active = staff.get(PAGE + "runs/active.json").json()["run"]
    assert active["id"] == queued.pk and active["active"] is True and active["status"] == "queued"

    from vapisync.services.runs import sync_run_execute

    sync_run_execute(run_id=queued.pk)
    done = staff.get(f"{PAGE}runs/{queued.pk}.json").json()
    assert done["active"] is False and done["status"] == "succeeded"
    assert done["counts"]["assistants"]["created"] == 2 and done["page_url"] == f"{PAGE}?run={queued.pk}"
    assert staff.get(f"{PAGE}runs/999999.json").status_code == 404


def test_page_shows_progress_of_a_queued_run(staff, emulator):
    queued = sync_run_create(direction=Direction.FULL, trigger="api")
    html = staff.get(PAGE).content.decode()
    assert f'id="progress" data-run-id="{queued.pk}"' in html and "Run in progress" in html


# --- Change-list actions -------------------------------------------------------------------------


def test_push_action_asks_for_confirmation_then_pushes(staff, emulator):
    agent = Agent.objects.create(name="Reception", system_prompt="Greet callers.")
    other = Agent.objects.create(name="Not selected")

    confirm = staff.post(AGENTS, select("push_to_vapi", agent))

    assert confirm.status_code == 200
    html = confirm.content.decode()
    assert "Push to Vapi?" in html and "Reception" in html and "Not selected" not in html
    assert 'name="post" value="yes"' in html and 'value="Yes, push to Vapi"' in html
    assert writes(emulator) == 0 and not SyncRun.objects.exists()

    done = staff.post(AGENTS, select("push_to_vapi", agent, post="yes"))

    assert done.status_code == 302
    agent.refresh_from_db()
    other.refresh_from_db()
    assert agent.vapi_assistant_id in emulator.assistants and agent.sync_status == SyncStatus.SYNCED
    assert emulator.assistants[agent.vapi_assistant_id]["name"] == "Reception"
    assert other.vapi_assistant_id is None and len(emulator.assistants) == 1
    run = SyncRun.objects.get()
    assert (run.direction, run.trigger, run.selection["local_ids"]) == (Direction.EXPORT, "admin", {"assistants": [agent.pk]})
    assert_started_in_background(done, run)
    assert "Export of 1 selected agent to Vapi" in message_list(done)[0][1]
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.counts["assistants"]["created"] == 1


def test_refresh_action_pulls_the_vapi_version(staff, emulator):
    remote = seed(emulator)
    import_all(emulator)
    agent = Agent.objects.get(vapi_assistant_id=remote["id"])
    emulator.edit_assistant(remote["id"], name="Support (edited in Vapi)")

    confirm = staff.post(AGENTS, select("refresh_from_vapi", agent))
    assert "Refresh from Vapi?" in confirm.content.decode()
    done = staff.post(AGENTS, select("refresh_from_vapi", agent, post="yes"))

    agent.refresh_from_db()
    assert agent.name == "Support (edited in Vapi)"
    assert Agent.objects.get(name="Sales").vapi_assistant_id  # untouched, still linked
    run = SyncRun.objects.first()
    assert_started_in_background(done, run)
    assert run.counts["assistants"]["updated"] == 1


def test_push_confirmation_says_agents_deleted_in_vapi_are_recreated(staff, emulator):
    remote = seed(emulator)
    import_all(emulator)
    emulator.remove_assistant(remote["id"])
    import_all(emulator)
    agent = Agent.objects.get(vapi_assistant_id=remote["id"])
    assert agent.sync_status == SyncStatus.DELETED_REMOTELY
    html = staff.post(AGENTS, select("push_to_vapi", agent)).content.decode()
    assert "deleted in Vapi" in html and "pushing re-creates it there" in html
    staff.post(AGENTS, select("push_to_vapi", agent, post="yes"))
    agent.refresh_from_db()
    assert agent.sync_status == SyncStatus.SYNCED and agent.vapi_assistant_id in emulator.assistants


def test_refresh_confirmation_warns_about_unlinked_records(staff, emulator):
    agent = Agent.objects.create(name="Never pushed")
    html = staff.post(AGENTS, select("refresh_from_vapi", agent)).content.decode()
    assert "not linked to Vapi yet and will be skipped" in html


def test_preview_action_shows_the_plan_and_changes_nothing(staff, emulator):
    remote = seed(emulator)
    import_all(emulator)
    agent = Agent.objects.get(vapi_assistant_id=remote["id"])
    Agent.objects.filter(pk=agent.pk).update(system_prompt="Edited here.")
    new = Agent.objects.create(name="Brand new")
    emulator.reset_counters()
    runs_before = SyncRun.objects.count()

    response = staff.post(AGENTS, select("preview_sync", agent, new))

    assert response.status_code == 200
    html = response.content.decode()
    assert "1 to create, 1 to update" in html and "Brand new" in html and "system_prompt" in html
    assert 'value="push_to_vapi"' in html and 'value="refresh_from_vapi"' in html
    assert writes(emulator) == 0
    assert emulator.assistants[remote["id"]]["model"]["messages"][0]["content"] == "You are helpful."
    assert Agent.objects.get(pk=new.pk).vapi_assistant_id is None
    assert SyncRun.objects.count() == runs_before + 1 and SyncRun.objects.first().dry_run
    assert not SyncChange.objects.filter(run=SyncRun.objects.first()).exists()


def test_phone_number_actions(staff, emulator):
    seed(emulator)
    import_all(emulator)
    phone = PhoneNumber.objects.get()
    emulator.edit_phone_number(phone.vapi_phone_id, name="Renamed in Vapi")

    html = staff.post(PHONES, select("refresh_from_vapi", phone)).content.decode()
    assert "Refresh from Vapi?" in html and "+16826269224" in html
    staff.post(PHONES, select("refresh_from_vapi", phone, post="yes"))
    phone.refresh_from_db()
    assert phone.name == "Renamed in Vapi"

    PhoneNumber.objects.filter(pk=phone.pk).update(name="Renamed here")
    done = staff.post(PHONES, select("push_to_vapi", phone, post="yes"))
    assert emulator.phone_numbers[phone.vapi_phone_id]["name"] == "Renamed here"
    assert_started_in_background(done, SyncRun.objects.first())
    assert SyncRun.objects.first().status == RunStatus.SUCCEEDED


def test_partial_failure_is_a_warning_with_the_error(staff, emulator):
    good = Agent.objects.create(name="Good")
    bad = Agent.objects.create(name="Bad")
    emulator.fail_next(1, status=400, route="POST /assistant")

    done = staff.post(AGENTS, select("push_to_vapi", good, bad, post="yes"))

    run = SyncRun.objects.get()
    assert run.status == RunStatus.PARTIAL
    assert_started_in_background(done, run)
    page = staff.get(f"{PAGE}?run={run.pk}").content.decode()
    assert "Partly failed" in page and "Bad" in page


def test_failed_run_is_an_error_message(staff, emulator, fast_failures):
    agent = Agent.objects.create(name="Reception")
    emulator.down = True

    done = staff.post(AGENTS, select("push_to_vapi", agent, post="yes"))

    assert done.status_code == 302
    run = SyncRun.objects.get()
    assert run.status in (RunStatus.FAILED, RunStatus.PARTIAL) and run.counts["assistants"]["failed"] == 1
    assert_started_in_background(done, run)


def test_refresh_while_vapi_is_down_is_an_error_message(staff, emulator, fast_failures):
    seed(emulator)
    import_all(emulator)
    agent = Agent.objects.get(name="Support")
    emulator.down = True

    done = staff.post(AGENTS, select("refresh_from_vapi", agent, post="yes"))

    assert SyncRun.objects.first().status == RunStatus.FAILED
    assert_started_in_background(done, SyncRun.objects.first())


def test_changelists_show_coloured_sync_status(staff, emulator):
    seed(emulator)
    import_all(emulator)
    for url in (AGENTS, PHONES):
        html = staff.get(url).content.decode()
        assert 'class="vs-badge vs-ok">In sync' in html and "vapisync/admin.css" in html


def test_record_change_page_shows_vapi_sync_state(staff, emulator):
    remote = seed(emulator)
    run = import_all(emulator)
    agent = Agent.objects.get(vapi_assistant_id=remote["id"])
    Agent.objects.filter(pk=agent.pk).update(sync_error="Vapi said no")

    html = staff.get(f"{AGENTS}{agent.pk}/change/").content.decode()

    assert remote["id"] in html and "In sync" in html and "Vapi said no" in html
    assert "Recent sync changes" in html and f"/admin/vapisync/syncrun/{run.pk}/change/" in html
    phone = PhoneNumber.objects.get()
    html = staff.get(f"{PHONES}{phone.pk}/change/").content.decode()
    assert phone.vapi_phone_id in html and "Last error" in html


# --- Run history, rollback ------------------------------------------------------------------------


def test_run_history_and_detail_show_changes_and_errors(staff, emulator):
    seed(emulator)
    run = import_all(emulator)
    SyncRun.objects.filter(pk=run.pk).update(errors=[{"label": "Odd one", "message": "Vapi rejected it"}])

    listing = staff.get("/admin/vapisync/syncrun/").content.decode()
    assert f"/admin/vapisync/syncrun/{run.pk}/change/" in listing and "3 created" in listing

    detail = staff.get(f"/admin/vapisync/syncrun/{run.pk}/change/").content.decode()
    assert "Changes (3" in detail and "Support" in detail and "Sales" in detail
    assert "Vapi rejected it" in detail and "Roll back…" in detail
    only_creates = staff.get(f"/admin/vapisync/syncrun/{run.pk}/change/", {"action": "create"})
    assert only_creates.status_code == 200
    page = staff.get(PAGE).content.decode()
    assert f'href="/admin/vapisync/syncrun/{run.pk}/rollback/"' in page


def test_rollback_asks_for_confirmation_then_undoes_the_run(staff, emulator):
    seed(emulator)
    run = import_all(emulator)
    url = f"/admin/vapisync/syncrun/{run.pk}/rollback/"

    confirm = staff.get(url)
    assert confirm.status_code == 200 and f"Yes, roll back run {run.pk}" in confirm.content.decode()
    assert Agent.objects.count() == 2  # GET only asks

    done = staff.post(url, {"post": "yes"})

    rollback = SyncRun.objects.get(rollback_of=run)
    assert done.status_code == 302 and done["Location"] == f"/admin/vapisync/syncrun/{rollback.pk}/change/"
    assert rollback.direction == Direction.ROLLBACK and rollback.trigger == "admin"
    assert not Agent.objects.exists() and not PhoneNumber.objects.exists()
    level, text = message_list(done)[0]
    assert level == levels.INFO and "runs in the background" in text, text


def test_rollback_not_possible_is_an_error_message(staff, emulator):
    seed(emulator)
    preview = sync_run_start(direction=Direction.FULL, trigger="cli", dry_run=True)
    done = staff.post(f"/admin/vapisync/syncrun/{preview.pk}/rollback/", {"post": "yes"})
    [(level, text)] = message_list(done)
    assert level == levels.ERROR and "dry run" in text
    assert staff.get(f"/admin/vapisync/syncrun/{preview.pk}/change/").status_code == 200


# --- Conflicts and deletions --------------------------------------------------------------------------


@pytest.fixture
def conflict(emulator, settings):
    settings.VAPI_SYNC_CONFLICT_POLICY = "manual"
    remote = seed(emulator)
    import_all(emulator)
    agent = Agent.objects.get(vapi_assistant_id=remote["id"])
    Agent.objects.filter(pk=agent.pk).update(name="Support (here)")
    emulator.edit_assistant(remote["id"], name="Support (Vapi)")
    sync_run_start(direction=Direction.FULL, trigger="cli")
    agent.refresh_from_db()
    assert agent.sync_status == SyncStatus.CONFLICT
    return agent


def test_page_lists_conflicts_with_both_versions(staff, conflict):
    html = staff.get(PAGE).content.decode()
    assert "Conflicts (1)" in html and "Support (here)" in html and "Support (Vapi)" in html
    assert 'value="Keep Vapi"' in html and 'value="Keep local"' in html


def test_conflict_keep_local(staff, conflict, emulator):
    response = staff.post(PAGE + "resolve/", {"resource": "assistants", "local_id": conflict.pk, "keep": "local"})
    assert response.status_code == 302
    conflict.refresh_from_db()
    assert conflict.sync_status == SyncStatus.SYNCED
    assert emulator.assistants[conflict.vapi_assistant_id]["name"] == "Support (here)"
    [(level, text)] = message_list(response)
    assert level == levels.SUCCESS and "keeping the version here" in text
    assert "Conflicts (1)" not in staff.get(PAGE).content.decode()


def test_conflict_keep_vapi(staff, conflict, emulator):
    staff.post(PAGE + "resolve/", {"resource": "assistants", "local_id": conflict.pk, "keep": "vapi"})
    conflict.refresh_from_db()
    assert (conflict.name, conflict.sync_status) == ("Support (Vapi)", SyncStatus.SYNCED)


def test_conflict_resolve_rejects_bad_input(staff, conflict):
    assert staff.post(PAGE + "resolve/", {"resource": "users", "local_id": 1, "keep": "vapi"}).status_code == 400
    assert staff.post(PAGE + "resolve/", {"resource": "assistants", "local_id": "x", "keep": "both"}).status_code == 400


def test_delete_in_vapi_for_agents_deleted_here(staff, emulator):
    seed(emulator)
    import_all(emulator)
    sales = Agent.objects.get(name="Sales")
    vapi_id = sales.vapi_assistant_id
    sales.delete()

    page = staff.get(PAGE).content.decode()
    assert "Deleted here, still in Vapi (1)" in page and vapi_id in page
    confirm = staff.get(PAGE + "delete-in-vapi/", {"vapi_id": vapi_id})
    assert confirm.status_code == 200 and "Yes, delete in Vapi" in confirm.content.decode()
    assert vapi_id in emulator.assistants  # asking deletes nothing

    done = staff.post(PAGE + "delete-in-vapi/", {"vapi_id": vapi_id, "post": "yes"})

    assert done.status_code == 302 and vapi_id not in emulator.assistants
    run = SyncRun.objects.filter(direction=Direction.DELETE).get()
    assert run.changes.filter(action=ChangeAction.DELETE).count() == 1
    assert message_list(done)[0][0] == levels.SUCCESS
    assert "Deleted here, still in Vapi (1)" not in staff.get(PAGE).content.decode()


def test_delete_in_vapi_refuses_agents_that_still_exist(staff, emulator):
    seed(emulator)
    import_all(emulator)
    vapi_id = Agent.objects.get(name="Sales").vapi_assistant_id
    response = staff.post(PAGE + "delete-in-vapi/", {"vapi_id": vapi_id, "post": "yes"})
    assert response.status_code == 302 and vapi_id in emulator.assistants
    assert message_list(response)[0][0] == levels.WARNING


# --- Configuration, outages, secrets ----------------------------------------------------------------


def test_missing_api_key_shows_banner_and_disables_buttons(staff, emulator, settings):
    settings.VAPI_API_KEY = ""
    agent = Agent.objects.create(name="Reception")

    response = staff.get(PAGE)

    assert response.status_code == 200
    html = response.content.decode()
    assert "Vapi is not configured: syncing is disabled." in html and "VAPI_API_KEY" in html
    buttons = re.findall(r'<input type="submit"[^>]*>', html)
    assert len(buttons) == 6 and all(" disabled" in b for b in buttons)

    posted = staff.post(RUN, {"operation": "full"})
    assert posted.status_code == 302
    [(level, text)] = message_list(posted)
    assert level == levels.ERROR and "VAPI_API_KEY" in text
    action = staff.post(AGENTS, select("push_to_vapi", agent, post="yes"))
    assert action.status_code == 302 and message_list(action)[0][0] == levels.ERROR
    assert not SyncRun.objects.exists() and len(emulator.requests) == 0


def test_no_500_when_vapi_is_down(staff, emulator, fast_failures):
    seed(emulator)
    Agent.objects.create(name="Reception")
    emulator.down = True

    page = staff.get(PAGE)
    assert page.status_code == 200 and emulator.counts == {}  # the page reads the stored status
    assert page.context["cards"][0]["vapi"] is None

    checked = staff.post(PAGE + "check/", follow=True)
    assert checked.status_code == 200
    html = checked.content.decode()
    assert "Vapi could not be reached." in html and "503" in html and "Last successful contact: never" in html
    assert any(m.level == levels.ERROR for m in checked.context["messages"])

    posted = staff.post(RUN, {"operation": "full"}, follow=True)
    assert posted.status_code == 200
    run = SyncRun.objects.get()
    assert run.status == RunStatus.FAILED
    assert staff.get(PAGE + "status.json").status_code == 200
    assert staff.get(f"/admin/vapisync/syncrun/{run.pk}/change/").status_code == 200
    assert staff.post(PAGE + "resolve/", {"resource": "assistants", "local_id": Agent.objects.get().pk,
                                          "keep": "vapi"}).status_code == 302


def test_page_survives_an_unexpected_error_in_the_status(staff, emulator, monkeypatch):
    import vapisync.admin_views as views

    real = views.sync_status_get

    def broken(**kw):
        if kw.get("check_remote", True):
            raise RuntimeError("boom")
        return real(**kw)

    monkeypatch.setattr(views, "sync_status_get", broken)
    response = staff.get(PAGE)
    assert response.status_code == 200 and "Could not read the sync status (RuntimeError)" in response.content.decode()


def test_api_key_is_never_rendered(staff, emulator, settings):
    canary = "sk-live-CANARY-5f0e2b7c9d"
    settings.VAPI_API_KEY = canary
    emulator.api_key = canary
    seed(emulator)
    run = import_all(emulator)
    agent = Agent.objects.first()
    phone = PhoneNumber.objects.get()
    pages = [
        staff.get("/admin/"),
        staff.get(PAGE),
        staff.get(PAGE, {"run": run.pk}),
        staff.get(PAGE + "status.json"),
        staff.get(PAGE + "runs/active.json"),
        staff.get(f"{PAGE}runs/{run.pk}.json"),
        staff.get("/admin/vapisync/syncrun/"),
        staff.get(f"/admin/vapisync/syncrun/{run.pk}/change/"),
        staff.get(f"/admin/vapisync/syncrun/{run.pk}/rollback/"),
        staff.get(AGENTS),
        staff.get(f"{AGENTS}{agent.pk}/change/"),
        staff.get(PHONES),
        staff.get(f"{PHONES}{phone.pk}/change/"),
        staff.post(AGENTS, select("push_to_vapi", agent)),
        staff.post(AGENTS, select("preview_sync", agent)),
        staff.post(RUN, {"operation": "full"}, follow=True),
        staff.post(RUN, {"operation": "preview"}, follow=True),
    ]
    emulator.api_key = "another-key"  # Vapi now rejects ours: error texts must not echo it
    pages.append(staff.post(RUN, {"operation": "full"}, follow=True))
    pages.append(staff.get(PAGE))
    for response in pages:
        assert response.status_code == 200, response.request["PATH_INFO"]
        assert canary not in response.content.decode(), response.request["PATH_INFO"]
        assert canary not in str(response.cookies)


# --- Polish: links, times, wording, whole values --------------------------------------------------

WEBHOOKS = "/admin/vapisync/webhookevent/"
LONG_PROMPT = "You are the front desk of a busy clinic. " * 12 + "Always confirm the appointment time twice."
CANCEL = '<a role="button" href="#" class="button cancel-link vs-cancel">No, take me back</a>'


def imported_agent(emulator, staff_user, name="Support", **extra):
    from vapisync.services.runs import sync_run_submit

    doc = make_assistant(emulator, name, **extra)
    sync_run_submit(direction=Direction.IMPORT, resources=[Resource.ASSISTANTS], trigger="admin", user=staff_user)
    return doc, Agent.objects.get(vapi_assistant_id=doc["id"])


def test_no_view_site_link_leading_to_a_404(staff):
    html = staff.get("/admin/").content.decode()
    assert "View site" not in html
    assert staff.get("/").status_code == 404  # there is no public site to point to


def test_run_times_show_seconds(staff, emulator, staff_user):
    imported_agent(emulator, staff_user)
    run = SyncRun.objects.get()
    stamp = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
    listing = staff.get("/admin/vapisync/syncrun/").content.decode()
    assert stamp.search(listing)
    detail = staff.get(f"/admin/vapisync/syncrun/{run.pk}/change/").content.decode()
    assert len(stamp.findall(detail)) >= 3  # created, started, finished


def test_a_failed_run_never_says_nothing_to_change(staff, emulator, fast_failures):
    emulator.down = True
    response = staff.post(RUN, {"operation": "import_assistants"}, follow=True)
    run = SyncRun.objects.get()
    assert run.status == RunStatus.FAILED and not any(v for c in run.counts.values() for v in c.values())
    message = [str(m) for m in get_messages(response.wsgi_request)] or [response.content.decode()]
    pages = [
        staff.get("/admin/vapisync/syncrun/").content.decode(),
        staff.get(f"/admin/vapisync/syncrun/{run.pk}/change/").content.decode(),
        staff.get(f"{PAGE}?run={run.pk}").content.decode(),
        staff.get(f"{PAGE}runs/{run.pk}.json").json()["summary"],
        *message,
    ]
    for text in pages:
        assert "nothing to change" not in text
    assert "failed before any change" in pages[0] and "failed before any change" in pages[3]


def test_a_long_prompt_change_is_shown_whole_in_the_run(staff, emulator, staff_user):
    doc, agent = imported_agent(emulator, staff_user)
    emulator.edit_assistant(doc["id"], model={**doc["model"], "messages": [{"role": "system", "content": LONG_PROMPT}]})
    staff.post(RUN, {"operation": "import_assistants"})
    run = SyncRun.objects.latest("id")
    html = staff.get(f"/admin/vapisync/syncrun/{run.pk}/change/").content.decode()
    assert 'class="vs-more"' in html
    assert LONG_PROMPT in html  # whole, inside the expandable cell
    assert LONG_PROMPT[:89] + "…" in html  # and shortened in its summary
    agent.refresh_from_db()
    assert agent.system_prompt == LONG_PROMPT


def test_record_shows_its_stored_vapi_document_with_secrets_masked(staff, emulator, staff_user):
    doc, agent = imported_agent(
        emulator, staff_user, server={"url": "https://hooks.example.com/vapi", "secret": "srv-secret-value-1", "timeoutSeconds": 20},
        credentials=[{"provider": "11labs", "apiKey": "eleven-key-value-2"}],
        metadata={"team": "support", "password": "pw-value-3", "note": "key test-vapi-key"})
    html = staff.get(f"{AGENTS}{agent.pk}/change/").content.decode()
    assert "Show the stored Vapi document" in html
    assert "https://hooks.example.com/vapi" in html and "timeoutSeconds" in html and doc["id"] in html
    for secret in ("srv-secret-value-1", "eleven-key-value-2", "pw-value-3", "test-vapi-key"):
        assert secret not in html
    assert html.count("•••••• (hidden)") == 3
    assert f'href="https://dashboard.vapi.ai/assistants/{doc["id"]}"' in html


def test_phone_number_links_to_vapi_dashboard_and_unlinked_records_do_not(staff, emulator, staff_user):
    from vapisync.services.runs import sync_run_submit

    phone = emulator.add_phone_number(provider="vapi", number="+16826269224", name="Main line")
    sync_run_submit(direction=Direction.IMPORT, resources=[Resource.PHONE_NUMBERS], trigger="admin", user=staff_user)
    local = PhoneNumber.objects.get()
    html = staff.get(f"{PHONES}{local.pk}/change/").content.decode()
    assert f'href="https://dashboard.vapi.ai/phone-numbers/{phone["id"]}"' in html
    emulator.down = True  # saving the new agent must not depend on Vapi for this check
    unlinked = Agent.objects.create(name="Draft", system_prompt="Draft.")
    html = staff.get(f"{AGENTS}{unlinked.pk}/change/").content.decode()
    assert "dashboard.vapi.ai" not in html and "Not in Vapi yet." in html


def test_compare_with_vapi_now_shows_whole_fields_from_one_get(staff, emulator, staff_user):
    doc, agent = imported_agent(emulator, staff_user, prompt=LONG_PROMPT)
    emulator.edit_assistant(doc["id"], name="Support (renamed in Vapi)")
    Agent.objects.filter(pk=agent.pk).update(first_message="Edited here.")  # no automatic push
    emulator.reset_counters()
    runs = SyncRun.objects.count()

    change_page = staff.get(f"{AGENTS}{agent.pk}/change/").content.decode()
    assert f'href="{AGENTS}{agent.pk}/compare-with-vapi/"' in change_page
    response = staff.get(f"{AGENTS}{agent.pk}/compare-with-vapi/")
    html = response.content.decode()

    assert response.status_code == 200
    assert "Here and Vapi disagree on name, first_message" in html
    assert "Support (renamed in Vapi)" in html and "Edited here." in html
    assert html.count(LONG_PROMPT) == 4  # whole: here, in Vapi now, at the last sync, and in Vapi's document
    assert "changed in Vapi since the last sync" in html and "changed here since the last sync" in html
    assert dict(emulator.counts) == {"GET /assistant/{id}": 1} and emulator.write_attempts == 0
    assert SyncRun.objects.count() == runs
    agent.refresh_from_db()
    assert agent.name == "Support" and agent.first_message == "Edited here."


def test_compare_with_vapi_down_or_deleted_says_so(staff, emulator, staff_user, fast_failures):
    doc, agent = imported_agent(emulator, staff_user)
    emulator.down = True
    html = staff.get(f"{AGENTS}{agent.pk}/compare-with-vapi/").content.decode()
    assert "Could not read it from Vapi" in html and "Service Unavailable" in html
    assert "Support" in html  # this side is still shown
    emulator.down = False
    emulator.remove_assistant(doc["id"])
    html = staff.get(f"{AGENTS}{agent.pk}/compare-with-vapi/").content.decode()
    assert "it was deleted there" in html


def test_compare_needs_the_run_sync_permission(client, django_user_model, emulator, staff_user):
    _, agent = imported_agent(emulator, staff_user)
    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_agent"))
    client.force_login(viewer)
    emulator.reset_counters()
    assert "compare-with-vapi" not in client.get(f"{AGENTS}{agent.pk}/change/").content.decode()
    assert client.get(f"{AGENTS}{agent.pk}/compare-with-vapi/").status_code == 403
    assert emulator.counts == {}


def test_every_confirmation_page_has_the_same_cancel_button(staff, emulator, staff_user):
    doc, agent = imported_agent(emulator, staff_user)
    run = SyncRun.objects.get()
    pages = {
        "push": staff.post(AGENTS, select("push_to_vapi", agent)),
        "refresh": staff.post(AGENTS, select("refresh_from_vapi", agent)),
        "preview": staff.post(AGENTS, select("preview_sync", agent)),
        "rollback": staff.get(f"/admin/vapisync/syncrun/{run.pk}/rollback/"),
    }
    agent.delete()
    pages["delete in Vapi"] = staff.get(PAGE + "delete-in-vapi/", {"vapi_id": doc["id"]})
    for name, response in pages.items():
        html = response.content.decode()
        assert response.status_code == 200, name
        assert html.count(CANCEL) == 1, name
        assert "cancel-link\">" not in html.replace(CANCEL, ""), name  # no other cancel style


# --- Webhook events --------------------------------------------------------------------------------


def failed_webhook_event(client, emulator, staff_user):
    """A webhook for a reassigned number that arrived while Vapi was down: stored, failed, waiting."""
    from vapisync.services.runs import sync_run_submit

    first = make_assistant(emulator, "First")
    second = make_assistant(emulator, "Second")
    phone = emulator.add_phone_number(provider="vapi", number="+16826269224", name="Main", assistantId=first["id"])
    sync_run_submit(direction=Direction.IMPORT, trigger="admin", user=staff_user)
    emulator.edit_phone_number(phone["id"], assistantId=second["id"])
    emulator.down = True
    body = {"message": {"type": "status-update", "status": "in-progress", "call": {"phoneNumberId": phone["id"]}}}
    response = client.post("/api/vapi-sync/webhook", body, content_type="application/json",
                           HTTP_X_VAPI_SECRET="test-webhook-secret")
    assert response.status_code == 200
    emulator.down = False
    return second


def test_webhook_events_are_listed_filtered_and_read_only(staff, emulator, staff_user, fast_failures):
    from vapisync.models import WebhookEvent

    failed_webhook_event(staff, emulator, staff_user)
    event = WebhookEvent.objects.get()
    assert event.error and event.processed_at is None
    WebhookEvent.objects.create(body_sha256="b" * 64, message_type="speech-update", processed_at=event.received_at,
                                payload={"message": {"type": "speech-update"}})

    def listed(**filters):
        response = staff.get(WEBHOOKS, filters)
        assert response.status_code == 200
        return sorted(e.message_type for e in response.context["cl"].result_list)

    listing = staff.get(WEBHOOKS).content.decode()
    assert "Error, waiting" in listing and "Processed" in listing
    assert listed() == ["speech-update", "status-update"]
    assert listed(has_error="yes") == ["status-update"] and listed(has_error="no") == ["speech-update"]
    assert listed(processed="no") == ["status-update"] and listed(processed="yes") == ["speech-update"]
    assert listed(message_type="speech-update") == ["speech-update"]

    detail = staff.get(f"{WEBHOOKS}{event.pk}/change/").content.decode()
    assert "in-progress" in detail and 'name="_save"' not in detail
    staff.post(f"{WEBHOOKS}{event.pk}/change/", {"error": "", "message_type": "x"})
    assert WebhookEvent.objects.get(pk=event.pk).message_type == "status-update"
    assert staff.get(f"{WEBHOOKS}add/").status_code == 403
    assert staff.post(f"{WEBHOOKS}{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert WebhookEvent.objects.count() == 2


def test_process_again_clears_the_error_and_refreshes_through_the_usual_processing(staff, emulator, staff_user, fast_failures):
    from vapisync.models import Trigger, WebhookEvent

    second = failed_webhook_event(staff, emulator, staff_user)
    event = WebhookEvent.objects.get()
    assert PhoneNumber.objects.get().agent.vapi_assistant_id != second["id"]

    response = staff.post(WEBHOOKS, select("process_again", event), follow=True)

    event.refresh_from_db()
    assert event.processed_at is not None and event.error == ""
    assert PhoneNumber.objects.get().agent.vapi_assistant_id == second["id"]
    assert SyncRun.objects.filter(trigger=Trigger.WEBHOOK, status=RunStatus.SUCCEEDED).exists()
    assert "1 event(s) processed again." in [str(m) for m in get_messages(response.wsgi_request)]


def test_process_again_needs_the_run_sync_permission(client, django_user_model, emulator, staff_user, fast_failures):
    from vapisync.models import WebhookEvent

    failed_webhook_event(client, emulator, staff_user)
    event = WebhookEvent.objects.get()
    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhookevent"))
    client.force_login(viewer)
    assert "process_again" not in client.get(WEBHOOKS).content.decode()
    client.post(WEBHOOKS, select("process_again", event))
    event.refresh_from_db()
    assert event.processed_at is None and event.error


def test_secret_masking_keeps_counts_references_and_flags():
    from vapisync.services.compare import MASK, mask_secrets

    document = {"model": {"maxTokens": 250}, "credentialId": "cred-1", "credentialIds": ["c"], "isServerUrlSecretSet": True,
                "twilioAuthToken": "tok", "authentication": {"realm": "sip", "authUsername": "u", "authPassword": "p"},
                "server": {"secret": ""}, "headers": {"Authorization": "Bearer abc"}, "privateKey": "k", "credential": "c"}
    assert mask_secrets(document) == {
        "model": {"maxTokens": 250}, "credentialId": "cred-1", "credentialIds": ["c"], "isServerUrlSecretSet": True,
        "twilioAuthToken": MASK, "authentication": {"realm": "sip", "authUsername": "u", "authPassword": MASK},
        "server": {"secret": ""}, "headers": {"Authorization": MASK}, "privateKey": MASK, "credential": MASK}


def test_a_long_prompt_conflict_is_shown_whole_on_the_page(staff, emulator, settings):
    settings.VAPI_SYNC_CONFLICT_POLICY = "manual"
    remote = seed(emulator)
    import_all(emulator)
    agent = Agent.objects.get(vapi_assistant_id=remote["id"])
    Agent.objects.filter(pk=agent.pk).update(system_prompt=LONG_PROMPT + " (here)")
    emulator.edit_assistant(remote["id"], model={**remote["model"], "messages": [{"role": "system", "content": LONG_PROMPT + " (Vapi)"}]})
    sync_run_start(direction=Direction.FULL, trigger="cli")
    html = staff.get(PAGE).content.decode()
    assert "Conflicts (1)" in html
    assert LONG_PROMPT + " (here)" in html and LONG_PROMPT + " (Vapi)" in html and 'class="vs-more"' in html


def test_compare_a_phone_number_shows_its_routing_on_both_sides(staff, emulator, staff_user):
    from vapisync.services.runs import sync_run_submit

    first = make_assistant(emulator, "First")
    second = make_assistant(emulator, "Second")
    phone = emulator.add_phone_number(provider="vapi", number="+16826269224", name="Main line", assistantId=first["id"])
    sync_run_submit(direction=Direction.IMPORT, trigger="admin", user=staff_user)
    emulator.edit_phone_number(phone["id"], assistantId=second["id"])
    emulator.reset_counters()
    local = PhoneNumber.objects.get()

    html = staff.get(f"{PHONES}{local.pk}/compare-with-vapi/").content.decode()

    assert "Here and Vapi disagree on assistant_id" in html
    assert first["id"] in html and second["id"] in html
    assert f'href="https://dashboard.vapi.ai/phone-numbers/{phone["id"]}"' in html
    assert dict(emulator.counts) == {"GET /phone-number/{id}": 1}
    assert PhoneNumber.objects.get().agent.vapi_assistant_id == first["id"]  # nothing changed here


def test_a_failed_run_names_untouched_resources_nothing_done():
    from vapisync import admin_format as views

    run = SyncRun(direction=Direction.FULL, trigger="cli", status=RunStatus.FAILED,
                  counts={"assistants": {"failed": 1}, "phone_numbers": {}})
    assert views.run_counts_text(run) == "agents: 1 failed; phone numbers: nothing done"
    assert views.run_summary(run) == "1 failed"
    run.counts = {}
    assert views.run_counts_text(run) == views.run_summary(run) == "failed before any change"
