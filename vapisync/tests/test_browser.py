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

from .conftest import make_assistant

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
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=live_server.url)
    context.set_default_timeout(20_000)
    tab = context.new_page()
    errors = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
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
    agents_card = page.locator("#card-agents")
    expect(agents_card.locator("[data-count=database]")).to_have_text("1")
    expect(agents_card.locator("[data-count=vapi]")).to_have_text("3")
    expect(page.locator("#status .vs-overall")).to_contain_text("Out of sync")

    # Slow Vapi down, so the page's live progress polls (runs/active.json) see the run while it works.
    import vapisync.admin_views as views

    polled = []
    real_run_json = views.run_json
    monkeypatch.setattr(views, "run_json", lambda run: polled.append(real_run_json(run)) or polled[-1])
    emulator.latency_ms = 700
    page.get_by_role("button", name="Full Synchronization").click(no_wait_after=True)
    page.wait_for_url(re.compile(r".*/admin/vapisync/sync/\?run=\d+#results$"))
    emulator.latency_ms = 0

    run = SyncRun.objects.get(direction=Direction.FULL)
    assert run.status == RunStatus.SUCCEEDED and run.trigger == "admin"
    assert any(p["id"] == run.pk and p["active"] for p in polled), polled
    expect(page.locator(".messagelist .success")).to_contain_text("Full synchronization finished")
    results = page.locator("#results")
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

    expect(page.locator(".messagelist .success")).to_contain_text("Export of 1 selected agent to Vapi finished")
    agent.refresh_from_db()
    assert agent.vapi_assistant_id in emulator.assistants
    assert emulator.assistants[agent.vapi_assistant_id]["name"] == "Reception"
    assert [a["name"] for a in emulator.assistants.values()] == ["Reception"]  # pushed once, not twice
    expect(page.locator("#result_list tr", has_text="Reception")).to_contain_text("In sync")
