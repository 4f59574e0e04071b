"""Pure translation between local records and Vapi documents. No ORM, no network.

Local side: a flat dict of mapped fields ("canonical fields"). Remote side: the full
Vapi JSON document, kept whole so that every field we do not model survives a push:
a PATCH is built from the last remote document and carries whole top-level objects,
because Vapi's PATCH replaces each top-level key it is given.
"""

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime

import orjson
from django.utils.dateparse import parse_datetime

# Marker stored in an assistant's `metadata` so a create whose answer was lost can be
# found again instead of creating a duplicate (Vapi has no idempotency keys).
MARKER_KEY = "globalvoiceAgentUuid"

ASSISTANT_FIELDS = ("name", "system_prompt", "first_message", "model_provider", "model", "voice_provider", "voice_id")
# Two-way fields of a phone number; number, SIP URI and provider are identity that only
# Vapi's dashboard can change, so they are imported but never pushed.
PHONE_FIELDS = ("number", "sip_uri", "name", "provider", "assistant_id")
PHONE_PUSHABLE = ("name", "assistant_id")

# Model settings that mean the same for every provider; kept when the provider changes.
_PROVIDER_NEUTRAL_MODEL_KEYS = ("messages", "tools", "toolIds", "temperature", "maxTokens", "knowledgeBaseId")


def fields_hash(fields: Mapping) -> str:
    """Stable hash of canonical fields: sorted keys, nulls kept."""
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


# Bump when the mapping changes what two equal sides look like (a field mapped differently, a new
# normalisation): every stored clean mark then stops matching and each pair is compared again once.
CLEAN_MARK_FORMAT = "2"


def clean_mark(local_fields: Mapping, updated_at: str | None) -> str:
    """A pair's sides found equal, as the sync record keeps it: the local fields' hash with Vapi's
    `updatedAt` of that moment ("" when Vapi gave none: such a pair is always compared).

    A full sync computes one per record, so the fields are serialised with orjson (sorted keys; the
    values are strings and None) rather than json.dumps, several times faster; the format says which."""
    if not updated_at:
        return ""
    try:
        blob = orjson.dumps(local_fields, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # a value orjson does not serialise: the same stable text json.dumps gives
        blob = json.dumps(local_fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    return f"{CLEAN_MARK_FORMAT}:{hashlib.sha256(blob).hexdigest()}@{updated_at}"


def document_hash(doc: Mapping | None) -> str | None:
    """Hash of a whole Vapi document, every field included: "is it still exactly what we saw?"."""
    return fields_hash(doc) if doc is not None else None


def remote_updated_at(doc: Mapping) -> datetime | None:
    value = doc.get("updatedAt")
    return parse_datetime(value) if isinstance(value, str) else None


# --- Assistants -----------------------------------------------------------------------


def _system_message(model: Mapping) -> str:
    for message in model.get("messages") or []:
        if isinstance(message, Mapping) and message.get("role") == "system":
            return message.get("content") or ""
    return ""


def assistant_fields(doc: Mapping) -> dict:
    """Canonical fields of a Vapi assistant document."""
    model = doc.get("model") or {}
    voice = doc.get("voice") or {}
    return {
        "name": doc.get("name") or "",
        "system_prompt": _system_message(model),
        "first_message": doc.get("firstMessage") or "",
        "model_provider": model.get("provider") or "",
        "model": model.get("model") or "",
        "voice_provider": voice.get("provider") or "",
        "voice_id": str(voice.get("voiceId") or ""),
    }


def agent_fields(agent) -> dict:
    """Canonical fields of a local Agent (any object with the same attributes)."""
    return {name: getattr(agent, name) or "" for name in ASSISTANT_FIELDS}


def _with_system_prompt(messages: list, prompt: str) -> list:
    messages = [dict(m) if isinstance(m, Mapping) else m for m in messages]
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "system":
            message["content"] = prompt
            return messages
    if prompt:
        messages.insert(0, {"role": "system", "content": prompt})
    return messages


def assistant_document(fields: Mapping, base: Mapping | None = None) -> dict:
    """The assistant `base` (last remote document, or {}) with `fields` applied.

    Nested objects are copied from `base` and only the mapped keys change, so
    temperature, tools, other messages and every unmodelled key survive.
    """
    doc = copy.deepcopy(dict(base or {}))
    if "name" in fields:
        doc["name"] = fields["name"]
    if "first_message" in fields:
        doc["firstMessage"] = fields["first_message"]
    model_keys = {"system_prompt", "model_provider", "model"} & fields.keys()
    if model_keys:
        model = dict(doc.get("model") or {})
        provider = fields.get("model_provider", model.get("provider"))
        if model.get("provider") and provider != model.get("provider"):
            # Provider-specific settings would be rejected by the new provider.
            model = {k: v for k, v in model.items() if k in _PROVIDER_NEUTRAL_MODEL_KEYS}
        model["provider"] = provider
        model["model"] = fields.get("model", model.get("model"))
        if "system_prompt" in fields:
            model["messages"] = _with_system_prompt(model.get("messages") or [], fields["system_prompt"])
        doc["model"] = model
    if {"voice_provider", "voice_id"} & fields.keys():
        voice = dict(doc.get("voice") or {})
        provider = fields.get("voice_provider", voice.get("provider"))
        if voice.get("provider") and provider != voice.get("provider"):
            voice = {}
        voice["provider"] = provider
        voice["voiceId"] = fields.get("voice_id", voice.get("voiceId"))
        doc["voice"] = voice
    return doc


def assistant_create_payload(fields: Mapping, *, marker: str, metadata: Mapping | None = None) -> dict:
    doc = assistant_document(fields)
    doc["metadata"] = {**(metadata or {}), MARKER_KEY: marker}
    return doc


def changed_top_level(new: Mapping, old: Mapping) -> dict:
    """The top-level keys of `new` that differ from `old`: a minimal PATCH body."""
    return {key: value for key, value in new.items() if old.get(key) != value}


def assistant_update_payload(fields: Mapping, remote: Mapping) -> dict:
    """PATCH body that sets `fields` on the assistant `remote`, sending whole top-level objects."""
    return changed_top_level(assistant_document(fields, remote), remote)


# --- Phone numbers -----------------------------------------------------------------------


def phone_fields(doc: Mapping, *, normalize_number=None) -> dict:
    """Canonical fields of a Vapi phone-number document."""
    number = doc.get("number") or None
    if number and normalize_number is not None:
        number = normalize_number(number)
    return {
        "number": number,
        "sip_uri": doc.get("sipUri") or "",
        "name": doc.get("name") or "",
        "provider": doc.get("provider") or "",
        "assistant_id": doc.get("assistantId") or None,
    }


def phone_local_fields(phone, *, assistant_id: str | None) -> dict:
    """Canonical fields of a local PhoneNumber; `assistant_id` is the Vapi id it routes to."""
    return {
        "number": phone.number or None,
        "sip_uri": phone.sip_uri or "",
        "name": phone.name or "",
        "provider": phone.provider or "",
        "assistant_id": assistant_id or None,
    }


def phone_update_payload(fields: Mapping, remote: Mapping) -> dict:
    """PATCH body for the pushable phone fields that differ from `remote`."""
    body = {}
    if "name" in fields and (remote.get("name") or "") != fields["name"]:
        body["name"] = fields["name"]
    if "assistant_id" in fields and (remote.get("assistantId") or None) != fields["assistant_id"]:
        body["assistantId"] = fields["assistant_id"]  # null clears the assignment
    return body


def diff(before: Mapping, after: Mapping, keys: Iterable[str] | None = None) -> dict:
    """field -> [old, new] for the fields that differ."""
    if not before and keys is None:  # a creation (every history row of an import): each value is new
        return {k: [None, after[k]] for k in sorted(after) if after[k] is not None}
    keys = keys if keys is not None else sorted(before.keys() | after.keys())
    return {k: [before.get(k), after.get(k)] for k in keys if before.get(k) != after.get(k)}
