"""The emulator is a package of its own: it imports without Django settings and without the app."""

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_package_imports_without_django_or_the_app():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = (
        "import sys, vapi_emulator, vapi_emulator.demo, vapi_emulator.openapi\n"
        "emu = vapi_emulator.VapiEmulator(api_key='k')\n"
        "vapi_emulator.demo.load_demo(emu)\n"
        "assert emu.assistants and vapi_emulator.openapi.schema_errors('Assistant', next(iter(emu.assistants.values()))) == []\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'vapisync', 'agents', 'phonenumbers_app')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
