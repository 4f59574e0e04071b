"""The sync engine against the Vapi emulator: state on both sides and requests made."""

import copy
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import Agent
from globalvoice.tracking import SyncStatus
from phonenumbers_app.models import PhoneNumber
from vapisync.exceptions import SyncAlreadyRunning
from vapisync.models import ChangeAction, Direction, Resource, RunStatus, SyncChange, SyncRecord
from vapisync.services.conflicts import conflict_resolve
from vapisync.services.deletions import assistants_delete_request
from vapisync.services.seams import seam_inject

from .factories import linked_agent, make_assistant, remote_writes, run

pytestmark = pytest.mark.django_db


# --- Import ------------------------------------------------------------------------------


def test_import_creates_agents_and_phone_numbers_linked_to_them(emulator, vapi_client):
    support = make_assistant(emulator, "Support")
    make_assistant(emulator, "Sales", prompt="Sell politely.")
    emulator.add_phone_number(provider="vapi", number="+16826269224", name="Main line", assistantId=support["id"])
    emulator.add_phone_number(provider="vapi", number="+19724741424", name="Unassigned")

    result = run(vapi_client, Direction.IMPORT)

    assert result.status == RunStatus.SUCCEEDED, result.errors
    assert result.counts["assistants"]["created"] == 2
    assert result.counts["phone_numbers"]["created"] == 2
    agent = Agent.objects.get(vapi_assistant_id=support["id"])
    assert agent.system_prompt == "You are helpful."
    assert agent.first_message == "Hi, this is Support."
    assert (agent.model_provider, agent.model, agent.voice_provider, agent.voice_id) == ("openai", "gpt-4o", "vapi", "Elliot")
    assert agent.sync_status == SyncStatus.SYNCED
    main = PhoneNumber.objects.get(number="+16826269224")
    assert main.agent == agent and main.vapi_assistant_id == support["id"] and main.vapi_phone_id
    assert PhoneNumber.objects.get(number="+19724741424").agent is None
    assert remote_writes(emulator) == 0


def test_import_links_number_to_assistant_imported_later(emulator, vapi_client):
    later = make_assistant(emulator, "Later")
    emulator.add_phone_number(provider="vapi", number="+16826269224", assistantId=later["id"])

    run(vapi_client, Direction.IMPORT, resources=[Resource.PHONE_NUMBERS])
    phone = PhoneNumber.objects.get()
    assert phone.agent is None and phone.vapi_assistant_id == later["id"]

    run(vapi_client, Direction.IMPORT)
    phone.refresh_from_db()
    assert phone.agent == Agent.objects.get(vapi_assistant_id=later["id"])
    assert remote_writes(emulator) == 0


def test_agent_import_links_waiting_numbers_in_the_same_run_with_the_link_in_the_diff(emulator, vapi_client):
    later = make_assistant(emulator, "Later")
    emulator.add_phone_number(provider="vapi", number="+16826269224", assistantId=later["id"])
    emulator.add_phone_number(provider="vapi", number="+19724741424", assistantId=later["id"])
    run(vapi_client, Direction.IMPORT, resources=[Resource.PHONE_NUMBERS])

    agents_only = run(vapi_client, Direction.IMPORT, resources=[Resource.ASSISTANTS])

    agent = Agent.objects.get(vapi_assistant_id=later["id"])
    assert set(PhoneNumber.objects.values_list("agent", flat=True)) == {agent.pk}
    links = agents_only.changes.filter(resource=Resource.PHONE_NUMBERS, action=ChangeAction.UPDATE)
    assert [c.diff for c in links] == [{"agent": [None, agent.pk]}] * 2
    assert remote_writes(emulator) == 0


def test_phone_matched_by_e164_number_records_the_vapi_id(emulator, vapi_client):
    local = PhoneNumber.objects.create(number="(682) 626-9224", name="Main line", provider="vapi")
    remote = emulator.add_phone_number(provider="vapi", number="+16826269224", name="Main line")

    result = run(vapi_client, Direction.IMPORT, resources=[Resource.PHONE_NUMBERS])

    assert result.status == RunStatus.SUCCEEDED
    assert PhoneNumber.objects.count() == 1
    local.refresh_from_db()
    assert local.vapi_phone_id == remote["id"] and local.sync_status == SyncStatus.SYNCED


def test_import_10_pages_bulk_queries_do_not_grow_per_item(emulator, vapi_client):
    for i in range(1200):
        emulator.add_assistant(name=f"A{i}", model={"provider": "openai", "model": "gpt-4o"})
    with CaptureQueriesContext(connection) as queries:
        result = run(vapi_client, Direction.IMPORT, resources=[Resource.ASSISTANTS])
    assert result.counts["assistants"]["created"] == 1200
    assert Agent.objects.count() == 1200
    # A fixed cost per run (lease, history, the status check stored after it) plus a few statements
    # per batch of 500 records: never one per record.
    batches = -(-1200 // 500)
    assert len(queries) < 25 + 15 * batches, f"{len(queries)} queries for 1200 items"


# --- Export and round trip -----------------------------------------------------------------


def test_export_creates_assistant_with_marker_and_records_id(emulator, vapi_client):
    agent = Agent.objects.create(name="Receptionist", system_prompt="Greet callers.", first_message="Hello!")

    result = run(vapi_client, Direction.EXPORT, resources=[Resource.ASSISTANTS])

    assert result.counts["assistants"]["created"] == 1, result.errors
    agent.refresh_from_db()
    remote = emulator.assistants[agent.vapi_assistant_id]
    assert remote["name"] == "Receptionist" and remote["firstMessage"] == "Hello!"
    assert remote["model"]["messages"][0] == {"role": "system", "content": "Greet callers."}
    assert remote["voice"] == {"provider": "vapi", "voiceId": "Elliot"}
    assert remote["metadata"]["globalvoiceAgentUuid"] == str(agent.uuid)
    assert agent.sync_status == SyncStatus.SYNCED
    assert emulator.counts["POST /assistant"] == 1


def test_round_trip_keeps_every_unmodelled_field(emulator, vapi_client):
    original = make_assistant(emulator, "Support")
    run(vapi_client, Direction.IMPORT)
    agent = Agent.objects.get()
    agent.system_prompt = "You are even more helpful."
    agent.save()

    result = run(vapi_client, Direction.EXPORT)

    assert result.counts["assistants"]["updated"] == 1, result.errors
    remote = emulator.assistants[original["id"]]
    expected = copy.deepcopy(original)
    expected["model"]["messages"][0]["content"] = "You are even more helpful."
    for key in ("model", "voice", "transcriber", "analysisPlan", "metadata", "firstMessage", "name"):
        assert remote[key] == expected[key], key
    assert emulator.counts["PATCH /assistant/{id}"] == 1


def test_no_op_sync_makes_no_writes_anywhere(emulator, vapi_client):
    for i in range(5):
        make_assistant(emulator, f"Agent {i}")
    emulator.add_phone_number(provider="vapi", number="+16826269224")
    Agent.objects.create(name="Local one")
    run(vapi_client, Direction.FULL)
    emulator.reset_counters()

    with CaptureQueriesContext(connection) as queries:
        result = run(vapi_client, Direction.FULL)

    assert result.status == RunStatus.SUCCEEDED
    assert result.counts["assistants"]["unchanged"] == 6
    assert remote_writes(emulator) == 0
    assert set(emulator.counts) == {"GET /assistant", "GET /phone-number"}
    domain_writes = [
        q["sql"] for q in queries.captured_queries
        if q["sql"].startswith(("UPDATE", "INSERT", "DELETE")) and ("agents_" in q["sql"] or "phonenumbers_app" in q["sql"] or "syncrecord" in q["sql"])
    ]
    assert domain_writes == []


def test_export_writes_run_in_parallel_batches_not_per_item_queries(emulator, vapi_client):
    def export_queries(n):
        Agent.objects.bulk_create([Agent(name=f"Bulk {n} {i}") for i in range(n)])
        with CaptureQueriesContext(connection) as queries:
            result = run(vapi_client, Direction.EXPORT, resources=[Resource.ASSISTANTS])
        assert result.counts["assistants"]["created"] == n
        return len(queries)

    small, large = export_queries(50), export_queries(250)
    assert len(emulator.assistants) == 300
    # Writes go in chunks: queries grow per chunk of Vapi writes, never per record.
    assert (large - small) / 200 < 0.5


# --- Drift and conflicts -------------------------------------------------------------------


def _edit_remote(emulator, vapi_client, assistant_id, **fields):
    vapi_client.update_assistant(assistant_id, fields)


def test_changes_on_different_fields_merge_without_conflict(emulator, vapi_client):
    agent, remote = linked_agent(emulator, vapi_client)
    agent.first_message = "Local greeting"
    agent.save()
    _edit_remote(emulator, vapi_client, remote["id"], name="Renamed in Vapi")

    result = run(vapi_client, Direction.FULL, policy="manual")

    assert result.counts["assistants"]["conflicts"] == 0
    agent.refresh_from_db()
    assert agent.name == "Renamed in Vapi" and agent.first_message == "Local greeting"
    assert emulator.assistants[remote["id"]]["firstMessage"] == "Local greeting"
    assert agent.sync_status == SyncStatus.SYNCED


@pytest.mark.parametrize(
    "policy, expected",
    [("vapi_wins", "Vapi greeting"), ("local_wins", "Local greeting"), ("newest_wins", "Vapi greeting")],
)
def test_conflict_policies(emulator, vapi_client, policy, expected):
    agent, remote = linked_agent(emulator, vapi_client)
    agent.first_message = "Local greeting"
    agent.save()
    # The local edit a second earlier, so Vapi's (millisecond) timestamp is later whatever the clock.
    Agent.objects.filter(pk=agent.pk).update(updated_at=agent.updated_at - timedelta(seconds=1))
    _edit_remote(emulator, vapi_client, remote["id"], firstMessage="Vapi greeting")  # later than the local edit

    result = run(vapi_client, Direction.FULL, policy=policy)

    assert result.status == RunStatus.SUCCEEDED, result.errors
    agent.refresh_from_db()
    assert agent.first_message == expected
    assert emulator.assistants[remote["id"]]["firstMessage"] == expected
    assert agent.sync_status == SyncStatus.SYNCED


def test_newest_wins_takes_the_local_edit_when_it_is_newer(emulator, vapi_client):
    agent, remote = linked_agent(emulator, vapi_client)
    _edit_remote(emulator, vapi_client, remote["id"], firstMessage="Vapi greeting")
    agent.first_message = "Local greeting"
    agent.save()  # updated_at is now later than Vapi's updatedAt

    run(vapi_client, Direction.FULL, policy="newest_wins")

    assert emulator.assistants[remote["id"]]["firstMessage"] == "Local greeting"


def test_manual_policy_touches_neither_side_until_resolved(emulator, vapi_client):
    agent, remote = linked_agent(emulator, vapi_client)
    agent.first_message = "Local greeting"
    agent.save()
    _edit_remote(emulator, vapi_client, remote["id"], firstMessage="Vapi greeting")
    emulator.reset_counters()

    result = run(vapi_client, Direction.FULL, policy="manual")

    assert result.counts["assistants"]["conflicts"] == 1
    assert remote_writes(emulator) == 0
    agent.refresh_from_db()
    assert agent.first_message == "Local greeting" and agent.sync_status == SyncStatus.CONFLICT
    change = SyncChange.objects.get(run=result, action=ChangeAction.CONFLICT)
    assert change.diff == {"first_message": ["Local greeting", "Vapi greeting"]}

    resolved = conflict_resolve(resource=Resource.ASSISTANTS, local_id=agent.pk, keep="local", trigger="admin", client=vapi_client)

    assert resolved.status == RunStatus.SUCCEEDED, resolved.errors
    agent.refresh_from_db()
    assert agent.sync_status == SyncStatus.SYNCED
    assert emulator.assistants[remote["id"]]["firstMessage"] == "Local greeting"


def test_both_sides_changed_to_the_same_value_is_in_sync(emulator, vapi_client):
    agent, remote = linked_agent(emulator, vapi_client)
    agent.first_message = "Same"
    agent.save()
    _edit_remote(emulator, vapi_client, remote["id"], firstMessage="Same")
    emulator.reset_counters()

    result = run(vapi_client, Direction.FULL, policy="manual")

    assert result.counts["assistants"]["conflicts"] == 0 and remote_writes(emulator) == 0


# --- Deletions ---------------------------------------------------------------------------------


def test_deleted_in_vapi_is_marked_not_deleted_and_not_recreated(emulator, vapi_client):
    agent, remote = linked_agent(emulator, vapi_client)
    vapi_client.delete_assistant(remote["id"])

    result = run(vapi_client, Direction.FULL)

    assert result.counts["assistants"]["deleted"] == 1
    agent.refresh_from_db()
    assert agent.sync_status == SyncStatus.DELETED_REMOTELY
    emulator.reset_counters()
    run(vapi_client, Direction.EXPORT)
    assert emulator.counts["POST /assistant"] == 0 and not emulator.assistants


def test_locally_deleted_agent_is_not_resurrected_and_remote_kept_by_default(emulator, vapi_client):
    agent, remote = linked_agent(emulator, vapi_client)
    agent.delete()

    result = run(vapi_client, Direction.FULL)

    assert not Agent.objects.exists()
    assert remote["id"] in emulator.assistants
    assert result.counts["assistants"]["skipped"] == 1
    assert SyncRecord.objects.get(vapi_id=remote["id"]).local_deleted_at is not None


def test_explicit_remote_delete_refuses_while_a_number_routes_to_it(emulator, vapi_client):
    agent, remote = linked_agent(emulator, vapi_client)
    phone = emulator.add_phone_number(provider="vapi", number="+16826269224", assistantId=remote["id"])
    agent.delete()

    blocked = assistants_delete_request(vapi_ids=[remote["id"]], trigger="cli", client=vapi_client)
    assert remote["id"] in emulator.assistants
    assert "still routes" in SyncChange.objects.get(run=blocked).reason

    vapi_client.update_phone_number(phone["id"], {"assistantId": None})
    done = assistants_delete_request(vapi_ids=[remote["id"]], trigger="cli", client=vapi_client)
    assert done.counts["assistants"]["deleted"] == 1
    assert remote["id"] not in emulator.assistants
    deletion = SyncChange.objects.get(run=done, action=ChangeAction.DELETE)
    assert deletion.before["remote"]["model"]["temperature"] == 0.3  # last payload kept


def test_delete_remote_setting_deletes_assistants_of_deleted_agents(emulator, vapi_client, settings):
    settings.VAPI_SYNC_DELETE_REMOTE = True
    agent, remote = linked_agent(emulator, vapi_client)
    agent.delete()
    run(vapi_client, Direction.FULL)
    assert remote["id"] not in emulator.assistants


# --- Selective, dry run, failures ----------------------------------------------------------------


def test_selective_export_touches_only_the_selected_agent(emulator, vapi_client):
    first = Agent.objects.create(name="First")
    Agent.objects.create(name="Second")

    run(vapi_client, Direction.EXPORT, local_ids={Resource.ASSISTANTS: [first.pk]}, resources=[Resource.ASSISTANTS])

    assert [a["name"] for a in emulator.assistants.values()] == ["First"]
    # No full listing: only a look for an earlier copy created since the agent was.
    listings = [query for method, path, query in emulator.requests if method == "GET" and path == "/assistant"]
    assert len(listings) == 1 and "createdAtGe" in str(listings[0])


def test_selective_import_by_vapi_id(emulator, vapi_client):
    wanted = make_assistant(emulator, "Wanted")
    make_assistant(emulator, "Other")
    run(vapi_client, Direction.IMPORT, vapi_ids={Resource.ASSISTANTS: [wanted["id"]]}, resources=[Resource.ASSISTANTS])
    assert list(Agent.objects.values_list("name", flat=True)) == ["Wanted"]


def test_dry_run_changes_nothing_and_returns_the_plan(emulator, vapi_client):
    make_assistant(emulator, "Remote only")
    agent = Agent.objects.create(name="Local only")
    status_before = Agent.objects.get().sync_status
    emulator.reset_counters()

    result = run(vapi_client, Direction.FULL, dry_run=True)

    assert remote_writes(emulator) == 0
    assert Agent.objects.count() == 1 and not SyncRecord.objects.exists()
    agent.refresh_from_db()
    assert agent.vapi_assistant_id is None and agent.sync_status == status_before
    assert not SyncChange.objects.exists()
    actions = {(p["action"], p["label"]) for p in result.plan}
    assert actions == {("create", "Remote only"), ("create", "Local only")}
    assert result.counts["assistants"]["created"] == 2


def test_one_failing_item_does_not_stop_the_run_and_a_rerun_completes(emulator, vapi_client):
    agents = [Agent.objects.create(name=f"Agent {i}") for i in range(5)]
    emulator.fail_next(1, status=400, route="POST /assistant")

    first = run(vapi_client, Direction.EXPORT, resources=[Resource.ASSISTANTS])

    assert first.status == RunStatus.PARTIAL
    assert first.counts["assistants"]["created"] == 4 and first.counts["assistants"]["failed"] == 1
    failed = Agent.objects.get(sync_status=SyncStatus.ERROR)
    assert failed.sync_error and first.errors[0]["message"]

    second = run(vapi_client, Direction.EXPORT, resources=[Resource.ASSISTANTS])
    assert second.status == RunStatus.SUCCEEDED
    assert len(emulator.assistants) == 5
    assert all(a.vapi_assistant_id for a in Agent.objects.filter(pk__in=[a.pk for a in agents]))


def test_create_whose_answer_was_lost_is_adopted_not_duplicated(emulator, vapi_client):
    agent = Agent.objects.create(name="Once only")
    emulator.fail_after_apply_next(1, status=502, route="POST /assistant")

    result = run(vapi_client, Direction.EXPORT, resources=[Resource.ASSISTANTS])

    assert result.status == RunStatus.SUCCEEDED, result.errors
    assert len(emulator.assistants) == 1
    agent.refresh_from_db()
    assert agent.vapi_assistant_id in emulator.assistants


def test_crash_after_create_is_finished_by_next_run_through_the_marker(emulator, vapi_client):
    agent = Agent.objects.create(name="Crashed")
    # Vapi has the assistant, but the process died before saving its id here.
    emulator.add_assistant(name="Crashed", model={"provider": "openai", "model": "gpt-4o"},
                           voice={"provider": "vapi", "voiceId": "Elliot"},
                           metadata={"globalvoiceAgentUuid": str(agent.uuid)})
    run(vapi_client, Direction.FULL)
    agent.refresh_from_db()
    assert len(emulator.assistants) == 1 and agent.vapi_assistant_id in emulator.assistants


def test_second_run_is_refused_while_one_holds_the_lock(emulator, vapi_client):
    from vapisync.services.runs import sync_run_create

    first = sync_run_create(direction=Direction.FULL, trigger="api")
    with pytest.raises(SyncAlreadyRunning) as refused:
        sync_run_create(direction=Direction.IMPORT, trigger="api")
    assert refused.value.run_id == first.pk
    sync_run_create(direction=Direction.FULL, trigger="api", dry_run=True)  # a preview is always allowed


def test_delta_import_asks_only_for_recent_changes(emulator, vapi_client):
    first = make_assistant(emulator, "First")
    run(vapi_client, Direction.IMPORT, resources=[Resource.ASSISTANTS])
    vapi_client.update_assistant(first["id"], {"name": "First renamed"})
    emulator.requests.clear()

    result = run(vapi_client, Direction.IMPORT, resources=[Resource.ASSISTANTS], delta=True)

    assert result.counts["assistants"]["updated"] == 1
    assert Agent.objects.get().name == "First renamed"
    assert any("updatedAtGt" in str(query) for _, _, query in emulator.requests)


def test_phone_assignment_change_is_pushed(emulator, vapi_client):
    first = make_assistant(emulator, "First")
    second = make_assistant(emulator, "Second")
    phone = emulator.add_phone_number(provider="vapi", number="+16826269224", assistantId=first["id"])
    run(vapi_client, Direction.IMPORT)
    local = PhoneNumber.objects.get()
    local.agent = Agent.objects.get(vapi_assistant_id=second["id"])
    local.name = "Sales line"
    local.save()

    result = run(vapi_client, Direction.EXPORT)

    assert result.counts["phone_numbers"]["updated"] == 1, result.errors
    assert emulator.phone_numbers[phone["id"]]["assistantId"] == second["id"]
    assert emulator.phone_numbers[phone["id"]]["name"] == "Sales line"


def test_local_number_not_in_vapi_is_reported_not_created(emulator, vapi_client):
    PhoneNumber.objects.create(number="+14155550100", provider="twilio")
    result = run(vapi_client, Direction.EXPORT)
    assert result.counts["phone_numbers"]["skipped"] == 1
    assert "Vapi's dashboard" in SyncChange.objects.get(run=result).reason
    assert not emulator.phone_numbers


def test_explicit_push_recreates_an_assistant_deleted_in_vapi(emulator, vapi_client):
    agent, remote = linked_agent(emulator, vapi_client)
    vapi_client.delete_assistant(remote["id"])
    run(vapi_client, Direction.FULL)
    agent.refresh_from_db()
    assert agent.sync_status == SyncStatus.DELETED_REMOTELY

    run(vapi_client, Direction.EXPORT, trigger="signal", local_ids={Resource.ASSISTANTS: [agent.pk]})
    assert not emulator.assistants  # automation never re-creates

    run(vapi_client, Direction.EXPORT, trigger="admin", local_ids={Resource.ASSISTANTS: [agent.pk]})
    agent.refresh_from_db()
    assert agent.vapi_assistant_id in emulator.assistants and agent.vapi_assistant_id != remote["id"]
    assert agent.sync_status == SyncStatus.SYNCED


def test_phone_export_never_unroutes_a_number_whose_agent_is_not_in_vapi_yet(emulator, vapi_client):
    first = make_assistant(emulator, "First")
    phone = emulator.add_phone_number(provider="vapi", number="+16826269224", assistantId=first["id"])
    run(vapi_client, Direction.IMPORT)
    local = PhoneNumber.objects.get()
    local.agent = Agent.objects.create(name="Not pushed yet")
    local.save()

    phones_only = run(vapi_client, Direction.EXPORT, resources=[Resource.PHONE_NUMBERS])

    assert phones_only.status == RunStatus.PARTIAL
    assert "not in Vapi yet" in phones_only.errors[0]["message"]
    assert emulator.phone_numbers[phone["id"]]["assistantId"] == first["id"]

    full = run(vapi_client, Direction.FULL)
    new_agent = Agent.objects.get(name="Not pushed yet")
    assert full.status == RunStatus.SUCCEEDED, full.errors
    assert emulator.phone_numbers[phone["id"]]["assistantId"] == new_agent.vapi_assistant_id


def test_a_lost_vapi_id_is_relinked_from_the_baseline_not_created_again(emulator, vapi_client):
    agent = Agent.objects.create(name="Raced")
    run(vapi_client, Direction.EXPORT, local_ids={Resource.ASSISTANTS: [agent.pk]})
    assistant_id = Agent.objects.get().vapi_assistant_id
    # A person's save of a copy loaded before the push writes the old, empty id back.
    Agent.objects.filter(pk=agent.pk).update(vapi_assistant_id=None, first_message="Edited meanwhile")
    emulator.reset_counters()

    result = run(vapi_client, Direction.EXPORT, trigger="signal", local_ids={Resource.ASSISTANTS: [agent.pk]})

    assert result.status == RunStatus.SUCCEEDED, result.errors
    assert emulator.counts["POST /assistant"] == 0 and len(emulator.assistants) == 1
    agent.refresh_from_db()
    assert agent.vapi_assistant_id == assistant_id
    assert emulator.assistants[assistant_id]["firstMessage"] == "Edited meanwhile"


def test_selective_push_adopts_an_assistant_whose_create_answer_was_lost(emulator, vapi_client):
    agent = Agent.objects.create(name="Lost answer")
    # Created in Vapi by an earlier push that died before recording anything here.
    emulator.add_assistant(name="Lost answer", model={"provider": "openai", "model": "gpt-4o"},
                           voice={"provider": "vapi", "voiceId": "Elliot"},
                           metadata={"globalvoiceAgentUuid": str(agent.uuid)})
    emulator.reset_counters()

    run(vapi_client, Direction.EXPORT, trigger="signal", local_ids={Resource.ASSISTANTS: [agent.pk]})

    assert emulator.counts["POST /assistant"] == 0 and len(emulator.assistants) == 1
    agent.refresh_from_db()
    assert agent.vapi_assistant_id in emulator.assistants


# --- Pairs found equal before (the sync record's clean mark) ----------------------------------


def test_full_sync_after_an_import_finds_every_pair_equal_and_writes_nothing(emulator, vapi_client):
    support = make_assistant(emulator, "Support")
    emulator.add_phone_number(provider="vapi", number="+16826269224", name="Main line", assistantId=support["id"])
    run(vapi_client, Direction.IMPORT)
    assert all(SyncRecord.objects.values_list("clean_mark", flat=True))
    emulator.reset_counters()

    result = run(vapi_client, Direction.FULL)

    assert result.counts["assistants"]["unchanged"] == 1 and result.counts["phone_numbers"]["unchanged"] == 1
    assert remote_writes(emulator) == 0
    assert not SyncChange.objects.filter(run=result).exists()


def test_edit_through_queryset_update_is_still_pushed_after_the_pair_was_found_equal(emulator, vapi_client):
    """QuerySet.update() moves neither the version nor the status: the clean mark's hash of the local
    fields is what notices it."""
    remote = make_assistant(emulator, "Support")
    run(vapi_client, Direction.IMPORT)
    Agent.objects.filter(vapi_assistant_id=remote["id"]).update(name="Renamed in bulk")

    result = run(vapi_client, Direction.FULL)

    assert result.counts["assistants"]["updated"] == 1
    assert emulator.assistants[remote["id"]]["name"] == "Renamed in bulk"


def test_dashboard_edit_after_the_pair_was_found_equal_is_imported(emulator, vapi_client):
    remote = make_assistant(emulator, "Support")
    run(vapi_client, Direction.IMPORT)
    run(vapi_client, Direction.FULL)
    emulator.edit_assistant(remote["id"], name="Renamed in Vapi")

    result = run(vapi_client, Direction.FULL)

    assert result.counts["assistants"]["updated"] == 1
    assert Agent.objects.get(vapi_assistant_id=remote["id"]).name == "Renamed in Vapi"


def test_number_whose_agent_moved_to_another_assistant_is_compared_again(emulator, vapi_client):
    """A number's fields name its agent's assistant, which lives in the agent's row: relinking the
    agent changes the number's fields without touching the number."""
    first, second = make_assistant(emulator, "First"), make_assistant(emulator, "Second")
    number = emulator.add_phone_number(provider="vapi", number="+16826269224", name="Main line", assistantId=first["id"])
    run(vapi_client, Direction.IMPORT)
    agent = Agent.objects.get(vapi_assistant_id=first["id"])
    Agent.objects.filter(vapi_assistant_id=second["id"]).delete()
    Agent.objects.filter(pk=agent.pk).update(vapi_assistant_id=second["id"])

    result = run(vapi_client, Direction.EXPORT)

    assert result.counts["phone_numbers"]["updated"] == 1, result.errors
    assert emulator.phone_numbers[number["id"]]["assistantId"] == second["id"]


def test_number_waiting_for_its_agent_is_linked_by_a_full_sync_once_the_agent_is_here(emulator, vapi_client):
    """A number found equal while its assistant had no agent here: its fields do not change when the
    agent appears (they name the assistant either way), so the link due must bring it back to compare."""
    later = make_assistant(emulator, "Later")
    emulator.add_phone_number(provider="vapi", number="+16826269224", assistantId=later["id"])
    run(vapi_client, Direction.IMPORT, resources=[Resource.PHONE_NUMBERS])
    assert SyncRecord.objects.get(resource=Resource.PHONE_NUMBERS).clean_mark
    # An agent linked to that assistant arrives other than through an import (restored from a backup, say).
    agent = Agent.objects.create(name="Later", system_prompt="You are helpful.", first_message="Hi, this is Later.",
                                 vapi_assistant_id=later["id"])

    result = run(vapi_client, Direction.FULL)

    assert result.status == RunStatus.SUCCEEDED, result.errors
    assert PhoneNumber.objects.get().agent_id == agent.pk
    assert remote_writes(emulator) == 0


def test_edit_saved_after_a_full_sync_set_its_pair_aside_stays_pending_and_is_pushed_next(emulator, vapi_client):
    """A pair found equal before is read as plain columns and set aside; a person's save after that
    read (at the "planned" seam, before any write) is neither overwritten nor marked in sync."""
    remote = make_assistant(emulator, "Support")
    run(vapi_client, Direction.IMPORT)
    agent = Agent.objects.get()

    def person_saves(**_):
        copy_ = Agent.objects.get(pk=agent.pk)
        copy_.name = "Renamed meanwhile"
        copy_.save()

    with seam_inject("planned", person_saves, once=True):
        result = run(vapi_client, Direction.FULL, resources=[Resource.ASSISTANTS])

    assert result.counts["assistants"]["unchanged"] == 1, result.counts
    agent.refresh_from_db()
    assert (agent.name, agent.sync_status) == ("Renamed meanwhile", SyncStatus.PENDING)
    assert emulator.assistants[remote["id"]]["name"] == "Support"

    result = run(vapi_client, Direction.FULL)

    assert result.counts["assistants"]["updated"] == 1, result.errors
    assert emulator.assistants[remote["id"]]["name"] == "Renamed meanwhile"
    assert Agent.objects.get().sync_status == SyncStatus.SYNCED


def test_full_sync_reads_no_model_instance_and_no_stored_document_for_pairs_found_equal(emulator, vapi_client):
    """Most of a no-op sync: pairs still as found equal cost one column read each, nothing more."""
    for i in range(30):
        make_assistant(emulator, f"Agent {i}")
    run(vapi_client, Direction.IMPORT)
    edited = Agent.objects.order_by("pk").first()
    Agent.objects.filter(pk=edited.pk).update(first_message="Edited in bulk")

    with CaptureQueriesContext(connection) as queries:
        result = run(vapi_client, Direction.FULL, resources=[Resource.ASSISTANTS])

    assert result.counts["assistants"]["unchanged"] == 29 and result.counts["assistants"]["updated"] == 1
    agent_reads = [q["sql"] for q in queries if q["sql"].startswith("SELECT") and '"agents_agent"."system_prompt"' in q["sql"]]
    # One read of every agent's columns (the set-aside check), then the edited agent's full row alone.
    assert len(agent_reads) == 2, agent_reads
    assert f"IN ({edited.pk})" in agent_reads[1]
    record_reads = [q["sql"] for q in queries if q["sql"].startswith("SELECT") and '"vapisync_syncrecord"."remote"' in q["sql"]]
    assert not record_reads, "no stored Vapi document is read for a no-op pair"


def test_a_row_the_database_refuses_fails_alone_and_the_history_counts_each_item_once(emulator, vapi_client):
    """Two Vapi numbers with the same E.164 number cannot both be stored here (numbers are unique): the
    batch holding them rolls back with what it recorded, then goes again one by one."""
    first = emulator.add_phone_number(provider="vapi", number="+16826269224", name="First")
    second = emulator.add_phone_number(provider="twilio", number="+16826269224", name="Second", twilioAccountSid="AC1",
                                       twilioAuthToken="secret")
    other = emulator.add_phone_number(provider="vapi", number="+19724741424", name="Other")

    result = run(vapi_client, Direction.IMPORT, resources=[Resource.PHONE_NUMBERS])

    counts = result.counts["phone_numbers"]
    assert (counts["created"], counts["failed"]) == (2, 1), counts
    stored = set(PhoneNumber.objects.values_list("vapi_phone_id", flat=True))
    assert other["id"] in stored and len(stored & {first["id"], second["id"]}) == 1  # whichever came first
    (refused,) = {first["id"], second["id"]} - stored
    history = sorted(result.changes.values_list("action", "vapi_id"))
    assert history == sorted([(ChangeAction.CREATE, other["id"]), (ChangeAction.CREATE, (stored - {other["id"]}).pop()),
                              (ChangeAction.ERROR, refused)]), history
    assert len(result.errors) == 1 and "Database error" in result.errors[0]["message"]


def test_each_batch_commits_with_its_history(emulator, vapi_client):
    """A worker killed between two batches leaves every committed write in the history (so rollback
    can undo it): at the second batch's start, the first batch's history rows are already stored."""
    for i in range(501):  # updates go in batches of 500
        make_assistant(emulator, f"Agent {i}")
    run(vapi_client, Direction.IMPORT)
    for assistant_id in list(emulator.assistants):
        emulator.edit_assistant(assistant_id, firstMessage="Edited in Vapi")
    seen = []

    def count_history(resource, **_):
        if resource == Resource.ASSISTANTS:
            seen.append(SyncChange.objects.filter(action=ChangeAction.UPDATE, side="local").count())

    with seam_inject("local_write", count_history):
        result = run(vapi_client, Direction.IMPORT, resources=[Resource.ASSISTANTS])

    assert result.counts["assistants"]["updated"] == 501
    assert seen == [0, 500]


def test_a_refused_batch_is_redone_one_by_one_without_reporting_anything_twice(emulator, vapi_client):
    """A batch that records as it goes (a write found changed meanwhile is reported) and then fails in
    the database rolls back what it recorded too: the redo reports each item once."""
    taken = emulator.add_phone_number(provider="vapi", number="+16826269224", name="Taken")
    moved = emulator.add_phone_number(provider="vapi", number="+19724741424", name="Moved")
    edited = emulator.add_phone_number(provider="vapi", number="+14155550123", name="Edited")
    run(vapi_client, Direction.IMPORT, resources=[Resource.PHONE_NUMBERS])
    emulator.edit_phone_number(moved["id"], number=taken["number"])  # cannot be stored: numbers are unique here
    emulator.edit_phone_number(edited["id"], name="Renamed in Vapi")

    def person_saves(**_):
        phone = PhoneNumber.objects.get(vapi_phone_id=edited["id"])
        phone.name = "Renamed here"
        phone.save()

    with seam_inject("local_write", person_saves, once=True):
        result = run(vapi_client, Direction.IMPORT, resources=[Resource.PHONE_NUMBERS])

    counts = result.counts["phone_numbers"]
    assert (counts["failed"], counts["skipped"], counts["updated"]) == (1, 1, 0), counts
    assert list(result.changes.filter(action=ChangeAction.SKIP).values_list("vapi_id", flat=True)) == [edited["id"]]
    assert PhoneNumber.objects.get(vapi_phone_id=edited["id"]).name == "Renamed here"
    assert PhoneNumber.objects.get(vapi_phone_id=moved["id"]).number == "+19724741424"


def test_each_chunk_of_vapi_writes_commits_its_history_with_its_links(emulator, vapi_client):
    """A worker killed between two chunks of Vapi writes leaves every copy it made recorded: at the
    second chunk's start, the first chunk's creates are in the history, beside their links."""
    for i in range(26):  # Vapi writes go in chunks of 25
        Agent.objects.create(name=f"Agent {i}", system_prompt="Be brief.")
    seen = []

    def count_history(resource, **_):
        if resource == Resource.ASSISTANTS:
            seen.append((SyncChange.objects.filter(action=ChangeAction.CREATE, side="vapi").count(),
                         Agent.objects.exclude(vapi_assistant_id=None).count()))

    with seam_inject("remote_chunk", count_history):
        result = run(vapi_client, Direction.EXPORT, resources=[Resource.ASSISTANTS])

    assert result.counts["assistants"]["created"] == 26, result.errors
    assert seen == [(0, 0), (25, 25)]
