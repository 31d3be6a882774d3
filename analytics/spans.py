"""Merged sketches of past windows: unique users of a local day, a week or a month, merged once.

A window's unique users are the union of its hour and day sketches (analytics/rollups.py):
a day in Berlin is 24 hour sketches, thirty of them 720, and a month's breakdown 30 day
sketches per value. Merging them is most of what such a question costs (docs/BENCHMARKS.md,
"Analytics"). A window that ended long enough ago (``CACHED_AFTER_HOURS``), made of whole UTC
hours, is therefore stored once merged, in ``analytics_sketch_span``, by the reader that first
asked for it, and read back whole afterwards.

It never goes stale:

- **The writer deletes what a late event touches.** ``rollups_write`` (the processor's
  append transaction, ``rollups_rebuild``, an erasure's recount) calls ``spans_invalidate``
  for the hours of its sketches that are older than ``LATE_AFTER_HOURS``: it counts the write
  in the stream's ``analytics_sketch_epoch`` row and deletes the spans that hold those hours.
  A batch of current events does neither (no statement).
- **A reader stores only what no late write has overtaken.** It reads the stream's count
  before it reads the sketches, and stores its spans in a transaction that first takes the
  count's row ``FOR SHARE``: a late write in flight makes it wait and then see a higher count
  (nothing is stored), a late write that commits after it waits for it and then deletes the
  spans it stored. Current writes, which touch no stored span, never wait on a reader.

The gap between the two thresholds (3 hours against 1) covers clocks that differ between
processes and an append transaction that is still open when a reader starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from django.db import transaction

from eventflow.db import bound_cursor

# A write to a sketch of an hour this much older than the current hour is late: it invalidates.
LATE_AFTER_HOURS = 1
# A window is stored only when it ended at least this long before the current hour began.
CACHED_AFTER_HOURS = 3
# The values a reader asked for together (several event types) as one span's value.
SPAN_VALUES_SEP = "\x1f"
MAX_VALUE_CHARS = 200

_EPOCH_SQL = "SELECT n FROM analytics_sketch_epoch WHERE stream_id = %s"
_EPOCH_CREATE_SQL = "INSERT INTO analytics_sketch_epoch (stream_id, n) VALUES (%s, 0) ON CONFLICT DO NOTHING"
_EPOCH_BUMP_SQL = """
INSERT INTO analytics_sketch_epoch AS e (stream_id, n) VALUES (%s, 1)
ON CONFLICT (stream_id) DO UPDATE SET n = e.n + 1
"""
_INVALIDATE_SQL = "DELETE FROM analytics_sketch_span WHERE stream_id = %s AND hi > %s AND lo < %s"
# One range of the primary key per value (a probe per span cost 1.7 ms for 90 local days), the
# spans not asked for left out here.
_READ_SQL = """
SELECT value, lo, hi, users FROM analytics_sketch_span
WHERE stream_id = %s AND dimension = %s AND value = ANY(%s) AND lo >= %s AND lo <= %s
"""
_STORE_SQL = """
INSERT INTO analytics_sketch_span (stream_id, dimension, value, lo, hi, users, sketch)
SELECT %s, %s, r.value, r.lo, r.hi, r.users, r.sketch
FROM unnest(%s::text[], %s::timestamptz[], %s::timestamptz[], %s::bigint[], %b::bytea[]) AS r(value, lo, hi, users, sketch)
ON CONFLICT DO NOTHING
"""

Span = tuple[str, datetime, datetime]  # (value, lo, hi)


def _hour_floor(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def late_hours(hours: Iterable[datetime], *, now: datetime) -> list[datetime]:
    """The hours among ``hours`` whose sketches a write now would change late."""
    limit = _hour_floor(now) - timedelta(hours=LATE_AFTER_HOURS)
    return sorted(h for h in hours if h < limit)


def spans_invalidate(*, stream_id: int, lo: datetime, hi: datetime) -> None:
    """Count a late write to the sketches of [lo, hi) and delete the spans that hold any of it (the writer's transaction)."""
    with bound_cursor() as cursor:
        cursor.execute(_EPOCH_BUMP_SQL, [stream_id])
        cursor.execute(_INVALIDATE_SQL, [stream_id, lo, hi])


def storable(lo: datetime, hi: datetime, *, now: datetime) -> bool:
    """Whether the window [lo, hi) may be stored: whole UTC hours, ended long enough ago."""
    whole = all(t.minute == 0 and t.second == 0 and t.microsecond == 0 for t in (lo, hi))
    return whole and lo < hi <= _hour_floor(now) - timedelta(hours=CACHED_AFTER_HOURS)


def span_value(values: Sequence[str]) -> str | None:
    """The value a span of ``values`` asked for together is stored under; None when too long to store."""
    value = SPAN_VALUES_SEP.join(sorted(values))
    return value if len(value) <= MAX_VALUE_CHARS else None


def spans_epoch(stream_id: int) -> int:
    """The stream's count of late writes, read before the sketches a reader merges (its row made on first use)."""
    with bound_cursor() as cursor:
        cursor.execute(_EPOCH_SQL, [stream_id])
        row = cursor.fetchone()
        if row is None:
            cursor.execute(_EPOCH_CREATE_SQL, [stream_id])
            cursor.execute(_EPOCH_SQL, [stream_id])
            row = cursor.fetchone()
    return int(row[0]) if row else 0


def spans_read(*, stream_id: int, dimension: str, spans: Sequence[Span]) -> dict[Span, int]:
    """The stored unique users of those of ``spans`` that are stored."""
    if not spans:
        return {}
    asked = set(spans)
    with bound_cursor() as cursor:
        cursor.execute(
            _READ_SQL,
            [
                stream_id,
                dimension,
                sorted({v for v, _, _ in spans}),
                min(lo for _, lo, _ in spans),
                max(lo for _, lo, _ in spans),
            ],
            binary=True,
        )
        found = {(value, lo.astimezone(UTC), hi.astimezone(UTC)): int(users) for value, lo, hi, users in cursor}
    return {span: users for span, users in found.items() if span in asked}


def spans_store(*, stream_id: int, dimension: str, epoch: int, merged: Sequence[tuple[Span, int, bytes]]) -> bool:
    """Store merged spans unless a late write came after ``epoch`` was read; True when stored."""
    if not merged:
        return False
    with transaction.atomic(), bound_cursor() as cursor:
        cursor.execute(_EPOCH_SQL + " FOR SHARE", [stream_id])
        row = cursor.fetchone()
        if row is None or int(row[0]) != epoch:
            return False
        cursor.execute(
            _STORE_SQL,
            [
                stream_id,
                dimension,
                [span[0] for span, _, _ in merged],
                [span[1] for span, _, _ in merged],
                [span[2] for span, _, _ in merged],
                [users for _, users, _ in merged],
                [blob for _, _, blob in merged],
            ],
        )
    return True
