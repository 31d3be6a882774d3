"""The event query over HTTP: a page of events by filter, one event wherever it is, and the export.

``GET /api/v1/streams/{slug}/events`` shares its URL with the intake's POST: the
intake view (ingestion/api.py) hands GET to ``EventQueryView`` and its
documenting class borrows ``EventQueryView.get``, so one URL has both operations.
"""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from eventflow.api import ApiView
from eventflow.errors import Invalid, NotFound
from eventflow.openapi import error_responses, paginated
from eventflow.renderers import FastJSONRenderer
from streams.access import Action
from streams.models import DeadLetterStage, DeadLetterStatus
from streams.selectors import StreamInfo

from .filters import EventFilter, parse_filter, parse_whole
from .query import (
    DEFAULT_LIMIT,
    EXPORT_FORMATS,
    MAX_LIMIT,
    ORDERS,
    Cursor,
    Order,
    event_find,
    events_export,
    events_page,
    export_filename,
)
from .selectors import segment_lookup

_TAGS = ["events"]
# What each reader takes besides the filters; anything else unknown is a 400.
_PAGE_PARAMETERS = frozenset({"cursor", "limit", "order"})
_EXPORT_PARAMETERS = frozenset({"format"})
# The people's credentials; X-API-Key (secret keys) is added where the view's access lets
# a key in, by eventflow.openapi.add_api_key_security. Stated here because the URL's view
# class is the intake's documenting class, which declares no authentication.
PERSON_AUTH: list[dict[str, list[str]]] = [{"jwtAuth": []}, {"cookieAuth": []}]


def _query(name: str, kind: Any, description: str, **kwargs: Any) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, required=False, description=description, **kwargs)


FILTER_PARAMETERS = [
    _query("type", OpenApiTypes.STR, "Event types, repeated or comma-separated: any of them.", many=True),
    _query("user_id", OpenApiTypes.STR, "Events of this user id."),
    _query("anonymous_id", OpenApiTypes.STR, "Events of this anonymous id."),
    _query("session_id", OpenApiTypes.STR, "Events of this session."),
    _query("from", OpenApiTypes.DATETIME, "Event time at or after this (ISO 8601 with zone)."),
    _query("to", OpenApiTypes.DATETIME, "Event time before this (ISO 8601 with zone)."),
    _query("offset_from", OpenApiTypes.INT, "Log offset at or above this."),
    _query("offset_to", OpenApiTypes.INT, "Log offset below this."),
    _query("exists", OpenApiTypes.STR, "A property that must be present, e.g. payload.coupon.", many=True),
    _query("missing", OpenApiTypes.STR, "A property that must be absent.", many=True),
    _query("segment", OpenApiTypes.STR, "The conditions of a saved segment of the stream, by name."),
]
FILTERS_DESCRIPTION = (
    "Property conditions on `payload`, `context` or `enrichment`, nested with dots, as more query parameters: "
    "`payload.page=/dashboard` (equality; repeated: any of the values), `enrichment.browser=Firefox`, "
    "`payload.plan!=free` (the property is missing or differs). Values compare as text. "
    "An unknown parameter or a malformed value is a 400."
)


class EventOut(serializers.Serializer):
    offset = serializers.IntegerField()
    event_id = serializers.CharField()
    type = serializers.CharField()
    timestamp = serializers.DateTimeField(help_text="When it happened (the event time).")
    received_at = serializers.DateTimeField()
    logged_at = serializers.DateTimeField()
    user_id = serializers.CharField(allow_null=True)
    anonymous_id = serializers.CharField(allow_null=True)
    session_id = serializers.CharField(allow_null=True)
    payload = serializers.DictField()
    # DRF takes declared fields off the class, so this does not hide Serializer.context.
    context = serializers.DictField()  # type: ignore[assignment]
    enrichment = serializers.DictField()
    flags = serializers.DictField()


class AcceptedEventOut(serializers.Serializer):
    type = serializers.CharField()
    timestamp = serializers.DateTimeField(source="event_time")
    received_at = serializers.DateTimeField()
    user_id = serializers.CharField(allow_null=True)
    anonymous_id = serializers.CharField(allow_null=True)
    session_id = serializers.CharField(allow_null=True)
    payload = serializers.DictField()
    context = serializers.DictField()  # type: ignore[assignment]
    flags = serializers.DictField()
    attempts = serializers.IntegerField(help_text="Processing attempts so far.")
    next_attempt_at = serializers.DateTimeField()
    last_error = serializers.CharField(help_text="The last attempt's error; empty before any failure.")


class EventDeadLetterOut(serializers.Serializer):
    id = serializers.IntegerField(help_text="Operators act on it at /api/v1/dead-letters/{id}.")
    stage = serializers.ChoiceField(DeadLetterStage.choices)
    status = serializers.ChoiceField(DeadLetterStatus.choices)
    error_class = serializers.CharField()
    error_message = serializers.CharField()
    attempts = serializers.IntegerField()
    log_offset = serializers.IntegerField(allow_null=True, help_text="consume and deliver: the log entry's offset.")
    subscriber = serializers.CharField(help_text="consume and deliver: the consumer group or webhook's group name.")
    first_failed_at = serializers.DateTimeField()
    last_failed_at = serializers.DateTimeField()


class EventWhereaboutsOut(serializers.Serializer):
    event_id = serializers.CharField()
    state = serializers.ChoiceField(
        ["logged", "accepted", "dead_letter"],
        help_text="Where it is now: in the log; else waiting in the inbox; else only a dead letter.",
    )
    logged = EventOut(allow_null=True, help_text="The log entry, with its offset.")
    accepted = AcceptedEventOut(allow_null=True, help_text="The inbox row, while it waits for processing.")
    dead_letters = EventDeadLetterOut(many=True, help_text="Every dead letter of the event, oldest first.")


def _choice(request: Request, name: str, choices: tuple[str, ...], default: str) -> str:
    value = request.query_params.get(name, default)
    if value not in choices:
        raise Invalid("invalid_parameter", f"{name} is one of {', '.join(choices)}.", {name: value})
    return value


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    return parse_whole(raw, "limit", 1, MAX_LIMIT)


def _filter(request: Request, stream: StreamInfo, readers_own: frozenset[str]) -> EventFilter:
    return parse_filter(request.query_params, segment_conditions=segment_lookup(stream.id), ignore=readers_own)


def _link(request: Request, cursor: Cursor | None) -> str | None:
    if cursor is None:
        return None
    url = request.build_absolute_uri()
    return replace_query_param(remove_query_param(url, "cursor"), "cursor", cursor.encode())


class EventQueryView(ApiView):
    access = Action.READ
    stream: StreamInfo

    @extend_schema(
        operation_id="events_list",
        summary="Find events in the stream's log",
        description=(
            "Events of the log that match every filter, newest (most recently logged) or oldest first, "
            "in cursor pages over the log offset: a page never shifts while new events arrive. " + FILTERS_DESCRIPTION
        ),
        tags=_TAGS,
        # Security requirement objects, which drf-spectacular writes as given (its hint says str).
        auth=PERSON_AUTH,  # type: ignore[arg-type]
        parameters=[
            OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The stream's slug."),
            *FILTER_PARAMETERS,
            _query("order", OpenApiTypes.STR, "newest (default) or oldest first, by log offset.", enum=list(ORDERS)),
            _query(
                "cursor",
                OpenApiTypes.STR,
                "From a previous page's next/previous link. It serves the question it came from: the same stream, "
                "filters and order (the limit may change); with another it is a 400 `cursor_mismatch`.",
            ),
            _query("limit", OpenApiTypes.INT, f"Page size (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})."),
        ],
        responses={200: paginated(EventOut), **error_responses(400, 401, 403, 404)},
        examples=[
            OpenApiExample(
                "a page",
                response_only=True,
                value={
                    "next": "https://eventflow.example/api/v1/streams/shop/events?type=page_view&cursor=bjQx",
                    "previous": None,
                    "results": [
                        {
                            "offset": 42,
                            "event_id": "9b1c0f3e",
                            "type": "page_view",
                            "timestamp": "2026-11-21T09:00:00Z",
                            "received_at": "2026-11-21T09:00:00.120000Z",
                            "logged_at": "2026-11-21T09:00:00.150000Z",
                            "user_id": "u456",
                            "anonymous_id": None,
                            "session_id": "s-81f2",
                            "payload": {"page": "/dashboard"},
                            "context": {"user_agent": "Mozilla/5.0 …"},
                            "enrichment": {"browser": "Firefox", "os": "Linux", "device_type": "desktop"},
                            "flags": {},
                        }
                    ],
                },
            )
        ],
    )
    def get(self, request: Request, slug: str) -> Response:
        event_filter = _filter(request, self.stream, _PAGE_PARAMETERS)
        order: Order = _choice(request, "order", ORDERS, "newest")  # type: ignore[assignment]
        raw_cursor = request.query_params.get("cursor")
        page = events_page(
            stream_id=self.stream.id,
            event_filter=event_filter,
            order=order,
            limit=_limit(request),
            cursor=Cursor.decode(raw_cursor) if raw_cursor else None,
        )
        return Response(
            {
                "next": _link(request, page.next),
                "previous": _link(request, page.previous),
                "results": EventOut(page.events, many=True).data,
            }
        )


class EventDetailView(ApiView):
    access = Action.READ
    stream: StreamInfo

    @extend_schema(
        operation_id="events_show",
        summary="Find one event wherever it is: log, inbox or dead letters",
        description=(
            "The event by its id (up to 128 characters, URL-encoded): its log entry with the offset, or its inbox "
            "row while it waits for processing (attempts, last error), and every dead letter of it (the "
            "processing stage that gave up, or a consumer group's or webhook's). 404 when it is nowhere. "
            "The ids `export` and `batch` name other endpoints of this path and cannot be looked up here."
        ),
        tags=_TAGS,
        parameters=[
            OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The stream's slug."),
            OpenApiParameter("event_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The event's id."),
        ],
        responses={200: EventWhereaboutsOut, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, slug: str, event_id: str) -> Response:
        found = event_find(stream_id=self.stream.id, event_id=event_id)
        if found is None:
            raise NotFound("event_not_found", "No event of this id in the stream.", {"event_id": event_id})
        return Response(
            EventWhereaboutsOut(
                {
                    "event_id": found.event_id,
                    "state": found.state,
                    "logged": found.logged,
                    "accepted": found.accepted,
                    "dead_letters": found.dead_letters,
                }
            ).data
        )


class _Exported(BaseRenderer):
    """Names the export's media types to the documentation; the bytes come from the database."""

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> Any:
        return data


class CsvRenderer(_Exported):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"


class NdjsonRenderer(_Exported):
    media_type = "application/x-ndjson"
    format = "ndjson"
    charset = "utf-8"


class _JsonAnswers(BaseContentNegotiation):
    """Errors of the export are JSON whatever ``format`` asks: the rows go out in a streaming response."""

    def select_parser(self, request: Any, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> Any:
        renderer = FastJSONRenderer()
        return renderer, renderer.media_type


CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson; charset=utf-8"}


class EventExportView(ApiView):
    access = Action.READ
    stream: StreamInfo
    renderer_classes = [FastJSONRenderer, CsvRenderer, NdjsonRenderer]
    content_negotiation_class = _JsonAnswers

    @extend_schema(
        operation_id="events_export",
        summary="Export events as CSV or NDJSON",
        description=(
            "Every matching event, oldest first, streamed as the database reads it: memory stays constant and "
            "there is no time limit. CSV columns: offset, event_id, type, timestamp, received_at, user_id, "
            "anonymous_id, session_id, payload, context, enrichment (JSON columns as JSON text; times in UTC; a text "
            "cell a spreadsheet would run as a formula, one starting with = + - @, a tab or a carriage return, "
            "begins with an apostrophe). "
            "NDJSON: one JSON object per line with the same fields. The file is named "
            '`<slug>-events-<from>-<to>.<ext>` in `Content-Disposition` ("start" for an open `from`, the time of '
            "asking for an open `to`). " + FILTERS_DESCRIPTION
        ),
        tags=_TAGS,
        parameters=[
            OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The stream's slug."),
            _query("format", OpenApiTypes.STR, "csv (default) or ndjson.", enum=list(EXPORT_FORMATS)),
            *FILTER_PARAMETERS,
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV with a header row."),
            (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR, description="One event per line."),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request: Request, slug: str) -> StreamingHttpResponse:
        fmt = _choice(request, "format", EXPORT_FORMATS, "csv")
        event_filter = _filter(request, self.stream, _EXPORT_PARAMETERS)
        filename = export_filename(slug=self.stream.slug, event_filter=event_filter, fmt=fmt, now=timezone.now())
        response = StreamingHttpResponse(
            events_export(stream_id=self.stream.id, event_filter=event_filter, fmt=fmt),
            content_type=CONTENT_TYPES[fmt],
        )
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        # Proxies (nginx) would otherwise gather the whole file before sending any of it.
        response["X-Accel-Buffering"] = "no"
        response["Cache-Control"] = "no-store"
        return response
