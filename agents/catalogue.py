"""The model and voice choices an agent may use, as the voice platform publishes them.

This app does not know the platform: settings.AGENT_CATALOGUE names a callable (dotted path) that
returns a `Catalogue`, or leaves the choices free when unset. The API serializer and the admin form
both check a person's values with `choice_errors`, so the two speak with one voice.

A value that is stored but not in the catalogue (an older record, an import of something the
catalogue does not offer) stays acceptable while it is not changed: editing an agent's name never
fails because of its model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

MAX_LISTED = 200  # an error lists at most this many allowed values


@dataclass(frozen=True)
class Catalogue:
    """provider -> the names it accepts, or None when it accepts any name."""

    platform: str
    model_providers: Mapping[str, tuple[str, ...] | None] = field(default_factory=dict)
    voice_providers: Mapping[str, tuple[str, ...] | None] = field(default_factory=dict)


# (provider field, name field, catalogue attribute, what a provider is called, what a name is called)
_PAIRS = (
    ("model_provider", "model", "model_providers", "model provider", "model"),
    ("voice_provider", "voice_id", "voice_providers", "voice provider", "voice"),
)


@cache
def _load(path: str) -> Catalogue | None:
    return import_string(path)()


def get_catalogue() -> Catalogue | None:
    path = getattr(settings, "AGENT_CATALOGUE", "")
    return _load(path) if path else None


def provider_choices(kind: str, current: str | None = None) -> list[tuple[str, str]] | None:
    """Choices for a provider field ("model_provider" or "voice_provider"), or None when free.
    A stored value outside the catalogue is offered too, so an unchanged form still saves."""
    catalogue = get_catalogue()
    if catalogue is None:
        return None
    providers = getattr(catalogue, dict((p, attr) for p, _, attr, _, _ in _PAIRS)[kind])
    choices = [(name, name) for name in sorted(providers)]
    if current and current not in providers:
        choices.insert(0, (current, f"{current} (current; not offered by {catalogue.platform})"))
    return choices


def published_names(provider_kind: str) -> dict[str, tuple[str, ...]]:
    """provider -> the closed list of names it publishes, for "model_provider" or "voice_provider"."""
    catalogue = get_catalogue()
    if catalogue is None:
        return {}
    providers = getattr(catalogue, dict((p, attr) for p, _, attr, _, _ in _PAIRS)[provider_kind])
    return {provider: names for provider, names in sorted(providers.items()) if names}


def choice_errors(values: Mapping[str, str], previous: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """Field errors for `values` (the agent's provider and name fields after the change).

    `previous` holds the stored values of an existing agent: a field that keeps its stored value
    (and whose provider keeps its own) is not checked again."""
    catalogue = get_catalogue()
    if catalogue is None:
        return {}
    errors: dict[str, list[str]] = {}
    previous = previous or {}
    for provider_field, name_field, attr, provider_noun, name_noun in _PAIRS:
        accepted = getattr(catalogue, attr)
        provider, name = values.get(provider_field) or "", values.get(name_field) or ""
        provider_changed = not previous or provider != previous.get(provider_field)
        name_changed = provider_changed or name != previous.get(name_field)
        if provider not in accepted:
            if provider_changed:
                errors[provider_field] = [
                    f"“{provider}” is not a {provider_noun} {catalogue.platform} accepts. "
                    f"Allowed: {_listed(sorted(accepted))}."
                ]
            continue  # an unknown provider kept as it is: its names cannot be checked either
        names = accepted[provider]
        if names is not None and name_changed and name not in names:
            errors[name_field] = [
                f"“{name}” is not a {name_noun} {catalogue.platform} accepts for {provider_noun} “{provider}”. "
                f"Allowed: {_listed(names)}."
            ]
    return errors


def _listed(values) -> str:
    values = list(dict.fromkeys(values))
    more = f" (and {len(values) - MAX_LISTED} more)" if len(values) > MAX_LISTED else ""
    return ", ".join(values[:MAX_LISTED]) + more
