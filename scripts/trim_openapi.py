"""Derive the trimmed Vapi OpenAPI subset that the emulator and the contract tests use.

Keeps only the assistant and phone-number operations the sync talks to, plus every schema they
reach through `$ref` (transitively), and drops documentation keys (`description`, `example`,
`examples`, `title`, `summary`, `tags`) that validation does not need.

Vapi publishes its OpenAPI document less often than its official Python SDK (`vapi-server-sdk`,
generated from Vapi's API definition): `--sdk` overlays what the installed SDK's types know and the
document does not yet (new properties of the kept schemas, new enum values), so the subset follows
current Vapi. The overlay only adds: it never removes a property, a value or a constraint.

Regenerate after replacing Vapi's spec (tests never read the full spec at run time):

    .venv/bin/python scripts/trim_openapi.py --source path/to/vapi/openapi.json \
        --source-note "Vapi docs repository, commit <sha>, <date>" [--sdk] \
        [--output vapi_emulator/openapi/vapi-openapi-subset.json]
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "vapi_emulator" / "openapi" / "vapi-openapi-subset.json"

OPERATIONS: dict[str, tuple[str, ...]] = {
    "/assistant": ("get", "post"),
    "/assistant/{id}": ("get", "patch", "delete"),
    "/phone-number": ("get", "post"),
    "/phone-number/{id}": ("get", "patch", "delete"),
    "/v2/phone-number": ("get",),
}
DOC_KEYS = frozenset({"description", "example", "examples", "title", "summary", "tags"})
# Values under these keys are data (or name lists), not schemas: copy them verbatim.
VERBATIM_KEYS = frozenset({"default", "enum", "const", "required", "mapping"})
SCHEMA_REF_PREFIX = "#/components/schemas/"


def strip_docs(node: Any) -> Any:
    """Copy `node` without documentation keys. Keys of a `properties` map are field names, kept as is."""
    if isinstance(node, list):
        return [strip_docs(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DOC_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: strip_docs(schema) for name, schema in value.items()}
        elif key in VERBATIM_KEYS:
            out[key] = value
        else:
            out[key] = strip_docs(value)
    return out


def referenced_schemas(node: Any) -> set[str]:
    """Names of the component schemas `node` points to: `$ref`s and discriminator mapping targets."""
    found: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, list):
            stack.extend(current)
            continue
        if not isinstance(current, dict):
            continue
        targets = [current.get("$ref")]
        discriminator = current.get("discriminator")
        if isinstance(discriminator, dict):
            targets += discriminator.get("mapping", {}).values()
        found |= {t.removeprefix(SCHEMA_REF_PREFIX) for t in targets if isinstance(t, str) and t.startswith(SCHEMA_REF_PREFIX)}
        stack.extend(value for key, value in current.items() if key not in VERBATIM_KEYS)
    return found


def trim(spec: dict[str, Any]) -> dict[str, Any]:
    paths = {
        path: {method: strip_docs(spec["paths"][path][method]) for method in methods}
        for path, methods in OPERATIONS.items()
    }
    all_schemas = spec["components"]["schemas"]
    kept: dict[str, Any] = {}
    pending = referenced_schemas(paths)
    while pending:
        name = pending.pop()
        kept[name] = strip_docs(all_schemas[name])
        pending |= referenced_schemas(kept[name]) - kept.keys()
    return {
        "openapi": spec["openapi"],
        "info": {"title": spec["info"]["title"], "version": spec["info"]["version"]},
        "servers": spec.get("servers", []),
        "paths": paths,
        "components": {
            "securitySchemes": strip_docs(spec["components"].get("securitySchemes", {})),
            "schemas": dict(sorted(kept.items())),
        },
    }


# --- Overlay from the official SDK's types ----------------------------------------------------

def _normalized(name: str) -> str:
    """Fern renames schemas ("OpenAIModel" -> "OpenAiModel", "CreateAssistantDTO" -> "CreateAssistantDto")."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _literals(annotation: Any) -> list[Any]:
    """Every Literal value inside an annotation (Fern's open enums are `Union[Literal[...], Any]`)."""
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [value for arg in typing.get_args(annotation) for value in _literals(arg)]


class SdkOverlay:
    """Adds to `schemas` the properties and enum values that the SDK's pydantic models carry."""

    # Fern sometimes renders a JSON Schema keyword as a field; it is not a property of the object.
    NOT_PROPERTIES = frozenset({"oneOf", "anyOf", "allOf"})

    def __init__(self, sdk_types: types.ModuleType, schemas: dict[str, Any]):
        import pydantic

        self.base = pydantic.BaseModel
        self.schemas = schemas
        self.models = {}
        for name in dir(sdk_types):
            obj = getattr(sdk_types, name)
            if inspect.isclass(obj) and issubclass(obj, self.base):
                self.models.setdefault(_normalized(name), obj)
        self.by_normalized = {_normalized(name): name for name in schemas}
        self.added: list[str] = []

    def apply(self) -> list[str]:
        for name in sorted(self.schemas):
            model = self.models.get(_normalized(name))
            if model is not None and isinstance(self.schemas[name].get("properties"), dict):
                self._merge(name, self.schemas[name], model)
        return self.added

    def _merge(self, name: str, schema: dict[str, Any], model: Any) -> None:
        properties = schema["properties"]
        for field_name, field in model.model_fields.items():
            prop = field.alias or field_name
            if prop in self.NOT_PROPERTIES:
                continue
            if prop not in properties:
                properties[prop] = self.schema_for(field.annotation)
                self.added.append(f"{name}.{prop}")
                continue
            new_values = [v for v in _literals(field.annotation)]
            target = properties[prop]
            if "enum" not in target and isinstance(target.get("items"), dict):
                target = target["items"]
            if new_values and isinstance(target.get("enum"), list):
                missing = [v for v in new_values if v not in target["enum"]]
                if missing:
                    target["enum"] = [*target["enum"], *missing]
                    self.added.append(f"{name}.{prop}: {', '.join(map(str, missing))}")

    def schema_for(self, annotation: Any) -> dict[str, Any]:
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin is typing.Annotated:
            return self.schema_for(args[0])
        if origin is typing.Literal:
            return {"type": "string", "enum": list(args)} if all(isinstance(a, str) for a in args) else {"enum": list(args)}
        if origin in (typing.Union, types.UnionType):
            branches = [a for a in args if a is not type(None)]
            literal_values = _literals(annotation)
            if literal_values and all(typing.get_origin(a) is typing.Literal or a is typing.Any for a in branches):
                return self.schema_for(typing.Literal[tuple(literal_values)])
            if len(branches) == 1:
                return self.schema_for(branches[0])
            return {"oneOf": [self.schema_for(a) for a in branches]}
        if origin in (list, typing.List, set, tuple):
            return {"type": "array", "items": self.schema_for(args[0]) if args else {}}
        if origin in (dict, typing.Dict):
            return {"type": "object"}
        if annotation is str:
            return {"type": "string"}
        if annotation is bool:
            return {"type": "boolean"}
        if annotation in (int, float):
            return {"type": "number"}
        if inspect.isclass(annotation) and issubclass(annotation, self.base):
            return {"$ref": SCHEMA_REF_PREFIX + self._component_for(annotation)}
        return {}

    def _component_for(self, model: Any) -> str:
        """The subset's schema for an SDK model, added (from the model's fields) when the subset lacks it."""
        existing = self.by_normalized.get(_normalized(model.__name__))
        if existing is not None:
            return existing
        name = model.__name__
        self.by_normalized[_normalized(name)] = name
        schema: dict[str, Any] = {"type": "object", "properties": {}}
        self.schemas[name] = schema
        for field_name, field in model.model_fields.items():
            if (field.alias or field_name) not in self.NOT_PROPERTIES:
                schema["properties"][field.alias or field_name] = self.schema_for(field.annotation)
        required = [field.alias or n for n, field in model.model_fields.items() if field.is_required()]
        if required:
            schema["required"] = required
        self.added.append(f"{name} (new schema)")
        return name


def overlay_sdk(subset: dict[str, Any]) -> list[str]:
    """Apply the installed `vapi-server-sdk`'s types to `subset` in place; returns what was added."""
    import importlib.metadata

    import vapi.types

    schemas = subset["components"]["schemas"]
    added = SdkOverlay(vapi.types, schemas).apply()
    subset["components"]["schemas"] = dict(sorted(schemas.items()))
    subset["info"]["x-sdk-overlay"] = f"vapi-server-sdk {importlib.metadata.version('vapi-server-sdk')}"
    return added


def render(subset: dict[str, Any]) -> str:
    """Compact JSON with one path or schema per line: small, yet regenerations diff readably."""
    def compact(value: Any) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def block(mapping: dict[str, Any], indent: str) -> str:
        return "{\n" + ",\n".join(f"{indent}{compact(k)}:{compact(v)}" for k, v in sorted(mapping.items())) + "}"

    head = {k: v for k, v in subset.items() if k not in ("paths", "components")}
    lines = [f"{compact(k)}:{compact(v)}" for k, v in sorted(head.items())]
    lines.append('"paths":' + block(subset["paths"], " "))
    components = subset["components"]
    lines.append(
        '"components":{"securitySchemes":' + compact(components["securitySchemes"])
        + ',\n"schemas":' + block(components["schemas"], " ") + "}"
    )
    return "{" + ",\n".join(lines) + "}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="Vapi's published OpenAPI document (fern/apis/api/openapi.json in Vapi's docs repository)")
    parser.add_argument("--source-note", default="", help="where and when the document was taken (kept in info.x-source)")
    parser.add_argument("--sdk", action="store_true", help="overlay the installed vapi-server-sdk's types (see above)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    subset = trim(json.loads(args.source.read_text(encoding="utf-8")))
    if args.source_note:
        subset["info"]["x-source"] = args.source_note
    if args.sdk:
        for line in overlay_sdk(subset):
            print(f"  from the SDK: {line}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(subset), encoding="utf-8")
    print(f"wrote {args.output} ({len(subset['components']['schemas'])} schemas, {args.output.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
