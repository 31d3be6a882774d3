"""Reads behind the dashboard's charts: the analytics API's own selectors, shaped as charts and tables.

Counts come from ``aggregates`` (rollups when only types and time are asked),
processing figures from ``analytics_processing_minute`` (written in the append
transaction, as ``processing.processing_stats`` reads it), so a page shows the
numbers the API answers. Each function costs a fixed number of queries whatever
the number of streams, types or buckets.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncHour

from eventflow.charts import Chart, Series, top_series
from ingestion.models import InboxEvent

from .aggregates import Breakdown, Frame, active_users, breakdown, counts, users_by_window
from .cache import cached_result
from .filters import EventFilter
from .models import ProcessingMinute
from .rollups import floor_to

HOURS = 24
TOP_TYPES = 10


# --- the overview: accepted and logged per stream, last hour and 24 hours -------------------------


@dataclass
class Activity:
    accepted_1h: int = 0
    logged_1h: int = 0
    accepted_24h: int = 0
    logged_24h: int = 0
    dead_letters_24h: int = 0
    # Per hour of the last 24 (the last one still running): accepted and logged.
    accepted: dict[datetime, int] = field(default_factory=dict)
    logged: dict[datetime, int] = field(default_factory=dict)


@dataclass
class ActivityReport:
    hours: list[datetime]
    streams: dict[int, Activity]

    @property
    def total(self) -> Activity:
        out = Activity()
        for one in self.streams.values():
            for name in ("accepted_1h", "logged_1h", "accepted_24h", "logged_24h", "dead_letters_24h"):
                setattr(out, name, getattr(out, name) + getattr(one, name))
            for at in self.hours:
                out.accepted[at] = out.accepted.get(at, 0) + one.accepted.get(at, 0)
                out.logged[at] = out.logged.get(at, 0) + one.logged.get(at, 0)
        return out

    def chart(self, stream_id: int | None = None) -> Chart:
        """Accepted and logged per hour: of one stream, or of all of them."""
        one = self.total if stream_id is None else self.streams.get(stream_id, Activity())
        return Chart(
            x=self.hours,
            series=[
                Series("accepted", [one.accepted.get(at, 0) for at in self.hours], "--chart-7"),
                Series("logged", [one.logged.get(at, 0) for at in self.hours], "--chart-6"),
            ],
            unit="events",
            interval="hour",
        )


def activity_of_streams(*, stream_ids: list[int], now: datetime) -> ActivityReport:
    """Events accepted and logged in the last hour and 24 hours per stream, and per hour: three queries.

    Accepted counts the events received in the period that have left the inbox
    (logged or dead-lettered, counted by the processor at the minute of receipt)
    plus those received then that still wait in it.
    """
    first_hour = floor_to(now, "hour") - timedelta(hours=HOURS - 1)
    hours = [first_hour + timedelta(hours=i) for i in range(HOURS)]
    day_ago, hour_ago = now - timedelta(hours=HOURS), now - timedelta(hours=1)
    report = ActivityReport(hours=hours, streams={sid: Activity() for sid in stream_ids})
    if not stream_ids:
        return report
    minutes = ProcessingMinute.objects.filter(stream_id__in=stream_ids, minute__gte=first_hour)
    per_hour = (
        minutes.annotate(hour=TruncHour("minute", tzinfo=UTC))
        .values("stream_id", "hour")
        .annotate(accepted=Sum("accepted"), logged=Sum("events"), dead=Sum("dead_letters"))
        .order_by()
    )
    recent = (
        minutes.filter(minute__gte=floor_to(hour_ago, "minute"))
        .values("stream_id")
        .annotate(accepted=Sum("accepted"), logged=Sum("events"))
        .order_by()
    )
    waiting = (
        InboxEvent.objects.filter(stream_id__in=stream_ids, received_at__gte=day_ago)
        .values("stream_id")
        .annotate(day=Count("pk"), hour=Count("pk", filter=Q(received_at__gte=hour_ago)))
        .order_by()
    )
    for row in per_hour:
        one = report.streams[row["stream_id"]]
        one.accepted[row["hour"]] = row["accepted"] or 0
        one.logged[row["hour"]] = row["logged"] or 0
        one.accepted_24h += row["accepted"] or 0
        one.logged_24h += row["logged"] or 0
        one.dead_letters_24h += row["dead"] or 0
    for last_hour in recent:
        one = report.streams[last_hour["stream_id"]]
        one.accepted_1h += last_hour["accepted"] or 0
        one.logged_1h += last_hour["logged"] or 0
    last = hours[-1]
    for inbox in waiting:
        one = report.streams[inbox["stream_id"]]
        one.accepted_24h += inbox["day"]
        one.accepted_1h += inbox["hour"]
        # Waiting events were received recently: counted in the running hour.
        one.accepted[last] = one.accepted.get(last, 0) + inbox["hour"]
    return report


# --- a stream's page: events per minute by type, top types ---------------------------------------


def minute_chart(*, stream_id: int, now: datetime, minutes: int = 60) -> Chart:
    """Events per minute of the last ``minutes``, one series per type (the top ones, the rest as other)."""
    end = floor_to(now, "minute") + timedelta(minutes=1)
    frame = Frame(start=end - timedelta(minutes=minutes), end=end, tz=ZoneInfo("UTC"), interval="minute")
    return series_chart(stream_id=stream_id, flt=EventFilter(), frame=frame).chart


def top_types(*, stream_id: int, start: datetime, end: datetime, limit: int = TOP_TYPES) -> list[tuple[str, int]]:
    """The most frequent types over [start, end), with their counts."""
    frame = Frame(start=start, end=end, tz=ZoneInfo("UTC"))
    _, rows = counts(stream_id=stream_id, flt=EventFilter().with_time(start, end), frame=frame, by_type=True)
    ranked = sorted(((t or "", n) for (_, t), n in rows.items()), key=lambda r: (-r[1], r[0]))
    return ranked[:limit]


# --- the analytics page --------------------------------------------------------------------------


@dataclass
class SeriesAnswer:
    source: str
    chart: Chart
    total: int
    users: Chart | None = None


def series_chart(*, stream_id: int, flt: EventFilter, frame: Frame, with_users: bool = False) -> SeriesAnswer:
    """Events per bucket, one series per type (as ``timeseries?per_type=true``), and unique users when asked."""
    buckets = frame.buckets()
    starts = [lo for lo, _ in buckets]
    source, rows = counts(stream_id=stream_id, flt=flt.with_time(frame.start, frame.end), frame=frame, by_type=True)
    per_type: dict[str, dict[datetime, int]] = defaultdict(dict)
    for (at, event_type), n in rows.items():
        if at is not None:
            per_type[event_type or ""][at] = n
    chart = Chart(
        x=starts,
        series=top_series(starts, per_type),
        unit="events",
        tz=frame.tz.key,
        interval=frame.interval or "hour",
    )
    users = None
    if with_users:
        windows = [(max(lo, frame.start), min(hi, frame.end)) for lo, hi in buckets]
        found = users_by_window(stream_id=stream_id, flt=flt.with_time(frame.start, frame.end), windows=windows)
        users = Chart(
            x=starts,
            series=[Series("unique users", [found.get((i, None), 0) for i in range(len(starts))], "--chart-2")],
            unit="users",
            tz=frame.tz.key,
            interval=frame.interval or "hour",
        )
    return SeriesAnswer(source=source, chart=chart, total=sum(rows.values()), users=users)


def breakdown_of(
    *, stream_id: int, flt: EventFilter, frame: Frame, dimension: str, top: int = 10, value_users: bool = True
) -> Breakdown:
    """The trends page's breakdown, kept a short while (analytics/cache.py): its users per value with a
    type filter are counted from the log, seconds for a busy type's week, and a reload asks the same."""
    flt = flt.with_time(frame.start, frame.end)
    question = {
        "filter": flt.as_dict(),
        "tz": frame.tz.key,
        "dimension": dimension,
        "top": top,
        "value_users": value_users,
    }
    return cached_result(
        stream_id=stream_id,
        endpoint="page-breakdown",
        question=question,
        kind=Breakdown,
        compute=lambda: breakdown(
            stream_id=stream_id, flt=flt, frame=frame, dimension=dimension, top=top, value_users=value_users
        ),
    )


def active_users_chart(*, stream_id: int, flt: EventFilter, frame: Frame) -> Chart:
    """DAU, WAU and MAU for each local day of the frame (as ``active-users``)."""
    _, rows = active_users(stream_id=stream_id, flt=flt.with_time(frame.start, frame.end), frame=frame)
    days = [datetime(d.year, d.month, d.day, tzinfo=frame.tz) for d, *_ in rows]
    return Chart(
        x=days,
        series=[
            Series("DAU", [r[1] for r in rows], "--chart-1"),
            Series("WAU", [r[2] for r in rows], "--chart-2"),
            Series("MAU", [r[3] for r in rows], "--chart-3"),
        ],
        unit="users",
        tz=frame.tz.key,
        interval="day",
    )
