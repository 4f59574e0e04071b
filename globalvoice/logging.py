"""Keep credentials out of every log line, whatever logged them."""

import logging
import re

from django.conf import settings

_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def _secrets():
    for name in ("VAPI_API_KEY", "VAPI_WEBHOOK_SECRET"):
        value = getattr(settings, name, "") if settings.configured else ""
        if value and len(value) >= 4:
            yield value


def redact(text: str) -> str:
    for secret in _secrets():
        text = text.replace(secret, "[REDACTED]")
    return _BEARER.sub(r"\1[REDACTED]", text)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call must not hide the record
            return True
        cleaned = redact(message)
        if cleaned != message or record.exc_info:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
