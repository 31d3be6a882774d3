"""Processing health over a range: volume in and out, accepted→logged latency, dead letters, retries, lag.

Read from the per-minute rollup ``ProcessingMinute`` (written in the append
transaction by ``analytics.services.processing_stats_record``), the dead letter
table, the inbox (events still waiting) and the consumer groups' positions.

Latency percentiles come from a fixed-bucket histogram per minute: exact
counts per bucket, and a percentile interpolated linearly inside the bucket
that holds it (so its error is at most that bucket's width; the max is exact).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import Count

from consumers.selectors import consumer_group_state, consumer_groups_of_stream
from streams.models import DeadLetter

# Upper bounds (ms) of the latency buckets; the last bucket is everything above the last bound.
LATENCY_BOUNDS_MS: tuple[int, ...] = (
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000, 3_600_000,
)  # fmt: skip
BUCKETS = len(LATENCY_BOUNDS_MS) + 1
Interval = Literal["minute", "hour"]


def latency_bucket(ms: int) -> int:
    """The bucket of a latency: the first whose upper bound is ≥ ``ms``."""
    return bisect.bisect_left(LATENCY_BOUNDS_MS, ms)


def latency_histogram(latencies_ms: list[int]) -> list[int]:
    buckets = [0] * BUCKETS
    for ms in latencies_ms:
        buckets[latency_bucket(ms)] += 1
    return buckets


def percentile_ms(buckets: list[int], q: float, max_ms: int) -> float | None:
    """The q-quantile of a histogram, interpolated within its bucket (never above the exact max)."""
    total = sum(buckets)
    if not total:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            low = LATENCY_BOUNDS_MS[index - 1] if index else 0
            high = LATENCY_BOUNDS_MS[index] if index < len(LATENCY_BOUNDS_MS) else max_ms
            value = low + (high - low) * max(0.0, rank - seen) / count
            return round(min(value, max_ms), 1)
        seen += count
    return float(max_ms)


@dataclass
class ProcessingBucket:
    start: datetime
    accepted: int
    logged: int
    accepted_per_second: float
    logged_per_second: float
    latency_ms: dict[str, float | None]
    dead_letters: int
    retries: int


@dataclass
class ProcessingResult:
    interval: str
    accepted: int
    logged: int
    waiting: int
    accepted_per_second: float
    logged_per_second: float
    latency_ms: dict[str, float | None]
    retries: int
    dead_letters_by_stage: dict[str, int]
    buckets: list[ProcessingBucket]
    consumer_lag: list[dict[str, Any]]


def _latency(buckets: list[int], total_ms: int, events: int, max_ms: int) -> dict[str, float | None]:
    return {
        "p50": percentile_ms(buckets, 0.5, max_ms),
        "p95": percentile_ms(buckets, 0.95, max_ms),
        "p99": percentile_ms(buckets, 0.99, max_ms),
        "mean": round(total_ms / events, 1) if events else None,
        "max": float(max_ms) if events else None,
    }


def _add(into: list[int], more: list[int] | None) -> None:
    for index, count in enumerate(more or []):
        if index < len(into):
            into[index] += count


# The rollup's minutes in the range, grouped by the local interval; the inbox's waiting
# events by minute of receipt (it holds only what is not processed yet).
_MINUTES_SQL = """
SELECT date_trunc(%s, minute AT TIME ZONE %s) AS bucket, events, accepted, latency_ms_sum, latency_ms_max,
       latency_buckets, dead_letters, retries
FROM analytics_processing_minute
WHERE stream_id = %s AND minute >= %s AND minute < %s
ORDER BY minute
"""
_WAITING_SQL = """
SELECT date_trunc(%s, received_at AT TIME ZONE %s), count(*)
FROM ingestion_inbox WHERE stream_id = %s AND received_at >= %s AND received_at < %s GROUP BY 1
"""


def processing_stats(
    *, stream_id: int, time_from: datetime, time_to: datetime, interval: Interval, tz: ZoneInfo
) -> ProcessingResult:
    per: dict[datetime, dict[str, Any]] = {}
    with connection.cursor() as cursor:
        cursor.execute(_MINUTES_SQL, [interval, tz.key, stream_id, time_from, time_to])
        minutes = cursor.fetchall()
        cursor.execute(_WAITING_SQL, [interval, tz.key, stream_id, time_from, time_to])
        waiting_rows = cursor.fetchall()

    def slot(local: datetime) -> dict[str, Any]:
        return per.setdefault(
            local,
            {"events": 0, "accepted": 0, "sum": 0, "max": 0, "buckets": [0] * BUCKETS, "dead": 0, "retries": 0},
        )

    for local, events, accepted, lat_sum, lat_max, buckets, dead, retries in minutes:
        into = slot(local)
        into["events"] += events
        into["accepted"] += accepted
        into["sum"] += lat_sum
        into["max"] = max(into["max"], lat_max)
        _add(into["buckets"], buckets)
        into["dead"] += dead
        into["retries"] += retries
    waiting = 0
    for local, count in waiting_rows:
        slot(local)["accepted"] += count
        waiting += count
    seconds = 60.0 if interval == "minute" else 3600.0
    out: list[ProcessingBucket] = []
    total: dict[str, Any] = {
        "events": 0,
        "accepted": 0,
        "sum": 0,
        "max": 0,
        "buckets": [0] * BUCKETS,
        "dead": 0,
        "retries": 0,
    }
    for local in sorted(per):
        s = per[local]
        out.append(
            ProcessingBucket(
                start=local.replace(tzinfo=tz),
                accepted=s["accepted"],
                logged=s["events"],
                accepted_per_second=round(s["accepted"] / seconds, 3),
                logged_per_second=round(s["events"] / seconds, 3),
                latency_ms=_latency(s["buckets"], s["sum"], s["events"], s["max"]),
                dead_letters=s["dead"],
                retries=s["retries"],
            )
        )
        for key in ("events", "accepted", "sum", "dead", "retries"):
            total[key] += s[key]
        total["max"] = max(total["max"], s["max"])
        _add(total["buckets"], s["buckets"])
    span = max((time_to - time_from).total_seconds(), 1.0)
    by_stage = dict(
        DeadLetter.objects.filter(stream_id=stream_id, created_at__gte=time_from, created_at__lt=time_to)
        .values_list("stage")
        .annotate(n=Count("id"))
        .values_list("stage", "n")
    )
    # Lag is the groups' position now: no history of it is kept.
    lag = [
        {
            "group": group.name,
            "kind": group.kind,
            "committed_offset": state["committed_offset"],
            "head": state["head"],
            "lag": state["lag"],
        }
        for group, state in ((g, consumer_group_state(g)) for g in consumer_groups_of_stream(stream_id=stream_id))
    ]
    return ProcessingResult(
        interval=interval,
        accepted=total["accepted"],
        logged=total["events"],
        waiting=waiting,
        accepted_per_second=round(total["accepted"] / span, 3),
        logged_per_second=round(total["events"] / span, 3),
        latency_ms=_latency(total["buckets"], total["sum"], total["events"], total["max"]),
        retries=total["retries"],
        dead_letters_by_stage=by_stage,
        buckets=out,
        consumer_lag=lag,
    )


def default_range(now: datetime, hours: int = 1) -> tuple[datetime, datetime]:
    return now - timedelta(hours=hours), now
