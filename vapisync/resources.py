"""The synced resources: one `ResourceSpec` each, the single place that says what a resource is.

The engine, rollback, the outbox, selectors, the API, the admin and the command all read this
registry instead of keeping their own tables. A mapper translates one resource between its local
model and its Vapi document; it is a plain object anyone can call, no engine needed (the pure
translation itself is `vapisync.mapping`).

Adding a resource (say Vapi tools): a model with the sync columns (`globalvoice.tracking.SyncTrackedModel`),
a mapper here, a `ResourceSync` subclass in `vapisync.services.resource_syncs` saying how it is
listed and written in Vapi, and its entry in `REGISTRY`. See docs/architecture.md.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from agents.models import Agent
from phonenumbers_app.e164 import e164_normalize_or_keep
from phonenumbers_app.models import PhoneNumber
from vapisync import mapping
from vapisync.models import Resource


class AgentMapper:
    """Agent <-> Vapi assistant."""

    fields = mapping.ASSISTANT_FIELDS
    local_columns = mapping.ASSISTANT_FIELDS  # what local_fields reads: a row of these columns will do

    def stored_rows_read(self, rows) -> None:
        """Rows read from this app's table (nothing to learn from an agent's)."""

    def local_fields(self, agent) -> dict:
        return mapping.agent_fields(agent)

    def remote_fields(self, doc) -> dict:
        return mapping.assistant_fields(doc)

    def label(self, obj=None, doc=None) -> str:
        if obj is not None:
            return obj.name
        return (doc or {}).get("name") or (doc or {}).get("id") or ""

    def new_local(self, doc, fields) -> Agent:
        agent = Agent(vapi_assistant_id=doc["id"])
        self.apply_local(agent, fields, doc)
        return agent

    def apply_local(self, obj, fields, doc) -> None:
        for name, value in fields.items():
            if name == "name":
                value = (value or "")[:40]
            setattr(obj, name, value or "")
        obj.vapi_assistant_id = doc["id"]

    def local_state(self, obj) -> dict:
        """Fields shown in a local change's diff beyond the mapped ones."""
        return {}


@functools.lru_cache(maxsize=65536)  # a run compares each number several times
def number_normalize_or_keep(number: str) -> str:
    try:
        return e164_normalize_or_keep(number)
    except Exception:  # not even text: compared as Vapi wrote it
        return number


class PhoneNumberMapper:
    """PhoneNumber <-> Vapi phone number. The agent a number routes to is compared as its assistant's
    Vapi id, so the mapper holds the agent <-> assistant map it was built with (`current()` reads it)."""

    fields = mapping.PHONE_FIELDS
    local_columns = ("number", "sip_uri", "name", "provider", "agent_id", "vapi_assistant_id")

    def __init__(self, agent_by_vapi_id: dict[str, int]):
        self.agent_by_vapi_id = agent_by_vapi_id
        self.vapi_id_by_agent = {pk: vapi_id for vapi_id, pk in agent_by_vapi_id.items()}
        self.stored_numbers: set[str] = set()

    def stored_rows_read(self, rows) -> None:
        """Rows read from this app's table: their numbers are known normalised. Every number this app
        stores went through `number_normalize_or_keep` (a person's save normalises it; an import stores
        Vapi's number normalised, or as given when it cannot be parsed), so normalising one again gives
        itself: comparing it needs no parsing, which is most of a no-op sync's time on numbers."""
        self.stored_numbers.update(row.number for row in rows if row.number)

    def normalize_number(self, number: str) -> str:
        return number if number in self.stored_numbers else number_normalize_or_keep(number)

    @classmethod
    def current(cls) -> PhoneNumberMapper:
        return cls(dict(Agent.objects.exclude(vapi_assistant_id__isnull=True).values_list("vapi_assistant_id", "pk")))

    def local_assistant_id(self, obj) -> str | None:
        # With an agent, route to its assistant; without one, keep the assignment Vapi
        # reported (it may name an assistant not imported yet). A person changing the
        # agent resets vapi_assistant_id (see vapisync.signals), so None means unassigned.
        if obj.agent_id:
            return self.vapi_id_by_agent.get(obj.agent_id)
        return obj.vapi_assistant_id or None

    def local_fields(self, obj) -> dict:
        return mapping.phone_local_fields(obj, assistant_id=self.local_assistant_id(obj))

    def remote_fields(self, doc) -> dict:
        return mapping.phone_fields(doc, normalize_number=self.normalize_number)

    def label(self, obj=None, doc=None) -> str:
        if obj is not None:
            return str(obj)
        doc = doc or {}
        return doc.get("number") or doc.get("sipUri") or doc.get("name") or doc.get("id") or ""

    def new_local(self, doc, fields) -> PhoneNumber:
        phone = PhoneNumber()
        self.apply_local(phone, fields, doc)
        return phone

    def apply_local(self, obj, fields, doc) -> None:
        obj.keep_number_as_given = True  # Vapi's number as Vapi holds it, even where it is not E.164
        for name in ("number", "sip_uri", "name", "provider"):
            if name in fields:
                setattr(obj, name, fields[name] if name == "number" else (fields[name] or ""))
        if "name" in fields:
            obj.name = (obj.name or "")[:40]
        if "assistant_id" in fields:
            obj.vapi_assistant_id = fields["assistant_id"]
            obj.agent_id = self.agent_by_vapi_id.get(fields["assistant_id"]) if fields["assistant_id"] else None
        obj.vapi_phone_id = doc["id"]

    def local_state(self, obj) -> dict:
        return {"agent": obj.agent_id}


@dataclass(frozen=True)
class ResourceSpec:
    resource: str  # the key in the history and the engine (Resource)
    public_name: str  # the one name the API, the admin and the command use
    model: type
    vapi_id_field: str
    # What a person changes that Vapi takes: a save changing one of these puts the record in the outbox.
    tracked_fields: tuple[str, ...]
    new_mapper: Any  # () -> mapper
    vapi_get: str  # the VapiClient method that reads one document by its Vapi id
    dashboard_path: str  # https://dashboard.vapi.ai/<dashboard_path>/<vapi id>: the record in Vapi's dashboard

    def mapper(self):
        return self.new_mapper()


REGISTRY: dict[str, ResourceSpec] = {
    Resource.ASSISTANTS: ResourceSpec(
        resource=Resource.ASSISTANTS, public_name="agents", model=Agent, vapi_id_field="vapi_assistant_id",
        tracked_fields=mapping.ASSISTANT_FIELDS, new_mapper=AgentMapper,
        vapi_get="get_assistant", dashboard_path="assistants",
    ),
    Resource.PHONE_NUMBERS: ResourceSpec(
        resource=Resource.PHONE_NUMBERS, public_name="phone_numbers", model=PhoneNumber, vapi_id_field="vapi_phone_id",
        tracked_fields=("name", "agent_id"), new_mapper=PhoneNumberMapper.current,
        vapi_get="get_phone_number", dashboard_path="phone-numbers",
    ),
}
# Assistants first, so phone numbers can link to them.
RESOURCE_ORDER = (Resource.ASSISTANTS, Resource.PHONE_NUMBERS)


def resource_spec(resource: str) -> ResourceSpec:
    return REGISTRY[resource]


def resource_spec_by_public_name(name: str) -> ResourceSpec | None:
    return next((spec for spec in REGISTRY.values() if spec.public_name == name), None)
