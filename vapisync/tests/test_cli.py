"""`manage.py vapi_sync`: exit codes, --json on stdout, verbosity, the progress bar only on a terminal.

Most tests run the command in-process with call_command against the in-process emulator; one runs
the real `manage.py` in a subprocess against the emulator served over HTTP and a file SQLite copy
of the test database, to see what a shell sees (exit status, pipes).
"""

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from agents.models import Agent
from globalvoice.tracking import SyncStatus
from phonenumbers_app.models import PhoneNumber
from vapisync.models import Direction, SyncChange, SyncRun
from vapisync.services.runs import sync_run_create

from .factories import emulator_served, make_assistant

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
BAR_MARKS = ("\r", "it/s", "item/s", "%|")


class TTY(io.StringIO):
    def isatty(self):
        return True


def vapi_sync(*args, verbosity=1, stderr=None):
    """Run the command in-process: (stdout, stderr, exit status)."""
    out, err = io.StringIO(), stderr if stderr is not None else io.StringIO()
    try:
        call_command("vapi_sync", *args, verbosity=verbosity, stdout=out, stderr=err)
        code = 0
    except CommandError as exc:
        code = exc.returncode
        err.write(str(exc))
    return out.getvalue(), err.getvalue(), code


def remote_writes(emulator) -> int:
    return sum(n for route, n in emulator.counts.items() if not route.startswith("GET"))


# --- Runs and their exit status -------------------------------------------------------------------


def test_import_json_is_the_run_object_and_nothing_else(emulator):
    support = make_assistant(emulator, "Support")
    emulator.add_phone_number(provider="vapi", number="+16826269224", assistantId=support["id"])

    out, err, code = vapi_sync("import", "--json")

    assert code == 0, err
    run = json.loads(out)
    assert (run["direction"], run["status"], run["trigger"], run["user"]) == ("import", "succeeded", "cli", None)
    assert run["counts"]["agents"]["created"] == 1 and run["counts"]["phone_numbers"]["created"] == 1
    assert PhoneNumber.objects.get().agent == Agent.objects.get()
    assert not any(mark in err for mark in BAR_MARKS)


def test_full_prints_a_summary_and_lists_changes_at_verbosity_2(emulator):
    make_assistant(emulator, "Remote")
    Agent.objects.create(name="Local")

    out, _, code = vapi_sync("full", verbosity=2)

    assert code == 0
    assert "Full sync: succeeded" in out
    assert "agents         created 2, updated 0, unchanged 0" in out
    assert "Remote" in out and "Local" in out  # one line per change at -v 2
    assert len(emulator.assistants) == 2


def test_verbosity_0_prints_nothing_on_success(emulator):
    make_assistant(emulator, "Remote")
    out, err, code = vapi_sync("full", verbosity=0)
    assert (out, code) == ("", 0)
    assert Agent.objects.count() == 1


def test_plan_is_a_full_dry_run_that_changes_nothing(emulator):
    make_assistant(emulator, "Remote only")
    Agent.objects.create(name="Local only")
    emulator.reset_counters()

    out, _, code = vapi_sync("plan")

    assert code == 0
    assert "dry run, nothing changed" in out and "Remote only" in out and "Local only" in out
    assert remote_writes(emulator) == 0 and Agent.objects.count() == 1 and not SyncChange.objects.exists()
    assert SyncRun.objects.get().dry_run is True

    plan = json.loads(vapi_sync("plan", "--json")[0])
    assert {item["label"] for item in plan["plan"]} >= {"Remote only", "Local only"}


def test_selected_ids_and_resource(emulator):
    wanted = make_assistant(emulator, "Wanted")
    make_assistant(emulator, "Other")
    local = Agent.objects.create(name="Mine")

    assert vapi_sync("import", "--resource", "agents", "--ids", wanted["id"])[2] == 0
    assert set(Agent.objects.values_list("name", flat=True)) == {"Wanted", "Mine"}
    out, _, code = vapi_sync("export", "--resource", "agents", "--ids", str(local.pk), "--json")
    assert code == 0 and json.loads(out)["resources"] == ["agents"]
    local.refresh_from_db()
    assert local.vapi_assistant_id in emulator.assistants


def test_failed_items_exit_1_with_the_run_still_on_stdout(emulator):
    Agent.objects.create(name="Cannot push")
    emulator.fail_writes = True

    out, err, code = vapi_sync("export", "--json")

    assert code == 1
    run = json.loads(out)
    assert run["status"] in ("partial", "failed") and run["counts"]["agents"]["failed"] == 1
    assert f"Run {run['id']}" in err


def test_run_already_in_progress_exits_1_naming_it(emulator):
    running = sync_run_create(direction=Direction.FULL, trigger="api")
    out, err, code = vapi_sync("import", "--json")
    assert code == 1
    assert json.loads(out) == {"detail": err, "code": "sync_already_running", "run_id": running.pk}


def test_missing_api_key_exits_2(settings):
    settings.VAPI_API_KEY = ""
    out, err, code = vapi_sync("full", "--json")
    assert code == 2 and "VAPI_API_KEY" in err
    assert json.loads(out)["code"] == "vapi_not_configured"
    assert not SyncRun.objects.exists()
    out, err, code = vapi_sync("status", "--local", "--json")
    assert code == 2 and json.loads(out)["configured"] is False


@pytest.mark.parametrize(
    "args",
    [
        ("import", "--ids", "1,2"),  # needs one resource
        ("export", "--resource", "agents", "--ids", "1,,2"),
        ("export", "--resource", "phone-numbers", "--ids", "999999"),  # no such number
        ("import", "--resource", "agents", "--ids", "1", "--delta"),
        ("rollback", "999999"),
        ("show", "999999"),
        ("resolve", "agents", "999999", "--keep", "vapi"),
    ],
)
def test_usage_errors_exit_2(emulator, args):
    out, err, code = vapi_sync(*args, "--json")
    assert code == 2, (out, err)
    assert json.loads(out)["detail"] == err
    assert not SyncRun.objects.exists()


def test_argparse_errors_are_command_errors():
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("vapi_sync", "sideways", stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(CommandError, match="unrecognized arguments: --delta"):
        call_command("vapi_sync", "export", "--delta", stdout=io.StringIO(), stderr=io.StringIO())


# --- History, rollback, conflicts, deletions -------------------------------------------------------


def test_runs_show_and_rollback(emulator):
    make_assistant(emulator, "Imported")
    imported = json.loads(vapi_sync("import", "--json")[0])

    runs = json.loads(vapi_sync("runs", "--json")[0])
    assert [r["id"] for r in runs] == [imported["id"]]
    assert str(imported["id"]) in vapi_sync("runs")[0]
    shown = json.loads(vapi_sync("show", str(imported["id"]), "--json")[0])
    assert shown["changes_count"] == 1 and shown["changes"][0]["label"] == "Imported"
    assert "Imported" in vapi_sync("show", str(imported["id"]))[0]

    out, _, code = vapi_sync("rollback", str(imported["id"]), "--json")

    assert code == 0
    rollback = json.loads(out)
    assert (rollback["direction"], rollback["rollback_of"], rollback["status"]) == ("rollback", imported["id"], "succeeded")
    assert not Agent.objects.exists()
    preview = json.loads(vapi_sync("plan", "--json")[0])
    out, err, code = vapi_sync("rollback", str(preview["id"]))
    assert code == 2 and "dry run" in err


def test_conflicts_and_resolve(emulator, settings):
    settings.VAPI_SYNC_CONFLICT_POLICY = "manual"
    remote = make_assistant(emulator, "Support")
    vapi_sync("import")
    agent = Agent.objects.get()
    agent.first_message = "Local greeting"
    agent.save()
    emulator.edit_assistant(remote["id"], firstMessage="Vapi greeting")
    vapi_sync("full")

    conflicts = json.loads(vapi_sync("conflicts", "--json")[0])
    assert [(c["resource"], c["local_id"]) for c in conflicts] == [("agents", agent.pk)]

    out, _, code = vapi_sync("resolve", "agents", str(agent.pk), "--keep", "vapi", "--json")

    assert code == 0 and json.loads(out)["direction"] == "resolve"
    agent.refresh_from_db()
    assert agent.first_message == "Vapi greeting" and agent.sync_status == SyncStatus.SYNCED
    assert vapi_sync("resolve", "agents", str(agent.pk), "--keep", "vapi")[2] == 2  # nothing to resolve


def test_delete_in_vapi(emulator):
    gone = make_assistant(emulator, "Gone")
    vapi_sync("import")
    Agent.objects.get().delete()

    out, _, code = vapi_sync("delete-in-vapi", gone["id"], "--no-input", "--json")

    assert code == 0 and json.loads(out)["counts"]["agents"]["deleted"] == 1
    assert not emulator.assistants


def test_status_and_health(emulator):
    make_assistant(emulator, "Remote")
    out, _, code = vapi_sync("status", "--json")
    assert code == 0
    status = json.loads(out)
    assert status["agents"]["vapi"] == 1 and status["in_sync"] is False
    text = vapi_sync("status")[0]
    assert "OUT OF SYNC" in text and "a full sync would: created 1" in text
    assert json.loads(vapi_sync("health", "--json")[0])["status"] == "ok"


# --- Progress bar ------------------------------------------------------------------------------------


def test_progress_bar_on_a_terminal_only(emulator):
    for i in range(3):
        make_assistant(emulator, f"Remote {i}")
    Agent.objects.create(name="Local")

    tty = TTY()
    out, err, code = vapi_sync("full", stderr=tty)
    assert code == 0
    assert "reading Vapi" in err and any(mark in err for mark in BAR_MARKS)
    assert not any(mark in out for mark in BAR_MARKS)

    for args, verbosity in ((("full", "--json"), 1), (("full",), 0)):
        out, err, code = vapi_sync(*args, verbosity=verbosity, stderr=TTY())
        assert code == 0 and not any(mark in err for mark in BAR_MARKS), args


def test_progress_bar_counts_records_written_and_ends_full(emulator):
    Agent.objects.bulk_create([Agent(name=f"Local {i}") for i in range(7)])
    tty = TTY()
    out, err, code = vapi_sync("export", "--resource", "agents", stderr=tty)
    assert code == 0
    assert "assistants: applying" in err and "7/7" in err and "100%" in err  # only what needed work, to the end


def test_status_compares_now_or_shows_the_stored_comparison(emulator):
    make_assistant(emulator, "Remote")
    emulator.reset_counters()
    assert json.loads(vapi_sync("status", "--cached", "--json")[0])["snapshot"] is None and emulator.counts == {}
    assert json.loads(vapi_sync("status", "--json")[0])["snapshot"]["source"] == "check"
    assert emulator.counts["GET /assistant"] == 1
    emulator.reset_counters()
    cached = json.loads(vapi_sync("status", "--cached", "--json")[0])
    assert cached["agents"]["vapi"] == 1 and cached["snapshot"]["fresh"] is True and emulator.counts == {}


# --- What a shell sees ---------------------------------------------------------------------------------


@pytest.fixture
def served_emulator():
    with emulator_served(api_key="cli-test-key", random_seed=3) as served:
        yield served


@pytest.fixture
def subprocess_database_url(tmp_path):
    """DATABASE_URL of the test database for a subprocess. The test commits (transaction=True), so
    the subprocess sees its rows; an in-memory SQLite test database is copied to a file first."""
    assert not connection.in_atomic_block
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        if not connection.is_in_memory_db():
            return f"sqlite:///{db['NAME']}"
        path = tmp_path / "cli.sqlite3"
        connection.ensure_connection()
        target = sqlite3.connect(path)
        try:
            connection.connection.backup(target)
        finally:
            target.close()
        return f"sqlite:///{path}"
    credentials = quote(db["USER"] or "") + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_manage_py_in_a_shell_exit_status_json_and_no_bar_when_piped(served_emulator, subprocess_database_url):
    emulator, base_url = served_emulator
    make_assistant(emulator, "Support")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "globalvoice.settings", "ENV_FILE": "", "SECRET_KEY": "cli-test-secret",
        "DATABASE_URL": subprocess_database_url, "VAPI_BASE_URL": base_url, "VAPI_API_KEY": "cli-test-key",
        "CELERY_BROKER_URL": "", "LOG_LEVEL": "WARNING",
    }

    def manage(*args):
        return subprocess.run(
            [sys.executable, "manage.py", "vapi_sync", *args], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=60,
        )

    done = manage("import")
    assert done.returncode == 0, done.stderr
    assert "Import from Vapi: succeeded" in done.stdout
    assert not any(mark in done.stderr for mark in BAR_MARKS), done.stderr  # stderr is a pipe: no bar

    again = manage("full", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"]["agents"]["unchanged"] == 1
    assert not any(mark in again.stderr for mark in BAR_MARKS)

    usage = manage("export", "--delta")
    assert usage.returncode == 2 and "unrecognized arguments: --delta" in usage.stderr and usage.stdout == ""
