"""Rollup writes. They run inside the caller's append transaction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from eventflow.db import bound_cursor
from streams.log import LogRecord

from .activity import activity_rows, activity_write
from .processing import latency_histogram
from .rollups import Tally, rollups_write

# One row per minute touched: the minute of logging (volume, latency histogram, failures)
# and the minutes of receipt of the events that left the inbox (accepted).
_PROCESSING_SQL = """
INSERT INTO analytics_processing_minute
    (stream_id, minute, events, latency_ms_sum, latency_ms_max, dead_letters, retries, accepted, latency_buckets)
SELECT %s, r.minute, r.events, r.lat_sum, r.lat_max, r.dead, r.retries, r.accepted,
       ARRAY(SELECT json_array_elements_text(r.buckets)::bigint)
FROM json_to_recordset(%s::json) AS r(minute timestamptz, events bigint, lat_sum bigint, lat_max bigint,
                                      dead bigint, retries bigint, accepted bigint, buckets json)
ON CONFLICT (stream_id, minute) DO UPDATE SET
    events = analytics_processing_minute.events + EXCLUDED.events,
    latency_ms_sum = analytics_processing_minute.latency_ms_sum + EXCLUDED.latency_ms_sum,
    latency_ms_max = GREATEST(analytics_processing_minute.latency_ms_max, EXCLUDED.latency_ms_max),
    dead_letters = analytics_processing_minute.dead_letters + EXCLUDED.dead_letters,
    retries = analytics_processing_minute.retries + EXCLUDED.retries,
    accepted = analytics_processing_minute.accepted + EXCLUDED.accepted,
    latency_buckets = ARRAY(
        SELECT COALESCE(a, 0) + COALESCE(b, 0)
        FROM unnest(analytics_processing_minute.latency_buckets, EXCLUDED.latency_buckets) AS t(a, b)
    )
"""


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


@dataclass(frozen=True)
class Counted:
    """What some log records add to the rollups, reduced in Python before their append.

    The processor counts a batch while it is read ahead (ingestion/pipeline.py),
    outside the stream's lock, and writes it in the append transaction if the log
    took every record (an event already logged is counted from what was appended).
    """

    events: int
    tally: Tally
    activity: dict[tuple[date, str], list[datetime]]


def rollups_count(records: Sequence[LogRecord]) -> Counted:
    return Counted(events=len(records), tally=Tally().add_records(records), activity=activity_rows(records))


def rollups_apply(*, stream_id: int, records: Sequence[LogRecord], counted: Counted | None = None) -> None:
    """Count the records just appended to the log into every rollup (analytics/rollups.py).

    Runs in the append transaction, under the stream's processing lock: three
    statements a batch (the counts and sketches' read and write, and the per-person
    activity of analytics/activity.py), never one per event. ``counted`` is
    ``rollups_count`` of exactly these records, when the caller has it.
    """
    if not records:
        return
    if counted is None or counted.events != len(records):
        counted = rollups_count(records)
    rollups_write(stream_id=stream_id, tally=counted.tally)
    activity_write(stream_id=stream_id, rows=counted.activity)


def processing_stats_record(
    *,
    stream_id: int,
    at: datetime,
    latencies_ms: list[int],
    dead_letters: int = 0,
    retries: int = 0,
    received: Iterable[datetime] = (),
) -> None:
    """Processing figures of one batch: events logged at ``at`` with their latencies, failures,
    and the receipt times of the events that left the inbox (logged or dead-lettered)."""
    accepted = Counter(_minute(at_) for at_ in received)
    if not latencies_ms and not dead_letters and not retries and not accepted:
        return
    empty = {"events": 0, "lat_sum": 0, "lat_max": 0, "dead": 0, "retries": 0, "accepted": 0, "buckets": []}
    rows: dict[datetime, dict[str, Any]] = {}
    if latencies_ms or dead_letters or retries:
        rows[_minute(at)] = {
            **empty,
            "events": len(latencies_ms),
            "lat_sum": sum(latencies_ms),
            "lat_max": max(latencies_ms, default=0),
            "dead": dead_letters,
            "retries": retries,
            "buckets": latency_histogram(latencies_ms) if latencies_ms else [],
        }
    for minute, count in accepted.items():
        rows.setdefault(minute, dict(empty))["accepted"] = count
    payload = [{"minute": minute, **row} for minute, row in rows.items()]
    with bound_cursor() as cursor:
        cursor.execute(_PROCESSING_SQL, [stream_id, orjson.dumps(payload).decode()])
