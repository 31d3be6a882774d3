"""Analytics over HTTP: counts by type, by key and type, time series, breakdowns and active users.

Views are thin: parse the question, ask the cache (analytics/cache.py), which
asks analytics/aggregates.py, and answer. Every answer says its ``source``:
``rollups`` when only types and time were asked, ``log`` with property
conditions or ids.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from eventflow.api import ApiView
from eventflow.errors import Invalid
from eventflow.openapi import error_responses
from streams.access import Action
from streams.models import ApiKey
from streams.selectors import StreamInfo

from .aggregates import (
    INTERVALS,
    Frame,
    active_users,
    breakdown,
    counts,
    key_type_counts,
    users_by_window,
)
from .cache import cached_answer
from .filters import EventFilter, parse_filter, parse_path, parse_whole, parse_zone
from .query_api import FILTER_PARAMETERS, FILTERS_DESCRIPTION, PERSON_AUTH
from .rollups import DIMENSIONS, ceil_to
from .selectors import segment_lookup

DEFAULT_DAYS = 7
MAX_RANGE = timedelta(days=400)
DEFAULT_TOP = 10
MAX_TOP = 100
_TAGS = ["analytics"]
SOURCES = ["rollups", "log"]


def _query(name: str, kind: Any, description: str, **kwargs: Any) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, required=False, description=description, **kwargs)


_SLUG = OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The stream's slug.")
_TZ = _query("tz", OpenApiTypes.STR, "IANA time zone for buckets and days (default UTC), e.g. Europe/Berlin.")
_RANGE_NOTE = (
    "`from`/`to` default to the 7 days ending at the next whole hour. Answered from rollups when only types "
    "and time are asked, from the log otherwise (`source` says which); kept in Redis for up to 60 seconds. "
)


def _question(
    request: Request, stream: StreamInfo, own: frozenset[str], interval: str | None = None
) -> tuple[EventFilter, Frame]:
    flt = parse_filter(request.query_params, segment_conditions=segment_lookup(stream.id), ignore=own)
    tz = parse_zone(request.query_params.get("tz"))
    end = flt.time_to or ceil_to(timezone.now(), "hour")
    start = flt.time_from or end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        raise Invalid("invalid_filter", "from must be before to.")
    if end - start > MAX_RANGE:
        raise Invalid("invalid_filter", f"A range is at most {MAX_RANGE.days} days.")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    return flt.with_time(start, end), Frame(start=start, end=end, tz=tz, interval=interval)


def _choice(request: Request, name: str, choices: tuple[str, ...], default: str | None) -> str:
    value = request.query_params.get(name, default)
    if value not in choices:
        raise Invalid("invalid_parameter", f"{name} is one of {', '.join(choices)}.", {name: value})
    return value


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise Invalid("invalid_parameter", f"{name} is true or false.", {name: value})
    return value in ("true", "1")


def _iso(at: datetime, tz: ZoneInfo) -> str:
    return at.astimezone(tz).isoformat()


def _base(flt: EventFilter, frame: Frame) -> dict[str, Any]:
    return {"from": _iso(frame.start, frame.tz), "to": _iso(frame.end, frame.tz), "tz": frame.tz.key}


def _normal(flt: EventFilter, frame: Frame, **more: Any) -> dict[str, Any]:
    return {"filter": flt.as_dict(), "tz": frame.tz.key, "interval": frame.interval, **more}


# --- serializers (the documented shapes of the answers) -------------------------------------


class _Answer(serializers.Serializer):
    # The field shadows Field.source: the serializer only describes the answer in OpenAPI.
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=SOURCES, help_text="rollups, or the log (property conditions or ids)."
    )
    # The field names are Python keywords on the wire.
    vars()["from"] = serializers.DateTimeField()
    to = serializers.DateTimeField()
    tz = serializers.CharField()


class TypeCountOut(serializers.Serializer):
    type = serializers.CharField()
    count = serializers.IntegerField()


class CountByTypeOut(_Answer):
    total = serializers.IntegerField()
    types = TypeCountOut(many=True)


class KeyCountOut(serializers.Serializer):
    api_key_id = serializers.IntegerField(allow_null=True, help_text="None: events sent without a recorded key.")
    prefix = serializers.CharField(allow_null=True)
    name = serializers.CharField(allow_null=True)
    total = serializers.IntegerField()
    types = TypeCountOut(many=True)


class KeysOut(_Answer):
    total = serializers.IntegerField()
    keys = KeyCountOut(many=True)


class BucketOut(serializers.Serializer):
    start = serializers.DateTimeField()
    count = serializers.IntegerField()
    unique_users = serializers.IntegerField()


class SeriesOut(serializers.Serializer):
    type = serializers.CharField()
    buckets = BucketOut(many=True)


class TimeseriesOut(_Answer):
    interval = serializers.ChoiceField(choices=INTERVALS)
    total = serializers.IntegerField()
    buckets = BucketOut(many=True)
    series = SeriesOut(many=True, required=False)


class ValueOut(serializers.Serializer):
    value = serializers.CharField(allow_null=True, help_text="None: events without this property.")
    count = serializers.IntegerField()
    unique_users = serializers.IntegerField(allow_null=True)


class OtherOut(serializers.Serializer):
    count = serializers.IntegerField()
    unique_users = serializers.IntegerField(allow_null=True)


class BreakdownOut(_Answer):
    unique_users_source = serializers.CharField(help_text="rollups, or log (with a type filter, or from the log).")
    dimension = serializers.CharField()
    total = serializers.IntegerField()
    unique_users = serializers.IntegerField()
    values = ValueOut(many=True)
    other = OtherOut()


class ActiveDayOut(serializers.Serializer):
    day = serializers.DateField()
    dau = serializers.IntegerField()
    wau = serializers.IntegerField()
    mau = serializers.IntegerField()


class ActiveUsersOut(_Answer):
    days = ActiveDayOut(many=True)


def _schema(operation_id: str, summary: str, description: str, out: Any, extra: list[Any], example: Any) -> Any:
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        description=description + " " + _RANGE_NOTE + FILTERS_DESCRIPTION,
        tags=_TAGS,
        auth=PERSON_AUTH,  # type: ignore[arg-type]
        parameters=[_SLUG, *FILTER_PARAMETERS, _TZ, *extra],
        responses={200: out, **error_responses(400, 401, 403, 404)},
        examples=[OpenApiExample("an answer", response_only=True, value=example)],
    )


_EXAMPLE_BASE = {"source": "rollups", "from": "2026-11-14T00:00:00Z", "to": "2026-11-21T00:00:00Z", "tz": "UTC"}


# --- views -----------------------------------------------------------------------------------


class _AnalyticsView(ApiView):
    access = Action.READ
    stream: StreamInfo
    endpoint = ""
    own: frozenset[str] = frozenset({"tz"})


class CountByTypeView(_AnalyticsView):
    endpoint = "count-by-type"

    @_schema(
        "analytics_count_by_type",
        "Events per type",
        "How many events of each type the log holds over the range.",
        CountByTypeOut,
        [],
        {
            **_EXAMPLE_BASE,
            "total": 1500,
            "types": [{"type": "page_view", "count": 1200}, {"type": "login", "count": 300}],
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        flt, frame = _question(request, self.stream, self.own)
        stream_id = self.stream.id

        def compute() -> dict[str, Any]:
            source, rows = counts(stream_id=stream_id, flt=flt, frame=frame, by_type=True)
            types = sorted(((t or "", n) for (_, t), n in rows.items()), key=lambda r: (-r[1], r[0]))
            return {
                "source": source,
                **_base(flt, frame),
                "total": sum(n for _, n in types),
                "types": [{"type": t, "count": n} for t, n in types],
            }

        return Response(
            cached_answer(stream_id=stream_id, endpoint=self.endpoint, question=_normal(flt, frame), compute=compute)
        )


class GroupByKeyAndTypeView(_AnalyticsView):
    endpoint = "group-by-key-and-type"

    @_schema(
        "analytics_group_by_key_and_type",
        "Events per API key and type",
        "How many events each API key sent, per type (events sent before keys were recorded: api_key_id null).",
        KeysOut,
        [],
        {
            **_EXAMPLE_BASE,
            "total": 1500,
            "keys": [
                {
                    "api_key_id": 3,
                    "prefix": "ef_ingest_Ab12",
                    "name": "web",
                    "total": 1500,
                    "types": [{"type": "page_view", "count": 1200}, {"type": "login", "count": 300}],
                }
            ],
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        flt, frame = _question(request, self.stream, self.own)
        stream_id = self.stream.id

        def compute() -> dict[str, Any]:
            source, rows = key_type_counts(stream_id=stream_id, flt=flt, frame=frame)
            per_key: dict[str, dict[str, int]] = defaultdict(dict)
            for (key, event_type), n in rows.items():
                per_key[key][event_type] = n
            ids = [int(k) for k in per_key if k]
            known = {k.pk: k for k in ApiKey.objects.filter(pk__in=ids).only("pk", "prefix", "name")} if ids else {}
            keys: list[dict[str, Any]] = []
            for key, types in per_key.items():
                record = known.get(int(key)) if key else None
                keys.append(
                    {
                        "api_key_id": int(key) if key else None,
                        "prefix": record.prefix if record else None,
                        "name": (record.name or None) if record else None,
                        "total": sum(types.values()),
                        "types": [
                            {"type": t, "count": n} for t, n in sorted(types.items(), key=lambda r: (-r[1], r[0]))
                        ],
                    }
                )
            keys.sort(key=lambda k: (-k["total"], k["api_key_id"] is None, k["api_key_id"] or 0))
            return {"source": source, **_base(flt, frame), "total": sum(rows.values()), "keys": keys}

        return Response(
            cached_answer(stream_id=stream_id, endpoint=self.endpoint, question=_normal(flt, frame), compute=compute)
        )


class TimeseriesView(_AnalyticsView):
    endpoint = "timeseries"
    own = frozenset({"tz", "interval", "per_type"})

    @_schema(
        "analytics_timeseries",
        "Events and unique users per minute, hour, day or week",
        "Counts per bucket in the caller's zone (DST included), optionally per type, with unique users "
        "(HyperLogLog estimates from rollups, about 1.6% error; exact from the log).",
        TimeseriesOut,
        [
            _query("interval", OpenApiTypes.STR, "minute, hour, day (default) or week.", enum=list(INTERVALS)),
            _query("per_type", OpenApiTypes.BOOL, "Also one series per type."),
        ],
        {
            **_EXAMPLE_BASE,
            "interval": "day",
            "total": 300,
            "buckets": [{"start": "2026-11-20T00:00:00Z", "count": 300, "unique_users": 41}],
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        interval = _choice(request, "interval", INTERVALS, "day")
        per_type = _flag(request, "per_type")
        flt, frame = _question(request, self.stream, self.own, interval)
        buckets = frame.buckets()
        stream_id = self.stream.id

        def compute() -> dict[str, Any]:
            source, rows = counts(stream_id=stream_id, flt=flt, frame=frame, by_type=per_type)
            windows = [(max(lo, frame.start), min(hi, frame.end)) for lo, hi in buckets]
            types = sorted({t for (_, t) in rows if t is not None})
            users = users_by_window(stream_id=stream_id, flt=flt, windows=windows)
            totals: dict[datetime | None, int] = defaultdict(int)
            for (b, _), n in rows.items():
                totals[b] += n
            starts = [_iso(lo, frame.tz) for lo, _ in buckets]
            answer: dict[str, Any] = {
                "source": source,
                **_base(flt, frame),
                "interval": interval,
                "total": sum(totals.values()),
                "buckets": [
                    {"start": starts[i], "count": totals.get(lo, 0), "unique_users": users.get((i, None), 0)}
                    for i, (lo, _) in enumerate(buckets)
                ],
            }
            if per_type:
                typed = users_by_window(stream_id=stream_id, flt=flt, windows=windows, per_type=types)
                answer["series"] = [
                    {
                        "type": t,
                        "buckets": [
                            {
                                "start": starts[i],
                                "count": rows.get((lo, t), 0),
                                "unique_users": typed.get((i, t), 0),
                            }
                            for i, (lo, _) in enumerate(buckets)
                        ],
                    }
                    for t in types
                ]
            return answer

        question = _normal(flt, frame, per_type=per_type)
        return Response(cached_answer(stream_id=stream_id, endpoint=self.endpoint, question=question, compute=compute))


def _dimension(request: Request) -> str:
    value = request.query_params.get("dimension")
    if value in DIMENSIONS:
        return value
    if value and value.startswith("payload."):
        parse_path(value)
        return value
    raise Invalid(
        "invalid_parameter",
        f"dimension is one of {', '.join(DIMENSIONS)}, or payload.<property>.",
        {"dimension": value},
    )


def _top(request: Request) -> int:
    return parse_whole(request.query_params.get("top", str(DEFAULT_TOP)), "top", 1, MAX_TOP)


class BreakdownView(_AnalyticsView):
    endpoint = "breakdown"
    own = frozenset({"tz", "dimension", "top"})

    @_schema(
        "analytics_breakdown",
        "Events and unique users per value of a dimension",
        "The top values of a dimension (browser, os, device_type, referrer_host, page, utm_source, utm_medium, "
        "utm_campaign, country, api_key; or payload.<property>, always from the log) by events, with the rest "
        "as other. Unique users from rollups are HyperLogLog estimates; with a type filter they are counted "
        "from the log (unique_users_source).",
        BreakdownOut,
        [
            _query("dimension", OpenApiTypes.STR, "browser, os, …, api_key, or payload.<property>."),
            _query("top", OpenApiTypes.INT, f"How many values (default {DEFAULT_TOP}, at most {MAX_TOP})."),
        ],
        {
            **_EXAMPLE_BASE,
            "unique_users_source": "rollups",
            "dimension": "browser",
            "total": 1500,
            "unique_users": 120,
            "values": [{"value": "Firefox", "count": 900, "unique_users": 70}],
            "other": {"count": 600, "unique_users": None},
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        dimension = _dimension(request)
        top = _top(request)
        flt, frame = _question(request, self.stream, self.own)
        stream_id = self.stream.id

        def compute() -> dict[str, Any]:
            result = breakdown(stream_id=stream_id, flt=flt, frame=frame, dimension=dimension, top=top)
            return {
                "source": result.source,
                **_base(flt, frame),
                "unique_users_source": result.users_source,
                "dimension": dimension,
                "total": result.total,
                "unique_users": result.total_users,
                "values": [{"value": v, "count": n, "unique_users": u} for v, n, u in result.rows],
                "other": {"count": result.other[0], "unique_users": result.other[1]},
            }

        question = _normal(flt, frame, dimension=dimension, top=top)
        return Response(cached_answer(stream_id=stream_id, endpoint=self.endpoint, question=question, compute=compute))


class ActiveUsersView(_AnalyticsView):
    endpoint = "active-users"

    @_schema(
        "analytics_active_users",
        "Daily, weekly and monthly active users",
        "For each day of the range in the caller's zone: users active that day, in the 7 days and in the 30 "
        "days ending with it (HyperLogLog estimates from rollups; exact from the log).",
        ActiveUsersOut,
        [],
        {**_EXAMPLE_BASE, "days": [{"day": "2026-11-20", "dau": 41, "wau": 160, "mau": 480}]},
    )
    def get(self, request: Request, slug: str) -> Response:
        flt, frame = _question(request, self.stream, self.own)
        stream_id = self.stream.id

        def compute() -> dict[str, Any]:
            source, rows = active_users(stream_id=stream_id, flt=flt, frame=frame)
            return {
                "source": source,
                **_base(flt, frame),
                "days": [{"day": d.isoformat(), "dau": a, "wau": w, "mau": m} for d, a, w, m in rows],
            }

        return Response(
            cached_answer(stream_id=stream_id, endpoint=self.endpoint, question=_normal(flt, frame), compute=compute)
        )
