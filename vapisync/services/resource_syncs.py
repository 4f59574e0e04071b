"""How each resource is listed, matched and written in Vapi: the per-resource half of the engine.

The algorithm (plan, compare-and-set apply) is `vapisync.services.engine.ResourceSync`; what a
resource is (model, Vapi id field, mapper) is its `ResourceSpec` in `vapisync.resources`.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from phonenumbers_app.models import PhoneNumber
from vapisync import mapping
from vapisync.exceptions import VapiNotFound, VapiUnavailable
from vapisync.models import ChangeAction, DeletedMarker, Resource, Side, SyncChange, SyncRecord
from vapisync.resources import REGISTRY, RESOURCE_ORDER, AgentMapper, PhoneNumberMapper
from vapisync.services.bulk_insert import param_chunks
from vapisync.services.engine import ResourceSync
from vapisync.services.plan import Pair, PlannedWrite, Write

CLOCK_SKEW = timedelta(minutes=5)  # between this machine and Vapi, when asking what was created since


class AssistantSync(ResourceSync):
    spec = REGISTRY[Resource.ASSISTANTS]
    resource, model, vapi_id_field = spec.resource, spec.model, spec.vapi_id_field
    local_update_fields = mapping.ASSISTANT_FIELDS

    def new_mapper(self):
        return AgentMapper()

    def prepare(self):
        super().prepare()
        self.earlier_creates: dict[str, dict] = {}

    def list_remote(self, updated_since):
        return self.client.iter_assistants(updated_since=updated_since)

    def get_remote(self, vapi_id):
        return self.client.get_assistant(vapi_id)

    def secondary_key_of_doc(self, doc):
        return str((doc.get("metadata") or {}).get(mapping.MARKER_KEY) or "") or None

    def secondary_key_of_local(self, obj):
        return str(obj.uuid)

    def secondary_filter(self, qs, keys):
        return qs.filter(uuid__in=keys)

    def create_remote(self, pair: Pair) -> dict:
        agent = pair.local
        found = self.earlier_creates.get(str(agent.uuid))
        if found is not None:
            return found  # an earlier create whose answer was lost made it: adopt it
        payload = mapping.assistant_create_payload(pair.local_fields, marker=str(agent.uuid))
        sent_at = timezone.now()
        try:
            return self.client.create_assistant(payload)
        except VapiUnavailable as exc:
            if not exc.maybe_applied:
                raise
            # The create may have reached Vapi: adopt the copy carrying our marker, if any.
            found = self.client.find_assistant_by_metadata(mapping.MARKER_KEY, str(agent.uuid), created_since=sent_at)
            if found is None:
                raise
            return found

    def _look_for_earlier_creates(self, creates):
        """A run that has not seen Vapi's full list since the last uncertain moment (a selective
        push, a lease taken over, an earlier push that did not finish) looks for copies carrying
        the markers of the agents it is about to create: one listing of what was created since the
        oldest of them, instead of a second assistant each."""
        since = min(w.pair.local.created_at for w in creates) - CLOCK_SKEW
        wanted = {str(w.pair.local.uuid) for w in creates}
        for doc in self.client.iter_assistants(created_since=since):
            marker = str((doc.get("metadata") or {}).get(mapping.MARKER_KEY) or "")
            if marker in wanted:
                self.earlier_creates[marker] = doc
        # A copy the history knows was created (its run could not record it here) but that Vapi no
        # longer lists was deleted in Vapi: creating it again would undo that person's deletion.
        missing = {w.pair.local.pk: w for w in creates  # (not an explicit re-create of a known deletion)
                   if str(w.pair.local.uuid) not in self.earlier_creates and not w.pair.remote_gone}
        gone = {}
        for local_id, vapi_id in self.unlinked_copies(list(missing)).items():
            try:
                self.earlier_creates[str(missing[local_id].pair.local.uuid)] = self.client.get_assistant(vapi_id)
            except VapiNotFound:
                gone[missing[local_id]] = vapi_id
        return gone

    def unlinked_copies(self, local_ids: list[int]) -> dict[int, str]:
        """local id -> the assistant the history says a push created for it and this app never deleted."""
        if not local_ids:
            return {}
        created = SyncChange.objects.filter(resource=self.resource, side=Side.VAPI, action=ChangeAction.CREATE,
                                            local_id__in=local_ids).exclude(vapi_id=None).values_list("local_id", "vapi_id")
        deleted = set(SyncChange.objects.filter(resource=self.resource, side=Side.VAPI, action=ChangeAction.DELETE,
                                                vapi_id__in=[v for _, v in created]).values_list("vapi_id", flat=True))
        return {local_id: vapi_id for local_id, vapi_id in created if vapi_id not in deleted}

    def load_deleted_markers(self, docs, by_secondary, records):
        unmatched = {}
        for doc in docs:
            marker = self.secondary_key_of_doc(doc)
            if marker and marker not in by_secondary and doc["id"] not in records:
                unmatched[marker] = doc
        self.deleted_markers = {}
        if not unmatched or not DeletedMarker.objects.exists():
            return
        for chunk in param_chunks(list(unmatched)):
            self.deleted_markers.update(DeletedMarker.objects.filter(marker__in=chunk).values_list("marker", "local_id"))

    def deleted_before_linked(self, doc):
        marker = self.secondary_key_of_doc(doc)
        local_id = self.deleted_markers.get(marker) if marker else None
        if local_id is None:
            return None
        # Its agent was deleted while a create of it was unrecorded: "deleted here, still in Vapi".
        return SyncRecord(resource=self.resource, vapi_id=doc["id"], local_id=local_id, baseline={}, remote=doc,
                          remote_updated_at=mapping.remote_updated_at(doc), local_deleted_at=self.now)

    def after_local_creates(self, pairs):
        """Numbers imported before their assistant wait with its Vapi id: link them now, in this run."""
        by_vapi_id = {p.remote["id"]: p.local.pk for p in pairs if p.remote is not None}
        unlinked = PhoneNumber.objects.filter(agent__isnull=True, vapi_assistant_id__isnull=False)
        if not by_vapi_id or not unlinked.exists():  # (a first import has no numbers yet: one cheap query)
            return
        waiting = list(unlinked.select_for_update().filter(vapi_assistant_id__in=list(by_vapi_id)))
        for phone in waiting:
            agent_id = by_vapi_id[phone.vapi_assistant_id]
            # A bookkeeping-free content write: moves the version, so a person's stale copy cannot undo it.
            if PhoneNumber.objects.filter(pk=phone.pk, version=phone.version).update(
                    agent_id=agent_id, version=phone.version + 1):
                self.recorder.add(
                    Resource.PHONE_NUMBERS, ChangeAction.UPDATE, side=Side.LOCAL, local_id=phone.pk,
                    vapi_id=phone.vapi_phone_id, label=str(phone),
                    before={"local": {"agent": None}}, after={"local": {"agent": agent_id}, "version": phone.version + 1},
                    diff={"agent": [None, agent_id]},
                    reason=f"Linked to the agent imported for assistant {phone.vapi_assistant_id}.",
                )

    def create_document(self, payload: dict) -> dict:
        return self.client.create_assistant(payload)

    def patch_document(self, vapi_id: str, body: dict) -> dict:
        return self.client.update_assistant(vapi_id, body)

    def delete_document(self, vapi_id: str) -> dict:
        return self.client.delete_assistant(vapi_id)

    def restore_body(self, old: dict, current: dict) -> dict:
        """PATCH body putting the whole document `old` back over `current` (every top-level key)."""
        return mapping.changed_top_level(old, current)

    def push(self, pair: Pair, fields: dict) -> dict | None:
        body = mapping.assistant_update_payload(fields, pair.remote)
        if not body:
            return pair.remote
        return self.client.update_assistant(pair.remote["id"], body)


# --- Phone numbers ----------------------------------------------------------------------


class PhoneNumberSync(ResourceSync):
    spec = REGISTRY[Resource.PHONE_NUMBERS]
    resource, model, vapi_id_field = spec.resource, spec.model, spec.vapi_id_field
    local_update_fields = ("number", "sip_uri", "name", "provider", "agent", "vapi_assistant_id")
    can_create_remote = False  # numbers are bought or imported in Vapi's dashboard

    def new_mapper(self):
        # Read once per run, after assistants were synced: which agent each assistant id is.
        return PhoneNumberMapper.current()

    def list_remote(self, updated_since):
        return self.client.iter_phone_numbers(updated_since=updated_since)

    def get_remote(self, vapi_id):
        return self.client.get_phone_number(vapi_id)

    def secondary_key_of_doc(self, doc):
        return self.mapper.normalize_number(doc["number"]) if doc.get("number") else None

    def secondary_key_of_local(self, obj):
        return obj.number or None

    def secondary_filter(self, qs, keys):
        return qs.filter(number__in=keys)

    def waiting_for_link(self, local) -> bool:
        """Routed to an assistant whose agent is here now, but not linked to it yet (route links it)."""
        return not local.agent_id and local.vapi_assistant_id in self.mapper.agent_by_vapi_id

    def route(self, pair, plan):
        # An assistantId naming an assistant imported since: link the agent now.
        if pair.local is not None and pair.remote is not None and self.options.pull and not pair.local.agent_id:
            assistant_id = pair.local.vapi_assistant_id
            if assistant_id and assistant_id in self.mapper.agent_by_vapi_id and pair.drift and pair.drift.clean:
                plan.local.append(PlannedWrite.of(Write.UPDATE, Side.LOCAL, pair, {"assistant_id": assistant_id}))
                return
        if pair.local is not None and pair.remote is None and not pair.remote_gone:
            self.recorder.add(
                self.resource, ChangeAction.SKIP, local_id=pair.local.pk, label=self.label_of(pair.local),
                reason="Not in Vapi: buy or import this number in Vapi's dashboard, then run an import to link it.",
            )
            return
        super().route(pair, plan)

    def create_remote(self, pair):  # never reached: numbers are bought in Vapi's dashboard
        return None

    def create_document(self, payload: dict) -> dict:
        raise ValueError("phone numbers are never created in Vapi by this app")

    def patch_document(self, vapi_id: str, body: dict) -> dict:
        return self.client.update_phone_number(vapi_id, body)

    def delete_document(self, vapi_id: str) -> dict:
        raise ValueError("phone numbers are never deleted or released in Vapi by this app")

    def restore_body(self, old: dict, current: dict) -> dict:
        """PATCH body putting back the pushable fields of `old` (a number's identity is Vapi's alone)."""
        old_fields, now = self.remote_fields(old), self.remote_fields(current)
        return mapping.phone_update_payload({k: v for k, v in old_fields.items() if now.get(k) != v}, current)

    def push(self, pair: Pair, fields: dict) -> dict | None:
        fixed = sorted(set(fields) - set(mapping.PHONE_PUSHABLE))
        if fixed:
            raise ValueError(
                f"{', '.join(fixed)} cannot be changed through Vapi's API; change it in Vapi's dashboard "
                "or revert it here, then sync again."
            )
        if "assistant_id" in fields and fields["assistant_id"] is None and pair.local.agent_id:
            # Its agent has no assistant yet: pushing null would stop the number answering calls.
            # (No database access here: pushes run in the client's worker threads.)
            raise ValueError(
                f"Its agent (id {pair.local.agent_id}) is not in Vapi yet; export agents first (a full sync does both)."
            )
        body = mapping.phone_update_payload(fields, pair.remote)
        if not body:
            return pair.remote
        return self.client.update_phone_number(pair.remote["id"], body)


RESOURCE_SYNCS = {Resource.ASSISTANTS: AssistantSync, Resource.PHONE_NUMBERS: PhoneNumberSync}
assert set(RESOURCE_SYNCS) == set(REGISTRY), "every registered resource needs its ResourceSync"
__all__ = ["RESOURCE_ORDER", "RESOURCE_SYNCS", "AssistantSync", "PhoneNumberSync"]
