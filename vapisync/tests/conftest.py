"""Vapi stand-in for the sync tests: the project's emulator, served in-process through `responses`."""

import pytest
import responses

from vapi_emulator import VapiEmulator

from .factories import API_KEY, BASE_URL


@pytest.fixture(autouse=True)
def fresh_process_state():
    """What a process remembers between requests (the cache: throttles, the health probe; the circuit
    breakers) starts empty in every test, as in a newly started process."""
    from django.core.cache import cache

    from vapisync.breaker import circuit_breakers_reset

    cache.clear()
    circuit_breakers_reset()
    yield
    cache.clear()
    circuit_breakers_reset()


@pytest.fixture
def emulator():
    emu = VapiEmulator(api_key=API_KEY, random_seed=7)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        emu.install(rsps, BASE_URL)
        yield emu


@pytest.fixture
def vapi_client(emulator, settings):
    from vapisync.client import VapiClient

    return VapiClient(api_key=API_KEY, base_url=BASE_URL, sleep=lambda s: None, max_retries=3, max_concurrency=4)
