"""Two syncs started at the same moment, on a real database with real threads."""

import threading

import pytest
from django.db import connection

from agents.models import Agent
from phonenumbers_app.models import PhoneNumber
from vapisync.exceptions import SyncAlreadyRunning
from vapisync.models import Direction, RunStatus, SyncRecord, SyncRun
from vapisync.services.runs import sync_run_start

from .factories import make_assistant


@pytest.mark.django_db(transaction=True)
def test_two_full_syncs_at_once_never_duplicate(emulator, vapi_client):
    for i in range(30):
        make_assistant(emulator, f"Agent {i}")
    for i in range(10):
        emulator.add_phone_number(provider="vapi", number=f"+1415{2000000 + i:07d}")
    Agent.objects.bulk_create([Agent(name=f"Local {i}") for i in range(10)])
    barrier = threading.Barrier(2)
    outcomes = []

    def start():
        try:
            barrier.wait(timeout=10)
            outcomes.append(sync_run_start(direction=Direction.FULL, trigger="api", client=vapi_client).status)
        except SyncAlreadyRunning as exc:
            outcomes.append(f"refused:{exc.run_id}")
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert len(outcomes) == 2
    assert RunStatus.SUCCEEDED in outcomes
    # Whatever the interleaving, each side holds each record exactly once.
    assert Agent.objects.count() == 40 and len(emulator.assistants) == 40
    assert PhoneNumber.objects.count() == 10
    assert SyncRecord.objects.filter(resource="assistants").count() == 40
    markers = [a.get("metadata", {}).get("globalvoiceAgentUuid") for a in emulator.assistants.values()]
    created_here = [m for m in markers if m]
    assert len(created_here) == len(set(created_here)) == 10
    # The loser was refused (nothing recorded) or ran after the winner and found nothing to do.
    if any(str(o).startswith("refused") for o in outcomes):
        assert SyncRun.objects.count() == 1
    else:
        second = SyncRun.objects.order_by("id").last()
        assert second.counts["assistants"]["created"] == 0
