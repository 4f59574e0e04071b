"""Conditional requests on versioned records (agents, phone numbers): optimistic writes for API clients.

Every read of one record and every write answer carries `ETag: "<version>"` (the record's version,
which every save moves forward). A PUT, PATCH or DELETE with `If-Match` is carried out only while the
record is still at one of the listed versions (`*`: any existing one); otherwise it answers
412 Precondition Failed and changes nothing. The check and the write happen in one transaction
holding the row (SELECT ... FOR UPDATE on PostgreSQL; SQLite's IMMEDIATE transactions serialise
writers), so nobody can slip in between. Without If-Match a write behaves as before.

Write answers are read back from the database after the transaction has committed, so they show
what the commit's follow-up work (an in-process push to Vapi) left: status, error, Vapi id.
"""

from django.db import transaction
from django.utils.http import parse_etags
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.response import Response

IF_MATCH = "If-Match"


class PreconditionFailed(APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_code = "precondition_failed"


def etag(instance) -> str:
    return f'"{instance.version}"'


def if_match_holds(header: str, instance) -> bool:
    tags = parse_etags(header)
    # If-Match compares strongly (RFC 9110 13.1.1): a weak tag (W/"3") never matches.
    return tags == ["*"] or etag(instance) in tags


class ConditionalWritesMixin:
    """For a ModelViewSet over a model with a `version` field."""

    _lock_rows = False

    def get_queryset(self):
        queryset = super().get_queryset()
        # of=("self",): PostgreSQL cannot lock the nullable side of a select_related join.
        return queryset.select_for_update(of=("self",)) if self._lock_rows else queryset

    def _locked(self):
        """The record, locked until this transaction ends, after checking If-Match against it."""
        self._lock_rows = True
        try:
            instance = self.get_object()
        finally:
            self._lock_rows = False
        header = self.request.headers.get(IF_MATCH)
        if header is not None and not if_match_holds(header, instance):
            raise PreconditionFailed(
                f"This {instance._meta.verbose_name} is no longer at the version given in If-Match: it is now at "
                f"{etag(instance)}. Nothing was changed; read it again and reapply your change."
            )
        return instance

    def handle_exception(self, exc):
        if isinstance(exc, PreconditionFailed):  # answered here, in the API's {"detail", "code"} shape
            return Response({"detail": str(exc.detail), "code": exc.default_code}, status=exc.status_code)
        return super().handle_exception(exc)

    def retrieve(self, request, *args, **kwargs):
        instance = self.get_object()
        return Response(self.get_serializer(instance).data, headers={"ETag": etag(instance)})

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            self.perform_create(serializer)
        return self._answer(serializer.instance, status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        partial = kwargs.pop("partial", False)
        with transaction.atomic():
            instance = self._locked()
            serializer = self.get_serializer(instance, data=request.data, partial=partial)
            serializer.is_valid(raise_exception=True)
            self.perform_update(serializer)
        return self._answer(serializer.instance, status.HTTP_200_OK)

    def destroy(self, request, *args, **kwargs):
        with transaction.atomic():
            self.perform_destroy(self._locked())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _answer(self, instance, code: int) -> Response:
        # The transaction has committed and its on-commit work has run (when it runs in-process):
        # answer with what is stored now, not with the copy this request saved.
        instance.refresh_from_db()
        return Response(self.get_serializer(instance).data, status=code, headers={"ETag": etag(instance)})


# --- OpenAPI ------------------------------------------------------------------------------------

_ETAG_HEADER = OpenApiParameter(
    "ETag", str, OpenApiParameter.HEADER, response=[200, 201],
    description='The record\'s version, e.g. `"7"`. Send it back as `If-Match` to write only if nobody changed it since.',
)
_IF_MATCH_HEADER = OpenApiParameter(
    IF_MATCH, str, OpenApiParameter.HEADER, required=False,
    description='Write only if the record is still at this version: the `ETag` of an earlier answer (e.g. `"7"`, '
    'several comma-separated), or `*` for any existing version. Otherwise 412 and nothing changes. '
    "Without it the write is unconditional.",
)
_PRECONDITION_FAILED = OpenApiResponse(
    inline_serializer("PreconditionFailed", {"detail": serializers.CharField(), "code": serializers.CharField()}),
    description='If-Match does not match the record\'s current version (code "precondition_failed"); nothing changed.',
)


def conditional_schema(serializer_class):
    """Documents ETag, If-Match and 412 on a ModelViewSet's operations."""
    return extend_schema_view(
        retrieve=extend_schema(parameters=[_ETAG_HEADER]),
        create=extend_schema(parameters=[_ETAG_HEADER]),
        update=extend_schema(parameters=[_IF_MATCH_HEADER, _ETAG_HEADER],
                             responses={200: serializer_class, 412: _PRECONDITION_FAILED}),
        partial_update=extend_schema(parameters=[_IF_MATCH_HEADER, _ETAG_HEADER],
                                     responses={200: serializer_class, 412: _PRECONDITION_FAILED}),
        destroy=extend_schema(parameters=[_IF_MATCH_HEADER],
                              responses={204: OpenApiResponse(description="Deleted."), 412: _PRECONDITION_FAILED}),
    )
