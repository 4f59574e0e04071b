"""Domain errors of the Vapi sync. Each interface translates them once:
the API through `http_status`, the admin through `message_user`, commands through CommandError.

No message here ever contains the API key: messages are built from the HTTP method,
the path, the status and Vapi's own error text only.
"""


class VapiSyncError(Exception):
    http_status = 500
    code = "sync_error"

    def __init__(self, message: str, **extra):
        super().__init__(message)
        self.extra = extra


class VapiNotConfigured(VapiSyncError):
    http_status = 503
    code = "vapi_not_configured"

    def __init__(self, message: str = "Vapi sync is disabled: set VAPI_API_KEY (see README, 'Configuration')."):
        super().__init__(message)


class SyncAlreadyRunning(VapiSyncError):
    http_status = 409
    code = "sync_already_running"

    def __init__(self, run_id: int | None):
        super().__init__(f"Sync run {run_id} is already in progress; wait for it to finish.", run_id=run_id)
        self.run_id = run_id


class RollbackNotPossible(VapiSyncError):
    http_status = 400
    code = "rollback_not_possible"


class NothingToResolve(VapiSyncError):
    http_status = 400
    code = "no_conflict"


class UnknownLocalIds(VapiSyncError):
    """Local ids that name no record: a run over them would be empty and hide the typo."""

    http_status = 400
    code = "invalid"

    def __init__(self, noun: str, missing: list[int]):
        super().__init__(f"No {noun} with id {', '.join(map(str, missing))} here.", missing=missing)
        self.missing = missing


# --- Errors from talking to Vapi (raised by vapisync.client only) -------------------


class VapiError(VapiSyncError):
    """Vapi refused or could not answer a request."""

    http_status = 502
    code = "vapi_error"
    retryable = False

    def __init__(self, message: str, *, status: int | None = None, method: str = "", path: str = "", details=None):
        super().__init__(message)
        self.status = status
        self.method = method
        self.path = path
        self.details = details


class VapiAuthError(VapiError):
    """401/403: the API key is missing, wrong, revoked or for another region."""

    code = "vapi_auth_error"


class VapiNotFound(VapiError):
    code = "vapi_not_found"


class VapiValidationError(VapiError):
    """400: Vapi rejected the payload; `messages` holds Vapi's list (e.g. "property id should not exist")."""

    code = "vapi_validation_error"

    def __init__(self, message: str, *, messages: list[str] | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.messages = messages or []


class VapiConflict(VapiError):
    """409, e.g. deleting a pinned assistant."""

    code = "vapi_conflict"


class VapiRateLimited(VapiError):
    code = "vapi_rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class VapiUnavailable(VapiError):
    """5xx, timeout or connection failure after the retries ran out.

    `maybe_applied` is True when a write may have reached Vapi anyway (a POST that
    timed out after sending, or got a 5xx): the caller must look before re-creating.
    """

    code = "vapi_unavailable"
    retryable = True

    def __init__(self, message: str, *, maybe_applied: bool = False, **kwargs):
        super().__init__(message, **kwargs)
        self.maybe_applied = maybe_applied


class VapiProtocolError(VapiError):
    """Vapi answered something that is not the JSON we expect (malformed body, wrong shape)."""

    code = "vapi_protocol_error"
    retryable = True
