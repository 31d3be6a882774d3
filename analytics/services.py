"""Rollup writes. They run inside the caller's append transaction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

import orjson

from eventflow.db import bound_cursor

_MINUTE_SQL = """
INSERT INTO analytics_minute_count (stream_id, type, minute, count)
SELECT %s, r.type, r.minute, r.count
FROM json_to_recordset(%s::json) AS r(type text, minute timestamptz, count bigint)
ON CONFLICT (stream_id, minute, type) DO UPDATE SET count = analytics_minute_count.count + EXCLUDED.count
"""

_PROCESSING_SQL = """
INSERT INTO analytics_processing_minute
    (stream_id, minute, events, latency_ms_sum, latency_ms_max, dead_letters, retries)
VALUES (%(stream_id)s, date_trunc('minute', %(at)s::timestamptz), %(events)s, %(lat_sum)s, %(lat_max)s,
        %(dead)s, %(retries)s)
ON CONFLICT (stream_id, minute) DO UPDATE SET
    events = analytics_processing_minute.events + EXCLUDED.events,
    latency_ms_sum = analytics_processing_minute.latency_ms_sum + EXCLUDED.latency_ms_sum,
    latency_ms_max = GREATEST(analytics_processing_minute.latency_ms_max, EXCLUDED.latency_ms_max),
    dead_letters = analytics_processing_minute.dead_letters + EXCLUDED.dead_letters,
    retries = analytics_processing_minute.retries + EXCLUDED.retries
"""


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def rollups_apply(*, stream_id: int, events: Iterable[tuple[str, datetime]]) -> None:
    """Count logged events, given as (type, event_time), into the minute rollup."""
    counts = Counter((event_type, _minute(at)) for event_type, at in events)
    if not counts:
        return
    rows = [{"type": t, "minute": m, "count": c} for (t, m), c in counts.items()]
    with bound_cursor() as cursor:
        cursor.execute(_MINUTE_SQL, [stream_id, orjson.dumps(rows).decode()])


def processing_stats_record(
    *,
    stream_id: int,
    at: datetime,
    latencies_ms: list[int],
    dead_letters: int = 0,
    retries: int = 0,
) -> None:
    if not latencies_ms and not dead_letters and not retries:
        return
    with bound_cursor() as cursor:
        cursor.execute(
            _PROCESSING_SQL,
            {
                "stream_id": stream_id,
                "at": at,
                "events": len(latencies_ms),
                "lat_sum": sum(latencies_ms),
                "lat_max": max(latencies_ms, default=0),
                "dead": dead_letters,
                "retries": retries,
            },
        )
