"""Erasure for privacy requests: one person's events on a stream redacted in place.

A request (``erasure_request``) is recorded and audited in one transaction and
run by a Celery task (``erasure_run``) in chunks, each its own transaction under
the stream's processing lock (the one the processor and ``rollups_rebuild``
take), so no batch is appended while a chunk rewrites rows and rollups.

- **The log keeps a tombstone.** Each of the person's events keeps its offset,
  ``event_id``, ``type``, times and ``api_key_id``; ``user_id``,
  ``anonymous_id``, ``session_id``, ``payload``, ``context`` and ``enrichment``
  are emptied and ``flags`` becomes ``{"redacted": true, "erasure_id": …}``.
  Offsets stay gapless, consumers reading the range again see the redaction,
  and a producer that sends the same ``event_id`` again is still told it is a
  duplicate (the person's data does not come back through a retry).
- **Rollups in the same transaction** (``rollups_redacted``). The type and
  time stay, so the counts per type are unchanged; the dimension counts move
  from the events' values to the tombstones' by the difference, never
  recounted from the log, which may no longer hold the other events of an
  hour (rollups outlive the log; a late event sits in a later partition than
  its hour's others). A HyperLogLog sketch cannot take a user out, so the
  sketches of the chunk's hours are rebuilt from the log where it still holds
  the whole hour, and their days from their hours (from the log for a day older
  than the hour rollups' retention, where it holds the whole day). The sketch of
  an hour or day the log holds only part of is left as it was (rebuilt, it would
  lose the others whose events have gone): its estimate still counts the person.
  The per-person activity of the chunk's people is recounted from the log for
  those days, and their first sighting from the day rows.
- **Finding the events.** By ``user_id`` through the log's index on
  (stream, user_id, event_time), earliest first, one UTC day a chunk. By
  ``anonymous_id`` there is no index (one would cost every append): the walk
  reads the stream's log one UTC day per chunk (``scan_day``), about one pass
  over it per request. Rows appended after the erasure began (offset ≥
  ``head_at_start``, whatever their time) are looked for once more at the end.
- **At the end**, in the transaction that marks it done: the person's inbox
  rows, dead letters (every stage and status, a Kafka source's refused
  messages too), session state and activity rows of the days the log no
  longer holds are deleted; alert rules grouped by the erased id lose the
  person's groups, their alerts the group value, and those alerts' ``alert``
  events become tombstones too (their inbox rows and dead letters deleted);
  the subject is blanked (its SHA-256 stays) and a second audit row records
  the counts.

Safe to run twice or concurrently: a redacted row no longer matches, and each
chunk locks the erasure's row. Between two chunks the run processes one batch
of the stream's inbox, so that a long erasure never holds its processing up.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from analytics.alerts import alerts_erase_person
from analytics.rollups import day_of, redaction_records, rollups_redacted
from consumers.kafka_services import kafka_source_erase_person
from eventflow.audit import audit_security
from eventflow.celery import app as celery_app
from eventflow.db import bound_cursor
from eventflow.errors import Invalid, NotFound
from ingestion.pipeline import PROCESS_LOCK_CLASS, stream_process_batch

from .access import Caller
from .log import log_head
from .models import Erasure, ErasureBy, ErasureStatus
from .retention import rollup_boundary

logger = logging.getLogger(__name__)

# Events redacted a transaction: the chunk's hours are recounted whole, so the lock is held for
# about the stream's events of those hours, as ``rollups_rebuild`` holds it for one hour.
CHUNK_EVENTS = 2000
# A task runs chunks for this long, then queues itself again (Celery's soft limit is 60 s).
RUN_BUDGET_SECONDS = 40.0
# The sweep queues an unfinished erasure again when nothing has moved it for this long.
STALE_SECONDS = 120
MAX_SUBJECT_CHARS = 256

_LOCK_SQL = "SELECT pg_advisory_xact_lock(%s, %s)"
_COLUMNS = 'SELECT "offset", event_time, logged_at, user_id, anonymous_id FROM streams_log'
# By user_id: the index (stream, user_id, event_time) gives the earliest events first.
_BY_USER_SQL = f"{_COLUMNS} WHERE stream_id = %s AND user_id = %s ORDER BY event_time LIMIT %s"
# By anonymous_id: one UTC day of the stream's log (index on (stream, event_time)).
_BY_ANONYMOUS_DAY_SQL = (
    f"{_COLUMNS} WHERE stream_id = %s AND event_time >= %s AND event_time < %s AND anonymous_id = %s LIMIT %s"
)
_NEXT_TIME_SQL = "SELECT min(event_time) FROM streams_log WHERE stream_id = %s AND event_time >= %s"
# What was appended since the erasure began, through the primary key's offset order.
_TAIL_SQL = f'{_COLUMNS} WHERE stream_id = %s AND "offset" >= %s AND {{column}} = %s ORDER BY "offset" LIMIT %s'
# The logged_at bounds let a log partitioned by logged_at skip the partitions the chunk cannot be in.
_REDACT_SQL = """
UPDATE streams_log
SET user_id = NULL, anonymous_id = NULL, session_id = NULL,
    payload = '{}'::jsonb, context = '{}'::jsonb, enrichment = '{}'::jsonb, flags = %s::jsonb
WHERE stream_id = %s AND "offset" = ANY(%s::bigint[]) AND logged_at >= %s AND logged_at <= %s
"""
_PERSON_DAYS_SQL = """
DELETE FROM analytics_person_day
WHERE stream_id = %(s)s AND type = '' AND day = %(d)s AND person = ANY(%(p)s::text[]);
INSERT INTO analytics_person_day (stream_id, type, day, person, first_at, last_at)
SELECT %(s)s, '', %(d)s, COALESCE(l.user_id, l.anonymous_id), min(l.event_time), max(l.event_time)
FROM streams_log l
WHERE l.stream_id = %(s)s AND l.event_time >= %(lo)s AND l.event_time < %(hi)s
  AND COALESCE(l.user_id, l.anonymous_id) = ANY(%(p)s::text[])
GROUP BY COALESCE(l.user_id, l.anonymous_id);
"""
_PERSON_FIRST_READ_SQL = """
SELECT person, first_at FROM analytics_person_first WHERE stream_id = %s AND type = '' AND person = ANY(%s::text[])
"""
# A first sighting can only move later: it is the first day row on or after the old one,
# found by one primary-key probe per day (the day rows have no index by person).
_PERSON_FIRST_DELETE_SQL = """
DELETE FROM analytics_person_first WHERE stream_id = %(s)s AND type = '' AND person = ANY(%(p)s::text[])
"""
_PERSON_FIRST_SQL = """
INSERT INTO analytics_person_first (stream_id, type, person, first_at)
SELECT %(s)s, '', p.person, f.first_at
FROM unnest(%(p)s::text[], %(since)s::date[]) AS p(person, since)
CROSS JOIN LATERAL (
    SELECT x.first_at
    FROM generate_series(p.since, GREATEST(p.since, (
        SELECT max(day) FROM analytics_person_day WHERE stream_id = %(s)s AND type = '')), interval '1 day') AS g(day)
    CROSS JOIN LATERAL (
        SELECT first_at FROM analytics_person_day
        WHERE stream_id = %(s)s AND type = '' AND day = g.day::date AND person = p.person
    ) AS x
    ORDER BY g.day LIMIT 1
) AS f
"""
_INBOX_DELETE_SQL = "DELETE FROM ingestion_inbox WHERE stream_id = %s AND {column} = %s"
# Dead letters hold the event as it entered the failing stage (inbox row or log entry).
_DEAD_LETTERS_DELETE_SQL = "DELETE FROM ingestion_deadletter WHERE stream_id = %s AND event ->> %s = %s"
_SESSIONS_DELETE_SQL = "DELETE FROM ingestion_session_state WHERE stream_id = %s AND identity = %s"
# The person's alerts' ``alert`` events: in the log (found by event id through the key table) or
# still waiting in the inbox.
_BY_EVENT_IDS_SQL = """
SELECT l."offset", l.event_time, l.logged_at, l.user_id, l.anonymous_id
FROM streams_log_key k
JOIN streams_log l ON l.stream_id = k.stream_id AND l."offset" = k."offset" AND l.logged_at = k.logged_at
WHERE k.stream_id = %s AND k.event_id = ANY(%s::text[])
"""
_INBOX_EVENTS_DELETE_SQL = "DELETE FROM ingestion_inbox WHERE stream_id = %s AND event_id = ANY(%s::text[])"
# Their letters (a webhook or consumer group that gave up on one) hold the event with the person's id.
_DEAD_LETTERS_EVENTS_DELETE_SQL = "DELETE FROM ingestion_deadletter WHERE stream_id = %s AND event_id = ANY(%s::text[])"
# The activity rollup outlives the log (README, Retention): the person's rows of the days on which the
# log no longer holds an event of anyone named so, which no chunk recounted. Not only the days before
# the log's oldest event: a late event keeps an old event time in the log while the person's events of
# later days have gone. One primary-key probe a day from the person's first sighting on (the day rows
# have no index by person; a range of days would read everyone's rows); the log is read only on the
# days that still hold a row of the person.
_OLD_ACTIVITY_DELETE_SQL = """
DELETE FROM analytics_person_day a
USING (
    SELECT g.day::date AS day
    FROM analytics_person_first f
    CROSS JOIN LATERAL generate_series(
        (f.first_at AT TIME ZONE 'UTC')::date, (now() AT TIME ZONE 'UTC')::date + 1, interval '1 day') AS g(day)
    WHERE f.stream_id = %(s)s AND f.type = '' AND f.person = %(p)s
) AS d
WHERE a.stream_id = %(s)s AND a.type = '' AND a.day = d.day AND a.person = %(p)s
  AND NOT EXISTS (
    SELECT 1 FROM streams_log l
    WHERE l.stream_id = %(s)s AND COALESCE(l.user_id, l.anonymous_id) = %(p)s
      AND l.event_time >= d.day::timestamp AT TIME ZONE 'UTC'
      AND l.event_time < (d.day + 1)::timestamp AT TIME ZONE 'UTC')
"""


def subject_hash(*, by: str, subject: str) -> str:
    return hashlib.sha256(f"{by}:{subject}".encode()).hexdigest()


@dataclass(frozen=True)
class _Row:
    offset: int
    event_time: datetime
    logged_at: datetime
    user_id: str | None
    anonymous_id: str | None

    @property
    def person(self) -> str | None:
        # As the activity rollup names a person (analytics/activity.py).
        return self.user_id if self.user_id is not None else self.anonymous_id


# --- requesting ----------------------------------------------------------------------------


@transaction.atomic
def erasure_request(*, caller: Caller | None, stream_id: int, by: str, subject: str) -> Erasure:
    """Record a request to erase the person ``subject`` (a user_id or anonymous_id) from the stream.

    An unfinished request for the same person is answered instead of a second one.
    The run is queued after commit; the sweep queues it again if that message is lost.
    """
    if by not in ErasureBy.values:
        raise Invalid("invalid_fields", "Some fields are invalid.", {"by": ["user_id or anonymous_id."]})
    if not subject or len(subject) > MAX_SUBJECT_CHARS:
        raise Invalid("invalid_fields", "Some fields are invalid.", {by: [f"1 to {MAX_SUBJECT_CHARS} characters."]})
    digest = subject_hash(by=by, subject=subject)
    open_ = (
        Erasure.objects.select_for_update()
        .filter(stream_id=stream_id, by=by, subject_hash=digest)
        .exclude(status=ErasureStatus.DONE)
        .first()
    )
    if open_ is not None:
        return open_
    erasure = Erasure.objects.create(
        stream_id=stream_id,
        by=by,
        subject=subject,
        subject_hash=digest,
        requested_by=caller.user if caller is not None else None,
        requested_by_label=caller.label[:150] if caller is not None else "",
    )
    # The subject itself never enters the audit log, which is kept unedited.
    audit_security(
        action="stream.erasure_request",
        caller=caller,
        stream_id=stream_id,
        target=f"erasure:{erasure.pk}",
        details={"by": by, "subject_sha256": digest},
    )
    transaction.on_commit(lambda: erasure_queue(erasure.pk))
    return erasure


def erasure_queue(erasure_id: int) -> None:
    # By name: streams.tasks imports this module.
    try:
        celery_app.send_task("streams.erasure_run", args=[erasure_id])
    except Exception:
        logger.warning("could not queue erasure %s; the sweep will pick it up", erasure_id, exc_info=True)


def erasures_of_stream(*, stream_id: int) -> QuerySet[Erasure]:
    return Erasure.objects.filter(stream_id=stream_id).order_by("-id")


def erasure_get(*, stream_id: int, erasure_id: int) -> Erasure:
    erasure = Erasure.objects.filter(stream_id=stream_id, pk=erasure_id).first()
    if erasure is None:
        raise NotFound("erasure_not_found", "No such erasure.")
    return erasure


# --- running -------------------------------------------------------------------------------


def erasure_run(*, erasure_id: int, budget_seconds: float = RUN_BUDGET_SECONDS) -> Erasure | None:
    """Run the erasure's chunks until it is done or the budget is spent; answers its state."""
    deadline = time.monotonic() + budget_seconds
    while True:
        with transaction.atomic():
            erasure = Erasure.objects.select_for_update().filter(pk=erasure_id).first()
            if erasure is None or erasure.status == ErasureStatus.DONE:
                return erasure
            with connection.cursor() as cursor:
                cursor.execute(_LOCK_SQL, [PROCESS_LOCK_CLASS, erasure.stream_id])
            if erasure.status == ErasureStatus.PENDING:
                erasure.status = ErasureStatus.RUNNING
                erasure.head_at_start = log_head(erasure.stream_id)
            done = _step(erasure)
            erasure.save()
        if done or time.monotonic() >= deadline:
            return erasure
        # The processor only tries the stream's lock, and this loop takes it again at once:
        # one batch of the stream's waiting events goes through between two chunks.
        stream_process_batch(stream_id=erasure.stream_id)


def erasures_stale() -> list[int]:
    """Unfinished erasures nothing has moved for a while (a lost message, a killed worker)."""
    before = timezone.now() - timedelta(seconds=STALE_SECONDS)
    return list(
        Erasure.objects.exclude(status=ErasureStatus.DONE)
        .filter(updated_at__lt=before)
        .values_list("pk", flat=True)[:100]
    )


def _step(erasure: Erasure) -> bool:
    """One chunk: redact some events, or move the walk on, or finish. True when finished."""
    rows = _next_rows(erasure)
    if rows is None:
        return False  # the walk moved on a day
    if not rows:
        rows = _tail_rows(erasure)
    if rows:
        _redact(erasure, rows)
        return False
    _finish(erasure)
    return True


def _fetch(sql: str, params: Sequence[Any]) -> list[_Row]:
    with bound_cursor() as cursor:
        cursor.execute(sql, params, binary=True)
        return [_Row(*row) for row in cursor.fetchall()]


def _next_rows(erasure: Erasure) -> list[_Row] | None:
    """The next chunk of the person's events; [] when the walk is over, None when it only moved on."""
    stream_id = erasure.stream_id
    if erasure.by == ErasureBy.USER_ID:
        rows = _fetch(_BY_USER_SQL, [stream_id, erasure.subject, CHUNK_EVENTS])
        # One UTC day a chunk: its recount of the day's activity reads that day's log once.
        return [r for r in rows if day_of(r.event_time) == day_of(rows[0].event_time)] if rows else []
    day = erasure.scan_day
    if day is None:
        day = _next_day(stream_id, datetime.min.replace(tzinfo=UTC))
        if day is None:
            return []
    rows = _fetch(_BY_ANONYMOUS_DAY_SQL, [stream_id, day, day + timedelta(days=1), erasure.subject, CHUNK_EVENTS])
    if rows:
        erasure.scan_day = day
        return rows
    following = _next_day(stream_id, day + timedelta(days=1))
    if following is None:
        erasure.scan_day = day + timedelta(days=1)
        return []
    erasure.scan_day = following
    return None


def _next_day(stream_id: int, at: datetime) -> datetime | None:
    with bound_cursor() as cursor:
        cursor.execute(_NEXT_TIME_SQL, [stream_id, at])
        row = cursor.fetchone()
    return day_of(row[0]) if row and row[0] is not None else None


def _tail_rows(erasure: Erasure) -> list[_Row]:
    if erasure.by == ErasureBy.USER_ID:
        return []  # the index has already found every row, whenever it was appended
    sql = _TAIL_SQL.format(column="anonymous_id")
    return _fetch(sql, [erasure.stream_id, erasure.head_at_start or 0, erasure.subject, CHUNK_EVENTS])


def _redact(erasure: Erasure, rows: list[_Row]) -> None:
    stream_id = erasure.stream_id
    offsets = [r.offset for r in rows]
    logged = (min(r.logged_at for r in rows), max(r.logged_at for r in rows))
    # What the rollups counted of these events, read before they become tombstones: the rollups
    # are corrected by the difference, not recounted from a log that may have lost their neighbours.
    counted = redaction_records(stream_id=stream_id, offsets=offsets, logged=logged)
    flags = orjson.dumps({"redacted": True, "erasure_id": erasure.pk}).decode()
    with bound_cursor() as cursor:
        cursor.execute(_REDACT_SQL, [flags, stream_id, offsets, *logged])
    hours_kept_from = rollup_boundary(now=timezone.now(), grain="hour")
    rollups_redacted(stream_id=stream_id, records=counted, hours_kept_from=hours_kept_from)
    days = sorted({day_of(r.event_time) for r in rows})
    _activity_recount(stream_id=stream_id, rows=rows, days=days)
    erasure.events_redacted += len(rows)


def _activity_recount(*, stream_id: int, rows: list[_Row], days: list[datetime]) -> None:
    """The chunk's people: their day rows on the chunk's days from the log, then their first sightings."""
    persons = sorted({r.person for r in rows if r.person is not None})
    if not persons:
        return
    with bound_cursor() as cursor:
        cursor.execute(_PERSON_FIRST_READ_SQL, [stream_id, persons])
        firsts = {person: first for person, first in cursor.fetchall()}
    with connection.cursor() as cursor:
        for day in days:
            cursor.execute(
                _PERSON_DAYS_SQL,
                {"s": stream_id, "d": day.date(), "p": persons, "lo": day, "hi": day + timedelta(days=1)},
            )
    since = [min(day_of(firsts[p]), days[0]) if p in firsts else days[0] for p in persons]
    with bound_cursor() as cursor:
        cursor.execute(_PERSON_FIRST_DELETE_SQL, {"s": stream_id, "p": persons})
        cursor.execute(_PERSON_FIRST_SQL, {"s": stream_id, "p": persons, "since": [d.date() for d in since]})


def _finish(erasure: Erasure) -> None:
    stream_id = erasure.stream_id
    column = erasure.by
    identity = ("u:" if column == ErasureBy.USER_ID else "a:") + erasure.subject
    with bound_cursor() as cursor:
        cursor.execute(_INBOX_DELETE_SQL.format(column=column), [stream_id, erasure.subject])
        erasure.inbox_deleted += max(cursor.rowcount, 0)
        cursor.execute(_DEAD_LETTERS_DELETE_SQL, [stream_id, column, erasure.subject])
        erasure.dead_letters_deleted += max(cursor.rowcount, 0)
        cursor.execute(_SESSIONS_DELETE_SQL, [stream_id, identity])
        erasure.sessions_deleted += max(cursor.rowcount, 0)
    with bound_cursor() as cursor:
        cursor.execute(_PERSON_FIRST_READ_SQL, [stream_id, [erasure.subject]])
        first = cursor.fetchone()
    with connection.cursor() as django_cursor:
        django_cursor.execute(_OLD_ACTIVITY_DELETE_SQL, {"s": stream_id, "p": erasure.subject})
    if first is not None:
        # Moved on to the person's first day row left (one named so by the other id), or gone.
        params = {"s": stream_id, "p": [erasure.subject], "since": [day_of(first[1]).date()]}
        with bound_cursor() as cursor:
            cursor.execute(_PERSON_FIRST_DELETE_SQL, params)
            cursor.execute(_PERSON_FIRST_SQL, params)
    # A Kafka source's refused messages: their letters keep the raw value, not the envelope's fields.
    erasure.dead_letters_deleted += kafka_source_erase_person(stream_id=stream_id, by=column, subject=erasure.subject)
    # Alert rules grouped by the person's id: their groups and the alerts raised for them.
    alert_events = alerts_erase_person(stream_id=stream_id, by=column, subject=erasure.subject)
    if alert_events:
        with bound_cursor() as cursor:
            cursor.execute(_INBOX_EVENTS_DELETE_SQL, [stream_id, alert_events])
            erasure.inbox_deleted += max(cursor.rowcount, 0)
            cursor.execute(_DEAD_LETTERS_EVENTS_DELETE_SQL, [stream_id, alert_events])
            erasure.dead_letters_deleted += max(cursor.rowcount, 0)
        rows = _fetch(_BY_EVENT_IDS_SQL, [stream_id, alert_events])
        if rows:
            _redact(erasure, rows)
    erasure.status = ErasureStatus.DONE
    erasure.subject = ""
    erasure.finished_at = timezone.now()
    audit_security(
        action="stream.erasure_done",
        stream_id=stream_id,
        target=f"erasure:{erasure.pk}",
        details={
            "by": erasure.by,
            "subject_sha256": erasure.subject_hash,
            "events_redacted": erasure.events_redacted,
            "inbox_deleted": erasure.inbox_deleted,
            "dead_letters_deleted": erasure.dead_letters_deleted,
            "sessions_deleted": erasure.sessions_deleted,
        },
    )
