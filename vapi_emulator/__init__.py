"""A faithful local stand-in for Vapi's assistant and phone-number API (see `app.VapiEmulator`).

The emulator does not depend on Django: tests use it in-process (`install` on a `responses`
mock, or `handle`), and `manage.py vapi_emulator` serves `wsgi_app` over HTTP (`server.make_server`).
"""

from .app import DEFAULT_ORG_ID, VapiEmulator
from .server import make_server

__all__ = ["DEFAULT_ORG_ID", "VapiEmulator", "make_server"]
