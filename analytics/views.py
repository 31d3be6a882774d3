"""The dashboard's pages of events and analytics: the explorer, one event, time series and breakdowns,
funnels, retention, paths and processing health.

Each page reads its question from the query string with the API's own parser
(``parse_filter`` of analytics/filters.py: the explorer's URL takes the query
API's parameters, so its export link is the same question), asks the selectors
the REST views ask, and renders. A question the selectors refuse (``Invalid``)
is shown on the page beside the form, not as an error page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from itertools import zip_longest
from typing import Any, Literal, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from consumers.selectors import consumer_groups_of_stream, deliveries_of_offset
from eventflow.charts import Chart, Series
from eventflow.dashboard import page
from eventflow.errors import DomainError, Invalid, NotFound
from streams.access import HEALTH, Action, Caller
from streams.selectors import StreamInfo, schemas_of_stream

from .aggregates import INTERVALS, MAX_BUCKETS, USERS_DEFERRED, Breakdown, Frame
from .filters import MAX_TIME, MIN_TIME, ROOTS, EventFilter, parse_filter, parse_zone
from .journeys import MAX_DEPTH, MAX_PERIODS, MAX_STEPS, PathRow, PathStart, Step, funnel, paths, retention
from .journeys_api import parse_window
from .page_selectors import active_users_chart, breakdown_of, series_chart, top_types
from .processing import ProcessingBucket, processing_stats
from .query import Cursor, event_find, events_page
from .rollups import DIMENSIONS, ceil_to
from .segments import segments_of_stream
from .selectors import segment_lookup

T = TypeVar("T")

EXPLORER_PAGE = 50
# Payload properties shown in the explorer's table; the event's page has them all.
SHOWN_PROPERTIES = 4
RANGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
RANGE_LABELS = {
    "1h": "Last hour",
    "24h": "Last 24 hours",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "custom": "Custom",
}
WINDOWS = [("30m", "30 minutes"), ("1h", "1 hour"), ("1d", "1 day"), ("7d", "7 days"), ("30d", "30 days")]
DIMENSION_LABELS = {
    "browser": "Browser",
    "os": "Operating system",
    "device_type": "Device",
    "referrer_host": "Referrer",
    "page": "Page",
    "utm_source": "UTM source",
    "utm_medium": "UTM medium",
    "utm_campaign": "UTM campaign",
    "country": "Country",
    "api_key": "API key",
}
OPS = [("eq", "is"), ("ne", "is not"), ("exists", "exists"), ("missing", "is missing")]
# The explorer's own parameters: everything else in its query string is the query API's.
_EXPLORER_OWN = frozenset({"order", "cursor", "p", "op", "v", "range"})


def _attempt(call: Callable[[], T]) -> tuple[T | None, str]:
    """The selector's answer, or the reason it refused the question (shown beside the form)."""
    try:
        return call(), ""
    except Invalid as exc:
        return None, exc.message
    except DomainError as exc:
        # A segment named in the form that the stream lacks: the form's mistake, not a missing page;
        # and a heavy question that found no free slot in time: asked again, it is answered.
        if exc.code not in ("segment_not_found", "analytics_busy"):
            raise
        return None, exc.message


def _local_input(value: str, tz: ZoneInfo, name: str) -> datetime:
    """A ``datetime-local`` or ``date`` input, read in ``tz``; an ISO time with a zone is taken as it is."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid("invalid_filter", f"{name} is a date and time, e.g. 2026-11-21T09:00.") from None
    parsed = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=tz)
    # The query API's bounds: a range ending in year 1 or 9999 overflowed Python's calendar (it was a 500).
    if not MIN_TIME <= parsed <= MAX_TIME:
        raise Invalid("invalid_filter", f"{name} must lie between the years 1000 and 9000.")
    return parsed


def _api_params(query: QueryDict, tz: ZoneInfo) -> dict[str, list[str]]:
    """The query API's parameters from a page's form: times read in ``tz``, property rows as conditions."""
    params: dict[str, list[str]] = {}
    for key in query:
        if key in _EXPLORER_OWN or key == "tz":
            continue
        values = [v for v in query.getlist(key) if v != ""]
        if not values:
            continue
        if key in ("from", "to"):
            values = [_local_input(values[-1], tz, key).isoformat()]
        params[key] = values
    for prop, op, value in zip_longest(query.getlist("p"), query.getlist("op"), query.getlist("v"), fillvalue=""):
        prop = prop.strip()
        if not prop:
            continue
        if prop.split(".", 1)[0] not in ROOTS:
            prop = f"payload.{prop}"
        if op in ("exists", "missing"):
            params.setdefault(op, []).append(prop)
        elif op == "ne":
            params.setdefault(f"{prop}!", []).append(value)
        else:
            params.setdefault(prop, []).append(value)
    return params


def _question(stream: StreamInfo, params: Mapping[str, list[str]], ignore: frozenset[str] = frozenset()) -> EventFilter:
    return parse_filter(params, segment_conditions=segment_lookup(stream.id), ignore=ignore)


def _condition_rows(query: QueryDict) -> list[dict[str, str]]:
    rows = [
        {"p": p, "op": op, "v": v}
        for p, op, v in zip_longest(query.getlist("p"), query.getlist("op"), query.getlist("v"), fillvalue="")
        if p.strip()
    ]
    return rows or [{"p": "", "op": "eq", "v": ""}]


def _with(query: QueryDict, **changes: str | None) -> str:
    """The page's query string with some parameters replaced (None: removed)."""
    copy = query.copy()
    for key, value in changes.items():
        copy.pop(key, None)
        if value is not None:
            copy[key] = value
    return copy.urlencode()


def _choices_of_types(stream: StreamInfo, start: datetime, end: datetime) -> list[str]:
    """Types to pick from: the stream's schemas and the types seen in the range."""
    seen = [t for t, _ in top_types(stream_id=stream.id, start=start, end=end, limit=50)]
    return sorted(set(seen) | set(schemas_of_stream(stream_id=stream.id)))


# --- the event explorer ----------------------------------------------------------------------------


@page(Action.READ, section="streams")
def explorer(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    query = request.GET
    order: Literal["newest", "oldest"] = "oldest" if query.get("order") == "oldest" else "newest"
    context: dict[str, Any] = {
        "stream": stream,
        "query": query,
        "order": order,
        "rows": _condition_rows(query),
        "ops": OPS,
        "segments": list(segments_of_stream(stream_id=stream.id).values_list("name", flat=True)),
        "types": sorted(schemas_of_stream(stream_id=stream.id)),
        "error": "",
        "events": [],
    }

    def ask() -> Any:
        params = _api_params(query, ZoneInfo("UTC"))
        flt = _question(stream, params)
        cursor = Cursor.decode(query["cursor"]) if query.get("cursor") else None
        try:
            found = events_page(stream_id=stream.id, event_filter=flt, order=order, limit=EXPLORER_PAGE, cursor=cursor)
        except Invalid as exc:
            # The cursor of a link kept from another search (the filters or the order since changed).
            if exc.code != "cursor_mismatch":
                raise
            raise Invalid(
                exc.code,
                "That page link belongs to another search (other filters or order): press Search to start again.",
            ) from None
        return params, found

    answer, context["error"] = _attempt(ask)
    if answer is not None:
        params, found = answer
        context["events"] = [
            {
                **e,
                "shown": list((e["payload"] or {}).items())[:SHOWN_PROPERTIES]
                if isinstance(e["payload"], dict)
                else [],
            }
            for e in found.events
        ]
        context["next_url"] = f"?{_with(query, cursor=found.next.encode())}" if found.next else None
        context["previous_url"] = f"?{_with(query, cursor=found.previous.encode())}" if found.previous else None
        export = urlencode([(k, v) for k, values in params.items() for v in values])
        base = f"/api/v1/streams/{stream.slug}/events/export"
        context["export_csv"] = f"{base}?format=csv" + (f"&{export}" if export else "")
        context["export_ndjson"] = f"{base}?format=ndjson" + (f"&{export}" if export else "")
        context["filtered"] = bool(params)
    return render(request, "analytics/explorer.html", context)


@page(Action.READ, section="streams")
def event_detail(request: HttpRequest, caller: Caller, stream: StreamInfo, event_id: str) -> HttpResponse:
    found = event_find(stream_id=stream.id, event_id=event_id)
    if found is None:
        raise NotFound("event_not_found", "No such event.")
    context: dict[str, Any] = {"stream": stream, "found": found, "event": found.logged, "groups": [], "deliveries": []}
    if found.logged is not None:
        offset = found.logged["offset"]
        context["deliveries"] = deliveries_of_offset(stream_id=stream.id, offset=offset)
        context["groups"] = [
            {"name": g.name, "committed": g.committed_offset, "delivered": g.committed_offset > offset}
            for g in consumer_groups_of_stream(stream_id=stream.id)
        ]
    elif found.accepted is not None:
        context["event"] = {
            "event_id": found.accepted.event_id,
            "type": found.accepted.type,
            "payload": found.accepted.payload,
            "context": found.accepted.context,
        }
    elif found.dead_letters:
        context["event"] = found.dead_letters[0].event
    return render(request, "analytics/event.html", context)


# --- ranges ------------------------------------------------------------------------------------------


def _period(query: QueryDict, *, default: str, now: datetime) -> tuple[datetime, datetime, ZoneInfo, str]:
    """The range a page asks about: a preset (1h, 24h, 7d, 30d) or from/to read in the page's zone."""
    tz = parse_zone(query.get("tz"))
    chosen = query.get("range") or default
    if chosen == "custom" or (query.get("from") and chosen not in RANGES):
        start = _local_input(query.get("from", ""), tz, "from") if query.get("from") else None
        end = _local_input(query.get("to", ""), tz, "to") if query.get("to") else ceil_to(now, "minute")
        if start is None:
            start = end - RANGES[default]
        chosen = "custom"
    else:
        if chosen not in RANGES:
            raise Invalid("invalid_parameter", "The range is 1h, 24h, 7d, 30d or custom.")
        end = ceil_to(now, "minute" if RANGES[chosen] <= timedelta(hours=24) else "hour")
        start = end - RANGES[chosen]
    if start >= end:
        raise Invalid("invalid_filter", "from must be before to.")
    if end - start > timedelta(days=400):
        raise Invalid("invalid_filter", "A range is at most 400 days.")
    return start.astimezone(UTC), end.astimezone(UTC), tz, chosen


def _typed_range(query: QueryDict, *, default: str) -> dict[str, Any]:
    """The range picker as it was filled in, for a page whose question is refused (``_range_context`` when not)."""
    chosen = query.get("range") or default
    if query.get("from") and chosen not in RANGES:
        chosen = "custom"
    return {
        "range": chosen,
        "ranges": list(RANGE_LABELS.items()),
        "from_value": query.get("from", ""),
        "to_value": query.get("to", ""),
        "tz": query.get("tz") or "UTC",
    }


def _interval(query: QueryDict, start: datetime, end: datetime) -> str:
    chosen = query.get("interval") or ""
    if chosen in INTERVALS:
        return chosen
    span = end - start
    if span <= timedelta(hours=3):
        return "minute"
    if span <= timedelta(days=4):
        return "hour"
    return "day"


def _range_context(query: QueryDict, start: datetime, end: datetime, tz: ZoneInfo, chosen: str) -> dict[str, Any]:
    return {
        "range": chosen,
        "ranges": list(RANGE_LABELS.items()),
        "from_value": query.get("from") or start.astimezone(tz).strftime("%Y-%m-%dT%H:%M"),
        "to_value": query.get("to") or end.astimezone(tz).strftime("%Y-%m-%dT%H:%M"),
        "tz": tz.key,
        "start": start,
        "end": end,
    }


# --- time series and breakdowns ---------------------------------------------------------------------


def _trends_question(
    stream: StreamInfo, query: QueryDict, now: datetime
) -> tuple[EventFilter, datetime, datetime, ZoneInfo, str, str]:
    """The trends page's question: its filter, range, zone, range preset and breakdown dimension."""
    start, end, tz, chosen = _period(query, default="7d", now=now)
    params: dict[str, list[str]] = {}
    if query.getlist("type"):
        params["type"] = query.getlist("type")
    segment = query.get("segment")
    if segment:
        params["segment"] = [segment]
    flt = _question(stream, params)
    dimension = query.get("dimension") or "browser"
    if dimension not in DIMENSIONS and not dimension.startswith("payload."):
        raise Invalid("invalid_parameter", "Choose a dimension from the list, or payload.<property>.")
    return flt, start, end, tz, chosen, dimension


@page(Action.READ, section="streams")
def analytics_page(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    query = request.GET
    now = timezone.now()
    dimension = query.get("dimension") or "browser"
    context: dict[str, Any] = {
        "stream": stream,
        "query": query,
        "tab": "trends",
        "dimension": dimension,
        "dimensions": [(d, DIMENSION_LABELS.get(d, d)) for d in DIMENSIONS],
        "intervals": INTERVALS,
        "chosen_types": query.getlist("type"),
        "segments": list(segments_of_stream(stream_id=stream.id).values_list("name", flat=True)),
        "segment": query.get("segment", ""),
        **_typed_range(query, default="7d"),
    }

    def ask() -> dict[str, Any]:
        flt, start, end, tz, chosen, _ = _trends_question(stream, query, now)
        interval = _interval(query, start, end)
        context.update(_range_context(query, start, end, tz, chosen), interval=interval)
        context["types"] = _choices_of_types(stream, start, end)
        frame = Frame(start=start, end=end, tz=tz, interval=interval)
        series = series_chart(stream_id=stream.id, flt=flt, frame=frame, with_users=True)
        # Unique users per value with a type filter are counted from the log (a week of a busy
        # type: seconds). The page answers without them and its breakdown asks for them after.
        split = breakdown_of(
            stream_id=stream.id,
            flt=flt,
            frame=Frame(start=start, end=end, tz=tz),
            dimension=dimension,
            value_users=False,
        )
        daily = None
        if end - start >= timedelta(days=2):
            daily = active_users_chart(stream_id=stream.id, flt=flt, frame=Frame(start=start, end=end, tz=tz))
        return {"series": series, "split": split, "active": daily}

    context["answer"], context["error"] = _attempt(ask)
    split = context["answer"]["split"] if context["answer"] is not None else None
    if split is not None and split.users_source == USERS_DEFERRED and split.rows:
        context["users_url"] = f"{reverse('trends-breakdown', args=[stream.slug])}?{query.urlencode()}"
    return render(request, "analytics/trends.html", context)


@page(Action.READ, section="streams")
def analytics_breakdown(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    """The trends page's breakdown with unique users per value counted, whatever it costs (htmx fills it in)."""
    now = timezone.now()

    def ask() -> Breakdown:
        flt, start, end, tz, _, dimension = _trends_question(stream, request.GET, now)
        return breakdown_of(stream_id=stream.id, flt=flt, frame=Frame(start=start, end=end, tz=tz), dimension=dimension)

    split, error = _attempt(ask)
    if split is None:
        # Swapped into the page by htmx, which leaves a 4xx answer out: the reason is shown in its place.
        status = 200 if getattr(request, "htmx", False) else 400
        return render(request, "analytics/_error.html", {"error": error}, status=status)
    return render(
        request, "analytics/_breakdown.html", {"split": split, "dimension": request.GET.get("dimension") or "browser"}
    )


# --- funnels -------------------------------------------------------------------------------------


@page(Action.READ, section="streams")
def funnel_page(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    query = request.GET
    now = timezone.now()
    given = [
        {"type": t.strip(), "p": p.strip(), "v": v}
        for t, p, v in zip(
            query.getlist("step"),
            query.getlist("sp") or [""] * len(query.getlist("step")),
            query.getlist("sv") or [""] * len(query.getlist("step")),
            strict=False,
        )
    ]
    steps = [s for s in given if s["type"]]
    window = query.get("window") or "1d"
    context: dict[str, Any] = {
        "stream": stream,
        "query": query,
        "tab": "funnel",
        "steps": given if len(given) >= 2 else [*given, *([{"type": "", "p": "", "v": ""}] * (2 - len(given)))],
        "window": window,
        "windows": WINDOWS,
        "max_steps": MAX_STEPS,
        "answer": None,
        "error": "",
        **_typed_range(query, default="7d"),
    }

    def ask() -> Any:
        start, end, tz, chosen = _period(query, default="7d", now=now)
        context.update(_range_context(query, start, end, tz, chosen))
        context["types"] = _choices_of_types(stream, start, end)
        if not query.getlist("step"):
            return None
        if len(steps) < 2:
            raise Invalid("invalid_funnel", "A funnel has at least two steps: choose an event type for each.")
        if len(steps) > MAX_STEPS:
            raise Invalid("invalid_funnel", f"A funnel has at most {MAX_STEPS} steps.")
        params: dict[str, list[str]] = {"from": [start.isoformat()], "to": [end.isoformat()]}
        if query.get("segment"):
            params["segment"] = [query["segment"]]
        flt = _question(stream, params)
        built = []
        for s in steps:
            conditions = _question(stream, {_path(s["p"]): [s["v"]]}).conditions if s["p"] else ()
            label = f"{s['type']} ({s['p']} = {s['v']})" if s["p"] else s["type"]
            built.append(Step(type=s["type"], conditions=conditions, label=label))
        return funnel(
            stream_id=stream.id, steps=built, window=parse_window(window), event_filter=flt, breakdown=None, top=5
        )

    context["answer"], context["error"] = _attempt(ask)
    if context["answer"] is not None:
        first = context["answer"].steps[0].count if context["answer"].steps else 0
        context["entered"] = first
    return render(request, "analytics/funnel.html", context)


def _path(prop: str) -> str:
    return prop if prop.split(".", 1)[0] in ROOTS else f"payload.{prop}"


# --- retention -----------------------------------------------------------------------------------


@page(Action.READ, section="streams")
def retention_page(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    query = request.GET
    now = timezone.now()
    period = "day" if query.get("period") == "day" else "week"
    context: dict[str, Any] = {
        "stream": stream,
        "query": query,
        "tab": "retention",
        "period": period,
        "periods_choices": range(2, MAX_PERIODS + 1),
        "event": query.get("event", ""),
        "returning_event": query.get("returning_event", ""),
        "tz": query.get("tz") or "UTC",
    }

    def ask() -> Any:
        tz = parse_zone(query.get("tz"))
        raw = query.get("periods") or "8"
        # isdigit() alone takes "²" and 5,000 digits, which int() refuses (it was a 500).
        if len(raw) > 9 or not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_PERIODS:
            raise Invalid("invalid_parameter", f"Periods is a whole number from 1 to {MAX_PERIODS}.")
        periods = int(raw)
        # To the next minute, as the other pages' ranges: the question stays the same for a minute, and a
        # repeated one is answered from Redis.
        end = ceil_to(now, "minute")
        start = end - timedelta(days=periods * (7 if period == "week" else 1))
        context.update(periods=periods, tz=tz.key)
        context["types"] = _choices_of_types(stream, start, end)
        params: dict[str, list[str]] = {"from": [start.isoformat()], "to": [end.isoformat()]}
        if query.get("segment"):
            params["segment"] = [query["segment"]]
        flt = _question(stream, params)
        result = retention(
            stream_id=stream.id,
            period=period,  # type: ignore[arg-type]
            periods=periods,
            time_from=start,
            time_to=end,
            tz=tz,
            event=context["event"] or None,
            returning_event=context["returning_event"] or None,
            event_filter=flt,
            now=now,
        )
        return result

    context["answer"], context["error"] = _attempt(ask)
    if context["answer"] is not None:
        # The average is weighted by people: cohorts of nobody take no part in it.
        context["averaged"] = sum(1 for cohort in context["answer"].cohorts if cohort.people)
    return render(request, "analytics/retention.html", context)


# --- paths ---------------------------------------------------------------------------------------


@page(Action.READ, section="streams")
def paths_page(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    query = request.GET
    now = timezone.now()
    direction = "previous" if query.get("direction") == "previous" else "next"
    start_label = (query.get("start") or "").strip()
    context: dict[str, Any] = {
        "stream": stream,
        "query": query,
        "tab": "paths",
        "direction": direction,
        "start_label": start_label,
        "depths": range(1, MAX_DEPTH + 1),
        "depth": query.get("depth") or "3",
        "answer": None,
        **_typed_range(query, default="7d"),
    }

    def ask() -> Any:
        start, end, tz, chosen = _period(query, default="7d", now=now)
        context.update(_range_context(query, start, end, tz, chosen))
        context["types"] = _choices_of_types(stream, start, end)
        if not start_label:
            return None
        raw = context["depth"]
        if len(raw) > 9 or not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_DEPTH:
            raise Invalid("invalid_parameter", f"Depth is from 1 to {MAX_DEPTH}.")
        kind, sep, page_path = start_label.partition(":")
        flt = _question(stream, {"from": [start.isoformat()], "to": [end.isoformat()]})
        return paths(
            stream_id=stream.id,
            start=PathStart(type=kind, page=page_path if sep else None),
            direction=direction,  # type: ignore[arg-type]
            depth=int(raw),
            top=5,
            event_filter=flt,
        )

    context["answer"], context["error"] = _attempt(ask)
    if context["answer"] is not None:
        context["tree"] = _nested(context["answer"].nodes)
    return render(request, "analytics/paths.html", context)


def _nested(rows: list[PathRow]) -> list[dict[str, Any]]:
    """The selector's flat tree (each row after its parent, with its level) as branches holding their
    children, for a page that folds the deeper levels away."""
    top: list[dict[str, Any]] = []
    open_at: list[list[dict[str, Any]]] = [top]
    for row in rows:
        del open_at[row.level :]
        branch: dict[str, Any] = {"node": row, "children": []}
        open_at[-1].append(branch)
        open_at.append(branch["children"])
    return top


# --- processing health ---------------------------------------------------------------------------


def _every_bucket(frame: Frame, found: list[ProcessingBucket]) -> tuple[list[datetime], list[ProcessingBucket | None]]:
    """Every bucket start of the frame, with the bucket the stats hold for it (None where they hold none)."""
    by_start = {b.start: b for b in found}
    starts = sorted({lo for lo, _ in frame.buckets()} | set(by_start))
    return starts, [by_start.get(at) for at in starts]


@page(HEALTH, section="streams")
def processing_page(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    query = request.GET
    now = timezone.now()
    context: dict[str, Any] = {
        "stream": stream,
        "query": query,
        "tab": "processing",
        **_typed_range(query, default="1h"),
    }

    def ask() -> Any:
        start, end, tz, chosen = _period(query, default="1h", now=now)
        context.update(_range_context(query, start, end, tz, chosen))
        interval = "minute" if end - start <= timedelta(hours=6) else "hour"
        if (end - start) / timedelta(minutes=1 if interval == "minute" else 60) > MAX_BUCKETS:
            raise Invalid("invalid_filter", "That range is too long for this page.")
        result = processing_stats(stream_id=stream.id, time_from=start, time_to=end, interval=interval, tz=tz)  # type: ignore[arg-type]
        # The stats hold only the minutes (hours) that saw something: charted on every bucket of the range,
        # so a quiet stretch is a run of zeros (throughput) or a gap (latency), not a line drawn across it.
        starts, buckets = _every_bucket(Frame(start=start, end=end, tz=tz, interval=interval), result.buckets)
        throughput = Chart(
            x=starts,
            series=[
                Series("accepted/s", [b.accepted_per_second if b else 0 for b in buckets], "--chart-7"),
                Series("logged/s", [b.logged_per_second if b else 0 for b in buckets], "--chart-6"),
            ],
            unit="events/s",
            tz=tz.key,
            interval=interval,
        )
        latency = Chart(
            x=starts,
            series=[
                Series(name, [b.latency_ms.get(name) if b else None for b in buckets], colour)
                for name, colour in (("p50", "--chart-1"), ("p95", "--chart-3"), ("p99", "--chart-4"))
            ],
            unit="ms",
            tz=tz.key,
            interval=interval,
        )
        return {"result": result, "throughput": throughput, "latency": latency}

    context["answer"], context["error"] = _attempt(ask)
    return render(request, "analytics/processing.html", context)
