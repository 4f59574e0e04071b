"""The Vapi clients the services use, each with the retry budget of who waits for it."""

from __future__ import annotations

from vapisync.client import VapiClient
from vapisync.conf import vapi_settings


def sync_client(*, interactive: bool = False, **overrides) -> VapiClient:
    """The Vapi client for runs (patient retries); `interactive` for what a person waits on
    (short budget, fails fast while Vapi is unreachable). Raises VapiNotConfigured without an API key."""
    return VapiClient.from_settings(interactive=interactive, **overrides)


def automatic_client(*, in_process: bool) -> VapiClient:
    """For the automatic sync. In-process it runs inside a person's request: fail fast and leave the
    rest to a later sweep; a worker has time for the usual retries."""
    if in_process:
        # The person's budget: short timeouts, and at once while Vapi is known to be unreachable (the
        # circuit breaker); one quick retry for a rate limit or a blip.
        conf = vapi_settings()
        return sync_client(interactive=True, max_retries=min(conf.max_retries, 1),
                           max_retry_wait=min(conf.max_retry_wait, 2.0))
    return sync_client()
