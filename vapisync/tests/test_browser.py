"""The Vapi Sync admin in a real browser: Debian's Chromium driven by Playwright against a live server.

The in-process Vapi emulator (`responses`) also answers the live server's requests: the server runs
in a thread of this process, and the mock patches `requests` process-wide.

Needs /usr/bin/chromium (`make browser` installs it from Debian's packages; CI does it first).
Saves a screenshot of the page to build/screenshots/vapi-sync-page.png (SCREENSHOT_DIR changes the
folder; never a tracked file). `make figures` copies it to docs/screenshots/, the picture the README shows.
"""

import os
import re
from pathlib import Path

import pytest

from agents.models import Agent
from vapisync.models import Direction, RunStatus, SyncRun

from .factories import make_assistant

# Playwright's sync API runs an event loop in this thread; the ORM calls made here are plain sync code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM") or "/usr/bin/chromium"  # as scripts/install-browser.sh
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = Path(os.environ.get("SCREENSHOT_DIR") or ROOT / "build" / "screenshots") / "vapi-sync-page.png"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (installs Debian's chromium and chromium-driver).",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server, settings):
    # Plain-HTTP live server: cookies must not require HTTPS.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    # Runs in a background thread of the server, as in production without a broker.
    settings.VAPI_SYNC_BACKGROUND = "thread"
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=live_server.url)
    context.set_default_timeout(20_000)
    tab = context.new_page()
    errors = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    from vapisync.services.background import background_join

    assert background_join(timeout=60)
    assert not errors, f"JavaScript errors on the page: {errors}"


def log_in(page, user, password="pw-staff-123", next_url="/admin/vapisync/sync/"):
    page.goto(f"/admin/login/?next={next_url}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{next_url}")


def test_full_synchronization_from_the_vapi_sync_page(page, staff_user, emulator, monkeypatch):
    from playwright.sync_api import expect

    support = make_assistant(emulator, "Support")
    make_assistant(emulator, "Sales", prompt="Sell politely.")
    emulator.add_phone_number(provider="vapi", number="+16826269224", name="Main line", assistantId=support["id"])
    emulator.add_phone_number(provider="vapi", number="+19724741424", name="Front desk")
    Agent.objects.create(name="Made here", system_prompt="Created here.")  # pushed to Vapi on commit

    log_in(page, staff_user)
    # Reached from the admin's own navigation.
    page.goto("/admin/")
    page.locator('#content-main tr.model-sync a[href="/admin/vapisync/sync/"]').first.click()
    page.wait_for_url("**/admin/vapisync/sync/")
    expect(page.locator("h1")).to_have_text("Vapi Sync")
    expect(page.locator("#vs-checked")).to_contain_text("Not compared with Vapi yet")
    page.get_by_role("button", name="Check now").click()  # compares and stores; the page reads that
    expect(page.locator(".messagelist .success")).to_contain_text("Compared with Vapi just now")
    expect(page.locator("#vs-checked")).to_contain_text("Compared with Vapi")
    agents_card = page.locator("#card-agents")
    expect(agents_card.locator("[data-count=database]")).to_have_text("1")
    expect(agents_card.locator("[data-count=vapi]")).to_have_text("3")
    expect(page.locator("#status .vs-overall")).to_contain_text("Out of sync")

    # Slow Vapi down, so the page's live progress polls (runs/<id>.json) see the run while it works.
    import vapisync.admin_views as views

    polled = []
    real_run_json = views.run_json
    monkeypatch.setattr(views, "run_json", lambda run: polled.append(real_run_json(run)) or polled[-1])
    emulator.latency_ms = 700
    page.get_by_role("button", name="Full Synchronization").click(no_wait_after=True)
    page.wait_for_url(re.compile(r".*/admin/vapisync/sync/\?run=\d+#progress$"))  # the request did not wait for the run
    expect(page.locator(".messagelist .info")).to_contain_text("runs in the background")
    page.wait_for_url(re.compile(r".*/admin/vapisync/sync/\?run=\d+#results$"), timeout=60_000)
    emulator.latency_ms = 0

    run = SyncRun.objects.get(direction=Direction.FULL)
    assert run.status == RunStatus.SUCCEEDED and run.trigger == "admin"
    assert any(p["id"] == run.pk and p["active"] for p in polled), polled
    results = page.locator("#results")
    expect(results).to_contain_text("Succeeded")
    expect(results).to_contain_text(f"Results: Full synchronization (run {run.pk})")
    expect(results).to_contain_text("agents: 2 created, 1 unchanged; phone numbers: 2 created")
    history_row = page.locator(f"#history tr[data-run-id='{run.pk}']")
    expect(history_row).to_contain_text("Full synchronization")
    expect(history_row).to_contain_text("Succeeded")
    expect(page.locator("#status .vs-overall")).to_contain_text("In sync")
    expect(agents_card.locator("[data-count=vapi]")).to_have_text("3")

    # The auto-refresh choice is remembered across visits.
    page.check("#vs-autorefresh")
    page.select_option("#vs-interval", "60")
    page.reload()
    expect(page.locator("#vs-autorefresh")).to_be_checked()
    expect(page.locator("#vs-interval")).to_have_value("60")
    page.uncheck("#vs-autorefresh")

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.goto(f"/admin/vapisync/sync/?run={run.pk}")
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000
    assert_not_tracked(SCREENSHOT)


def assert_not_tracked(path: Path) -> None:
    """Tests leave the working tree as they found it: git sees no change at `path` (ignored or outside)."""
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists() or not path.resolve().is_relative_to(ROOT):
        return
    changed = subprocess.run(["git", "status", "--porcelain", "--", str(path)], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    assert changed == "", f"the test changed a file git tracks or shows: {changed}"


def test_push_one_agent_from_the_change_list(page, staff_user, emulator, settings):
    from playwright.sync_api import expect

    # Saved while Vapi was down: the automatic push failed, the agent waits for a push.
    settings.VAPI_MAX_RETRIES = 0
    emulator.down = True
    agent = Agent.objects.create(name="Reception", system_prompt="Greet callers warmly.")
    emulator.down = False
    emulator.reset_counters()
    assert not emulator.assistants

    log_in(page, staff_user, next_url="/admin/agents/agent/")
    page.locator("#result_list tr", has_text="Reception").locator("input.action-select").check()
    page.select_option("select[name=action]", "push_to_vapi")
    page.locator("#changelist-form .actions button[name=index]").first.click()  # "Run" (Go before Django 6)

    expect(page.locator("h1")).to_have_text("Push to Vapi?")
    expect(page.locator("#content-main")).to_contain_text("Reception")
    assert emulator.write_attempts == 0  # the confirmation step changed nothing
    page.get_by_role("button", name="Yes, push to Vapi").click()

    expect(page.locator(".messagelist .info")).to_contain_text("Export of 1 selected agent to Vapi started")
    agent.refresh_from_db()
    assert agent.vapi_assistant_id in emulator.assistants
    assert emulator.assistants[agent.vapi_assistant_id]["name"] == "Reception"
    assert [a["name"] for a in emulator.assistants.values()] == ["Reception"]  # pushed once, not twice
    page.reload()  # the run finished in the background after the list was shown
    expect(page.locator("#result_list tr", has_text="Reception")).to_contain_text("In sync")


# --- Admin polish ------------------------------------------------------------------------------------

LONG_PROMPT = "You are the front desk of a busy clinic. " * 12 + "Always confirm the appointment time twice."


def import_assistants(emulator, user, *docs):
    """Set-up: an import run to its end, before the page is opened."""
    from vapisync.services.runs import sync_run_start

    return sync_run_start(direction=Direction.IMPORT, resources=["assistants"], trigger="admin", user=user)


def test_agents_list_shows_every_column_at_1440_px(page, staff_user, emulator):
    from playwright.sync_api import expect

    for i in range(3):
        make_assistant(emulator, f"Customer support line {i} for the north", prompt="Help. " * 50,
                       voice={"provider": "11labs", "voiceId": "21m00Tcm4TlvDq8ikWAM"},
                       model={"provider": "anthropic", "model": "claude-3-5-sonnet-20241022",
                              "messages": [{"role": "system", "content": "Help."}]})
    import_assistants(emulator, staff_user)

    log_in(page, staff_user, next_url="/admin/agents/agent/")
    assert page.viewport_size["width"] == 1440
    last_header = page.locator("#result_list thead th").last
    expect(last_header).to_contain_text("Updated")
    box = last_header.bounding_box()
    results = page.locator("#changelist .results")
    # Nothing hidden behind a horizontal scroll, and the last column ends inside the window.
    assert results.evaluate("el => el.scrollWidth <= el.clientWidth"), "the Agents table scrolls sideways"
    assert box["x"] + box["width"] <= 1440
    expect(page.locator("#result_list tbody tr").first).to_contain_text("claude-3-5-sonnet-20241022")
    expect(page.locator("#result_list tbody tr").first).to_contain_text("21m00Tcm4TlvDq8ikWAM")

    # The phone numbers list too.
    for i in range(3):
        emulator.add_phone_number(provider="vapi", number=f"+1682626922{i}", name=f"Main line of the northern office {i}",
                                  assistantId=next(iter(emulator.assistants)))
    from vapisync.services.runs import sync_run_start

    sync_run_start(direction=Direction.IMPORT, resources=["phone_numbers"], trigger="admin", user=staff_user)
    page.goto("/admin/phonenumbers_app/phonenumber/")
    expect(page.locator("#result_list thead th").last).to_contain_text("Last synced")
    assert page.locator("#changelist .results").evaluate("el => el.scrollWidth <= el.clientWidth")


def test_long_prompt_change_expands_to_the_whole_text(page, staff_user, emulator):
    from playwright.sync_api import expect

    doc = make_assistant(emulator, "Clinic")
    import_assistants(emulator, staff_user)
    emulator.edit_assistant(doc["id"], model={**doc["model"], "messages": [{"role": "system", "content": LONG_PROMPT}]})
    run = import_assistants(emulator, staff_user)

    log_in(page, staff_user, next_url=f"/admin/vapisync/syncrun/{run.pk}/change/")
    cell = page.locator("#changes .vs-new .vs-more").first
    full = cell.locator(".vs-full")
    expect(full).to_be_hidden()
    expect(cell.locator("summary")).to_contain_text("…")
    cell.locator("summary").click()
    expect(full).to_be_visible()
    expect(full).to_have_text(LONG_PROMPT)


def test_record_page_document_dashboard_link_and_compare_with_vapi(page, staff_user, emulator):
    from playwright.sync_api import expect

    doc = make_assistant(emulator, "Support", server={"url": "https://hooks.example.com/vapi", "secret": "srv-secret-value"})
    import_assistants(emulator, staff_user)
    agent = Agent.objects.get()
    emulator.edit_assistant(doc["id"], name="Support (renamed in Vapi)")
    emulator.reset_counters()

    log_in(page, staff_user, next_url=f"/admin/agents/agent/{agent.pk}/change/")
    dashboard = page.locator("#vs-dashboard-link")
    expect(dashboard).to_have_attribute("href", f"https://dashboard.vapi.ai/assistants/{doc['id']}")
    expect(dashboard).to_have_attribute("target", "_blank")

    document = page.locator("details.vs-document")
    expect(document.locator("pre.vs-json")).to_be_hidden()
    document.locator("summary").click()
    expect(document.locator("pre.vs-json")).to_contain_text("https://hooks.example.com/vapi")
    expect(document.locator("pre.vs-json")).to_contain_text("•••••• (hidden)")
    assert "srv-secret-value" not in page.content()

    page.locator("#vs-compare-link").click()
    page.wait_for_url(f"**/admin/agents/agent/{agent.pk}/compare-with-vapi/")
    expect(page.locator("#vs-compare-summary")).to_contain_text("Here and Vapi disagree on name")
    name_row = page.locator("#vs-compare-table tr[data-field=name]")
    expect(name_row).to_have_class("vs-differs")
    expect(name_row).to_contain_text("Support (renamed in Vapi)")
    expect(page.locator("#vs-compare-table tr[data-field=model]")).not_to_have_class("vs-differs")
    assert dict(emulator.counts) == {"GET /assistant/{id}": 1} and emulator.write_attempts == 0

    emulator.down = True
    page.reload()
    expect(page.locator("#vs-compare-error")).to_contain_text("Could not read it from Vapi")
    expect(name_row).to_contain_text("Support")
    emulator.down = False


def test_cancel_buttons_look_and_act_the_same_on_every_confirmation_page(page, staff_user, emulator):
    from playwright.sync_api import expect

    make_assistant(emulator, "Support")
    run = import_assistants(emulator, staff_user)
    agent = Agent.objects.get()

    def cancel_style():
        cancel = page.get_by_role("button", name="No, take me back")
        expect(cancel).to_have_count(1)
        return cancel.evaluate("""el => { const s = getComputedStyle(el);
            return [s.backgroundColor, s.color, s.paddingTop, s.paddingLeft, s.borderRadius, s.fontSize, el.textContent]; }""")

    styles = {}
    log_in(page, staff_user, next_url=f"/admin/vapisync/syncrun/{run.pk}/change/")
    page.locator("#vs-rollback-link").click()  # cancelling goes back in the browser's history
    styles["rollback"] = cancel_style()
    page.get_by_role("button", name="No, take me back").click()
    page.wait_for_url(f"**/admin/vapisync/syncrun/{run.pk}/change/")

    for action in ("push_to_vapi", "refresh_from_vapi", "preview_sync"):
        page.goto("/admin/agents/agent/")
        page.locator("#result_list tr", has_text="Support").locator("input.action-select").check()
        page.select_option("select[name=action]", action)
        page.locator("#changelist-form .actions button[name=index]").first.click()
        styles[action] = cancel_style()
    page.get_by_role("button", name="No, take me back").click()
    page.wait_for_url("**/admin/agents/agent/")

    agent.delete()  # pushed as nothing: deleting here leaves the assistant in Vapi
    page.goto(f"/admin/vapisync/sync/delete-in-vapi/?vapi_id={agent.vapi_assistant_id}")
    styles["delete in Vapi"] = cancel_style()

    assert len({tuple(s) for s in styles.values()}) == 1, styles


def test_webhook_event_processed_again_from_the_admin(page, staff_user, emulator, settings, client):
    from playwright.sync_api import expect

    from phonenumbers_app.models import PhoneNumber
    from vapisync.models import WebhookEvent

    settings.VAPI_MAX_RETRIES = 0
    first = make_assistant(emulator, "First")
    second = make_assistant(emulator, "Second")
    phone = emulator.add_phone_number(provider="vapi", number="+16826269224", name="Main", assistantId=first["id"])
    from vapisync.services.runs import sync_run_start

    sync_run_start(direction=Direction.IMPORT, trigger="admin", user=staff_user)
    emulator.edit_phone_number(phone["id"], assistantId=second["id"])
    emulator.down = True
    body = {"message": {"type": "status-update", "status": "in-progress", "call": {"phoneNumberId": phone["id"]}}}
    assert client.post("/api/vapi-sync/webhook", body, content_type="application/json",
                       HTTP_X_VAPI_SECRET="test-webhook-secret").status_code == 200
    emulator.down = False
    assert WebhookEvent.objects.get().error

    log_in(page, staff_user, next_url="/admin/vapisync/webhookevent/")
    page.get_by_role("link", name="With an error").click()
    row = page.locator("#result_list tbody tr", has_text="status-update")
    expect(row).to_contain_text("Error, waiting")
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "process_again")
    page.locator("#changelist-form .actions button[name=index]").first.click()

    expect(page.locator(".messagelist .success")).to_contain_text("1 event(s) processed again.")
    event = WebhookEvent.objects.get()
    assert event.processed_at is not None and event.error == ""
    assert PhoneNumber.objects.get().agent.vapi_assistant_id == second["id"]
    page.goto("/admin/vapisync/webhookevent/")
    expect(page.locator("#result_list tbody tr", has_text="status-update")).to_contain_text("Processed")
