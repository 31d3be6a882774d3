"""Retention: what each table keeps, enforced by a periodic job without long locks (DESIGN invariant 11).

- The log is partitioned by UTC day of ``logged_at`` (migration 0012,
  docs/SCALING.md). The job creates the partitions of the coming days ahead;
  a partition whose events have expired for every stream that has events in it
  is detached CONCURRENTLY, its keys leave ``streams_log_key`` in chunks, and
  it is dropped: no row is deleted one by one. A stream whose retention is
  shorter than that of a stream sharing the partition has its expired events
  deleted in chunks of the partition's primary key, keys with them, each chunk
  its own short transaction.
- Dead letters and webhook delivery attempts: rows older than their setting,
  in chunks from the oldest id.
- Rollups: minute, hour and day rows (counts, dimensions, sketches, per-person
  days, processing minutes) whose whole bucket is older than their grain's
  setting (``rollup_boundary``: one rule, so a day's counts and its active
  people go in the same run), per stream in chunks of their (stream, time) index.
- First sightings (``analytics_person_first``, retention's cohorts) are kept equal to the
  least first time of the person's kept day rows, as ``rollups_rebuild`` would count them:
  a row before the day boundary moves on to the person's first kept day, or goes when the
  person has none (all their days expired; if they come back they are first seen anew).
  Per stream in chunks of its (stream, type, first_at) index.
- Session state: a person's row goes once processing has not used it for the
  stream's ``retention_days`` (the events that used it were logged no later),
  per stream in chunks of its (stream, touched_at) index.

Each part is attempted whatever another did: a part that fails (a lock timeout
on a partition) is logged and counted, the others go on, and the run reports
it (``RetentionOutcome.failed``; the task then fails). Audit rows and alerts
have their own jobs (``eventflow.audit_retention``, ``analytics.alerts_check``).
Every step is safe to run twice or to stop anywhere: a run that stops leaves
the rest to the next one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from eventflow import conf
from eventflow.metrics import RETENTION_LAST_SUCCESS, RETENTION_PART_FAILURES, child
from ingestion.enrichment import SESSION_GAP, TOUCH_EVERY

logger = logging.getLogger(__name__)

CHUNK = 5_000
# A statement that waits for a lock longer than this gives up; the next run tries again.
LOCK_TIMEOUT = "2s"
PARTITION_PREFIX = "streams_log_p"
# pg_try_advisory_lock(key): one retention run at a time.
RETENTION_LOCK = 7302_0001
# Appends fail once the log has no partition for their day: /health is degraded below this,
# and the alert EventFlowRetentionStalled fires (deploy/prometheus/rules.yml).
PARTITIONS_AHEAD_MIN = timedelta(days=2)

_PARTITIONS_SQL = r"""
SELECT c.relname, i.inhdetachpending, b.bounds[1], b.bounds[2]
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL (SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \((.*)\) TO \((.*)\)') AS bounds) b
WHERE i.inhparent = 'streams_log'::regclass
"""
# Tables a run detached and did not get to drop.
_DETACHED_SQL = """
SELECT c.relname FROM pg_class c
WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
  AND (c.relname LIKE 'streams\\_log\\_p%%' OR c.relname = 'streams_log_legacy')
  AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)
"""
# The streams that have events in one partition: one primary-key probe per stream.
_HOLDERS_SQL = """
SELECT s.id, s.retention_days FROM streams_stream s
WHERE EXISTS (SELECT 1 FROM {table} l WHERE l.stream_id = s.id)
"""
# The oldest events of one stream in one partition, those of them logged before the
# cutoff deleted with their keys. Offsets follow logged_at within a stream, so the
# expired events are at the front: a chunk that deletes fewer than it read is the last.
_EXPIRE_CHUNK_SQL = """
WITH front AS (
    SELECT "offset", logged_at FROM {table} WHERE stream_id = %(stream)s ORDER BY "offset" LIMIT %(chunk)s
), gone AS (
    DELETE FROM {table} l USING front f
    WHERE l.stream_id = %(stream)s AND l."offset" = f."offset" AND f.logged_at < %(cutoff)s
    RETURNING l."offset", l.event_id
), keys AS (
    DELETE FROM streams_log_key k USING gone g
    WHERE k.stream_id = %(stream)s AND k.event_id = g.event_id AND k."offset" = g."offset"
)
SELECT count(*) FROM gone
"""
# The keys of a detached partition's events, a chunk at a time in primary-key order
# (a key that names another offset belongs to a later event and stays).
_DETACHED_KEYS_SQL = """
WITH chunk AS (
    SELECT stream_id, "offset", event_id FROM {table}
    WHERE (stream_id, "offset") > (%(stream)s, %(offset)s) ORDER BY stream_id, "offset" LIMIT %(chunk)s
), keys AS (
    DELETE FROM streams_log_key k USING chunk c
    WHERE k.stream_id = c.stream_id AND k.event_id = c.event_id AND k."offset" = c."offset"
)
SELECT stream_id, "offset" FROM chunk ORDER BY stream_id DESC, "offset" DESC LIMIT 1
"""
# A stream's daily first offsets before the day that holds its oldest kept event.
_SEGMENTS_SQL = """
DELETE FROM streams_log_segment s
WHERE s.stream_id = %(stream)s AND s.day < (
    SELECT max(day) FROM streams_log_segment WHERE stream_id = %(stream)s AND day <= %(cutoff)s)
"""
# Oldest rows first by id (ids follow creation time).
_BY_ID_CHUNK_SQL = """
WITH front AS (SELECT id, {column} AS at FROM {table} ORDER BY id LIMIT %(chunk)s)
DELETE FROM {table} t USING front f WHERE t.id = f.id AND f.at < %(cutoff)s
"""
_PER_STREAM_CHUNK_SQL = """
DELETE FROM {table} WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM {table} WHERE stream_id = %(stream)s AND {condition} LIMIT %(chunk)s))
"""
# A bucket goes once all of it is before the boundary (the start of the oldest bucket kept):
# rows by the bucket's start compare with <, a window by its end (hi) with <=. The boundary is
# an instant, or its UTC day for a date column.
BEFORE_BOUNDARY = "{column} < %(boundary)s"
ENDS_BY_BOUNDARY = "{column} <= %(boundary)s"
DAY_BEFORE_BOUNDARY = "{column} < %(boundary_day)s"
# (table, time column, condition, extra condition, grain): each rollup and the setting of its grain.
ROLLUPS = (
    ("analytics_minute_count", "minute", BEFORE_BOUNDARY, "", "minute"),
    ("analytics_processing_minute", "minute", BEFORE_BOUNDARY, "", "minute"),
    ("analytics_hour_count", "hour", BEFORE_BOUNDARY, "", "hour"),
    ("analytics_hour_dimension", "hour", BEFORE_BOUNDARY, "", "hour"),
    ("analytics_user_sketch", "start", BEFORE_BOUNDARY, " AND grain = 'h'", "hour"),
    ("analytics_day_count", "day", BEFORE_BOUNDARY, "", "day"),
    ("analytics_day_dimension", "day", BEFORE_BOUNDARY, "", "day"),
    ("analytics_user_sketch", "start", BEFORE_BOUNDARY, " AND grain = 'd'", "day"),
    ("analytics_person_day", "day", DAY_BEFORE_BOUNDARY, "", "day"),
    ("analytics_sketch_span", "hi", ENDS_BY_BOUNDARY, "", "day"),
)
GRAIN_STEPS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# First sightings before the day boundary, a chunk at a time from the oldest (index on
# (stream, type, first_at)): each moves on to the person's first kept day row, or goes when
# there is none. The day rows have no index by person, so the first kept one is found by one
# primary-key probe per day from the boundary to the stream's newest day, as erasure finds it
# (streams/erasure.py): a person who left costs a probe per kept day, hence the small chunk.
# A processed row is at or after the boundary, or gone, so every chunk makes progress.
_PERSON_FIRST_CHUNK = 500
_PERSON_FIRST_CHUNK_SQL = """
WITH old AS (
    SELECT person FROM analytics_person_first
    WHERE stream_id = %(stream)s AND type = '' AND first_at < %(boundary)s
    ORDER BY first_at LIMIT %(chunk)s
), kept AS (
    SELECT o.person, k.first_at FROM old o
    LEFT JOIN LATERAL (
        SELECT d.first_at
        FROM generate_series(%(boundary_day)s::date, GREATEST(%(boundary_day)s::date, (
            SELECT max(day) FROM analytics_person_day WHERE stream_id = %(stream)s AND type = '')),
            interval '1 day') AS g(day)
        CROSS JOIN LATERAL (
            SELECT first_at FROM analytics_person_day
            WHERE stream_id = %(stream)s AND type = '' AND day = g.day::date AND person = o.person
        ) AS d
        ORDER BY g.day LIMIT 1
    ) AS k ON true
), moved AS (
    UPDATE analytics_person_first p SET first_at = k.first_at FROM kept k
    WHERE p.stream_id = %(stream)s AND p.type = '' AND p.person = k.person
      AND k.first_at IS NOT NULL AND p.first_at < %(boundary)s
    RETURNING 1
), gone AS (
    DELETE FROM analytics_person_first p USING kept k
    WHERE p.stream_id = %(stream)s AND p.type = '' AND p.person = k.person
      AND k.first_at IS NULL AND p.first_at < %(boundary)s
    RETURNING 1
)
SELECT (SELECT count(*) FROM old), (SELECT count(*) FROM moved), (SELECT count(*) FROM gone)
"""
# One person's session state, a chunk of a stream's oldest-touched rows at a time. touched_at is
# checked again on the row the DELETE finds: a processor that used the row meanwhile keeps it.
_SESSIONS_CHUNK_SQL = """
DELETE FROM ingestion_session_state WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM ingestion_session_state
    WHERE stream_id = %(stream)s AND touched_at < %(cutoff)s LIMIT %(chunk)s))
  AND touched_at < %(cutoff)s
"""


@dataclass
class RetentionOutcome:
    partitions_created: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)
    events_deleted: int = 0
    rows_deleted: dict[str, int] = field(default_factory=dict)
    finished: bool = True
    # The parts that raised (logged and counted); the others were attempted all the same.
    failed: list[str] = field(default_factory=list)


class RetentionFailed(Exception):
    """Some parts of a retention run failed; the others ran (the task reports it as failed)."""

    def __init__(self, parts: list[str]) -> None:
        super().__init__(f"retention parts failed: {', '.join(parts)}")
        self.parts = parts


@dataclass(frozen=True)
class Partition:
    name: str
    low: datetime | None  # None: MINVALUE (the legacy partition of a migrated log)
    high: datetime
    detach_pending: bool = False


def _bound(text: str) -> datetime | None:
    if text == "MINVALUE":
        return None
    return datetime.fromisoformat(text.strip("'").replace(" ", "T")).astimezone(UTC)


def _day(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def log_partitions() -> list[Partition]:
    """The log's partitions, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(_PARTITIONS_SQL)
        rows = cursor.fetchall()
    parts = [Partition(name, _bound(low), _bound(high), pending) for name, pending, low, high in rows]  # type: ignore[arg-type]
    return sorted(parts, key=lambda p: p.high)


def log_partitions_ahead(*, now: datetime | None = None) -> timedelta:
    """How long appends still find a partition: from ``now`` to the end of the partitions that
    follow on without a gap from the one holding ``now`` (zero when none holds it)."""
    now = now or timezone.now()
    end: datetime | None = None
    for partition in log_partitions():  # oldest first, and they do not overlap
        if partition.detach_pending:
            continue
        if end is None:
            if (partition.low is None or partition.low <= now) and now < partition.high:
                end = partition.high
        elif partition.low == end:
            end = partition.high
    return max(timedelta(0), end - now) if end is not None else timedelta(0)


def log_partitions_ensure(*, now: datetime | None = None, days_ahead: int | None = None) -> list[str]:
    """Create the daily partitions from yesterday to ``days_ahead`` days ahead that are missing.

    Each is made as a table of its own (indexes built while it is empty) and
    attached, which takes SHARE UPDATE EXCLUSIVE on the log: appends and reads
    go on. CREATE TABLE … PARTITION OF would take ACCESS EXCLUSIVE instead.
    """
    now = now or timezone.now()
    days_ahead = conf.get().log_partitions_ahead_days if days_ahead is None else days_ahead
    existing = log_partitions()
    created = []
    day = _day(now) - timedelta(days=1)
    while day <= _day(now) + timedelta(days=days_ahead):
        end = day + timedelta(days=1)
        covered = any((p.low is None or p.low < end) and day < p.high for p in existing)
        if not covered:
            name = f"{PARTITION_PREFIX}{day:%Y%m%d}"
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                cursor.execute(
                    f"CREATE TABLE {name} (LIKE streams_log INCLUDING DEFAULTS INCLUDING STORAGE INCLUDING COMPRESSION)"
                )
                cursor.execute(f'ALTER TABLE {name} ADD CONSTRAINT {name}_pkey PRIMARY KEY (stream_id, "offset")')
                cursor.execute(
                    f"ALTER TABLE streams_log ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)", [day, end]
                )
            created.append(name)
        day = end
    return created


def _expire_stream_rows(*, table: str, stream_id: int, cutoff: datetime, deadline: float) -> tuple[int, bool]:
    """Delete one stream's events logged before ``cutoff`` from one partition. Returns (deleted, finished)."""
    deleted = 0
    while time.monotonic() < deadline:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                _EXPIRE_CHUNK_SQL.format(table=table), {"stream": stream_id, "cutoff": cutoff, "chunk": CHUNK}
            )
            count = int(cursor.fetchone()[0])  # type: ignore[index]
        deleted += count
        if count < CHUNK:
            return deleted, True
    return deleted, False


def _drop_detached(table: str, *, deadline: float) -> tuple[int, bool]:
    """Take a detached partition's keys out of the key table in chunks, then drop it."""
    position = (-1, -1)
    removed = 0
    while time.monotonic() < deadline:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                _DETACHED_KEYS_SQL.format(table=table),
                {"stream": position[0], "offset": position[1], "chunk": CHUNK},
            )
            row = cursor.fetchone()
        if row is None:
            with connection.cursor() as cursor:
                cursor.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
                try:
                    cursor.execute(f"DROP TABLE {table}")
                finally:
                    cursor.execute("RESET lock_timeout")
            return removed, True
        removed += CHUNK
        position = (int(row[0]), int(row[1]))
    return removed, False


def _detach(partition: Partition) -> None:
    # CONCURRENTLY: SHARE UPDATE EXCLUSIVE on the log, waiting for the transactions
    # that use it to end; it cannot run inside a transaction.
    if connection.in_atomic_block:
        raise RuntimeError("detaching a partition concurrently must run outside a transaction")
    with connection.cursor() as cursor:
        cursor.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        try:
            if partition.detach_pending:
                cursor.execute(f"ALTER TABLE streams_log DETACH PARTITION {partition.name} FINALIZE")
            else:
                cursor.execute(f"ALTER TABLE streams_log DETACH PARTITION {partition.name} CONCURRENTLY")
        finally:
            cursor.execute("RESET lock_timeout")


def _expire_holders(
    partition: Partition, holders: dict[int, int], *, now: datetime, deadline: float, outcome: RetentionOutcome
) -> bool:
    """Delete the events of the streams whose retention has passed from a partition others still keep.

    A daily partition's events of a stream go when the whole day is past the
    stream's retention (an event is kept at least retention_days, at most a day
    more); the legacy partition of a migrated log has no day, and goes event by
    event, from its oldest.
    """
    for stream_id, days in holders.items():
        cutoff = now - timedelta(days=days)
        if partition.low is not None:
            if partition.high > cutoff:
                continue
            cutoff = partition.high
        deleted, done = _expire_stream_rows(table=partition.name, stream_id=stream_id, cutoff=cutoff, deadline=deadline)
        outcome.events_deleted += deleted
        if not done:
            outcome.finished = False
            return False
    return True


def log_expire(*, now: datetime, deadline: float, outcome: RetentionOutcome) -> None:
    """Drop the partitions every stream is done with; delete the expired events of the others."""
    with connection.cursor() as cursor:
        cursor.execute(_DETACHED_SQL)
        leftovers = [row[0] for row in cursor.fetchall()]
    for table in leftovers:
        _, done = _drop_detached(table, deadline=deadline)
        if not done:
            outcome.finished = False
            return
        outcome.partitions_dropped.append(table)
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, retention_days FROM streams_stream")
        retention = dict(cursor.fetchall())
    shortest = min(retention.values(), default=0)
    for partition in log_partitions():
        if partition.detach_pending:
            # A run stopped between the two steps of a concurrent detach.
            _detach(partition)
        elif partition.high > now - timedelta(days=shortest):
            break
        else:
            with connection.cursor() as cursor:
                cursor.execute(_HOLDERS_SQL.format(table=partition.name))
                holders = dict(cursor.fetchall())
            if any(partition.high > now - timedelta(days=days) for days in holders.values()):
                # Kept for some stream: delete only the events of those done with it.
                if not _expire_holders(partition, holders, now=now, deadline=deadline, outcome=outcome):
                    return
                continue
            _detach(partition)
        _, done = _drop_detached(partition.name, deadline=deadline)
        if not done:
            outcome.finished = False
            return
        outcome.partitions_dropped.append(partition.name)
    with connection.cursor() as cursor:
        for stream_id, days in retention.items():
            cursor.execute(_SEGMENTS_SQL, {"stream": stream_id, "cutoff": now - timedelta(days=days)})


def _delete_chunks(sql: str, params: dict[str, Any], *, deadline: float) -> tuple[int, bool]:
    deleted = 0
    while time.monotonic() < deadline:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, {**params, "chunk": CHUNK})
            count = cursor.rowcount
        deleted += count
        if count < CHUNK:
            return deleted, True
    return deleted, False


BY_ID_TABLES = ("ingestion_deadletter", "consumers_deliveryattempt")


def by_id_expire(*, table: str, now: datetime, deadline: float, outcome: RetentionOutcome) -> None:
    """Dead letters or delivery attempts older than their setting, oldest first."""
    settings = conf.get()
    days = {
        "ingestion_deadletter": settings.dead_letter_retention_days,
        "consumers_deliveryattempt": settings.delivery_attempt_retention_days,
    }[table]
    sql = _BY_ID_CHUNK_SQL.format(table=table, column="created_at")
    deleted, done = _delete_chunks(sql, {"cutoff": now - timedelta(days=days)}, deadline=deadline)
    outcome.rows_deleted[table] = outcome.rows_deleted.get(table, 0) + deleted
    if not done:
        outcome.finished = False


def rollup_boundary(*, now: datetime, grain: str) -> datetime:
    """The start of the oldest bucket of ``grain`` that rollup retention keeps.

    A bucket (a UTC minute, hour or day) goes once all of it is older than its
    grain's setting, as a log partition goes once its whole day is: every rollup
    of a grain asks this one function, so a day's counts, dimensions, sketches
    and active people are kept, or go, together.
    """
    settings = conf.get()
    days = {
        "minute": settings.rollup_minute_retention_days,
        "hour": settings.rollup_hour_retention_days,
        "day": settings.rollup_day_retention_days,
    }[grain]
    cutoff = now - timedelta(days=days)
    return cutoff - (cutoff - _EPOCH) % GRAIN_STEPS[grain]


def _stream_ids() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM streams_stream ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def rollups_expire(*, now: datetime, deadline: float, outcome: RetentionOutcome) -> None:
    """Rollup rows whose bucket is wholly before its grain's boundary."""
    streams = _stream_ids()
    for table, column, condition, extra, grain in ROLLUPS:
        boundary = rollup_boundary(now=now, grain=grain)
        sql = _PER_STREAM_CHUNK_SQL.format(table=table, condition=condition.format(column=column) + extra)
        for stream_id in streams:
            params = {"stream": stream_id, "boundary": boundary, "boundary_day": boundary.date()}
            deleted, done = _delete_chunks(sql, params, deadline=deadline)
            outcome.rows_deleted[table] = outcome.rows_deleted.get(table, 0) + deleted
            if not done:
                outcome.finished = False
                return


def person_first_expire(*, now: datetime, deadline: float, outcome: RetentionOutcome) -> None:
    """First sightings before the day rollups' boundary: moved on to the person's first kept day, or gone.

    ``analytics_person_first`` then holds what ``activity_rebuild_first`` would count from
    the kept ``analytics_person_day`` rows, which go at the same boundary: cohorts are
    people first seen within what is kept, and a person whose days all expired is new
    when they come back (README, Retention).
    """
    boundary = rollup_boundary(now=now, grain="day")
    params: dict[str, Any] = {"boundary": boundary, "boundary_day": boundary.date(), "chunk": _PERSON_FIRST_CHUNK}
    table = "analytics_person_first"
    for stream_id in _stream_ids():
        while True:
            if time.monotonic() >= deadline:
                outcome.finished = False
                return
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(_PERSON_FIRST_CHUNK_SQL, {**params, "stream": stream_id})
                read, _moved, gone = cursor.fetchone()  # type: ignore[misc]
            outcome.rows_deleted[table] = outcome.rows_deleted.get(table, 0) + int(gone)
            if read < _PERSON_FIRST_CHUNK:
                break


def sessions_expire(*, now: datetime, deadline: float, outcome: RetentionOutcome) -> None:
    """Session state that processing has not used for the stream's retention_days.

    The events that used a row were logged no later than it was last used, so it
    goes when they may have gone. ``touched_at`` is renewed at most every
    TOUCH_EVERY, which is added so that no row goes sooner; and never sooner than
    a session can stay idle (SESSION_GAP), so an open session is never cut.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, retention_days FROM streams_stream ORDER BY id")
        retention = cursor.fetchall()
    table = "ingestion_session_state"
    for stream_id, days in retention:
        cutoff = now - max(timedelta(days=days) + TOUCH_EVERY, SESSION_GAP)
        deleted, done = _delete_chunks(_SESSIONS_CHUNK_SQL, {"stream": stream_id, "cutoff": cutoff}, deadline=deadline)
        outcome.rows_deleted[table] = outcome.rows_deleted.get(table, 0) + deleted
        if not done:
            outcome.finished = False
            return


def retention_run(*, now: datetime | None = None, budget_seconds: float = 300.0) -> RetentionOutcome:
    """One pass: partitions ahead, the log's expiry, then the other tables. Safe to run twice at once.

    Each part is attempted even when one before it failed (a lock timeout on a
    partition must not keep dead letters or rollups forever); a failed part is
    logged, counted (eventflow_retention_part_failures_total) and named in
    ``failed``. A run in which no part failed sets
    eventflow_retention_last_success_timestamp_seconds.
    """
    now = now or timezone.now()
    deadline = time.monotonic() + budget_seconds
    outcome = RetentionOutcome()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [RETENTION_LOCK])
        if not cursor.fetchone()[0]:  # type: ignore[index]
            outcome.finished = False
            return outcome
    parts: tuple[tuple[str, Callable[[], object]], ...] = (
        ("partitions_ahead", lambda: outcome.partitions_created.extend(log_partitions_ensure(now=now))),
        ("log", lambda: log_expire(now=now, deadline=deadline, outcome=outcome)),
        (
            "dead_letters",
            lambda: by_id_expire(table="ingestion_deadletter", now=now, deadline=deadline, outcome=outcome),
        ),
        (
            "delivery_attempts",
            lambda: by_id_expire(table="consumers_deliveryattempt", now=now, deadline=deadline, outcome=outcome),
        ),
        ("rollups", lambda: rollups_expire(now=now, deadline=deadline, outcome=outcome)),
        ("person_first", lambda: person_first_expire(now=now, deadline=deadline, outcome=outcome)),
        ("sessions", lambda: sessions_expire(now=now, deadline=deadline, outcome=outcome)),
    )
    try:
        for name, part in parts:
            try:
                part()
            except Exception:
                # Most often a lock timeout on a partition: the next run tries again.
                logger.exception("retention: %s failed; the other parts go on", name)
                outcome.failed.append(name)
                child(RETENTION_PART_FAILURES, name).inc()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [RETENTION_LOCK])
    if not outcome.failed:
        RETENTION_LAST_SUCCESS.set(time.time())
    logger.info(
        "retention: %d partitions created, %d dropped, %d events deleted, rows deleted %s%s%s",
        len(outcome.partitions_created),
        len(outcome.partitions_dropped),
        outcome.events_deleted,
        outcome.rows_deleted,
        "" if outcome.finished else " (budget spent, the next run goes on)",
        f" (failed: {', '.join(outcome.failed)})" if outcome.failed else "",
    )
    return outcome
