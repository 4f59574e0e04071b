"""Figures the suites produce, collected into e2e/results.json (rendered into the README by scripts/figures.py).

Each test records a section; sections from earlier runs are kept unless the same test
records again, so running one module refreshes only its own figures.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

PATH = Path(__file__).resolve().parent / "results.json"
_sections: dict[str, dict] = {}


def record(section: str, data: dict) -> None:
    _sections.setdefault(section, {}).update(data)


def add(section: str, key: str, amount: float) -> None:
    data = _sections.setdefault(section, {})
    data[key] = data.get(key, 0) + amount


def write() -> None:
    if not _sections:
        return
    try:
        existing = json.loads(PATH.read_text())
    except (OSError, ValueError):
        existing = {}
    sections = existing.get("sections", {})
    for name, data in _sections.items():
        sections[name] = {**data, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    existing.update(
        sections=sections,
        machine={"cpus": __import__("os").cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    )
    PATH.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")
