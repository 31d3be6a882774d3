"""Erasure requests over HTTP: ``/api/v1/streams/<slug>/erasures``.

Admins only (``Action.ADMINISTER`` on the stream): erasure rewrites the log
and cannot be undone, so neither Developers nor API keys may ask for it. The
person is named in the body, never in the URL, so that the identifier does not
reach access logs or the request audit log.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from eventflow.api import ApiView, TextField, cursor_pagination, paginated_response, parse_input
from eventflow.errors import Invalid
from eventflow.openapi import error_responses, paginated

from .access import Action
from .erasure import MAX_SUBJECT_CHARS, erasure_get, erasure_request, erasures_of_stream
from .selectors import StreamInfo

_SLUG = OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The stream's slug.")
_ID = OpenApiParameter("erasure_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The erasure's id.")
_TAGS = ["erasures"]

ErasurePagination = cursor_pagination("-id", size=100, max_size=500)


class ErasureIn(serializers.Serializer):
    # Not trimmed: the intake keeps ids as sent, so " u1" is another person than "u1" (the page's form keeps it too).
    user_id = TextField(
        max_length=MAX_SUBJECT_CHARS,
        required=False,
        trim_whitespace=False,
        help_text="Erase the events with this user_id.",
    )
    anonymous_id = TextField(
        max_length=MAX_SUBJECT_CHARS,
        required=False,
        trim_whitespace=False,
        help_text="Erase the events with this anonymous_id.",
    )


class ErasureOut(serializers.Serializer):
    id = serializers.IntegerField()
    by = serializers.CharField(help_text="user_id or anonymous_id.")
    subject_sha256 = serializers.CharField(
        source="subject_hash", help_text="SHA-256 of '<by>:<id>': the person's id itself is not kept once done."
    )
    status = serializers.ChoiceField(["pending", "running", "done"])
    events_redacted = serializers.IntegerField()
    inbox_deleted = serializers.IntegerField()
    dead_letters_deleted = serializers.IntegerField()
    sessions_deleted = serializers.IntegerField()
    requested_by = serializers.CharField(source="requested_by_label")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class ErasureListView(ApiView):
    access: Any = Action.ADMINISTER
    stream: StreamInfo

    @extend_schema(
        operation_id="erasures_list",
        summary="List the stream's erasure requests, newest first",
        tags=_TAGS,
        parameters=[_SLUG],
        responses={200: paginated(ErasureOut), **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        erasures = erasures_of_stream(stream_id=self.stream.id)
        return paginated_response(self, request, ErasurePagination, erasures, ErasureOut)

    @extend_schema(
        operation_id="erasures_create",
        summary="Erase a person's events from the stream (privacy request)",
        description=(
            "Exactly one of `user_id` or `anonymous_id`. Every event of the stream with that id is redacted in place "
            "in the background: the log keeps the row (offset, event_id, type, times) with `user_id`, "
            "`anonymous_id`, `session_id`, `payload`, `context` and `enrichment` emptied and "
            '`flags` set to `{"redacted": true, "erasure_id": …}`; the rollups are corrected in the same '
            "transactions; the person's inbox rows, dead letters and session are deleted. Answers 202 with the "
            "erasure; follow it at `/erasures/{id}` until `status` is `done`. An unfinished erasure of the same "
            "person is answered instead of a second one. Admins only."
        ),
        tags=_TAGS,
        parameters=[_SLUG],
        request=ErasureIn,
        responses={202: ErasureOut, **error_responses(400, 401, 403, 404, 413, 415)},
        examples=[OpenApiExample("by user id", request_only=True, value={"user_id": "u_4821"})],
    )
    def post(self, request: Request, slug: str) -> Response:
        data = parse_input(request, ErasureIn)
        given = [name for name in ("user_id", "anonymous_id") if name in data]
        if len(given) != 1:
            raise Invalid("invalid_fields", "Give exactly one of user_id or anonymous_id.", {"fields": given})
        by = given[0]
        erasure = erasure_request(caller=self.caller, stream_id=self.stream.id, by=by, subject=data[by])
        return Response(ErasureOut(erasure).data, status=202)


class ErasureDetailView(ApiView):
    access: Any = Action.ADMINISTER
    stream: StreamInfo

    @extend_schema(
        operation_id="erasures_show",
        summary="Show an erasure request and its progress",
        tags=_TAGS,
        parameters=[_SLUG, _ID],
        responses={200: ErasureOut, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, slug: str, erasure_id: int) -> Response:
        return Response(ErasureOut(erasure_get(stream_id=self.stream.id, erasure_id=erasure_id)).data)
