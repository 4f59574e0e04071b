"""`manage.py vapi_emulator`: serve the Vapi emulator over HTTP for the demo, manual tests and benchmarks."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from vapi_emulator import VapiEmulator, make_server

BUILT_IN_KEY = "emulator-key"


class Command(BaseCommand):
    help = "Serve a local Vapi API emulator (assistants and phone numbers) on a threaded HTTP server."

    server = None  # the running server, so a caller (or a test) can shut it down

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
        parser.add_argument("--seed", choices=["demo", "none"], default="none", help="'demo' loads a small example org")
        parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every answer")
        parser.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 500/502/503 (0..1)")
        parser.add_argument("--rate-limit", type=float, default=None, help="requests per second before 429s")
        parser.add_argument("--api-key", default=None, help=f"accepted Bearer key (default: VAPI_API_KEY, else {BUILT_IN_KEY!r})")

    def handle(self, *args: Any, **options: Any) -> None:
        if not 0 <= options["error_rate"] <= 1:
            raise CommandError("--error-rate must be between 0 and 1")
        api_key = options["api_key"] or settings.VAPI_API_KEY or BUILT_IN_KEY
        emulator = VapiEmulator(
            api_key=api_key,
            latency_ms=options["latency_ms"],
            error_rate=options["error_rate"],
            rate_limit=options["rate_limit"],
            seed=None if options["seed"] == "none" else options["seed"],
        )
        try:
            self.server = make_server(emulator, options["host"], options["port"])
        except OSError as error:
            raise CommandError(f"cannot listen on {options['host']}:{options['port']}: {error}") from error
        host, port = self.server.server_address[:2]
        # Never echo a real key: only the built-in default is safe to print.
        key_note = f"the built-in key {BUILT_IN_KEY!r}" if api_key == BUILT_IN_KEY else "the configured API key (set; not shown)"
        self.stdout.write(self.style.SUCCESS(f"Vapi emulator listening on http://{host}:{port}"))
        self.stdout.write(
            f"Accepts Bearer {key_note}; {len(emulator.assistants)} assistants, {len(emulator.phone_numbers)} phone numbers. "
            "Ctrl-C to stop."
        )
        self.stdout.flush()
        try:
            self.server.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")
        finally:
            self.server.server_close()
