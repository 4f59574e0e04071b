"""Serve a VapiEmulator over HTTP with the standard library (threaded; no extra dependency)."""

from __future__ import annotations

from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.simple_server import make_server as _wsgiref_make_server

from .app import VapiEmulator


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per connection, so a slow (fault-injected) answer does not block other clients."""

    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Per-request access lines would drown test and demo output; the emulator counts requests itself."""


def make_server(emulator: VapiEmulator, host: str = "127.0.0.1", port: int = 8765) -> ThreadingWSGIServer:
    """A bound, not yet serving, server (port 0 picks a free port: see `server.server_port`)."""
    return _wsgiref_make_server(host, port, emulator.wsgi_app, server_class=ThreadingWSGIServer, handler_class=_QuietHandler)
