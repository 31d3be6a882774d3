"""Appending to a stream's log: gapless offsets in commit order (DESIGN invariant 3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.db import connection, transaction
from django.utils import timezone
from psycopg.errors import UniqueViolation

from eventflow import conf
from eventflow.db import bound_cursor

LOG_CHANNEL = "eventflow_log"

_LOCK_HEAD_SQL = "SELECT next_offset, last_logged_at FROM streams_streamhead WHERE stream_id = %s FOR UPDATE"
# One index probe of the key table per event whatever the statistics say (LIMIT keeps
# the planner from turning it into a hash join over the stream's every key, and
# '= ANY' can become a filter that compares every key of the stream with the array).
_KNOWN_SQL = """
SELECT k.event_id FROM json_array_elements_text(%s::json) AS k(event_id)
CROSS JOIN LATERAL (SELECT 1 FROM streams_log_key l WHERE l.stream_id = %s AND l.event_id = k.event_id LIMIT 1) AS hit
"""
# The key table's primary key; the legacy partition of a migrated log keeps its own
# unique index until it expires (migration 0012), and a duplicate is found by either.
_UNIQUE_EVENT_ID = ("streams_log_key_pkey", "uniq_log_event_id")
# The notification is delivered to listeners only when the transaction commits.
_ADVANCE_SQL = """
WITH head AS (
    UPDATE streams_streamhead SET next_offset = %s, last_logged_at = %s WHERE stream_id = %s RETURNING stream_id
)
SELECT pg_notify(%s, %s) FROM head
"""
# The first offset the stream logs on a UTC day, written once a day (streams/selectors
# turn an offset range into a logged_at range with it, so offset reads prune partitions).
_SEGMENT_SQL = """
INSERT INTO streams_log_segment (stream_id, day, first_offset) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING
"""
# COPY is the bulk path: about half the server time of an INSERT … SELECT from
# json_to_recordset for a batch of a thousand, and no parsing of one big JSON document.
# The keys go first: a duplicate stops the batch at the small key table's index before
# the log's rows are written.
_COPY_KEYS_SQL = 'COPY streams_log_key (stream_id, event_id, "offset", logged_at) FROM STDIN (FORMAT BINARY)'
_COPY_KEY_TYPES = ["bigint", "text", "bigint", "timestamptz"]
_COPY_SQL = """
COPY streams_log
    ("stream_id", "offset", event_id, type, event_time, received_at, logged_at, user_id, anonymous_id,
     session_id, payload, context, enrichment, flags, api_key_id)
FROM STDIN (FORMAT BINARY)
"""
_COPY_TYPES = [
    "bigint", "bigint", "text", "text", "timestamptz", "timestamptz", "timestamptz", "text", "text", "text",
    "jsonb", "jsonb", "jsonb", "jsonb", "bigint",
]  # fmt: skip


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which
# made building a batch's records three times slower.
@dataclass(slots=True)
class LogRecord:
    event_id: str
    type: str
    event_time: datetime
    received_at: datetime
    user_id: str | None = None
    anonymous_id: str | None = None
    session_id: str | None = None
    payload: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    enrichment: dict[str, Any] | None = None
    flags: dict[str, Any] | None = None
    api_key_id: int | None = None


@dataclass(frozen=True)
class AppendResult:
    first_offset: int
    next_offset: int
    appended: list[tuple[int, LogRecord]]
    already_logged: list[LogRecord]


def log_append(*, stream_id: int, records: Sequence[LogRecord], logged_at: datetime) -> AppendResult:
    """Append ``records`` (in order) to the stream's log and return their offsets.

    Must run inside the caller's transaction: the head row stays locked until
    it commits, so the next appender's offsets start where these end, and a
    reader asking for ``offset >= n`` can never miss a later commit. Records
    whose event_id is already in the log are skipped and returned separately.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("log_append must run inside a transaction")
    with bound_cursor() as cursor:
        cursor.execute(_LOCK_HEAD_SQL, [stream_id])
        row = cursor.fetchone()
        if row is None:
            raise ValueError(f"stream {stream_id} has no head row")
        first, last_logged_at = int(row[0]), row[1]
        if not records:
            return AppendResult(first_offset=first, next_offset=first, appended=[], already_logged=[])
        # A stream's logged_at never goes back (a worker whose clock is behind the last
        # one's takes the last time), so offsets and time partitions follow one order.
        if last_logged_at is not None and logged_at < last_logged_at:
            logged_at = last_logged_at
        new_day = last_logged_at is None or _day(logged_at) != _day(last_logged_at)
        # Nearly every batch is new to the log: let the key table's unique index find the
        # rare event it already holds, and look them up only then.
        try:
            with transaction.atomic():
                return _copy(
                    cursor, stream_id=stream_id, records=records, first=first, logged_at=logged_at, new_day=new_day
                )
        except UniqueViolation as exc:
            if exc.diag.constraint_name not in _UNIQUE_EVENT_ID:
                raise
        cursor.execute(_KNOWN_SQL, [orjson.dumps([r.event_id for r in records]).decode(), stream_id])
        known = {r[0] for r in cursor.fetchall()}
        return _copy(
            cursor, stream_id=stream_id, records=records, first=first, logged_at=logged_at, new_day=new_day, known=known
        )


def _day(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _copy(
    cursor: Any,
    *,
    stream_id: int,
    records: Sequence[LogRecord],
    first: int,
    logged_at: datetime,
    new_day: bool,
    known: frozenset[str] | set[str] = frozenset(),
) -> AppendResult:
    appended: list[tuple[int, LogRecord]] = []
    already: list[LogRecord] = []
    seen: set[str] = set()
    rows: list[tuple[Any, ...]] = []
    offset = first
    for record in records:
        if record.event_id in known or record.event_id in seen:
            already.append(record)
            continue
        seen.add(record.event_id)
        rows.append(
            (
                stream_id,
                offset,
                record.event_id,
                record.type,
                record.event_time,
                record.received_at,
                logged_at,
                record.user_id,
                record.anonymous_id,
                record.session_id,
                record.payload or {},
                record.context or {},
                record.enrichment or {},
                record.flags or {},
                record.api_key_id,
            )
        )
        appended.append((offset, record))
        offset += 1
    if rows:
        with cursor.copy(_COPY_KEYS_SQL) as copy:
            copy.set_types(_COPY_KEY_TYPES)
            for values in rows:
                copy.write_row((stream_id, values[2], values[1], logged_at))
        with cursor.copy(_COPY_SQL) as copy:
            copy.set_types(_COPY_TYPES)
            for values in rows:
                copy.write_row(values)
        if new_day:
            cursor.execute(_SEGMENT_SQL, [stream_id, _day(logged_at), first])
        cursor.execute(_ADVANCE_SQL, [offset, logged_at, stream_id, LOG_CHANNEL, f"{stream_id}:{offset}"])
    return AppendResult(first_offset=first, next_offset=offset, appended=appended, already_logged=already)


# What clocks of different hosts may disagree by, on top of the intake's tolerance.
_CLOCK_SLACK = timedelta(hours=1)


def logged_at_floor(event_time_from: datetime) -> datetime:
    """A time before which no event whose event_time is at or after ``event_time_from`` was logged.

    The intake takes no event_time later than its receipt plus the future
    tolerance (ingestion/envelope.py), and an event is logged after it is
    received: a reader by event time adds ``logged_at >= floor`` and the log's
    partitions of earlier days drop out of its plan (docs/SCALING.md).
    """
    return event_time_from - timedelta(seconds=conf.get().future_tolerance_seconds) - _CLOCK_SLACK


def log_offset_window(*, stream_id: int, start: int, end: int | None = None) -> tuple[datetime | None, datetime | None]:
    """The logged_at range ``[low, high)`` that holds the stream's offsets ``[start, end)`` (None: unbounded).

    Read from the stream's daily first offsets (``streams_log_segment``, a few
    hundred rows at most); a reader by offset adds the range so that only the
    partitions of those days are probed.
    """
    with connection.cursor() as cursor:
        cursor.execute(_WINDOW_SQL, [start, end, stream_id])
        low, high = cursor.fetchone()  # type: ignore[misc]
    return low, high


_WINDOW_SQL = """
SELECT max(day) FILTER (WHERE first_offset <= %s), min(day) FILTER (WHERE first_offset >= %s)
FROM streams_log_segment WHERE stream_id = %s
"""


def log_offset_floor(*, stream_id: int, logged_from: datetime) -> int:
    """An offset no event logged at or after ``logged_from`` is below: the first offset of the last day
    with appends that began by then (a stream's logged_at never goes back, so its offsets follow it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT first_offset FROM streams_log_segment WHERE stream_id = %s AND day <= %s ORDER BY day DESC LIMIT 1",
            [stream_id, logged_from],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def log_head(stream_id: int) -> int:
    """The next offset the stream's log will assign (its length)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT next_offset FROM streams_streamhead WHERE stream_id = %s", [stream_id])
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def log_append_now(*, stream_id: int, records: Sequence[LogRecord]) -> AppendResult:
    """Append in a transaction of its own (tools and tests)."""
    with transaction.atomic():
        return log_append(stream_id=stream_id, records=records, logged_at=timezone.now())
