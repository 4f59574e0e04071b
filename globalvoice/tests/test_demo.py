"""`make demo` (scripts/demo.py) as a user meets it: the README's CLI commands work in a second
terminal, a restart resets the emulator and the demo database together, a second demo on the same
ports stops before printing anything, and a dead emulator stops the demo with a message.

Each demo runs as a real process tree (the app, the emulator) on free loopback ports, with its
files (.env.demo, demo.sqlite3) in a temporary folder and an empty .env."""

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STARTED = "Press Ctrl-C to stop."

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Demo:
    def __init__(self, env: dict, port: int, emulator_port: int):
        self.process = subprocess.Popen(
            [sys.executable, "scripts/demo.py", "--port", str(port), "--emulator-port", str(emulator_port)],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self._drained = False
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 90.0) -> bool:
        """True once a line containing `text` was printed; False if the demo ended first."""
        deadline = time.monotonic() + timeout
        if any(text in line for line in self.lines):
            return True
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                self._drained = True
                return False
            self.lines.append(line)
            if text in line:
                return True
        raise AssertionError(f"timed out waiting for {text!r}; output so far:\n" + "\n".join(self.lines))

    def finish(self, timeout: float = 30.0) -> int:
        code = self.process.wait(timeout=timeout)
        while not self._drained and (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        self._drained = True
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.finish()


@pytest.fixture
def demo_env(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "ENV_FILE": str(empty),  # a developer's .env must not change what the test sees
        "DEMO_ENV_FILE": str(tmp_path / ".env.demo"),
        "LOGNAME": "nobody-here",
    }


@pytest.fixture
def ports():
    return free_port(), free_port()


def second_terminal(env: dict, *args: str) -> subprocess.CompletedProcess:
    """A README command typed in another terminal: same environment, nothing added."""
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


def test_readme_commands_work_beside_the_demo_and_a_restart_resets_both_sides(demo_env, ports, tmp_path):
    demo = Demo(demo_env, *ports)
    try:
        assert demo.wait_for(STARTED), demo.output
        assert (tmp_path / ".env.demo").is_file() and (tmp_path / "demo.sqlite3").is_file()

        status = second_terminal(demo_env, "vapi_sync", "status", "--json")
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert data["configured"] and data["vapi_error"] is None
        assert data["agents"]["database"] == 0 and data["agents"]["vapi"] > 0

        token = second_terminal(demo_env, "drf_create_token", "alice")
        assert token.returncode == 0 and "for user alice" in token.stdout, token.stderr

        imported = second_terminal(demo_env, "vapi_sync", "import", "--resource", "agents", "--user", "alice", "--json")
        assert imported.returncode == 0, imported.stderr
        assert json.loads(imported.stdout)["user"] == "alice"
        after = json.loads(second_terminal(demo_env, "vapi_sync", "status", "--local", "--json").stdout)
        assert after["agents"]["database"] == data["agents"]["vapi"]
    finally:
        assert demo.stop() == 0, demo.output

    again = Demo(demo_env, *ports)
    try:
        assert again.wait_for(STARTED), again.output
        assert "reset demo.sqlite3" in again.output
        fresh = json.loads(second_terminal(demo_env, "vapi_sync", "status", "--json").stdout)
        assert fresh["agents"]["database"] == 0 and fresh["agents"]["vapi"] == data["agents"]["vapi"]
        assert fresh["last_run"] is None  # the emulator and the database start over together
    finally:
        again.stop()


def test_a_second_demo_on_the_same_ports_stops_before_the_banner(demo_env, ports, tmp_path):
    first = Demo(demo_env, *ports)
    try:
        assert first.wait_for(STARTED), first.output
        second = Demo({**demo_env, "DEMO_ENV_FILE": str(tmp_path / "other" / ".env.demo")}, *ports)
        assert second.finish() == 1
        assert "already in use" in second.output and "is running" not in second.output, second.output
        assert "another `make demo`" in second.output
        # The running demo is untouched.
        assert json.loads(second_terminal(demo_env, "vapi_sync", "status", "--json").stdout)["vapi_error"] is None
    finally:
        first.stop()


def test_the_demo_stops_with_a_message_when_the_emulator_dies(demo_env, ports):
    demo = Demo(demo_env, *ports)
    try:
        assert demo.wait_for(STARTED), demo.output
        pid = int(re.search(r"starting the Vapi emulator on \S+ \(pid (\d+)\)", demo.output).group(1))
        os.kill(pid, signal.SIGKILL)
        assert demo.finish() == 1
        assert "the Vapi emulator stopped unexpectedly" in demo.output
        with pytest.raises(OSError):  # and the app was stopped with it
            socket.create_connection(("127.0.0.1", ports[0]), timeout=1).close()
    finally:
        demo.stop()
