"""HTTP intake. Views are thin: authenticate, read the body, call the service, respond."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from analytics.query_api import EventQueryView
from eventflow import conf
from eventflow.errors import ApiError, Conflict, DomainError, api_error_response, error_body, http_error, json_response
from eventflow.openapi import ErrorSerializer, error_responses
from eventflow.ratelimit import Quota, fixed_window
from streams.access import Action, Caller, key_caller, stream_access
from streams.event_types import EVENT_TYPE_MAX_LENGTH, EVENT_TYPE_REGEX, EVENT_TYPE_RULE
from streams.selectors import StreamInfo

from .envelope import JsonBody, read_json_body
from .services import ACCEPTED, DUPLICATE, events_ingest

logger = logging.getLogger(__name__)

BATCH_FIELDS = frozenset({"events", "sent_at"})

# Ingest keys are meant for browsers, so the intake answers CORS preflights.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Content-Encoding, X-API-Key",
    "Access-Control-Max-Age": "86400",
    # Browsers show scripts only the safelisted response headers unless told otherwise.
    "Access-Control-Expose-Headers": "RateLimit-Policy, RateLimit, Retry-After",
}
# The policy's name in the RateLimit headers: requests per API key.
RATE_POLICY = "key"


def batch_count_check(events: list[Any]) -> None:
    """At most ``max_batch_events`` events a request, in a native batch and in every SDK-compatible format."""
    limit = conf.get().max_batch_events
    if len(events) > limit:
        raise ApiError(
            413,
            "batch_too_large",
            f"A batch may hold at most {limit} events.",
            {"limit": limit, "received": len(events)},
        )


def _quota(caller: Caller) -> Quota | None:
    """The key's quota this minute: its own limit, else the installation's (0: none).

    A fixed window a minute long, counted in the key's cache round trip. The
    count is None when Redis is unreachable: the limiter fails open (logged by
    ``guarded``) and the answer says only the policy.
    """
    assert caller.key is not None
    limit = caller.key.rate_limit
    if limit is None:
        limit = conf.get().rate_limit_per_minute
    if not limit:
        return None
    return fixed_window(policy=RATE_POLICY, limit=limit, seconds=60, used=caller.key_uses or 0)


def _rate_limit(quota: Quota | None, counted: bool) -> None:
    if quota is not None and counted and quota.exceeded:
        raise ApiError(
            429,
            "rate_limited",
            f"This key may send {quota.limit} requests a minute.",
            {"limit_per_minute": quota.limit},
            headers={"Retry-After": str(quota.retry_after)},
        )


def _intake(request: HttpRequest, slug: str) -> tuple[StreamInfo, JsonBody]:
    """The checks every intake request passes, in the order the API documents."""
    # Always counted: a key's own limit is only known once the key is read, in the same round trip.
    caller = key_caller(request, count=True)
    quota = _quota(caller)
    request.ef_quota = (quota, caller.key_uses is not None)  # type: ignore[attr-defined]
    info = stream_access(caller, slug, Action.SEND)
    if info.archived:
        raise Conflict("stream_archived", "The stream is archived and takes no new events.")
    _rate_limit(quota, caller.key_uses is not None)
    return info, read_json_body(request)


def _key_id(request: HttpRequest) -> int | None:
    """The id of the key that sent the request (``_intake`` has authenticated it), kept on each event."""
    caller: Caller | None = getattr(request, "ef_caller", None)
    return caller.key.key_id if caller is not None and caller.key is not None else None


def _with_rate_headers(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """RateLimit-Policy on every answer to an authenticated key; RateLimit too when the count is known."""
    quota, counted = getattr(request, "ef_quota", (None, False))
    if quota is not None:
        headers = quota.headers()
        response["RateLimit-Policy"] = headers["RateLimit-Policy"]
        if counted:
            response["RateLimit"] = headers["RateLimit"]
    return response


def _with_cors(response: HttpResponse) -> HttpResponse:
    for name, value in CORS_HEADERS.items():
        response[name] = value
    return response


class EventIn(serializers.Serializer):
    event_id = serializers.CharField(required=False, max_length=128, help_text="Idempotency key; a UUID when absent.")
    type = serializers.RegexField(EVENT_TYPE_REGEX, max_length=EVENT_TYPE_MAX_LENGTH, help_text=EVENT_TYPE_RULE)
    timestamp = serializers.DateTimeField(required=False, help_text="ISO 8601 with zone; default: received time.")
    user_id = serializers.CharField(required=False, max_length=256)
    anonymous_id = serializers.CharField(required=False, max_length=256)
    session_id = serializers.CharField(required=False, max_length=256)
    payload = serializers.DictField(required=False)
    # The field shadows Field.context: the serializer only describes the body in OpenAPI.
    context = serializers.DictField(  # type: ignore[assignment]
        required=False, help_text="user_agent, ip, page {url, referrer}, library, …"
    )


class BatchIn(serializers.Serializer):
    events = EventIn(many=True)
    sent_at = serializers.DateTimeField(required=False, help_text="When the producer sent the batch, by its clock.")


class EventResult(serializers.Serializer):
    index = serializers.IntegerField(required=False)
    event_id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=["accepted", "duplicate", "rejected"])
    # The field shadows Serializer.errors: the serializer only describes the response in OpenAPI.
    errors = serializers.ListField(child=serializers.DictField(), required=False)  # type: ignore[assignment]
    flags = serializers.DictField(required=False)


class BatchResult(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = EventResult(many=True)


_PATH = [OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The stream's slug.")]


def event_send(request: HttpRequest, slug: str) -> HttpResponse:
    received_at = timezone.now()
    info, body = _intake(request, slug)
    result = events_ingest(
        stream=info,
        raw_events=[body.value],
        received_at=received_at,
        may_hold_nul=body.may_hold_nul,
        api_key_id=_key_id(request),
    )
    entry = result.results[0]
    entry.pop("index", None)
    if entry["status"] in (ACCEPTED, DUPLICATE):
        return json_response(entry, 202)
    status = 422 if result.schema_rejections else 400
    code = "schema_violation" if result.schema_rejections else "invalid_event"
    raise ApiError(status, code, "The event was rejected.", {"event_id": entry["event_id"], "errors": entry["errors"]})


def event_send_batch(request: HttpRequest, slug: str) -> HttpResponse:
    received_at = timezone.now()
    info, json_body = _intake(request, slug)
    body = json_body.value
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_batch", 'A batch is an object: {"events": [...], "sent_at": optional}.')
    unknown = body.keys() - BATCH_FIELDS
    if unknown:
        raise ApiError(
            400, "unknown_field", f"Unknown field(s): {', '.join(sorted(unknown))}.", {"fields": sorted(unknown)}
        )
    events = body.get("events")
    if not isinstance(events, list):
        raise ApiError(400, "invalid_batch", "events must be a list of events.")
    if not events:
        raise ApiError(400, "empty_batch", "The batch has no events.")
    batch_count_check(events)
    result = events_ingest(
        stream=info,
        raw_events=events,
        received_at=received_at,
        sent_at=body.get("sent_at"),
        may_hold_nul=json_body.may_hold_nul,
        api_key_id=_key_id(request),
    )
    if result.rejected == len(events):
        status = 422 if result.schema_rejections == result.rejected else 400
        raise ApiError(status, "all_events_rejected", "Every event in the batch was rejected.", result.summary())
    return json_response(result.summary(), 202)


# --- the views ----------------------------------------------------------------------------
#
# The intake is served by plain Django views: DRF's dispatch (request wrapper,
# content negotiation, exception handler) cost about a tenth of a single-event
# request and gives the intake nothing it uses. The APIView classes below only
# describe the endpoints to drf-spectacular, which documents any URL whose
# view names its APIView class in ``cls``.

ALLOWED_METHODS = "POST, OPTIONS"


def intake_view(
    handler: Callable[[HttpRequest, str], HttpResponse],
    documented_by: type[APIView],
    read: Callable[..., HttpResponse] | None = None,
) -> Callable[[HttpRequest, str], HttpResponse]:
    """A Django view running ``handler`` for POST, answering CORS preflights, documented by an APIView.

    ``read``, when given, answers GET on the same URL (a REST framework view with its own access rule).
    """
    allowed = "GET, POST, OPTIONS" if read is not None else ALLOWED_METHODS

    @csrf_exempt
    def view(request: HttpRequest, slug: str) -> HttpResponse:
        if request.method == "POST":
            try:
                response = _with_cors(handler(request, slug))
            except ApiError as exc:
                response = _with_cors(api_error_response(exc))
            except DomainError as exc:
                response = _with_cors(api_error_response(http_error(exc)))
            _with_rate_headers(request, response)
        elif request.method == "OPTIONS":
            response = _with_cors(HttpResponse(status=204))
        elif read is not None and request.method in ("GET", "HEAD"):
            return read(request, slug=slug)
        else:
            response = json_response(error_body("method_not_allowed", f'Method "{request.method}" not allowed.'), 405)
        response["Allow"] = allowed
        return response

    view.cls = documented_by  # type: ignore[attr-defined]
    view.initkwargs = {}  # type: ignore[attr-defined]
    return view


# The intake takes keys only (``_intake``); it is outside the REST framework's door, so it
# declares no ``access`` for eventflow.openapi.add_api_key_security to read.
INTAKE_AUTH: list[dict[str, list[str]]] = [{"ApiKeyAuth": []}]


# Describes an intake endpoint to drf-spectacular (a docstring would become its description).
class IntakeView(APIView):
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    parser_classes: list[Any] = []


class EventView(IntakeView):
    @extend_schema(
        operation_id="events_send",
        auth=INTAKE_AUTH,  # type: ignore[arg-type]
        summary="Send one event",
        tags=["ingestion"],
        parameters=_PATH,
        request={"application/json": EventIn},
        responses={
            202: OpenApiResponse(EventResult, description="Committed (accepted) or already known (duplicate)."),
            **error_responses(400, 401, 404, 409, 413, 415, 422, 429),
        },
        examples=[
            OpenApiExample(
                "page view",
                request_only=True,
                value={"type": "page_view", "user_id": "u456", "payload": {"page": "/dashboard", "referrer": "/login"}},
            )
        ],
    )
    def post(self, request: Request, slug: str) -> HttpResponse:
        return events_send(request._request, slug)


class BatchView(IntakeView):
    @extend_schema(
        operation_id="events_send_batch",
        auth=INTAKE_AUTH,  # type: ignore[arg-type]
        summary="Send a batch of events",
        description="Up to 1,000 events and 5 MB. One result per event, in order; invalid events never stop valid ones.",
        tags=["ingestion"],
        parameters=_PATH,
        request={"application/json": BatchIn},
        responses={
            202: OpenApiResponse(BatchResult, description="At least one event was accepted or a duplicate."),
            **error_responses(400, 401, 404, 409, 413, 415, 422, 429),
        },
    )
    def post(self, request: Request, slug: str) -> HttpResponse:
        return events_send_batch(request._request, slug)


# GET on the intake's URL is the event query: answered and documented by its own view.
class EventsView(EventView):
    access = {"GET": EventQueryView.access}
    get = EventQueryView.get


events_send = intake_view(event_send, EventsView, read=EventQueryView.as_view())
events_send_batch = intake_view(event_send_batch, BatchView)


__all__ = ["BatchView", "ErrorSerializer", "EventView", "EventsView", "events_send", "events_send_batch"]
