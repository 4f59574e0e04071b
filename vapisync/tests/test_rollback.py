"""Rollback against the Vapi emulator: a run undone on both sides, newer edits kept, a rollback undone."""

import pytest

from agents.models import Agent
from globalvoice.tracking import SyncStatus
from vapisync.models import Direction, RunStatus
from vapisync.services.rollback import sync_run_rollback

from .factories import linked_agent, make_assistant, remote_writes, run

pytestmark = pytest.mark.django_db


def test_rollback_of_import_removes_what_it_created_and_keeps_it_from_coming_back(emulator, vapi_client):
    make_assistant(emulator, "Imported")
    imported = run(vapi_client, Direction.IMPORT)

    rollback = sync_run_rollback(run_id=imported.pk, trigger="cli", client=vapi_client)

    assert rollback.status == RunStatus.SUCCEEDED, rollback.errors
    assert not Agent.objects.exists()
    run(vapi_client, Direction.IMPORT)
    assert not Agent.objects.exists()


def test_rollback_of_export_restores_vapi_and_local(emulator, vapi_client):
    agent, remote = linked_agent(emulator, vapi_client)
    agent.system_prompt = "A bad prompt"
    agent.save()
    exported = run(vapi_client, Direction.EXPORT)
    assert emulator.assistants[remote["id"]]["model"]["messages"][0]["content"] == "A bad prompt"

    rollback = sync_run_rollback(run_id=exported.pk, trigger="cli", client=vapi_client)

    assert rollback.status == RunStatus.SUCCEEDED, rollback.errors
    restored = emulator.assistants[remote["id"]]
    assert restored["model"] == remote["model"]
    agent.refresh_from_db()
    assert agent.system_prompt == "You are helpful." and agent.sync_status == SyncStatus.SYNCED
    emulator.reset_counters()
    run(vapi_client, Direction.FULL)
    assert remote_writes(emulator) == 0  # nothing pushes the undone edit again


def test_rollback_of_export_create_deletes_the_assistant(emulator, vapi_client):
    agent = Agent.objects.create(name="Oops")
    exported = run(vapi_client, Direction.EXPORT)
    rollback = sync_run_rollback(run_id=exported.pk, trigger="cli", client=vapi_client)
    assert rollback.status == RunStatus.SUCCEEDED, rollback.errors
    assert not emulator.assistants
    agent.refresh_from_db()
    assert agent.vapi_assistant_id is None and agent.sync_status == SyncStatus.LOCAL_ONLY


def test_rollback_does_not_overwrite_newer_edits_and_says_so(emulator, vapi_client):
    agent, remote = linked_agent(emulator, vapi_client)
    agent.first_message = "Pushed"
    agent.save()
    exported = run(vapi_client, Direction.FULL)
    vapi_client.update_assistant(remote["id"], {"firstMessage": "Edited in Vapi afterwards"})

    rollback = sync_run_rollback(run_id=exported.pk, trigger="cli", client=vapi_client)

    assert rollback.status == RunStatus.PARTIAL
    assert "edited in Vapi since" in rollback.errors[0]["message"]
    assert emulator.assistants[remote["id"]]["firstMessage"] == "Edited in Vapi afterwards"


def test_rollback_of_full_sync_and_of_the_rollback(emulator, vapi_client):
    make_assistant(emulator, "Remote")
    Agent.objects.create(name="Local")
    full = run(vapi_client, Direction.FULL)
    assert Agent.objects.count() == 2 and len(emulator.assistants) == 2

    undo = sync_run_rollback(run_id=full.pk, trigger="cli", client=vapi_client)
    assert undo.status == RunStatus.SUCCEEDED, undo.errors
    assert list(Agent.objects.values_list("name", flat=True)) == ["Local"]
    assert len(emulator.assistants) == 1

    redo = sync_run_rollback(run_id=undo.pk, trigger="cli", client=vapi_client)
    assert redo.status == RunStatus.SUCCEEDED, redo.errors
    assert Agent.objects.count() == 2 and len(emulator.assistants) == 2
