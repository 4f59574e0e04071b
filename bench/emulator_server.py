"""Serve a Vapi emulator preloaded with N assistants and M phone numbers (benchmarks, e2e).

    python bench/emulator_server.py --port 8766 --assistants 10000 --phones 5000

With --control, a small control channel for the end-to-end suite is served beside the
emulated API (never behind its auth or faults; loopback only):

    GET  /__state     counts per route, faults, every assistant and phone-number document
    POST /__control   JSON {"error_rate", "latency_ms", "rate_limit", "down", "fail_writes", "api_key"}, and
                      "script": [{"fault": "fail_next" | "fail_after_apply_next", "n", "status", "route"}]
    POST /__seed      JSON {"assistants": N, "phones": M, "prefix": "Agent"}
    POST /__reset     a fresh, empty emulator (same API key), faults off
"""

import argparse
import json
import sys
import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vapi_emulator import VapiEmulator

FAULTS = ("error_rate", "latency_ms", "rate_limit", "down", "fail_writes")
SCRIPTED = ("fail_next", "fail_after_apply_next")
MAX_CONTROL_BODY = 1_000_000


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def populate(emu: VapiEmulator, assistants: int, phones: int, prefix: str = "Agent", first_number: int = 2000000) -> None:
    ids = []
    for i in range(assistants):
        doc = emu.add_assistant(
            name=f"{prefix} {i:05d}",
            firstMessage=f"Hello from agent {i}.",
            model={
                "provider": "openai",
                "model": "gpt-4o",
                "temperature": 0.4,
                "messages": [{"role": "system", "content": f"You are agent number {i}. Be brief."}],
            },
            voice={"provider": "vapi", "voiceId": "Elliot"},
            transcriber={"provider": "deepgram", "model": "nova-2", "language": "en"},
            metadata={"batch": "bench"},
        )
        ids.append(doc["id"])
    for i in range(phones):
        emu.add_phone_number(
            provider="vapi", number=f"+1415{first_number + i:07d}", name=f"Line {i:05d}",
            assistantId=ids[i % len(ids)] if ids else None,
        )


def _snapshot(emu: VapiEmulator, mapping) -> list:
    """A consistent copy of a live dict's values, taken under the emulator's own lock."""
    lock = getattr(emu, "_lock", None)
    if lock is None:
        return list(dict(mapping).values())
    with lock:
        return list(mapping.values())


class ControlledEmulator:
    """The emulator's WSGI app plus the e2e control routes (see the module docstring)."""

    def __init__(self, api_key: str, faults: dict):
        self.api_key = api_key
        self.lock = threading.Lock()
        self.emu = VapiEmulator(api_key=api_key)
        self.set_faults(faults)

    def set_faults(self, faults: dict) -> dict:
        for name, value in faults.items():
            if name == "api_key":  # the key the emulator accepts (not reported by /__state)
                self.emu.api_key = str(value)
                continue
            if name == "script":
                for step in value:
                    if step.get("fault") not in SCRIPTED:
                        raise ValueError(f"unknown scripted fault {step.get('fault')!r}; known: {', '.join(SCRIPTED)}")
                    getattr(self.emu, step["fault"])(int(step["n"]), status=int(step.get("status", 502)), route=step.get("route"))
                continue
            if name not in FAULTS:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
            setattr(self.emu, name, value)
        return self.faults()

    def faults(self) -> dict:
        return {name: getattr(self.emu, name, None) for name in FAULTS}

    def state(self) -> dict:
        emu = self.emu
        return {
            "counts": dict(getattr(emu, "counts", {}) or {}),
            "faults": self.faults(),
            "assistants": _snapshot(emu, emu.assistants),
            "phone_numbers": _snapshot(emu, emu.phone_numbers),
        }

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/__"):
            return self.emu.wsgi_app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_CONTROL_BODY)
            body = json.loads(environ["wsgi.input"].read(length) or b"{}") if method == "POST" else {}
            if (method, path) == ("GET", "/__state"):
                result = self.state()
            elif (method, path) == ("POST", "/__control"):
                with self.lock:
                    result = self.set_faults(body)
            elif (method, path) == ("POST", "/__seed"):
                with self.lock:
                    populate(self.emu, int(body.get("assistants", 0)), int(body.get("phones", 0)),
                             prefix=str(body.get("prefix", "Agent")), first_number=int(body.get("first_number", 2000000)))
                result = {"assistants": len(self.emu.assistants), "phone_numbers": len(self.emu.phone_numbers)}
            elif (method, path) == ("POST", "/__reset"):
                with self.lock:
                    self.emu = VapiEmulator(api_key=self.api_key)
                result = self.faults()
            else:
                start_response("404 Not Found", [("Content-Type", "application/json")])
                return [b'{"error": "unknown control route"}']
        except (ValueError, TypeError, KeyError) as exc:
            start_response("400 Bad Request", [("Content-Type", "application/json")])
            return [json.dumps({"error": str(exc)}).encode()]
        payload = json.dumps(result).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        return [payload]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--api-key", default="bench-key")
    parser.add_argument("--assistants", type=int, default=10000)
    parser.add_argument("--phones", type=int, default=5000)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=float, default=None)
    parser.add_argument("--control", action="store_true", help="serve the /__state, /__control, /__seed, /__reset routes")
    args = parser.parse_args()
    if args.control:
        app = ControlledEmulator(args.api_key, {})
        emu = app.emu
    else:
        emu = app = VapiEmulator(api_key=args.api_key)
    populate(emu, args.assistants, args.phones)
    emu.error_rate, emu.latency_ms, emu.rate_limit = args.error_rate, args.latency_ms, args.rate_limit
    wsgi = app if args.control else emu.wsgi_app
    server = make_server(args.host, args.port, wsgi, server_class=_Server, handler_class=_QuietHandler)
    print(f"ready http://{args.host}:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
