"""A stateful property test: people, Vapi's dashboard, syncs, rollbacks and faults, in any order.

Hypothesis drives a RuleBasedStateMachine against the real database and the Vapi emulator.
Concurrent actors act *inside* runs through the engine's seams (vapisync.services.seams): a
person's save between the plan and the writes, a dashboard edit or deletion between chunks of
Vapi writes, a lease taken over by another process. After every step:
  - one assistant per agent marker in Vapi, and one agent per assistant here;
  - nothing deleted comes back (an agent a person deleted, an assistant deleted in Vapi).
After settling (a clean full sync, no faults, nobody editing):
  - no record says "in sync" while its sides differ;
  - every accepted edit is on both sides, or its record is reported (a conflict, "deleted in
    Vapi", or a failure), or it is still pending.
CI runs CONSISTENCY_EXAMPLES examples (default 25) on SQLite and PostgreSQL; `make soak` runs more.
"""

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import responses
from django.test import override_settings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from agents.models import Agent
from globalvoice.tracking import SyncStatus
from vapi_emulator import VapiEmulator
from vapisync import mapping
from vapisync.client import VapiClient
from vapisync.exceptions import RollbackNotPossible, SyncAlreadyRunning
from vapisync.models import (
    ChangeAction,
    DeletedMarker,
    Direction,
    SyncChange,
    SyncCursor,
    SyncLock,
    SyncRecord,
    SyncRun,
)
from vapisync.services.rollback import sync_run_rollback
from vapisync.services.runs import sync_run_start
from vapisync.services.seams import seam_inject

BASE_URL = "http://vapi.test"
API_KEY = "test-vapi-key"
EXAMPLES = int(os.environ.get("CONSISTENCY_EXAMPLES", "25"))
STEPS = int(os.environ.get("CONSISTENCY_STEPS", "25"))

# Fields a person edits here and Vapi's dashboard edits there (canonical name -> Vapi key).
EDITABLE = {"name": "name", "first_message": "firstMessage"}
words = st.sampled_from(["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"])
DIRECTIONS = [Direction.IMPORT, Direction.EXPORT, Direction.FULL]


class SyncWorld(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        for model in (Agent, SyncChange, SyncRun, SyncRecord, SyncLock, SyncCursor, DeletedMarker):  # agents first
            model.objects.all().delete()
        # Seeded ids, and a clock that moves at least a millisecond per call: a replay of the same
        # steps orders every timestamp the same way.
        last = [datetime.now(UTC)]

        def clock():
            last[0] = max(datetime.now(UTC), last[0] + timedelta(milliseconds=1))
            return last[0]

        self.emulator = VapiEmulator(api_key=API_KEY, random_seed=1, clock=clock)
        self.rsps = responses.RequestsMock(assert_all_requests_are_fired=False)
        self.rsps.start()
        self.emulator.install(self.rsps, BASE_URL)
        self.client = VapiClient(api_key=API_KEY, base_url=BASE_URL, sleep=lambda s: None, max_retries=2,
                                 max_concurrency=1)  # one writer thread: the emulator's ids come out in the same order on a replay
        self.counter = 0
        self.deleted_markers: set[str] = set()  # agents a person deleted
        self.deleted_assistants: set[str] = set()  # assistants deleted in Vapi's dashboard
        self.dashboard_deleted_markers: set[str] = set()
        # (agent uuid, field) -> value the last person edit set; cleared when something else legitimately
        # decides the value (a dashboard edit of that field, a rollback).
        self.person_edits: dict[tuple[str, str], str] = {}
        self.edit_runs: dict[tuple[str, str], int] = {}  # the newest run id when the edit was made

    def teardown(self):
        if getattr(self, "policy_override", None) is not None:
            self.policy_override.disable()
        self.rsps.stop()
        self.rsps.reset()
        self.client.close()

    @initialize(policy=st.sampled_from(["vapi_wins", "manual", "local_wins"]))
    def choose_policy(self, policy):
        # Undone in teardown: thousands of examples must not stack settings overrides.
        self.policy_override = override_settings(VAPI_SYNC_CONFLICT_POLICY=policy)
        self.policy_override.enable()
        self.policy = policy

    # -- helpers ---------------------------------------------------------------------------
    def _name(self, word):
        self.counter += 1
        return f"{word} {self.counter}"

    def _agents(self):
        return list(Agent.objects.order_by("pk"))

    def _newest_run_id(self):
        return SyncRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0

    def _person_edit(self, index, field, word):
        agents = self._agents()
        if not agents:
            return
        agent = agents[index % len(agents)]
        value = self._name(word)
        setattr(agent, field, value)
        agent.save()
        self.person_edits[(str(agent.uuid), field)] = value
        self.edit_runs[(str(agent.uuid), field)] = self._newest_run_id()

    def _dashboard_edit(self, index, field, word):
        ids = sorted(self.emulator.assistants)
        if not ids:
            return
        assistant_id = ids[index % len(ids)]
        self.emulator.edit_assistant(assistant_id, **{EDITABLE[field]: self._name(word)})
        marker = (self.emulator.assistants[assistant_id].get("metadata") or {}).get(mapping.MARKER_KEY)
        agent = Agent.objects.filter(vapi_assistant_id=assistant_id).first()
        for marker_key in {marker, str(agent.uuid) if agent else None} - {None}:
            self.person_edits.pop((marker_key, field), None)  # whichever side wins now is a legitimate outcome

    def _dashboard_delete(self, index):
        ids = sorted(self.emulator.assistants)
        if not ids:
            return
        assistant_id = ids[index % len(ids)]
        marker = (self.emulator.assistants[assistant_id].get("metadata") or {}).get(mapping.MARKER_KEY)
        self.emulator.remove_assistant(assistant_id)
        self.deleted_assistants.add(assistant_id)
        if marker:
            self.dashboard_deleted_markers.add(marker)

    def _sync(self, direction, **kwargs):
        try:
            return sync_run_start(direction=direction, trigger="cli", client=self.client, **kwargs)
        except SyncAlreadyRunning:
            SyncLock.objects.all().delete()  # a lease left by a run this machine "killed"
            return None

    # -- people ----------------------------------------------------------------------------
    @rule(word=words)
    def person_creates_agent(self, word):
        Agent.objects.create(name=self._name(word), first_message="Hello", uuid=uuid.UUID(int=self.counter))

    @rule(index=st.integers(0, 20), field=st.sampled_from(sorted(EDITABLE)), word=words)
    def person_edits_agent(self, index, field, word):
        self._person_edit(index, field, word)

    @rule(index=st.integers(0, 20))
    def person_deletes_agent(self, index):
        agents = self._agents()
        if agents:
            agent = agents[index % len(agents)]
            self.deleted_markers.add(str(agent.uuid))
            agent.delete()

    # -- Vapi's dashboard ------------------------------------------------------------------------
    @rule(word=words)
    def dashboard_creates_assistant(self, word):
        self.emulator.add_assistant(name=self._name(word), firstMessage="Hi",
                                    model={"provider": "openai", "model": "gpt-4o", "temperature": 0.5},
                                    voice={"provider": "vapi", "voiceId": "Elliot"})

    @rule(index=st.integers(0, 20), field=st.sampled_from(sorted(EDITABLE)), word=words)
    def dashboard_edits_assistant(self, index, field, word):
        self._dashboard_edit(index, field, word)

    @rule(index=st.integers(0, 20), temperature=st.sampled_from([0.1, 0.7]))
    def dashboard_edits_unmodelled_field(self, index, temperature):
        ids = sorted(self.emulator.assistants)
        if ids:
            assistant_id = ids[index % len(ids)]
            model = dict(self.emulator.assistants[assistant_id].get("model") or {})
            self.emulator.edit_assistant(assistant_id, model={**model, "temperature": temperature})

    @rule(index=st.integers(0, 20))
    def dashboard_deletes_assistant(self, index):
        self._dashboard_delete(index)

    # -- runs, with something happening inside them -----------------------------------------------
    @rule(direction=st.sampled_from(DIRECTIONS))
    def sync(self, direction):
        self._sync(direction)

    @rule(direction=st.sampled_from(DIRECTIONS), index=st.integers(0, 20),
          field=st.sampled_from(sorted(EDITABLE)), word=words, point=st.sampled_from(["local_write", "remote_chunk"]))
    def sync_while_a_person_edits(self, direction, index, field, word, point):
        with seam_inject(point, lambda **_: self._person_edit(index, field, word), once=True):
            self._sync(direction)

    @rule(direction=st.sampled_from([Direction.EXPORT, Direction.FULL]), index=st.integers(0, 20),
          field=st.sampled_from(sorted(EDITABLE)), word=words)
    def sync_while_the_dashboard_edits(self, direction, index, field, word):
        with seam_inject("remote_chunk", lambda **_: self._dashboard_edit(index, field, word), once=True):
            self._sync(direction)

    @rule(direction=st.sampled_from(DIRECTIONS), index=st.integers(0, 20))
    def sync_while_the_dashboard_deletes(self, direction, index):
        with seam_inject("remote_chunk", lambda **_: self._dashboard_delete(index), once=True):
            self._sync(direction)

    @rule(direction=st.sampled_from(DIRECTIONS), status=st.sampled_from([429, 500, 503]), n=st.integers(1, 6))
    def sync_with_vapi_failing(self, direction, status, n):
        self.emulator.fail_next(n, status=status)
        self._sync(direction)
        self.emulator.clear_faults()

    @rule(direction=st.sampled_from([Direction.EXPORT, Direction.FULL]))
    def sync_whose_create_answer_is_lost(self, direction):
        self.emulator.fail_after_apply_next(1, status=502, route="POST /assistant")
        self._sync(direction)
        self.emulator.clear_faults()

    @rule(direction=st.sampled_from(DIRECTIONS))
    def sync_that_loses_its_lease(self, direction):
        def taken_over(**_):
            SyncLock.objects.update(owner="run:999999")

        with seam_inject("remote_chunk", taken_over, once=True), seam_inject("local_write", taken_over, once=True):
            self._sync(direction)
        SyncLock.objects.all().delete()

    @precondition(lambda self: SyncRun.objects.filter(dry_run=False).exists())
    @rule(pick=st.integers(0, 50))
    def rollback(self, pick):
        runs = list(SyncRun.objects.filter(dry_run=False).order_by("pk").values_list("pk", flat=True))
        try:
            undo = sync_run_rollback(run_id=runs[pick % len(runs)], trigger="cli", client=self.client)
        except (RollbackNotPossible, SyncAlreadyRunning):
            return
        # A rollback is a person's decision about values: edits it undid are no longer expected.
        touched = set(undo.changes.exclude(local_id=None).values_list("local_id", flat=True))
        uuids = {str(u) for u in Agent.objects.filter(pk__in=touched).values_list("uuid", flat=True)}
        self.person_edits = {k: v for k, v in self.person_edits.items() if k[0] not in uuids}

    # -- settling and the invariants -----------------------------------------------------------
    @rule()
    def settle(self):
        """Nobody edits, Vapi answers: two full syncs, then everything must be true."""
        SyncLock.objects.all().delete()
        for _ in range(2):
            self._sync(Direction.FULL)
        self.check_settled()

    def check_settled(self):
        assert not Agent.objects.filter(vapi_assistant_id__in=self.deleted_assistants, sync_status=SyncStatus.SYNCED).exists(), \
            "an assistant deleted in Vapi is shown as in sync"
        for agent in Agent.objects.all():
            remote = self.emulator.assistants.get(agent.vapi_assistant_id) if agent.vapi_assistant_id else None
            if agent.sync_status == SyncStatus.SYNCED:
                assert remote is not None, f"{agent.name} says in sync but has no assistant in Vapi"
                assert mapping.agent_fields(agent) == mapping.assistant_fields(remote), (
                    f"{agent.name} says in sync but differs from Vapi")
            for (agent_uuid, field), value in self.person_edits.items():
                if agent_uuid != str(agent.uuid) or getattr(agent, field) == value and (
                        remote is None or mapping.assistant_fields(remote)[field] == value):
                    continue
                reported = agent.sync_status in (SyncStatus.CONFLICT, SyncStatus.DELETED_REMOTELY, SyncStatus.ERROR,
                                                 SyncStatus.PENDING, SyncStatus.LOCAL_ONLY)
                reported = reported or SyncChange.objects.filter(
                    action__in=[ChangeAction.CONFLICT, ChangeAction.ERROR], local_id=agent.pk,
                    run_id__gt=self.edit_runs.get((agent_uuid, field), 0)).exists()
                assert reported, f"{agent.name}: the edit {field}={value!r} was lost without a report"

    @invariant()
    def one_assistant_per_agent_and_one_agent_per_assistant(self):
        markers = [str((a.get("metadata") or {}).get(mapping.MARKER_KEY)) for a in self.emulator.assistants.values()
                   if (a.get("metadata") or {}).get(mapping.MARKER_KEY)]
        assert len(markers) == len(set(markers)), "two assistants carry the same agent's marker"
        linked = [v for v in Agent.objects.exclude(vapi_assistant_id=None).values_list("vapi_assistant_id", flat=True)]
        assert len(linked) == len(set(linked))

    @invariant()
    def no_run_crashed(self):
        crashed = SyncRun.objects.filter(message__startswith="Unexpected error").values_list("message", flat=True).first()
        assert crashed is None, crashed

    @invariant()
    def nothing_deleted_comes_back(self):
        for assistant_id, doc in self.emulator.assistants.items():
            marker = (doc.get("metadata") or {}).get(mapping.MARKER_KEY)
            if marker in self.deleted_markers:
                assert not Agent.objects.filter(vapi_assistant_id=assistant_id).exists(), \
                    "an agent a person deleted came back through an import"
            assert marker not in self.dashboard_deleted_markers, "an assistant deleted in Vapi was created again"
        assert not Agent.objects.filter(uuid__in=self.deleted_markers).exists()


@pytest.mark.django_db
def test_no_interleaving_loses_duplicates_or_silently_overwrites(settings):
    settings.VAPI_SYNC_RECHECK_SECONDS = 0.0  # check Vapi before every chunk of writes
    run_state_machine_as_test(
        SyncWorld,
        settings=settings_for_machine(),
    )


def settings_for_machine():
    return settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, derandomize=not os.environ.get(
        "CONSISTENCY_RANDOM"), suppress_health_check=list(HealthCheck), print_blob=True)
