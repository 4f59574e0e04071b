"""The one accessor for VAPI_* settings, read at call time (tests may override settings)."""

from dataclasses import dataclass

from django.conf import settings

CONFLICT_POLICIES = ("vapi_wins", "local_wins", "newest_wins", "manual")


@dataclass(frozen=True)
class VapiSettings:
    api_key: str
    base_url: str
    webhook_secret: str
    conflict_policy: str
    delete_remote: bool
    timeout_connect: float
    timeout_read: float
    max_retries: int
    max_retry_wait: float
    rate_limit: float
    adaptive_rate: bool
    rate_start: float
    max_concurrency: int
    webhook_max_bytes: int
    remote_recheck_seconds: float = 1.0
    circuit_breaker_seconds: float = 30.0
    interactive_timeout: float = 3.0

    @property
    def configured(self) -> bool:
        return bool(self.api_key)

    def __repr__(self):  # never show the secrets
        return f"VapiSettings(base_url={self.base_url!r}, configured={self.configured}, policy={self.conflict_policy!r})"


def vapi_settings() -> VapiSettings:
    return VapiSettings(
        api_key=settings.VAPI_API_KEY,
        base_url=settings.VAPI_BASE_URL.rstrip("/"),
        webhook_secret=settings.VAPI_WEBHOOK_SECRET,
        conflict_policy=settings.VAPI_SYNC_CONFLICT_POLICY,
        delete_remote=settings.VAPI_SYNC_DELETE_REMOTE,
        timeout_connect=settings.VAPI_TIMEOUT_CONNECT,
        timeout_read=settings.VAPI_TIMEOUT_READ,
        max_retries=settings.VAPI_MAX_RETRIES,
        max_retry_wait=settings.VAPI_MAX_RETRY_WAIT,
        rate_limit=settings.VAPI_RATE_LIMIT,
        adaptive_rate=settings.VAPI_ADAPTIVE_RATE,
        rate_start=settings.VAPI_RATE_START,
        max_concurrency=settings.VAPI_MAX_CONCURRENCY,
        webhook_max_bytes=settings.VAPI_WEBHOOK_MAX_BYTES,
        remote_recheck_seconds=float(getattr(settings, "VAPI_SYNC_RECHECK_SECONDS", 1.0)),
        circuit_breaker_seconds=getattr(settings, "VAPI_CIRCUIT_BREAKER_SECONDS", 30.0),
        interactive_timeout=getattr(settings, "VAPI_INTERACTIVE_TIMEOUT", 3.0),
    )
