"""The per-person activity rollup: what retention reads instead of the log's events.

Two tables, written in the append transaction (``activity_write``, called by
``rollups_apply``) and recounted from the log by ``rollups_rebuild``:

- ``analytics_person_day``: per (stream, UTC day, person) the first and last time
  of any event (``type`` is always '');
- ``analytics_person_first``: per (stream, person) the first time of any event kept: retention
  (streams/retention.py) moves it on to the person's first kept day row, or removes it
  when none is kept, so it stays what ``activity_rebuild_first`` counts from the day rows.

Only any-type activity is kept: per event type it cost the append transaction as much
again as the counts and sketches (docs/BENCHMARKS.md), for retention by event type
alone, which reads the log. A person is ``user_id``, else ``anonymous_id``
(``journeys.PERSON``); events with neither are not anyone's activity. With the first
and last time of each UTC day a reader knows in which local periods of any zone a
person was active, as long as no UTC day holds two period starts
(``journeys.retention`` checks, and reads the log when one does).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import connection

from eventflow.db import bound_cursor

ANY = ""

# One statement a batch, its rows as four binary arrays (no JSON to parse), bound with %b:
# with %s psycopg dumped the lists as text, element by element in Python (50 ms of the
# processor's CPU for four arrays of 5,000, against 5 ms in binary). Later events
# mostly only move a day's last time; an upsert whose times change nothing writes nothing
# (the WHERE of DO UPDATE). Only a day row that was new or whose first time moved back can
# move the person's first sighting back (otherwise that day's earlier first time is already
# counted in it): those alone are probed for it, so a person seen earlier the same day
# costs nothing more.
_WRITE_SQL = """
WITH r AS (
    SELECT * FROM unnest(%(d)b::date[], %(p)b::text[], %(f)b::timestamptz[], %(l)b::timestamptz[]) AS r(d, p, f, l)
), days AS (
    INSERT INTO analytics_person_day AS a (stream_id, type, day, person, first_at, last_at)
    SELECT %(s)s, '', r.d, r.p, r.f, r.l FROM r
    ON CONFLICT (stream_id, type, day, person) DO UPDATE
    SET first_at = LEAST(a.first_at, EXCLUDED.first_at), last_at = GREATEST(a.last_at, EXCLUDED.last_at)
    WHERE EXCLUDED.first_at < a.first_at OR EXCLUDED.last_at > a.last_at
    RETURNING a.day, a.person, a.first_at
), moved AS (
    SELECT days.person, min(days.first_at) AS f FROM days JOIN r ON r.d = days.day AND r.p = days.person
    WHERE days.first_at = r.f GROUP BY days.person
)
INSERT INTO analytics_person_first AS pf (stream_id, type, person, first_at)
SELECT %(s)s, '', m.person, m.f FROM moved m
-- One index probe per row whatever the statistics say (as NOT EXISTS, the planner read
-- the stream's every first sighting into a hash: 270 ms a batch at 560,000 of them).
LEFT JOIN LATERAL (
    SELECT x.first_at FROM analytics_person_first x
    WHERE x.stream_id = %(s)s AND x.type = '' AND x.person = m.person LIMIT 1
) AS known ON true
WHERE known.first_at IS NULL OR m.f < known.first_at
ON CONFLICT (stream_id, type, person) DO UPDATE SET first_at = EXCLUDED.first_at
WHERE EXCLUDED.first_at < pf.first_at
"""


def activity_rows(records: Iterable[Any]) -> dict[tuple[date, str], list[datetime]]:
    """(UTC day, person) -> [first, last] event time of ``records``."""
    out: dict[tuple[date, str], list[datetime]] = {}
    for r in records:
        person = r.user_id if r.user_id is not None else r.anonymous_id
        if person is None:
            continue
        at = r.event_time
        if at.tzinfo is not UTC:
            at = at.astimezone(UTC)
        key = (at.date(), person)
        span = out.get(key)
        if span is None:
            out[key] = [at, at]
        elif at < span[0]:
            span[0] = at
        elif at > span[1]:
            span[1] = at
    return out


def activity_write(
    *, stream_id: int, records: Iterable[Any] = (), rows: dict[tuple[date, str], list[datetime]] | None = None
) -> None:
    """Add the records' activity (or their ``activity_rows``) to the rollup. Runs in the append transaction."""
    if rows is None:
        rows = activity_rows(records)
    if not rows:
        return
    spans = list(rows.values())
    with bound_cursor() as cursor:
        cursor.execute(
            _WRITE_SQL,
            {
                "s": stream_id,
                "d": [d for d, _ in rows],
                "p": [p for _, p in rows],
                "f": [f for f, _ in spans],
                "l": [last for _, last in spans],
            },
        )


# --- rebuilding from the log -------------------------------------------------------------------

_PERSON = "COALESCE(l.user_id, l.anonymous_id)"
_REBUILD_DAY_SQL = f"""
DELETE FROM analytics_person_day WHERE stream_id = %(s)s AND day = %(d)s;
INSERT INTO analytics_person_day (stream_id, type, day, person, first_at, last_at)
SELECT %(s)s, '', %(d)s, {_PERSON}, min(l.event_time), max(l.event_time)
FROM streams_log l
WHERE l.stream_id = %(s)s AND l.event_time >= %(lo)s AND l.event_time < %(hi)s AND {_PERSON} IS NOT NULL
GROUP BY {_PERSON};
"""
_REBUILD_FIRST_SQL = """
DELETE FROM analytics_person_first WHERE stream_id = %(s)s;
INSERT INTO analytics_person_first (stream_id, type, person, first_at)
SELECT %(s)s, '', person, min(first_at) FROM analytics_person_day WHERE stream_id = %(s)s AND type = '' GROUP BY person;
"""


def activity_rebuild_day(*, stream_id: int, day: datetime) -> None:
    """Recount one UTC day's ``analytics_person_day`` rows from the log (under the stream's lock)."""
    start = day.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with connection.cursor() as cursor:
        cursor.execute(
            _REBUILD_DAY_SQL, {"s": stream_id, "d": start.date(), "lo": start, "hi": start + timedelta(days=1)}
        )


def activity_rebuild_first(*, stream_id: int) -> None:
    """Recount ``analytics_person_first`` from the day rows, once they are all rebuilt (under the stream's lock)."""
    with connection.cursor() as cursor:
        cursor.execute(_REBUILD_FIRST_SQL, {"s": stream_id})
