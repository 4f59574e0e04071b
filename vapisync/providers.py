"""The model and voice providers (and their published names) an agent may use, read from the
committed Vapi OpenAPI subset (`vapi_emulator/openapi/vapi-openapi-subset.json`).

settings.AGENT_CATALOGUE points at `vapi_catalogue`, so the agents app checks a person's values
at save time (API and admin) without knowing Vapi. Offered are the providers of
`CreateAssistantDTO.model` / `.voice` whose required properties the app fills in (provider and
model; provider and voiceId): a provider that also needs, say, a server URL (`custom-llm`,
`custom-voice`) or a language (`neuphonic`) would only fail later in Vapi. A name is checked where
Vapi publishes a closed enum (OpenAI or Anthropic models, Deepgram voices); where it also accepts
any string (11labs voice ids), any name passes.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from agents.catalogue import Catalogue
from vapi_emulator.openapi import _spec

_REF_PREFIX = "#/components/schemas/"
# What the mapping sends for each part of an assistant (vapisync.mapping).
_FILLED = {"model": {"provider", "model", "messages"}, "voice": {"provider", "voiceId"}}


def _resolve(schemas: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref", "")
    return schemas[ref.removeprefix(_REF_PREFIX)] if ref.startswith(_REF_PREFIX) else node


def _closed_enum(node: dict[str, Any] | None) -> tuple[str, ...] | None:
    """The names a property accepts, or None when it accepts any string."""
    if not node:
        return None
    if "enum" in node:
        return tuple(dict.fromkeys(str(v) for v in node["enum"]))
    branches = node.get("oneOf") or node.get("anyOf")
    if branches:
        names: list[str] = []
        for branch in branches:
            closed = _closed_enum(branch)
            if closed is None:
                return None  # "one of these, or any string"
            names.extend(closed)
        return tuple(dict.fromkeys(names))
    return None


def providers(part: str, name_property: str) -> dict[str, tuple[str, ...] | None]:
    """provider -> accepted names (None: any) for `part` ("model" or "voice") of an assistant."""
    schemas = _spec()["components"]["schemas"]
    union = schemas["CreateAssistantDTO"]["properties"][part]
    offered: dict[str, tuple[str, ...] | None] = {}
    for branch in union.get("oneOf") or union.get("anyOf") or []:
        schema = _resolve(schemas, branch)
        properties = schema.get("properties") or {}
        if not set(schema.get("required") or ()) <= _FILLED[part]:
            continue
        for provider in (properties.get("provider") or {}).get("enum") or ():
            offered[provider] = _closed_enum(properties.get(name_property))
    return offered


@cache
def vapi_catalogue() -> Catalogue:
    return Catalogue(platform="Vapi", model_providers=providers("model", "model"),
                     voice_providers=providers("voice", "voiceId"))
