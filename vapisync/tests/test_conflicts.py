"""The conflict rule lives in the service (vapisync.services.conflicts): the API, the admin and the
command refuse alike to "resolve" a record that is not in conflict, and start no run."""

import pytest
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command

from agents.models import Agent
from globalvoice.tracking import SyncStatus
from vapisync.context import sync_writes
from vapisync.exceptions import NothingToResolve
from vapisync.models import Resource, SyncRun, Trigger
from vapisync.services.conflicts import conflict_resolve

pytestmark = pytest.mark.django_db


@pytest.fixture
def in_sync(emulator):
    with sync_writes():
        return Agent.objects.create(name="Calm", vapi_assistant_id="asst-calm", sync_status=SyncStatus.SYNCED)


def test_the_service_refuses_a_record_not_in_conflict_or_missing(in_sync):
    with pytest.raises(NothingToResolve, match="is not in conflict"):
        conflict_resolve(resource=Resource.ASSISTANTS, local_id=in_sync.pk, keep="vapi", trigger=Trigger.CLI)
    with pytest.raises(NothingToResolve, match="There is no agent with id 999999"):
        conflict_resolve(resource=Resource.ASSISTANTS, local_id=999999, keep="vapi", trigger=Trigger.CLI)
    assert not SyncRun.objects.exists()


def test_the_admin_says_so_and_starts_no_run(client, staff_user, in_sync, emulator):
    client.force_login(staff_user)
    response = client.post("/admin/vapisync/sync/resolve/",
                           {"resource": "assistants", "local_id": in_sync.pk, "keep": "local"})
    assert response.status_code == 302
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert "is not in conflict" in message
    assert not SyncRun.objects.exists() and emulator.counts == {}


def test_the_api_and_the_command_say_so_too(staff_api, in_sync, emulator):
    answer = staff_api.post("/api/vapi-sync/conflicts/resolve", {"resource": "agents", "id": in_sync.pk, "keep": "vapi"},
                            format="json")
    assert answer.status_code == 400 and answer.json()["code"] == "no_conflict"
    with pytest.raises(CommandError, match="is not in conflict"):
        call_command("vapi_sync", "resolve", "agents", str(in_sync.pk), "--keep", "vapi")
    assert not SyncRun.objects.exists() and emulator.counts == {}
