"""Funnels, paths, retention, processing health and saved segments over HTTP.

Every endpoint reads the stream (``Action.READ``: Analysts and up of the
stream's teams, secret keys of the stream), takes ``from``/``to`` (default: the
last 7 days; processing: the last hour), ``tz``, the property filters of the
event query and ``segment=<name>`` in the query string (analytics/filters.py).
A funnel's steps go in a JSON body (POST): steps with conditions do not fit a
query string. POST asks no more than READ: it changes nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from eventflow.api import ApiView, TextField, parse_input
from eventflow.errors import Invalid
from eventflow.openapi import error_responses
from streams.access import HEALTH, Action
from streams.selectors import StreamInfo

from .filters import MAX_CONDITIONS, EventFilter, parse_conditions, parse_filter, parse_whole, parse_zone
from .journeys import (
    MAX_DEPTH,
    MAX_PERIODS,
    MAX_STEPS,
    MAX_TOP,
    PathStart,
    Step,
    funnel,
    paths,
    retention,
)
from .processing import LATENCY_BOUNDS_MS, processing_stats
from .rollups import ceil_to
from .segments import segment_create, segment_delete, segment_get, segment_update, segments_of_stream
from .selectors import segment_lookup

_TAGS = ["analytics"]
_SEGMENT_TAGS = ["segments"]
DEFAULT_RANGE = timedelta(days=7)
MAX_RANGE = timedelta(days=400)
_WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SLUG = OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The stream's slug.")


def _q(name: str, kind: Any, description: str, **kwargs: Any) -> OpenApiParameter:
    kwargs.setdefault("required", False)
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, description=description, **kwargs)


RANGE_PARAMETERS = [
    _q("from", OpenApiTypes.DATETIME, "Start of the range, ISO 8601 with zone (default: 7 days before `to`)."),
    _q("to", OpenApiTypes.DATETIME, "End of the range, exclusive (default: the next whole minute)."),
    _q("tz", OpenApiTypes.STR, "IANA time zone of days and weeks (default UTC), e.g. Europe/Berlin."),
    _q("segment", OpenApiTypes.STR, "A saved segment of the stream, by name: its conditions apply too."),
    _q("exists", OpenApiTypes.STR, "A property that must be present, e.g. payload.coupon.", many=True),
    _q("missing", OpenApiTypes.STR, "A property that must be absent.", many=True),
]
FILTERS_NOTE = (
    " Property filters as more query parameters, as in the event query: `payload.plan=pro`, "
    "`enrichment.device_type=mobile`, `payload.plan!=free`. An unknown parameter or a malformed value is a 400."
)
KEPT_NOTE = (
    " The answer is kept in Redis for up to 60 seconds and shared with the dashboard's page for the same question; "
    "a range without `to` ends at the next whole minute, so the same question asked again within that minute is "
    "read from Redis."
)


def _filter(
    request: Request, stream: StreamInfo, own: frozenset[str], *, default: timedelta = DEFAULT_RANGE
) -> EventFilter:
    """The filters, with the range filled in: ``to`` defaults to the next whole minute (the dashboard's pages end
    their ranges the same way, so a question asked again within the minute is the same question and is read from
    Redis; the range holds every event up to now) and ``from`` to ``default`` before it.

    ``own`` are the endpoint's own parameters; any other that is not a filter is a 400.
    """
    event_filter = parse_filter(request.query_params, segment_conditions=segment_lookup(stream.id), ignore=own)
    time_to = event_filter.time_to or ceil_to(timezone.now(), "minute")
    time_from = event_filter.time_from or time_to - default
    if time_from >= time_to:
        raise Invalid("invalid_filter", "from must be before to.")
    if time_to - time_from > MAX_RANGE:
        raise Invalid("invalid_filter", f"The range is at most {MAX_RANGE.days} days.")
    return event_filter.with_time(time_from, time_to)


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    return parse_whole(raw, name, low, high)


def _choice(request: Request, name: str, choices: tuple[str, ...], default: str) -> str:
    value = request.query_params.get(name, default)
    if value not in choices:
        raise Invalid("invalid_parameter", f"{name} is one of {', '.join(choices)}.", {name: value})
    return value


def parse_window(raw: str) -> timedelta:
    """``30m``, ``1h``, ``1d``, ``7d``: a number and a unit (s, m, h, d)."""
    number, unit = raw[:-1], raw[-1:]
    if unit not in _WINDOW_UNITS or not number.isascii() or not number.isdigit() or len(number) > 9:
        raise Invalid("invalid_funnel", "window is a number and a unit: 30m, 1h, 1d, 7d (at most 90d).")
    return timedelta(seconds=int(number) * _WINDOW_UNITS[unit])


# --- funnel --------------------------------------------------------------------------------------


class ConditionIn(serializers.Serializer):
    property = TextField(help_text="payload.…, context.… or enrichment.…, nested with dots.")
    op = serializers.ChoiceField(["eq", "ne", "exists", "missing"], default="eq")
    values = serializers.ListField(child=serializers.JSONField(), required=False, max_length=100)


class StepIn(serializers.Serializer):
    type = TextField(max_length=200)
    conditions = ConditionIn(many=True, required=False, max_length=MAX_CONDITIONS)  # type: ignore[call-arg]  # ListSerializer takes them (DRF ≥ 3.14); the stubs lag
    label = TextField(max_length=200, required=False, allow_blank=True)  # type: ignore[assignment]


class FunnelIn(serializers.Serializer):
    steps = StepIn(many=True, min_length=2, max_length=MAX_STEPS)  # type: ignore[call-arg]  # ListSerializer takes them (DRF ≥ 3.14); the stubs lag
    window = TextField(default="1d", help_text="Conversion window from the first step: 30m, 1h, 1d, 7d … (≤ 90d).")
    breakdown = TextField(
        required=False,
        help_text="browser, os, device_type, referrer_host, page, utm_source, utm_medium, utm_campaign, country, "
        "type, or a property (payload.plan): of the person's first-step event.",
    )
    top = serializers.IntegerField(default=10, min_value=1, max_value=MAX_TOP, help_text="Breakdown values kept.")


class StepOut(serializers.Serializer):
    index = serializers.IntegerField()
    type = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]
    count = serializers.IntegerField(help_text="People who reached this step.")
    conversion_from_previous = serializers.FloatField(allow_null=True)
    conversion_from_first = serializers.FloatField(allow_null=True)
    drop_off = serializers.IntegerField(help_text="People of the previous step who did not reach this one.")
    median_seconds = serializers.FloatField(allow_null=True, help_text="From the previous step; null on the first.")
    p90_seconds = serializers.FloatField(allow_null=True)


class FunnelGroupOut(serializers.Serializer):
    value = serializers.CharField(allow_null=True, help_text="The dimension's value; $other for the rest.")
    steps = StepOut(many=True)


class FunnelOut(serializers.Serializer):
    window_seconds = serializers.IntegerField()
    steps = StepOut(many=True)
    breakdown = FunnelGroupOut(many=True, allow_null=True)


def _step(raw: dict[str, Any]) -> Step:
    conditions = parse_conditions([dict(c) for c in raw.get("conditions", [])])
    return Step(type=raw["type"], conditions=conditions, label=raw.get("label", ""))


class FunnelView(ApiView):
    access = Action.READ
    stream: StreamInfo

    @extend_schema(
        operation_id="analytics_funnel",
        summary="Funnel: people through ordered steps within a conversion window",
        description=(
            "A person (user_id, else anonymous_id) enters at their first step-1 event in the range and counts "
            "once. Each later step is their earliest event of that step's type and conditions after the previous "
            "step (event time, then log offset), no later than entry + `window`; events in between, repeats and "
            "out-of-order steps are passed over (A, C, B, C converts A → B → C with the second C). Every step's "
            "events lie in the range. Per step: people, conversion from the previous and the first step, drop-off, "
            "median and p90 seconds from the previous step. With `breakdown`, the same per value of a dimension "
            "of the person's first-step event (the top values, the rest as $other). Steps in the JSON body; "
            "range, tz, filters and segment in the query string (they apply to every step's events)."
            + FILTERS_NOTE
            + KEPT_NOTE
        ),
        tags=_TAGS,
        parameters=[_SLUG, *RANGE_PARAMETERS],
        request=FunnelIn,
        responses={200: FunnelOut, **error_responses(400, 401, 403, 404, 413, 415)},
        examples=[
            OpenApiExample(
                "signup funnel",
                request_only=True,
                value={
                    "steps": [
                        {"type": "page_view", "conditions": [{"property": "payload.page", "values": ["/pricing"]}]},
                        {"type": "button_click", "conditions": [{"property": "payload.button", "values": ["signup"]}]},
                        {"type": "form_submit"},
                    ],
                    "window": "1d",
                    "breakdown": "browser",
                },
            ),
            OpenApiExample(
                "an answer",
                response_only=True,
                value={
                    "window_seconds": 86400,
                    "steps": [
                        {
                            "index": 1,
                            "type": "page_view",
                            "label": "page_view",
                            "count": 1000,
                            "conversion_from_previous": 1.0,
                            "conversion_from_first": 1.0,
                            "drop_off": 0,
                            "median_seconds": None,
                            "p90_seconds": None,
                        },
                        {
                            "index": 2,
                            "type": "button_click",
                            "label": "button_click",
                            "count": 400,
                            "conversion_from_previous": 0.4,
                            "conversion_from_first": 0.4,
                            "drop_off": 600,
                            "median_seconds": 42.0,
                            "p90_seconds": 310.5,
                        },
                    ],
                    "breakdown": None,
                },
            ),
        ],
    )
    def post(self, request: Request, slug: str) -> Response:
        data = parse_input(request, FunnelIn)
        event_filter = _filter(request, self.stream, frozenset({"tz"}))
        parse_zone(request.query_params.get("tz"))
        if event_filter.types:
            raise Invalid("unknown_parameter", "A funnel's types are its steps: type is not a filter here.")
        window = parse_window(data["window"])
        result = funnel(
            stream_id=self.stream.id,
            steps=[_step(raw) for raw in data["steps"]],
            window=window,
            event_filter=event_filter,
            breakdown=data.get("breakdown"),
            top=data["top"],
        )
        return Response(
            FunnelOut(
                {"window_seconds": int(window.total_seconds()), "steps": result.steps, "breakdown": result.breakdown}
            ).data
        )


# --- paths ---------------------------------------------------------------------------------------


class PathNodeOut(serializers.Serializer):
    level = serializers.IntegerField(help_text="Steps from the start: 1 is the next (or previous) one.")
    path = serializers.ListField(child=serializers.CharField(), help_text="The steps from the start to this node.")
    step = serializers.CharField(help_text="type, or type:page; $other (the rest) and $end (the session ends).")
    count = serializers.IntegerField(help_text="Sessions along this path.")


class PathsOut(serializers.Serializer):
    start = serializers.CharField()
    direction = serializers.ChoiceField(["next", "previous"])
    sessions = serializers.IntegerField(help_text="Sessions with the start event in the range.")
    nodes = PathNodeOut(many=True, help_text="The tree, depth first: a node's parent is its path without its step.")


def _start(raw: str | None) -> PathStart:
    if not raw or "\x00" in raw or len(raw) > 1200:
        raise Invalid("invalid_parameter", "start is an event type, or type:page (page_view:/pricing).")
    kind, sep, page = raw.partition(":")
    if not kind:
        raise Invalid("invalid_parameter", "start is an event type, or type:page (page_view:/pricing).")
    return PathStart(type=kind, page=page if sep else None)


class PathsView(ApiView):
    access = Action.READ
    stream: StreamInfo

    @extend_schema(
        operation_id="analytics_paths",
        summary="Paths: the most common next (or previous) steps in sessions from (or to) an event or page",
        description=(
            "In each session (session_id) with the start event in the range, the steps after its first "
            "occurrence (`direction=next`) or before its last one (`previous`), up to `depth` (≤ 5), over the "
            "session's events in the range that pass the filters. `start` is an event type, or `type:page`: "
            "`page_view:/pricing` is a page_view whose payload.page (else context.page.path) is /pricing. A step "
            "is named by its type, with `:page` where the event has a page. Per branch the `top` steps are kept; "
            "the rest add up in `$other`, and sessions that end there in `$end`." + FILTERS_NOTE + KEPT_NOTE
        ),
        tags=_TAGS,
        parameters=[
            _SLUG,
            _q("start", OpenApiTypes.STR, "An event type, or type:page (page_view:/pricing).", required=True),
            _q("direction", OpenApiTypes.STR, "next (default) or previous.", enum=["next", "previous"]),
            _q("depth", OpenApiTypes.INT, f"Steps to follow, 1 to {MAX_DEPTH} (default 3)."),
            _q("top", OpenApiTypes.INT, f"Steps kept per branch, 1 to {MAX_TOP} (default 5)."),
            *RANGE_PARAMETERS,
        ],
        responses={200: PathsOut, **error_responses(400, 401, 403, 404)},
        examples=[
            OpenApiExample(
                "after /pricing",
                response_only=True,
                value={
                    "start": "page_view:/pricing",
                    "direction": "next",
                    "sessions": 120,
                    "nodes": [
                        {"level": 1, "path": ["button_click:/pricing"], "step": "button_click:/pricing", "count": 70},
                        {
                            "level": 2,
                            "path": ["button_click:/pricing", "form_submit:/signup"],
                            "step": "form_submit:/signup",
                            "count": 50,
                        },
                        {"level": 1, "path": ["$end"], "step": "$end", "count": 50},
                    ],
                },
            )
        ],
    )
    def get(self, request: Request, slug: str) -> Response:
        own = frozenset({"tz", "start", "direction", "depth", "top"})
        event_filter = _filter(request, self.stream, own)
        parse_zone(request.query_params.get("tz"))
        result = paths(
            stream_id=self.stream.id,
            start=_start(request.query_params.get("start")),
            direction=_choice(request, "direction", ("next", "previous"), "next"),  # type: ignore[arg-type]
            depth=_int(request, "depth", 3, 1, MAX_DEPTH),
            top=_int(request, "top", 5, 1, MAX_TOP),
            event_filter=event_filter,
        )
        return Response(PathsOut(result).data)


# --- retention -----------------------------------------------------------------------------------


class CohortOut(serializers.Serializer):
    start = serializers.DateTimeField(help_text="The cohort's local day or week (Monday), as a time with offset.")
    people = serializers.IntegerField(help_text="People first seen in it.")
    returning = serializers.ListField(
        child=serializers.IntegerField(allow_null=True),
        help_text="People back in period 0, 1, … periods; null for a period that has not begun.",
    )
    percentages = serializers.ListField(child=serializers.FloatField(allow_null=True))


class RetentionOut(serializers.Serializer):
    period = serializers.ChoiceField(["day", "week"])
    periods = serializers.IntegerField()
    tz = serializers.CharField()
    cohorts = CohortOut(many=True)
    average = serializers.ListField(
        child=serializers.FloatField(allow_null=True), help_text="Per period, weighted by the cohorts' people."
    )


def _event_type(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is not None and (not value or "\x00" in value or len(value) > 200):
        raise Invalid("invalid_parameter", f"{name} is an event type.", {name: value})
    return value


class RetentionView(ApiView):
    access = Action.READ
    stream: StreamInfo

    @extend_schema(
        operation_id="analytics_retention",
        summary="Retention: cohorts by first-seen day or week, and who came back",
        description=(
            "A person (user_id, else anonymous_id) is first seen at their first event (of type `event`, when "
            "given) in the whole log; cohorts are the local days or ISO weeks (`tz`) of the range that hold "
            "first sightings. Returning in period k: an event (of type `returning_event`, when given) in the k-th "
            "local day or week after the cohort's own; period 0 is the cohort's own. Period boundaries are local "
            "midnights, so a DST day is 23 or 25 hours. Without `from`, the range is the last `periods` periods. "
            "Filters and segments apply to first and returning events." + FILTERS_NOTE + KEPT_NOTE
        ),
        tags=_TAGS,
        parameters=[
            _SLUG,
            _q("period", OpenApiTypes.STR, "day or week (default week).", enum=["day", "week"]),
            _q("periods", OpenApiTypes.INT, f"Periods after the cohort's own, 1 to {MAX_PERIODS} (default 8)."),
            _q("event", OpenApiTypes.STR, "First seen by this event type (default: any event)."),
            _q("returning_event", OpenApiTypes.STR, "Returning by this event type (default: any event)."),
            *RANGE_PARAMETERS,
        ],
        responses={200: RetentionOut, **error_responses(400, 401, 403, 404)},
        examples=[
            OpenApiExample(
                "weekly",
                response_only=True,
                value={
                    "period": "week",
                    "periods": 2,
                    "tz": "Europe/Berlin",
                    "cohorts": [
                        {
                            "start": "2026-10-19T00:00:00+02:00",
                            "people": 200,
                            "returning": [200, 80, 50],
                            "percentages": [1.0, 0.4, 0.25],
                        },
                        {
                            "start": "2026-10-26T00:00:00+01:00",
                            "people": 150,
                            "returning": [150, 60, None],
                            "percentages": [1.0, 0.4, None],
                        },
                    ],
                    "average": [1.0, 0.4, 0.25],
                },
            )
        ],
    )
    def get(self, request: Request, slug: str) -> Response:
        own = frozenset({"tz", "period", "periods", "event", "returning_event"})
        period = _choice(request, "period", ("day", "week"), "week")
        periods = _int(request, "periods", 8, 1, MAX_PERIODS)
        default = timedelta(days=periods * (7 if period == "week" else 1))
        event_filter = _filter(request, self.stream, own, default=default)
        tz = parse_zone(request.query_params.get("tz"))
        assert event_filter.time_from is not None and event_filter.time_to is not None
        result = retention(
            stream_id=self.stream.id,
            period=period,  # type: ignore[arg-type]
            periods=periods,
            time_from=event_filter.time_from,
            time_to=event_filter.time_to,
            tz=tz,
            event=_event_type(request, "event"),
            returning_event=_event_type(request, "returning_event"),
            event_filter=event_filter,
            now=timezone.now(),
        )
        # Times rendered in the stream's zone: a cohort starts at a local midnight.
        with timezone.override(tz):
            data = RetentionOut(
                {
                    "period": result.period,
                    "periods": result.periods,
                    "tz": tz.key,
                    "cohorts": result.cohorts,
                    "average": result.average,
                }
            ).data
        return Response(data)


# --- processing ----------------------------------------------------------------------------------


class LatencyOut(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)
    mean = serializers.FloatField(allow_null=True)
    max = serializers.FloatField(allow_null=True, help_text="Exact.")


class ProcessingBucketOut(serializers.Serializer):
    start = serializers.DateTimeField()
    accepted = serializers.IntegerField()
    logged = serializers.IntegerField()
    accepted_per_second = serializers.FloatField()
    logged_per_second = serializers.FloatField()
    latency_ms = LatencyOut()
    dead_letters = serializers.IntegerField()
    retries = serializers.IntegerField()


class LagOut(serializers.Serializer):
    group = serializers.CharField()
    kind = serializers.CharField()
    committed_offset = serializers.IntegerField()
    head = serializers.IntegerField()
    lag = serializers.IntegerField()


class ProcessingOut(serializers.Serializer):
    interval = serializers.ChoiceField(["minute", "hour"])
    accepted = serializers.IntegerField(help_text="Events received in the range: logged, dead-lettered or waiting.")
    logged = serializers.IntegerField(help_text="Events logged in the range.")
    waiting = serializers.IntegerField(help_text="Of the accepted, those still in the inbox.")
    accepted_per_second = serializers.FloatField()
    logged_per_second = serializers.FloatField()
    latency_ms = LatencyOut(help_text="Accepted → logged, of the events logged in the range.")
    retries = serializers.IntegerField(help_text="Processing attempts that failed and were scheduled again.")
    dead_letters_by_stage = serializers.DictField(child=serializers.IntegerField())
    buckets = ProcessingBucketOut(many=True)
    consumer_lag = LagOut(many=True, help_text="Each consumer group's lag now (no history of it is kept).")


class ProcessingView(ApiView):
    access = HEALTH
    stream: StreamInfo

    @extend_schema(
        operation_id="analytics_processing",
        summary="Processing health: accepted/s, logged/s, latency percentiles, dead letters, retries, lag",
        description=(
            "For those who read the stream's events and those who operate it (Operators). "
            "From the per-minute processing rollup (written in the append transaction), over the range (default: "
            "the last hour), per `interval` (minute or hour, local to `tz`). Accepted: events by minute of "
            "receipt, counted when they leave the inbox plus those still waiting. Latency percentiles come from a "
            "fixed-bucket histogram per minute (bounds in ms: "
            + ", ".join(str(b) for b in LATENCY_BOUNDS_MS)
            + "), interpolated within the bucket; the max is exact. Dead letters by stage (every stage: "
            "processing, consumer groups, webhooks) made in the range. Event filters do not apply here."
        ),
        tags=_TAGS,
        parameters=[
            _SLUG,
            _q("from", OpenApiTypes.DATETIME, "Start, ISO 8601 with zone (default: an hour before `to`)."),
            _q("to", OpenApiTypes.DATETIME, "End, exclusive (default: the next whole minute)."),
            _q("tz", OpenApiTypes.STR, "IANA time zone of the buckets (default UTC)."),
            _q("interval", OpenApiTypes.STR, "minute (default) or hour.", enum=["minute", "hour"]),
        ],
        responses={200: ProcessingOut, **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        unknown = sorted(set(request.query_params) - {"from", "to", "tz", "interval"})
        if unknown:
            raise Invalid("unknown_parameter", f"Unknown parameter {unknown[0]!r}.", {"parameter": unknown[0]})
        event_filter = _filter(request, self.stream, frozenset({"tz", "interval"}), default=timedelta(hours=1))
        assert event_filter.time_from is not None and event_filter.time_to is not None
        tz = parse_zone(request.query_params.get("tz"))
        result = processing_stats(
            stream_id=self.stream.id,
            time_from=event_filter.time_from,
            time_to=event_filter.time_to,
            interval=_choice(request, "interval", ("minute", "hour"), "minute"),  # type: ignore[arg-type]
            tz=tz,
        )
        with timezone.override(tz):
            data = ProcessingOut(result).data
        return Response(data)


# --- segments ------------------------------------------------------------------------------------


class SegmentConditionOut(serializers.Serializer):
    property = serializers.CharField()
    op = serializers.ChoiceField(["eq", "ne", "exists", "missing"])
    values = serializers.ListField(child=serializers.CharField())


class SegmentOut(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    conditions = SegmentConditionOut(many=True)
    created_at = serializers.DateTimeField()


class SegmentCreateIn(serializers.Serializer):
    name = TextField(max_length=64, help_text="Letters, digits, - and _.")
    description = TextField(max_length=500, required=False, allow_blank=True, default="")
    conditions = ConditionIn(many=True, min_length=1, max_length=MAX_CONDITIONS)  # type: ignore[call-arg]  # ListSerializer takes them (DRF ≥ 3.14); the stubs lag


class SegmentUpdateIn(serializers.Serializer):
    description = TextField(max_length=500, required=False, allow_blank=True)
    conditions = ConditionIn(many=True, required=False, min_length=1, max_length=MAX_CONDITIONS)  # type: ignore[call-arg]  # ListSerializer takes them (DRF ≥ 3.14); the stubs lag


_SEGMENT_EXAMPLE = {
    "name": "mobile-pro",
    "description": "Pro plan on phones",
    "conditions": [
        {"property": "payload.plan", "op": "eq", "values": ["pro"]},
        {"property": "enrichment.device_type", "op": "eq", "values": ["mobile"]},
    ],
}
_SEGMENT_NAME = OpenApiParameter("segment", OpenApiTypes.STR, OpenApiParameter.PATH, description="The segment's name.")


class SegmentListView(ApiView):
    # Analysts make segments: saving a filter changes no event and grants nothing (audited all the same).
    access = Action.READ
    stream: StreamInfo

    @extend_schema(
        operation_id="segments_list",
        summary="List the stream's saved segments",
        tags=_SEGMENT_TAGS,
        parameters=[_SLUG],
        responses={200: SegmentOut(many=True), **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        return Response(SegmentOut(segments_of_stream(stream_id=self.stream.id), many=True).data)

    @extend_schema(
        operation_id="segments_create",
        summary="Save a segment: named property conditions every analytics endpoint takes as segment=<name>",
        description=(
            "Conditions as in a funnel step: `property` (payload.…, context.…, enrichment.…), `op` (eq, ne, "
            "exists, missing) and `values` (eq: any of them; ne: none of them). All conditions must hold."
        ),
        tags=_SEGMENT_TAGS,
        parameters=[_SLUG],
        request=SegmentCreateIn,
        responses={201: SegmentOut, **error_responses(400, 401, 403, 404, 409, 413, 415)},
        examples=[OpenApiExample("mobile pro", request_only=True, value=_SEGMENT_EXAMPLE)],
    )
    def post(self, request: Request, slug: str) -> Response:
        data = parse_input(request, SegmentCreateIn)
        segment = segment_create(
            stream_id=self.stream.id,
            name=data["name"],
            description=data["description"],
            conditions=[dict(c) for c in data["conditions"]],
        )
        return Response(SegmentOut(segment).data, status=201)


class SegmentDetailView(ApiView):
    access = Action.READ
    stream: StreamInfo

    @extend_schema(
        operation_id="segments_show",
        summary="Show a saved segment",
        tags=_SEGMENT_TAGS,
        parameters=[_SLUG, _SEGMENT_NAME],
        responses={200: SegmentOut, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, slug: str, segment: str) -> Response:
        return Response(SegmentOut(segment_get(stream_id=self.stream.id, name=segment)).data)

    @extend_schema(
        operation_id="segments_update",
        summary="Change a segment's description or conditions",
        tags=_SEGMENT_TAGS,
        parameters=[_SLUG, _SEGMENT_NAME],
        request=SegmentUpdateIn,
        responses={200: SegmentOut, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def patch(self, request: Request, slug: str, segment: str) -> Response:
        data = parse_input(request, SegmentUpdateIn)
        conditions = data.get("conditions")
        updated = segment_update(
            stream_id=self.stream.id,
            name=segment,
            description=data.get("description"),
            conditions=None if conditions is None else [dict(c) for c in conditions],
        )
        return Response(SegmentOut(updated).data)

    @extend_schema(
        operation_id="segments_delete",
        summary="Delete a segment",
        tags=_SEGMENT_TAGS,
        parameters=[_SLUG, _SEGMENT_NAME],
        responses={204: None, **error_responses(401, 403, 404)},
    )
    def delete(self, request: Request, slug: str, segment: str) -> HttpResponse:
        segment_delete(stream_id=self.stream.id, name=segment)
        return HttpResponse(status=204)
