"""Look at one record's Vapi side: the stored Vapi document, and a live comparison with Vapi.

Read-only on both sides: `record_compare` GETs one document from Vapi and changes nothing here or
there. Secrets in Vapi documents (credentials, tokens, passwords, API keys) are masked before
anything is returned, so the admin can show documents whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from globalvoice.logging import redact
from vapisync.client import VapiClient
from vapisync.exceptions import VapiNotFound, VapiSyncError
from vapisync.models import SyncRecord
from vapisync.resources import resource_spec

MASK = "•••••• (hidden)"
# Key names that carry a credential in Vapi's documents (twilioAuthToken, server.secret, apiKey, authPassword),
# but not counts or references (maxTokens, credentialId).
SECRET_KEY = re.compile(r"secret|passw|api_?key|private_?key|authoriz|bearer|signature|token$|credential(?!ids?$)",
                        re.IGNORECASE)
DASHBOARD = "https://dashboard.vapi.ai"


def mask_secrets(value: Any) -> Any:
    """A copy of a JSON document with the value of every secret-looking key masked. Flags and empty
    values stay; lists and objects under such a key are masked inside (`credentials[].apiKey`)."""
    if isinstance(value, Mapping):
        return {key: MASK if _is_secret(key, item) else mask_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_secrets(item) for item in value]
    if isinstance(value, str):
        return redact(value)  # the API key or webhook secret, wherever it was echoed
    return value


def _is_secret(key, value) -> bool:
    return bool(SECRET_KEY.search(str(key))) and not isinstance(value, (Mapping, list, bool)) and value not in (None, "")


def dashboard_url(resource: str, vapi_id: str | None) -> str | None:
    return f"{DASHBOARD}/{resource_spec(resource).dashboard_path}/{vapi_id}" if vapi_id else None


def vapi_id_of(resource: str, obj) -> str | None:
    return getattr(obj, resource_spec(resource).vapi_id_field) or None


def sync_record_get(resource: str, obj) -> SyncRecord | None:
    """The baseline of `obj`'s pair: by its Vapi id, else by its local id (a pair seen before the link)."""
    vapi_id = vapi_id_of(resource, obj)
    records = SyncRecord.objects.filter(resource=resource)
    found = records.filter(vapi_id=vapi_id).first() if vapi_id else None
    return found or records.filter(local_id=obj.pk).order_by("-synced_at", "-pk").first()


def stored_vapi_document(resource: str, obj) -> dict | None:
    """The full Vapi document last seen for `obj`, secrets masked (None before its first sync)."""
    record = sync_record_get(resource, obj)
    if record is None or not record.remote:
        return None
    return mask_secrets(record.remote)


@dataclass
class FieldComparison:
    name: str
    local: Any
    vapi: Any
    baseline: Any
    differs: bool  # here and Vapi disagree now
    changed_here: bool  # since the last sync
    changed_in_vapi: bool


@dataclass
class Comparison:
    resource: str
    vapi_id: str | None
    fields: list[FieldComparison] = field(default_factory=list)
    vapi_document: dict | None = None  # masked
    baseline_at: Any = None
    missing_in_vapi: bool = False
    error: str = ""  # Vapi could not be asked (down, not configured, ...): local columns only

    @property
    def differing(self) -> list[str]:
        return [f.name for f in self.fields if f.differs]


def record_compare(*, resource: str, obj, client=None) -> Comparison:
    """GET `obj`'s document from Vapi and compare, field by field, here / Vapi now / the last sync.

    Never raises for Vapi's failures: they end up in `error`, with the local and baseline columns
    still filled. Changes nothing, here or in Vapi.
    """
    spec = resource_spec(resource)
    vapi_id = vapi_id_of(resource, obj)
    record = sync_record_get(resource, obj)
    baseline = (record.baseline or None) if record else None
    comparison = Comparison(resource=resource, vapi_id=vapi_id, baseline_at=record.synced_at if record else None)
    remote = None
    if not vapi_id:
        comparison.error = "Not linked to Vapi yet: there is nothing in Vapi to compare with."
    else:
        try:
            client = client or VapiClient.from_settings()
            remote = getattr(client, spec.vapi_get)(vapi_id)
        except VapiNotFound:
            comparison.missing_in_vapi = True
        except VapiSyncError as exc:
            comparison.error = f"Could not read it from Vapi: {redact(str(exc))}"
    mapper = spec.mapper()
    here = mapper.local_fields(obj)
    there = mapper.remote_fields(remote) if remote is not None else None
    for name in here:
        vapi_value = there.get(name) if there is not None else None
        # The baseline holds a field only while both sides agreed on it at the last sync.
        known = baseline is not None and name in baseline
        base_value = baseline.get(name) if known else None
        comparison.fields.append(FieldComparison(
            name=name, local=here[name], vapi=vapi_value, baseline=base_value,
            differs=there is not None and _norm(here[name]) != _norm(vapi_value),
            changed_here=known and _norm(here[name]) != _norm(base_value),
            changed_in_vapi=known and there is not None and _norm(vapi_value) != _norm(base_value),
        ))
    comparison.vapi_document = mask_secrets(remote) if remote is not None else None
    return comparison


def _norm(value: Any) -> Any:
    return "" if value is None else value
