"""Test data, constants and small steps the sync tests share (fixtures live in conftest.py; this is a
plain module, so test files import it instead of each other)."""

import contextlib
import threading

from agents.models import Agent
from vapisync.models import Direction
from vapisync.services.runs import sync_run_start

BASE_URL = "http://vapi.test"
API_KEY = "test-vapi-key"


class ManualClock:
    """A clock the test moves by hand (`clock.now += 5`): a lease's monotonic time, the emulator's time."""

    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def make_assistant(emulator, name="Support", prompt="You are helpful.", **extra):
    doc = {
        "name": name,
        "firstMessage": f"Hi, this is {name}.",
        "model": {
            "provider": "openai",
            "model": "gpt-4o",
            "temperature": 0.3,
            "maxTokens": 250,
            "messages": [
                {"role": "system", "content": prompt},
                {"role": "assistant", "content": "Example reply kept as is."},
            ],
            "tools": [{"type": "endCall"}],
        },
        "voice": {"provider": "vapi", "voiceId": "Elliot"},
        "transcriber": {"provider": "deepgram", "model": "nova-2", "language": "en"},
        "analysisPlan": {"summaryPlan": {"enabled": True}},
        "metadata": {"team": "support"},
    }
    doc.update(extra)
    return emulator.add_assistant(**doc)


def run(client, direction=Direction.FULL, **kwargs):
    """One run in this thread with `client` (the emulator's), as the command starts it."""
    kwargs.setdefault("trigger", "cli")
    return sync_run_start(direction=direction, client=client, **kwargs)


def remote_writes(emulator):
    """Requests that wrote to Vapi (anything but a GET)."""
    return sum(n for route, n in emulator.counts.items() if not route.startswith("GET"))


def linked_agent(emulator, vapi_client):
    """An agent imported from a Vapi assistant, so both sides and the baseline agree; (agent, assistant)."""
    remote = make_assistant(emulator, "Support")
    run(vapi_client, Direction.IMPORT)
    return Agent.objects.get(), remote


@contextlib.contextmanager
def emulator_served(*, api_key: str, random_seed: int):
    """The emulator on a real loopback port, for tests whose Vapi client lives in another process
    (a Celery worker, gunicorn, a shell command): yields (emulator, base URL)."""
    from vapi_emulator import VapiEmulator, make_server

    emulator = VapiEmulator(api_key=api_key, random_seed=random_seed)
    server = make_server(emulator, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield emulator, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
