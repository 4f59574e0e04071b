"""The promise under interleavings: nothing lost, nothing duplicated, nothing silently overwritten.

Each test injects the concurrent actor (a person's edit, a dashboard edit, another process taking
the lease) at a named point of the run (vapisync.services.seams), so the interleaving is the same
on every run. The numbers refer to the cases of the consistency issue they reproduce.
"""

from datetime import timedelta

import pytest

from agents.models import Agent
from globalvoice.tracking import SyncStatus
from phonenumbers_app.models import PhoneNumber
from vapisync.exceptions import RollbackNotPossible
from vapisync.models import ChangeAction, Direction, Resource, RunStatus, SyncChange, SyncLock, SyncRecord, SyncRun
from vapisync.services.deletions import assistants_delete_request
from vapisync.services.history import Recorder
from vapisync.services.locks import Lease, LeaseLost, lock_take
from vapisync.services.plan import RunOptions
from vapisync.services.resource_syncs import AssistantSync
from vapisync.services.rollback import sync_run_rollback
from vapisync.services.runs import sync_run_start
from vapisync.services.seams import seam_inject

from .factories import ManualClock, make_assistant

pytestmark = pytest.mark.django_db


def run(client, direction=Direction.FULL, **kwargs):
    kwargs.setdefault("trigger", "cli")
    return sync_run_start(direction=direction, client=client, **kwargs)


def remote_writes(emulator):
    return sum(n for route, n in emulator.counts.items() if not route.startswith("GET"))


def imported_agents(emulator, vapi_client, n):
    docs = [make_assistant(emulator, f"Agent {i}") for i in range(n)]
    assert run(vapi_client, Direction.IMPORT).status == RunStatus.SUCCEEDED
    return docs


def person_saves(pk, **fields):
    """A person's edit through the ORM: a save, as the admin and the API make it."""
    agent = Agent.objects.get(pk=pk)
    for name, value in fields.items():
        setattr(agent, name, value)
    agent.save()
    return agent


# --- 1. A person's edit during an import -----------------------------------------------------


def test_1_edit_during_import_is_kept_on_both_sides(emulator, vapi_client):
    docs = imported_agents(emulator, vapi_client, 30)
    for doc in docs:
        emulator.assistants[doc["id"]]["name"] = doc["name"] + " (renamed)"
        emulator.assistants[doc["id"]]["updatedAt"] = "2030-01-01T00:00:00.000Z"
    target = Agent.objects.get(vapi_assistant_id=docs[7]["id"])

    with seam_inject("local_write", lambda **_: person_saves(target.pk, first_message="Edited meanwhile"), once=True):
        imported = run(vapi_client, Direction.IMPORT)

    target.refresh_from_db()
    assert target.first_message == "Edited meanwhile" and target.sync_status == SyncStatus.PENDING
    assert imported.counts["assistants"]["updated"] == 29 and imported.counts["assistants"]["skipped"] == 1
    skipped = imported.changes.get(action=ChangeAction.SKIP, local_id=target.pk)
    assert "Changed here while this run was working" in skipped.reason

    # The next sync brings the rename here and the person's edit to Vapi: nothing lost, no conflict.
    settled = run(vapi_client, Direction.FULL)
    target.refresh_from_db()
    remote = emulator.assistants[target.vapi_assistant_id]
    assert (target.name, target.first_message) == ("Agent 7 (renamed)", "Edited meanwhile")
    assert (remote["name"], remote["firstMessage"]) == ("Agent 7 (renamed)", "Edited meanwhile")
    assert target.sync_status == SyncStatus.SYNCED and settled.counts["assistants"]["conflicts"] == 0


def test_1_number_reassigned_during_import_keeps_its_new_agent(emulator, vapi_client):
    first, second = make_assistant(emulator, "First"), make_assistant(emulator, "Second")
    phone_doc = emulator.add_phone_number(provider="vapi", number="+16826269224", name="Main", assistantId=first["id"])
    run(vapi_client, Direction.IMPORT)
    phone = PhoneNumber.objects.get()
    emulator.phone_numbers[phone_doc["id"]]["name"] = "Main line"
    emulator.phone_numbers[phone_doc["id"]]["updatedAt"] = "2030-01-01T00:00:00.000Z"
    second_agent = Agent.objects.get(vapi_assistant_id=second["id"])

    def reassign(resource, **_):
        if resource == Resource.PHONE_NUMBERS:
            number = PhoneNumber.objects.get(pk=phone.pk)
            number.agent = second_agent
            number.save()

    with seam_inject("local_write", reassign, once=False):
        run(vapi_client, Direction.IMPORT)
    phone.refresh_from_db()
    assert phone.agent == second_agent and phone.sync_status == SyncStatus.PENDING

    run(vapi_client, Direction.FULL)
    phone.refresh_from_db()
    remote = emulator.phone_numbers[phone_doc["id"]]
    assert remote["assistantId"] == second["id"] and remote["name"] == "Main line"
    assert phone.agent == second_agent and phone.name == "Main line" and phone.sync_status == SyncStatus.SYNCED


# --- 3. The lease: renewed on a clock, fenced ---------------------------------------------------


def test_3_lease_renews_on_its_clock_and_a_failed_renewal_stops_writes():
    clock = ManualClock()
    assert lock_take(owner="run:1", ttl=timedelta(seconds=30)) == "new"
    lease = Lease(owner="run:1", ttl=timedelta(seconds=30), clock=clock)
    clock.now += 9
    lease.tick()  # not yet a third of the TTL: no renewal needed
    first_expiry = SyncLock.objects.get().expires_at
    clock.now += 2
    lease.tick()
    assert SyncLock.objects.get().expires_at > first_expiry and lease.alive()

    SyncLock.objects.update(owner="run:2")  # another process took it over
    clock.now += 11
    lease.tick()
    assert not lease.alive()
    with pytest.raises(LeaseLost):
        lease.check()


def test_3_lease_not_renewed_in_time_stops_writes_before_it_can_expire():
    clock = ManualClock()
    lock_take(owner="run:1", ttl=timedelta(seconds=60))
    lease = Lease(owner="run:1", ttl=timedelta(seconds=60), margin=20, clock=clock)
    clock.now += 39
    assert lease.alive()  # 60 s lease, 20 s kept for a request in flight
    clock.now += 2
    assert not lease.alive()
    with pytest.raises(LeaseLost):
        lease.check()


def test_3_long_push_keeps_its_lease_by_renewing_on_its_clock(emulator, vapi_client):
    Agent.objects.bulk_create([Agent(name=f"Agent {i}") for i in range(60)])
    sync_run = SyncRun.objects.create(direction=Direction.EXPORT, trigger="cli", resources=["assistants"])
    lock_take(owner=f"run:{sync_run.pk}", ttl=timedelta(seconds=30))
    clock = ManualClock()
    lease = Lease(owner=f"run:{sync_run.pk}", ttl=timedelta(seconds=30), clock=clock)

    def slow_vapi(**_):
        clock.now += 25  # each chunk of writes takes 25 "seconds": three of them outlast the 30 s TTL

    options = RunOptions(pull=False, push=True, dry_run=False, policy="manual", lease=lease)
    with seam_inject("remote_chunk", slow_vapi):
        AssistantSync(client=vapi_client, options=options, recorder=Recorder(sync_run, dry_run=False)).run()

    assert clock.now - 1000 >= 75 and lease.alive()
    assert len(emulator.assistants) == 60
    assert Agent.objects.filter(vapi_assistant_id__isnull=True).count() == 0


def test_3_run_that_loses_its_lease_stops_and_the_next_run_creates_no_duplicate(emulator, vapi_client):
    Agent.objects.bulk_create([Agent(name=f"Agent {i}") for i in range(60)])
    chunks = []

    def steal_on_second_chunk(**_):
        chunks.append(1)
        if len(chunks) == 2:  # another process took the lease over (this one stalled past its TTL)
            SyncLock.objects.update(owner="run:999")

    with seam_inject("remote_chunk", steal_on_second_chunk):
        lost = run(vapi_client, Direction.EXPORT)

    assert lost.status in (RunStatus.FAILED, RunStatus.PARTIAL) and "lease was lost" in lost.message
    written = len(emulator.assistants)
    assert written <= 50  # stopped at the first write after the loss was seen: no third chunk
    SyncLock.objects.all().delete()

    again = run(vapi_client, Direction.EXPORT)
    assert again.status == RunStatus.SUCCEEDED, again.errors
    markers = [a["metadata"]["globalvoiceAgentUuid"] for a in emulator.assistants.values()]
    assert len(markers) == len(set(markers)) == 60
    assert Agent.objects.filter(vapi_assistant_id__isnull=True).count() == 0


def test_3_agent_deleted_after_its_create_went_unrecorded_is_not_imported_back(emulator, vapi_client):
    agent = Agent.objects.create(name="Pushed, then deleted")

    with seam_inject("remote_chunk", lambda **_: SyncLock.objects.update(owner="run:999"), once=True):
        lost = run(vapi_client, Direction.EXPORT)  # the create reaches Vapi; the lost lease keeps it unrecorded
    assert "lease was lost" in lost.message and len(emulator.assistants) == 1
    assert Agent.objects.get().vapi_assistant_id is None
    SyncLock.objects.all().delete()
    agent.delete()

    full = run(vapi_client, Direction.FULL)

    assert not Agent.objects.exists()  # the assistant carries the deleted agent's marker: a tombstone
    [assistant_id] = emulator.assistants
    record = SyncRecord.objects.get(vapi_id=assistant_id)
    assert record.local_deleted_at is not None and record.remote_deleted_at is None  # "deleted here, still in Vapi"
    assert full.changes.get(vapi_id=assistant_id).action == ChangeAction.SKIP


def test_3_unrecorded_create_deleted_in_vapi_is_not_created_again(emulator, vapi_client):
    agent = Agent.objects.create(name="Pushed, then deleted in Vapi")
    with seam_inject("remote_chunk", lambda **_: SyncLock.objects.update(owner="run:999"), once=True):
        run(vapi_client, Direction.EXPORT)  # the create reaches Vapi; the lost lease keeps it unrecorded here
    SyncLock.objects.all().delete()
    [assistant_id] = emulator.assistants
    emulator.remove_assistant(assistant_id)  # a person deletes it in Vapi's dashboard

    run(vapi_client, Direction.FULL)

    agent.refresh_from_db()
    assert not emulator.assistants  # the person's deletion stands
    assert agent.sync_status == SyncStatus.DELETED_REMOTELY and agent.vapi_assistant_id == assistant_id


def test_3_selective_push_after_an_unfinished_run_adopts_the_copy_instead_of_creating(emulator, vapi_client):
    agent = Agent.objects.create(name="Half pushed")

    def lose_the_answer(**_):
        emulator.fail_after_apply_next(1, status=502, route="POST /assistant")
        emulator.fail_next(5, status=503, route="GET /assistant")  # and the lost answer cannot be checked now

    with seam_inject("remote_write", lose_the_answer, once=True):
        first = run(vapi_client, Direction.EXPORT, local_ids={Resource.ASSISTANTS: [agent.pk]})
    agent.refresh_from_db()
    assert first.status != RunStatus.SUCCEEDED and len(emulator.assistants) == 1 and agent.vapi_assistant_id is None

    second = run(vapi_client, Direction.EXPORT, local_ids={Resource.ASSISTANTS: [agent.pk]})
    agent.refresh_from_db()
    assert second.status == RunStatus.SUCCEEDED, second.errors
    assert len(emulator.assistants) == 1 and agent.vapi_assistant_id in emulator.assistants


# --- 4. A dashboard edit while an export pushes ---------------------------------------------------


def test_4_dashboard_edit_during_export_is_not_put_back(emulator, vapi_client, settings):
    settings.VAPI_SYNC_RECHECK_SECONDS = 0  # check Vapi before every chunk
    docs = imported_agents(emulator, vapi_client, 60)
    for agent in Agent.objects.all():
        agent.system_prompt = f"New prompt for {agent.name}"
        agent.save()
    late = docs[55]["id"]  # pushed in the third chunk

    def dashboard_edit(**_):
        vapi_client.update_assistant(late, {"model": {**emulator.assistants[late]["model"], "temperature": 0.9}})

    with seam_inject("remote_chunk", dashboard_edit, once=True):
        exported = run(vapi_client, Direction.EXPORT)

    assert exported.status == RunStatus.SUCCEEDED, exported.errors
    remote = emulator.assistants[late]
    assert remote["model"]["temperature"] == 0.9  # the dashboard's edit survived
    assert remote["model"]["messages"][0]["content"] == "New prompt for Agent 55"  # and ours landed
    assert all(a["model"]["messages"][0]["content"].startswith("New prompt") for a in emulator.assistants.values())


def test_4_dashboard_edit_of_the_same_field_during_export_is_a_conflict(emulator, vapi_client, settings):
    settings.VAPI_SYNC_RECHECK_SECONDS = 0
    settings.VAPI_SYNC_CONFLICT_POLICY = "manual"
    docs = imported_agents(emulator, vapi_client, 30)
    for agent in Agent.objects.all():
        agent.first_message = f"Ours {agent.pk}"
        agent.save()
    late = docs[29]["id"]

    with seam_inject("remote_chunk", lambda **_: vapi_client.update_assistant(late, {"firstMessage": "Theirs"}), once=True):
        exported = run(vapi_client, Direction.EXPORT)

    agent = Agent.objects.get(vapi_assistant_id=late)
    assert emulator.assistants[late]["firstMessage"] == "Theirs"
    assert agent.first_message.startswith("Ours") and agent.sync_status == SyncStatus.CONFLICT
    assert exported.counts["assistants"]["conflicts"] == 1


# --- 5. Rollback with preconditions -----------------------------------------------------------------


def test_5a_delete_in_vapi_is_rolled_back_once_and_the_agent_never_comes_back(emulator, vapi_client):
    doc = imported_agents(emulator, vapi_client, 1)[0]
    Agent.objects.get().delete()
    deleted = assistants_delete_request(vapi_ids=[doc["id"]], trigger="cli", client=vapi_client)
    assert not emulator.assistants

    undo = sync_run_rollback(run_id=deleted.pk, trigger="cli", client=vapi_client)
    assert undo.status == RunStatus.SUCCEEDED, undo.errors
    with pytest.raises(RollbackNotPossible, match=f"already rolled back by run {undo.pk}"):
        sync_run_rollback(run_id=deleted.pk, trigger="cli", client=vapi_client)

    assert len(emulator.assistants) == 1
    run(vapi_client, Direction.FULL)
    assert not Agent.objects.exists()  # still deleted here: the tombstone names the re-created copy


def test_5b_rollback_of_a_push_refuses_after_a_dashboard_edit_of_an_unmodelled_field(emulator, vapi_client):
    doc = imported_agents(emulator, vapi_client, 1)[0]
    person_saves(Agent.objects.get().pk, system_prompt="Pushed prompt")
    pushed = run(vapi_client, Direction.EXPORT)
    vapi_client.update_assistant(doc["id"], {"model": {**emulator.assistants[doc["id"]]["model"], "temperature": 0.95}})

    undo = sync_run_rollback(run_id=pushed.pk, trigger="cli", client=vapi_client)

    assert undo.status == RunStatus.PARTIAL and "edited in Vapi since" in undo.errors[0]["message"]
    model = emulator.assistants[doc["id"]]["model"]
    assert model["temperature"] == 0.95 and model["messages"][0]["content"] == "Pushed prompt"


def test_5c_rollback_of_a_push_keeps_a_newer_local_edit_waiting_to_be_pushed(emulator, vapi_client):
    doc = imported_agents(emulator, vapi_client, 1)[0]
    agent = person_saves(Agent.objects.get().pk, first_message="Pushed")
    pushed = run(vapi_client, Direction.EXPORT)
    person_saves(agent.pk, first_message="Newer, not pushed yet")

    undo = sync_run_rollback(run_id=pushed.pk, trigger="cli", client=vapi_client)

    agent.refresh_from_db()
    assert undo.status == RunStatus.PARTIAL and "edited here since" in undo.errors[0]["message"]
    assert agent.first_message == "Newer, not pushed yet" and agent.sync_status == SyncStatus.PENDING
    assert emulator.assistants[doc["id"]]["firstMessage"] == "Pushed"


def test_5d_rollback_never_deletes_an_assistant_a_vapi_number_routes_to(emulator, vapi_client):
    Agent.objects.create(name="Created by export")
    exported = run(vapi_client, Direction.EXPORT)
    assistant_id = Agent.objects.get().vapi_assistant_id
    emulator.add_phone_number(provider="vapi", number="+16826269224", assistantId=assistant_id)

    undo = sync_run_rollback(run_id=exported.pk, trigger="cli", client=vapi_client)

    assert undo.status == RunStatus.PARTIAL and "+16826269224 routes calls to it" in undo.errors[0]["message"]
    assert assistant_id in emulator.assistants
    assert Agent.objects.get().vapi_assistant_id == assistant_id


def test_5e_rollback_of_an_import_update_restores_both_sides_and_stays_undone(emulator, vapi_client):
    doc = imported_agents(emulator, vapi_client, 1)[0]
    vapi_client.update_assistant(doc["id"], {"firstMessage": "Changed in Vapi"})
    imported = run(vapi_client, Direction.IMPORT)
    agent = Agent.objects.get()
    assert agent.first_message == "Changed in Vapi"

    undo = sync_run_rollback(run_id=imported.pk, trigger="cli", client=vapi_client)

    assert undo.status == RunStatus.SUCCEEDED, undo.errors
    agent.refresh_from_db()
    assert agent.first_message == doc["firstMessage"] == emulator.assistants[doc["id"]]["firstMessage"]
    assert agent.sync_status == SyncStatus.SYNCED
    emulator.reset_counters()
    run(vapi_client, Direction.FULL)
    agent.refresh_from_db()
    assert remote_writes(emulator) == 0 and agent.first_message == doc["firstMessage"]


def test_5_undoing_the_undo_of_an_export_keeps_an_agent_deleted_since_deleted(emulator, vapi_client):
    # Found by the state machine: export, agent deleted here, export rolled back (the assistant goes),
    # then that rollback rolled back: the re-created assistant must stay "deleted here", not come back.
    agent = Agent.objects.create(name="Short-lived")
    exported = run(vapi_client, Direction.EXPORT)
    Agent.objects.get(pk=agent.pk).delete()
    undo = sync_run_rollback(run_id=exported.pk, trigger="cli", client=vapi_client)
    assert undo.status == RunStatus.SUCCEEDED, undo.errors
    assert not emulator.assistants

    redo = sync_run_rollback(run_id=undo.pk, trigger="cli", client=vapi_client)
    assert redo.status == RunStatus.SUCCEEDED, redo.errors
    [assistant_id] = emulator.assistants
    run(vapi_client, Direction.FULL)
    assert not Agent.objects.exists()
    record = SyncRecord.objects.get(vapi_id=assistant_id)
    assert record.local_deleted_at is not None and record.remote_deleted_at is None  # "deleted here, still in Vapi"


def test_5_undoing_a_deletion_never_makes_a_second_copy_of_an_agent_linked_again(emulator, vapi_client):
    # Found by the state machine: an export's create rolled back, the agent pushed again (a new copy),
    # then the rollback rolled back: re-creating the first copy would give the agent two assistants.
    agent = Agent.objects.create(name="Pushed twice")
    exported = run(vapi_client, Direction.EXPORT)
    undo = sync_run_rollback(run_id=exported.pk, trigger="cli", client=vapi_client)
    run(vapi_client, Direction.EXPORT)
    agent.refresh_from_db()

    redo = sync_run_rollback(run_id=undo.pk, trigger="cli", client=vapi_client)

    assert redo.status == RunStatus.PARTIAL and "linked to another copy" in redo.errors[0]["message"]
    assert list(emulator.assistants) == [agent.vapi_assistant_id]


def test_5_undoing_a_deletion_makes_no_second_copy_of_an_agent_deleted_since(emulator, vapi_client):
    # Found by the state machine: as above, but the agent was deleted here after its second push, so its
    # second copy is kept as "deleted here, still in Vapi": re-creating the first would make two.
    agent = Agent.objects.create(name="Pushed twice, then deleted")
    exported = run(vapi_client, Direction.EXPORT)
    undo = sync_run_rollback(run_id=exported.pk, trigger="cli", client=vapi_client)
    run(vapi_client, Direction.EXPORT)
    Agent.objects.get(pk=agent.pk).delete()

    redo = sync_run_rollback(run_id=undo.pk, trigger="cli", client=vapi_client)

    assert redo.status == RunStatus.PARTIAL and "linked to another copy" in redo.errors[0]["message"]
    assert len(emulator.assistants) == 1


# --- 6, 7. A person acts while a push is in flight -----------------------------------------------------


def test_6_fix_saved_while_a_failing_push_is_in_flight_stays_pending_and_is_pushed(emulator, vapi_client):
    agent = Agent.objects.create(name="Broken", model_provider="not-a-provider")

    with seam_inject("remote_chunk", lambda **_: person_saves(agent.pk, model_provider="openai"), once=True):
        failed = run(vapi_client, Direction.EXPORT, local_ids={Resource.ASSISTANTS: [agent.pk]})

    agent.refresh_from_db()
    assert failed.counts["assistants"]["failed"] == 1  # Vapi rejected the value it was sent
    assert agent.sync_status == SyncStatus.PENDING  # the fix was not overwritten with "error"
    run(vapi_client, Direction.EXPORT, local_ids={Resource.ASSISTANTS: [agent.pk]})
    agent.refresh_from_db()
    assert agent.sync_status == SyncStatus.SYNCED
    assert emulator.assistants[agent.vapi_assistant_id]["model"]["provider"] == "openai"


@pytest.mark.parametrize("delete_remote", [False, True])
def test_7_agent_deleted_while_its_create_is_in_flight_keeps_its_tombstone(emulator, vapi_client, settings, delete_remote):
    settings.VAPI_SYNC_DELETE_REMOTE = delete_remote
    agent = Agent.objects.create(name="Short-lived")

    with seam_inject("remote_chunk", lambda **_: Agent.objects.filter(pk=agent.pk).delete(), once=True):
        run(vapi_client, Direction.EXPORT)

    record = SyncRecord.objects.get(resource=Resource.ASSISTANTS, local_id=agent.pk)
    assert record.local_deleted_at is not None
    if delete_remote:
        assert not emulator.assistants and record.remote_deleted_at is not None
    else:  # listed as "deleted here, still in Vapi", never imported back
        assert record.vapi_id in emulator.assistants and record.remote_deleted_at is None
        run(vapi_client, Direction.FULL)
        assert not Agent.objects.exists()


def test_7_agent_deleted_while_its_update_is_in_flight_keeps_its_tombstone(emulator, vapi_client):
    doc = imported_agents(emulator, vapi_client, 1)[0]
    agent = person_saves(Agent.objects.get().pk, name="Renamed")

    with seam_inject("remote_chunk", lambda **_: Agent.objects.filter(pk=agent.pk).delete(), once=True):
        run(vapi_client, Direction.EXPORT)

    record = SyncRecord.objects.get(resource=Resource.ASSISTANTS, vapi_id=doc["id"])
    assert record.local_deleted_at is not None and record.remote_deleted_at is None
    run(vapi_client, Direction.FULL)
    assert not Agent.objects.exists() and doc["id"] in emulator.assistants


# --- 8. Overwrites by policy are visible --------------------------------------------------------------


def test_8_vapi_wins_reports_the_discarded_local_edit_as_a_conflict(emulator, vapi_client, settings):
    settings.VAPI_SYNC_CONFLICT_POLICY = "vapi_wins"
    doc = imported_agents(emulator, vapi_client, 1)[0]
    person_saves(Agent.objects.get().pk, first_message="Local edit")
    vapi_client.update_assistant(doc["id"], {"firstMessage": "Vapi edit"})

    result = run(vapi_client, Direction.FULL)

    assert Agent.objects.get().first_message == "Vapi edit"
    assert result.counts["assistants"]["conflicts"] == 1
    conflict = SyncChange.objects.get(run=result, action=ChangeAction.CONFLICT)
    assert conflict.diff == {"first_message": ["Local edit", "Vapi edit"]}
    assert "vapi_wins" in conflict.reason and "discarded 'Local edit'" in conflict.reason


# --- The stored status a run leaves -------------------------------------------------------------------


@pytest.mark.parametrize("direction", [Direction.IMPORT, Direction.EXPORT, Direction.FULL])
def test_status_a_run_stores_is_what_a_fresh_check_finds_and_costs_no_second_listing(
        emulator, vapi_client, settings, direction):
    from vapisync.services.status import status_snapshot_get, status_snapshot_refresh

    settings.VAPI_SYNC_CONFLICT_POLICY = "manual"
    docs = imported_agents(emulator, vapi_client, 4)
    person_saves(Agent.objects.get(vapi_assistant_id=docs[0]["id"]).pk, first_message="Local edit")  # to push
    vapi_client.update_assistant(docs[1]["id"], {"name": "Renamed in Vapi"})  # to pull
    person_saves(Agent.objects.get(vapi_assistant_id=docs[2]["id"]).pk, name="Both sides")  # a conflict
    vapi_client.update_assistant(docs[2]["id"], {"name": "Both, differently"})
    Agent.objects.get(vapi_assistant_id=docs[3]["id"]).delete()  # deleted here, still in Vapi
    make_assistant(emulator, "Only in Vapi")
    Agent.objects.create(name="Only here")
    emulator.add_phone_number(provider="vapi", number="+16826269224")
    emulator.reset_counters()

    run(vapi_client, direction)

    lists = {route: n for route, n in emulator.counts.items() if route in ("GET /assistant", "GET /phone-number")}
    assert lists == {"GET /assistant": 1, "GET /phone-number": 1}  # the run's own listing, nothing after it
    stored = status_snapshot_get().resources
    fresh = status_snapshot_refresh(client=vapi_client).resources
    for resource in ("assistants", "phone_numbers"):
        assert stored[resource]["vapi"] == fresh[resource]["vapi"]
        assert stored[resource]["would_change"] == fresh[resource]["would_change"], resource
