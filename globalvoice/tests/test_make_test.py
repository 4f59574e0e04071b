"""`make test` on a machine without Chromium (scripts/run-tests.sh and scripts/install-browser.sh):
where the browser cannot be installed it says so in one line and runs the rest; under CI=true it fails."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What the scripts need, and nothing that could install a browser (no apt-get, no sudo).
TOOLS = ("bash", "dirname", "id", "mktemp", "tail", "rm", "env", "cat")


@pytest.fixture
def machine_without_a_browser(tmp_path):
    """PATH without apt-get or sudo, and CHROMIUM naming a file that is not there."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return {
        "PATH": str(bin_dir),
        "CHROMIUM": str(tmp_path / "no-chromium"),
        "TEST_PYTHON": sys.executable,
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "globalvoice.settings_test",
    }


def run_tests(env: dict, *pytest_args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "scripts/run-tests.sh", *pytest_args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_install_browser_says_in_one_line_why_it_cannot(machine_without_a_browser):
    result = subprocess.run(["bash", "scripts/install-browser.sh"], cwd=ROOT, env=machine_without_a_browser,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert result.stdout.count("\n") == 1 and "no apt-get" in result.stdout


def test_without_a_browser_the_other_tests_run(machine_without_a_browser):
    result = run_tests(machine_without_a_browser, "--collect-only", "-q", "vapisync/tests/test_browser.py",
                       "globalvoice/tests/test_errors.py")
    notes = [line for line in result.stderr.splitlines() if line.startswith("make test:")]
    assert len(notes) == 1 and "browser tests left out" in notes[0], result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_errors.py::" in result.stdout and "test_browser.py::" not in result.stdout
    assert "deselected" in result.stdout


def test_under_ci_a_missing_browser_is_a_failure(machine_without_a_browser):
    result = run_tests({**machine_without_a_browser, "CI": "true"}, "--collect-only", "-q", "globalvoice/tests/test_errors.py")
    assert result.returncode == 1
    assert "CI=true and the browser tests cannot run" in result.stderr
    assert "test_errors.py::" not in result.stdout  # nothing ran


@pytest.mark.browser  # needs Chromium: left out with the other browser tests where it cannot be installed
def test_with_a_browser_every_test_is_collected(machine_without_a_browser):
    env = {**machine_without_a_browser, "CHROMIUM": "/usr/bin/chromium", "CI": "true"}
    result = run_tests(env, "--collect-only", "-q", "vapisync/tests/test_browser.py")
    assert result.returncode == 0, result.stderr
    assert "test_browser.py::" in result.stdout and "make test:" not in result.stderr
