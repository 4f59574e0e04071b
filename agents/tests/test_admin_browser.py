"""The agent change form in a real browser (Debian's Chromium through Playwright, `make browser`):
name suggestions follow the provider chosen, and a stale form is refused in the admin's error box."""

import os

import pytest
from django.db.models import F

from agents.models import Agent

from .factories import AgentFactory

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop runs in this thread

CHROMIUM = "/usr/bin/chromium"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(live_server, settings, staff_user):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make browser`.", pytrace=False)
    from playwright.sync_api import sync_playwright

    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        context = browser.new_context(base_url=live_server.url)
        context.set_default_timeout(20_000)
        tab = context.new_page()
        errors = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto("/admin/login/?next=/admin/")
        tab.fill("#id_username", staff_user.username)
        tab.fill("#id_password", "pw-staff-123")
        tab.click("input[type=submit]")
        yield tab
        browser.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_name_suggestions_follow_the_provider_and_stale_forms_are_refused(page):
    agent = AgentFactory(name="Old name", first_message="Hello", model_provider="openai", model="gpt-4o")
    page.goto(f"/admin/agents/agent/{agent.pk}/change/")
    model = page.locator("#id_model")
    assert model.get_attribute("list") == "id_model-names-openai"
    page.select_option("#id_model_provider", "anthropic")
    assert model.get_attribute("list") == "id_model-names-anthropic"
    page.select_option("#id_model_provider", "openrouter")  # takes any model name: no list
    assert model.get_attribute("list") is None
    page.select_option("#id_model_provider", "openai")

    # An import renames the agent while the page is open; the person changes only the first message.
    Agent.objects.filter(pk=agent.pk).update(name="Renamed in Vapi", version=F("version") + 1)
    page.fill("#id_first_message", "Welcome!")
    page.click("input[name=_save]")
    error_box = page.locator("ul.errorlist.nonfield")
    assert "Nothing was saved" in error_box.inner_text()
    assert "Name: your value “Old name” / current value “Renamed in Vapi”" in error_box.inner_text()
    assert page.locator("p.errornote").is_visible()
    agent.refresh_from_db()
    assert (agent.name, agent.first_message) == ("Renamed in Vapi", "Hello")
