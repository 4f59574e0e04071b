"""POST /api/vapi-sync/webhook: Vapi server messages (Vapi's "Server URL").

Checks, in this order, before reading the body: a secret is configured (else 503), the
`X-Vapi-Secret` header matches VAPI_WEBHOOK_SECRET in constant time (else 401), the body is within
VAPI_WEBHOOK_MAX_BYTES (else 413); then that it is a Vapi server message, JSON nested at most
globalvoice.parsers.MAX_JSON_DEPTH levels (else 400). Then the message is stored as received and
answered at once; the records it names are refreshed from Vapi after the answer has been sent (a task).
The secret is never logged or echoed.
"""

import hmac
import logging

from django.db import transaction
from django.utils.decorators import method_decorator
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from globalvoice.parsers import JSONTooDeep, json_loads_bounded
from vapisync.conf import vapi_settings
from vapisync.services import webhooks

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Vapi-Secret"
_Answer = inline_serializer("VapiWebhookAnswer", {"status": serializers.CharField(), "detail": serializers.CharField(required=False)})


class _AnswerThen(Response):
    """A response that runs `then` once the server has sent it (WSGI/ASGI servers and the test
    client call close() after the last byte), so Vapi never waits for the refresh."""

    def __init__(self, data, *, then, **kwargs):
        super().__init__(data, **kwargs)
        self._then = then

    def close(self):
        try:
            super().close()
        finally:
            try:
                self._then()
            except Exception:  # the answer is sent; the reconciler retries the event
                logger.exception("Could not start the refresh for a Vapi webhook event")


def _error(status: int, code: str, detail: str) -> Response:
    return Response({"status": "rejected", "code": code, "detail": detail}, status=status)


@method_decorator(transaction.non_atomic_requests, name="dispatch")  # stores the event in its own transaction
class VapiWebhookView(APIView):
    """Receive a Vapi server message; refresh the assistant and phone number it names."""

    authentication_classes = []  # the shared secret is the authentication
    permission_classes = [AllowAny]
    throttle_classes = []
    parser_classes = []  # the raw body is read (and size-checked) here
    renderer_classes = [JSONRenderer]

    @extend_schema(
        operation_id="vapi_sync_webhook",
        summary="Vapi server messages (webhook)",
        description=(
            "Set this URL as the Server URL of the Vapi org, phone number or assistant, with the secret "
            f"sent as `{SECRET_HEADER}`. Each message is stored (a replay of the same body is counted, not "
            "processed again) and answered at once; the assistant and phone number it names are then "
            "re-read from Vapi and refreshed here. Unknown message types are ignored."
        ),
        auth=[],
        parameters=[OpenApiParameter(SECRET_HEADER, str, OpenApiParameter.HEADER, required=True,
                                     description="Equals VAPI_WEBHOOK_SECRET.")],
        request={"application/json": {"type": "object", "properties": {"message": {"type": "object"}},
                                      "required": ["message"]}},
        responses={
            200: OpenApiResponse(_Answer, description="received, duplicate or ignored",
                                 examples=[OpenApiExample("received", value={"status": "received"})]),
            400: OpenApiResponse(_Answer, description="not a Vapi server message"),
            401: OpenApiResponse(_Answer, description=f"{SECRET_HEADER} missing or wrong"),
            413: OpenApiResponse(_Answer, description="body larger than VAPI_WEBHOOK_MAX_BYTES"),
            503: OpenApiResponse(_Answer, description="VAPI_WEBHOOK_SECRET is not configured"),
        },
        tags=["vapi-sync"],
    )
    def post(self, request):
        conf = vapi_settings()
        if not conf.webhook_secret:
            return _error(503, "webhook_disabled",
                          "The Vapi webhook is disabled: set VAPI_WEBHOOK_SECRET and send it as the X-Vapi-Secret header.")
        given = request.headers.get(SECRET_HEADER, "")
        if not given or not hmac.compare_digest(given.encode(), conf.webhook_secret.encode()):
            return _error(401, "webhook_secret_invalid", f"The {SECRET_HEADER} header is missing or wrong.")
        body = self._read_body(request, limit=conf.webhook_max_bytes)
        if body is None:
            return _error(413, "webhook_too_large", f"The body is larger than {conf.webhook_max_bytes} bytes.")
        try:
            # Depth first: a deeply nested body would otherwise fail deep inside the decoder or the
            # database (RecursionError, SQLite's 1000-level JSON limit). Other faults are named below.
            json_loads_bounded(body)
        except JSONTooDeep as exc:
            return _error(400, "webhook_malformed", str(exc))
        except ValueError:
            pass
        try:
            receipt = webhooks.webhook_event_receive(body=body)
        except webhooks.WebhookMalformed as exc:
            return _error(400, "webhook_malformed", str(exc))
        if receipt.needs_processing:
            return _AnswerThen({"status": receipt.status}, then=webhooks.webhook_events_dispatch)
        return Response({"status": receipt.status})

    @staticmethod
    def _read_body(request, *, limit: int) -> bytes | None:
        """The body, or None if it is larger than `limit` (decided from Content-Length when sent)."""
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            return None
        body = request._request.read(limit + 1)
        return None if len(body) > limit else body
