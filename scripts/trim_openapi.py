"""Derive the trimmed Vapi OpenAPI subset that the emulator and the contract tests use.

Keeps only the assistant and phone-number operations the sync talks to, plus every schema they
reach through `$ref` (transitively), and drops documentation keys (`description`, `example`,
`examples`, `title`, `summary`, `tags`) that validation does not need.

Regenerate after replacing Vapi's spec (tests never read the full spec at run time):

    .venv/bin/python scripts/trim_openapi.py --source path/to/vapi/openapi.json \
        [--output vapisync/openapi/vapi-openapi-subset.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "vapisync" / "openapi" / "vapi-openapi-subset.json"

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
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    subset = trim(json.loads(args.source.read_text(encoding="utf-8")))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(subset), encoding="utf-8")
    print(f"wrote {args.output} ({len(subset['components']['schemas'])} schemas, {args.output.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
