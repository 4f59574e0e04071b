"""Helpers of the settings tests: a fresh interpreter with a clean environment, and what it reads.

Settings are read once per process, so each case starts `python` with only the variables it
names (plus ENV_FILE= so a developer's `.env` cannot leak in) and reads the result as JSON.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]

DUMP = """
import json
import django
from django.conf import settings
django.setup()
names = %r
print(json.dumps({name: getattr(settings, name, None) for name in names}, default=str))
"""

REAL_KEY = "k3y-" + "x7Qp9" * 12  # long and varied enough for check --deploy


def clean_env(**extra: str) -> dict:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DJANGO_SETTINGS_MODULE": "globalvoice.settings",
        "ENV_FILE": "",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(extra)
    return env


def run_python(code: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=clean_env(**extra),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def load_settings(*names: str, **extra: str) -> dict:
    result = run_python(DUMP % (names,), **extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
