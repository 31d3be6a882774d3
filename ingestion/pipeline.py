"""Processing: inbox → validate → enrich → stream log (or dead letters).

One batch is one transaction: the good events are appended with the next
offsets, the rollups move with them, and the batch leaves the inbox. A failing
event is taken out of its batch and retried alone with backoff; after
MAX_ATTEMPTS it becomes a dead letter. Running a batch twice is harmless: the
log refuses an event_id it already holds.

Only the append needs the stream's lock. A drain that finds a backlog reads,
validates, enriches and counts each next batch on a thread of its own while the
one before is written (``ReadAhead``), and doubles its batches up to
``BACKLOG_BATCH_FACTOR`` times PROCESS_BATCH_SIZE: one stream has one writer, and
this is what that writer's ceiling is made of (docs/BENCHMARKS.md, *Processing: the
single writer's ceiling*).
"""

from __future__ import annotations

import gc
import logging
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from analytics.alerts import alerts_evaluate
from analytics.services import Counted, processing_stats_record, rollups_apply, rollups_count
from eventflow import conf
from eventflow.celery_helpers import backoff_seconds
from eventflow.db import bound_cursor
from eventflow.metrics import processing_counted
from streams.dead_letters import DeadLetterIn, dead_letters_record
from streams.log import LogRecord, log_append
from streams.models import DeadLetterStage, SchemaMode, Stream
from streams.schemas import compiled_validator, validation_errors
from streams.selectors import latest_schemas

from .enrichment import SessionNeed, enrich, sessions_assign, violations_without_ip

logger = logging.getLogger(__name__)

# pg_try_advisory_xact_lock(class, stream_id): one processor per stream at a time.
PROCESS_LOCK_CLASS = 7301

_FETCH_SQL = """
SELECT id, event_id, type, event_time, received_at, user_id, anonymous_id, session_id,
       payload, context, flags, attempts, first_failed_at, api_key_id
FROM ingestion_inbox
WHERE stream_id = %s AND next_attempt_at <= now()
ORDER BY id
LIMIT %s
"""
# The batch after the one being written: the rows past it, and any earlier one due for
# a retry (the batch being written may retry some of them: _still_due sorts that out).
_FETCH_AHEAD_SQL = """
SELECT id, event_id, type, event_time, received_at, user_id, anonymous_id, session_id,
       payload, context, flags, attempts, first_failed_at, api_key_id
FROM ingestion_inbox
WHERE stream_id = %s AND next_attempt_at <= now() AND (id > %s OR attempts > 0)
ORDER BY id
LIMIT %s
"""
# A batch read ahead is written only with the rows that are still due and untouched:
# another processor may have taken the stream between two batches.
_STILL_DUE_SQL = """
SELECT id, attempts FROM ingestion_inbox WHERE id = ANY(%b) AND next_attempt_at <= now()
"""
_DELETE_SQL = "DELETE FROM ingestion_inbox WHERE id = ANY(%s::bigint[])"
_RETRY_SQL = """
UPDATE ingestion_inbox AS i
SET attempts = r.attempts, next_attempt_at = r.next_attempt_at, last_error = r.last_error,
    first_failed_at = COALESCE(i.first_failed_at, r.failed_at)
FROM json_to_recordset(%s::json) AS r(
    id bigint, attempts int, next_attempt_at timestamptz, last_error text, failed_at timestamptz)
WHERE i.id = r.id
"""
_DUE_SQL = "SELECT EXISTS (SELECT 1 FROM ingestion_inbox WHERE stream_id = %s AND next_attempt_at <= now())"
_STREAMS_DUE_SQL = """
SELECT s.id FROM streams_stream s
WHERE EXISTS (SELECT 1 FROM ingestion_inbox i WHERE i.stream_id = s.id AND i.next_attempt_at <= now())
ORDER BY s.id
"""


# A drain that finds a backlog doubles its batches, up to this many times PROCESS_BATCH_SIZE.
# Most of a batch's rollup rows and sketches are the same however many events it holds
# (its minutes, hours, types and dimension values): measured with bench/process.py's
# events, 863 count rows and 179 sketches for 1,000 events, 974 and 180 for 5,000.
BACKLOG_BATCH_FACTOR = 8


def _next_limit(limit: int) -> int:
    return min(limit * 2, conf.get().process_batch_size * BACKLOG_BATCH_FACTOR)


class SchemaViolation(Exception):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


@dataclass(slots=True)
class InboxRow:
    id: int
    event_id: str
    type: str
    event_time: datetime
    received_at: datetime
    user_id: str | None
    anonymous_id: str | None
    session_id: str | None
    payload: dict[str, Any]
    context: dict[str, Any]
    flags: dict[str, Any]
    attempts: int
    first_failed_at: datetime | None = None
    api_key_id: int | None = None

    def as_event(self) -> dict[str, Any]:
        """The event as a dead letter keeps it (and as replay sends it back)."""
        return {
            "event_id": self.event_id,
            "type": self.type,
            "event_time": self.event_time.isoformat(),
            "received_at": self.received_at.isoformat(),
            "user_id": self.user_id,
            "anonymous_id": self.anonymous_id,
            "session_id": self.session_id,
            "payload": self.payload,
            "context": self.context,
            "flags": self.flags,
        }


@dataclass
class Failure:
    row: InboxRow
    stage: str
    error: BaseException
    trace: str


@dataclass
class BatchOutcome:
    busy: bool = False
    fetched: int = 0
    appended: int = 0
    duplicates: int = 0
    retried: int = 0
    dead_lettered: int = 0
    full: bool = False
    offsets: list[int] = field(default_factory=list)
    # For the metrics, counted once the batch has committed (not summed by add()).
    latencies_ms: list[int] = field(default_factory=list)
    dead_by_stage: dict[str, int] = field(default_factory=dict)

    def add(self, other: BatchOutcome) -> None:
        self.fetched += other.fetched
        self.appended += other.appended
        self.duplicates += other.duplicates
        self.retried += other.retried
        self.dead_lettered += other.dead_lettered


def _id_array(ids: Sequence[int]) -> str:
    # The array's text form: psycopg dumps a list element by element in Python,
    # about 0.7 ms for a batch's thousand ids.
    return "{" + ",".join(map(str, ids)) + "}"


def _inbox_row(r: tuple[Any, ...]) -> InboxRow:
    # Columns in _FETCH_SQL order; the bound cursor has already loaded jsonb and timestamps.
    return InboxRow(*r)


def _retry_delay(attempts: int) -> float:
    settings = conf.get()
    return backoff_seconds(attempts, base=settings.retry_base_seconds, cap=settings.retry_max_seconds)


# An inbox row that passed validation and enrichment, its log record (whose session is
# filled in under the stream's lock when it came without one), and that session's need.
Checked = tuple[InboxRow, LogRecord, SessionNeed | None]


@dataclass
class _Batch:
    """Inbox rows read, validated and enriched, waiting to be written."""

    rows: list[InboxRow]
    limit: int
    checked: list[Checked] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    stream_slug: str = ""
    full: bool = False
    # The rollups of every checked row, counted with the batch (None: count after the append).
    counted: Counted | None = None

    def __post_init__(self) -> None:
        # Decided when the rows are read: rows that _still_due drops don't make a backlog smaller.
        self.full = len(self.rows) >= self.limit

    def keep(self, ids: set[int]) -> None:
        """Only the rows in ``ids`` stay (and their checks and failures)."""
        self.rows = [row for row in self.rows if row.id in ids]
        self.checked = [item for item in self.checked if item[0].id in ids]
        self.failures = [failure for failure in self.failures if failure.row.id in ids]
        self.counted = None


def _check(
    rows: Sequence[InboxRow], *, stream: Stream, schemas: dict[str, tuple[int, dict[str, Any]]]
) -> tuple[list[Checked], list[Failure]]:
    """Validate and enrich each row on its own: no database, a failure costs only its event."""
    validate = stream.schema_mode != SchemaMode.OFF
    # Enforce refuses violations at the intake, but a replayed letter (or an event accepted
    # before the mode or the schema changed) never passed that check: it is refused here.
    refuse = stream.schema_mode in (SchemaMode.ENFORCE, SchemaMode.QUARANTINE)
    validators: dict[str, Any] = {}
    checked: list[Checked] = []
    failures: list[Failure] = []
    for row in rows:
        stage = DeadLetterStage.VALIDATE
        try:
            flags = row.flags
            if validate and row.type in schemas:
                validator = validators.get(row.type)
                if validator is None:
                    validator = validators[row.type] = compiled_validator(*schemas[row.type])
                errors = validation_errors(validator, row.payload)
                if errors:
                    if refuse:
                        raise SchemaViolation(errors)
                    if stream.anonymize_ip:
                        errors = violations_without_ip(errors, payload=row.payload)
                    flags = {**flags, "schema_violations": errors}
            stage = DeadLetterStage.ENRICH
            enriched = enrich(payload=row.payload, context=row.context, anonymize=stream.anonymize_ip)
        except Exception as exc:  # noqa: BLE001 - a failure that belongs to one event costs only that event
            failures.append(Failure(row, stage, exc, traceback.format_exc()))
            continue
        need = None
        if row.session_id is None and (row.user_id or row.anonymous_id):
            identity = f"u:{row.user_id}" if row.user_id else f"a:{row.anonymous_id}"
            need = SessionNeed(identity=identity, event_time=row.event_time)
            enriched.enrichment["session_derived"] = True
        record = LogRecord(
            event_id=row.event_id,
            type=row.type,
            event_time=row.event_time,
            received_at=row.received_at,
            user_id=row.user_id,
            anonymous_id=row.anonymous_id,
            session_id=row.session_id,
            payload=enriched.payload,
            context=enriched.context,
            enrichment=enriched.enrichment,
            flags=flags,
            api_key_id=row.api_key_id,
        )
        checked.append((row, record, need))
    return checked, failures


def _records(*, stream_id: int, checked: list[Checked]) -> tuple[list[tuple[InboxRow, LogRecord]], list[Failure]]:
    """The log records of the checked rows, with the sessions of those that came without one.

    Returns the records and the failures of rows whose session could not be assigned.
    The caller holds the stream's processing lock (the session state is read and written).
    """
    needs = [need for _, _, need in checked if need is not None]
    if not needs:
        return [(row, record) for row, record, _ in checked], []
    failed = _sessions_assign_isolated(stream_id=stream_id, needs=needs)
    records: list[tuple[InboxRow, LogRecord]] = []
    failures: list[Failure] = []
    for row, record, need in checked:
        if need is not None:
            if need.identity in failed:
                error, trace = failed[need.identity]
                failures.append(Failure(row, DeadLetterStage.ENRICH, error, trace))
                continue
            record.session_id = need.session_id
        records.append((row, record))
    return records, failures


def _sessions_assign_isolated(*, stream_id: int, needs: list[SessionNeed]) -> dict[str, tuple[BaseException, str]]:
    """Assign the sessions; when that fails, again identity by identity. Returns the identities that failed.

    Sessions run outside ``_check``'s per-event isolation (they need the lock): without
    this, one event they choke on would fail its whole batch on every retry. The
    savepoint costs two round trips a batch.
    """
    try:
        with transaction.atomic():
            sessions_assign(stream_id=stream_id, needs=needs)
        return {}
    except Exception as exc:
        if _is_transient(exc):
            raise
    # An identity's events depend on each other (one session state row); identities don't.
    by_identity: dict[str, list[SessionNeed]] = {}
    for need in needs:
        by_identity.setdefault(need.identity, []).append(need)
    failed: dict[str, tuple[BaseException, str]] = {}
    for identity, of_identity in by_identity.items():
        try:
            with transaction.atomic():
                sessions_assign(stream_id=stream_id, needs=of_identity)
        except Exception as exc:
            if _is_transient(exc):
                raise
            failed[identity] = (exc, traceback.format_exc())
    return failed


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, (OperationalError, InterfaceError))


def _append(
    *,
    stream_id: int,
    good: list[tuple[InboxRow, LogRecord]],
    now: datetime,
    logged_latencies: list[int],
    counted: Counted | None = None,
) -> tuple[list[int], list[int], list[InboxRow], list[Failure]]:
    """Append, isolating an event that the database refuses. Returns (offsets, done ids, duplicates, failures).

    ``logged_latencies`` receives the accepted→logged milliseconds of the appended events
    (what a rolled-back savepoint added is taken out again).
    """
    mark = len(logged_latencies)
    try:
        with transaction.atomic():
            return (
                *_append_all(
                    stream_id=stream_id, good=good, now=now, logged_latencies=logged_latencies, counted=counted
                ),
                [],
            )
    except Exception as exc:
        del logged_latencies[mark:]
        if _is_transient(exc) or len(good) == 1:
            if _is_transient(exc):
                raise
            return [], [], [], [Failure(good[0][0], DeadLetterStage.APPEND, exc, traceback.format_exc())]
    # One event spoils the batch: append one at a time to find it.
    offsets: list[int] = []
    done: list[int] = []
    duplicates: list[InboxRow] = []
    failures: list[Failure] = []
    for item in good:
        mark = len(logged_latencies)
        try:
            with transaction.atomic():
                o, d, dup = _append_all(stream_id=stream_id, good=[item], now=now, logged_latencies=logged_latencies)
        except Exception as exc:
            del logged_latencies[mark:]
            if _is_transient(exc):
                raise
            failures.append(Failure(item[0], DeadLetterStage.APPEND, exc, traceback.format_exc()))
            continue
        offsets += o
        done += d
        duplicates += dup
    return offsets, done, duplicates, failures


def _append_all(
    *,
    stream_id: int,
    good: list[tuple[InboxRow, LogRecord]],
    now: datetime,
    logged_latencies: list[int],
    counted: Counted | None = None,
) -> tuple[list[int], list[int], list[InboxRow]]:
    result = log_append(stream_id=stream_id, records=[record for _, record in good], logged_at=now)
    # ``counted`` holds every record of ``good``: it serves only when the log took them all.
    rollups_apply(
        stream_id=stream_id,
        records=[record for _, record in result.appended],
        counted=counted if len(result.appended) == len(good) else None,
    )
    alerts_evaluate(stream_id=stream_id, appended=result.appended, now=now)
    latencies = [max(0, int((now - record.received_at).total_seconds() * 1000)) for _, record in result.appended]
    processing_stats_record(
        stream_id=stream_id, at=now, latencies_ms=latencies, received=[r.received_at for _, r in result.appended]
    )
    logged_ids = {record.event_id for _, record in result.appended}
    rows_by_event = {row.event_id: row for row, _ in good}
    duplicates = [rows_by_event[r.event_id] for r in result.already_logged if r.event_id in rows_by_event]
    duplicates = [row for row in duplicates if row.event_id not in logged_ids]
    logged_latencies += latencies
    return [o for o, _ in result.appended], [row.id for row, _ in good], duplicates


def _record_failures(*, stream_id: int, failures: Sequence[Failure], now: datetime) -> tuple[int, int]:
    """Schedule a retry for each failed event, or dead-letter it after its last attempt."""
    max_attempts = conf.get().max_attempts
    retries: list[dict[str, Any]] = []
    dead: list[DeadLetterIn] = []
    dead_ids: list[int] = []
    for failure in failures:
        attempts = failure.row.attempts + 1
        message = f"{type(failure.error).__name__}: {failure.error}"[:2000]
        if attempts >= max_attempts:
            dead_ids.append(failure.row.id)
            event = failure.row.as_event()
            if isinstance(failure.error, SchemaViolation):
                event["schema_errors"] = failure.error.errors
            dead.append(
                DeadLetterIn(
                    stream_id=stream_id,
                    event_id=failure.row.event_id,
                    event=event,
                    stage=failure.stage,
                    error_class=type(failure.error).__name__,
                    error_message=str(failure.error),
                    traceback=failure.trace,
                    attempts=attempts,
                    first_failed_at=failure.row.first_failed_at or now,
                )
            )
        else:
            retries.append(
                {
                    "id": failure.row.id,
                    "attempts": attempts,
                    "next_attempt_at": now + timedelta(seconds=_retry_delay(attempts)),
                    "failed_at": now,
                    "last_error": f"[{failure.stage}] {message}",
                }
            )
    with connection.cursor() as cursor:
        if retries:
            cursor.execute(_RETRY_SQL, [orjson.dumps(retries).decode()])
        if dead:
            dead_letters_record(letters=dead, now=now)
            cursor.execute(_DELETE_SQL, [_id_array(dead_ids)])
    if retries or dead:
        dead_rows = [failure.row for failure in failures if failure.row.attempts + 1 >= max_attempts]
        processing_stats_record(
            stream_id=stream_id,
            at=now,
            latencies_ms=[],
            dead_letters=len(dead),
            retries=len(retries),
            received=[letter.received_at for letter in dead_rows],
        )
    return len(retries), len(dead)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Hold the cyclic garbage collector off while a batch is in hand.

    A batch holds some hundred thousand young objects (rows, dicts, records);
    the collector would walk them again and again, and promote them, only
    for reference counting to free them when the batch is done. That cost
    about a sixth of the processor's CPU. Cycles made meanwhile are collected
    after the batch.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _read_batch(*, stream_id: int, limit: int, after_id: int | None = None) -> _Batch:
    """Fetch the stream's due inbox rows, then validate and enrich them.

    The caller holds the stream's processing lock, or reads ahead (``after_id``:
    the last row of the batch being written) and checks the rows again with
    ``_still_due`` once it holds the lock.
    """
    with bound_cursor() as cursor:
        if after_id is None:
            cursor.execute(_FETCH_SQL, [stream_id, limit], binary=True)
        else:
            cursor.execute(_FETCH_AHEAD_SQL, [stream_id, after_id, limit], binary=True)
        batch = _Batch(rows=[_inbox_row(r) for r in cursor.fetchall()], limit=limit)
    if batch.rows:
        stream = Stream.objects.get(pk=stream_id)
        batch.stream_slug = stream.slug
        batch.checked, batch.failures = _check(batch.rows, stream=stream, schemas=latest_schemas(stream_id))
        # Counted here, where it overlaps the previous batch's append when read ahead;
        # nothing the count reads is decided under the lock (sessions are not counted).
        try:
            batch.counted = rollups_count([record for _, record, _ in batch.checked])
        except Exception:  # counted again at the append, where one event's failure costs only that event
            logger.warning("counting a batch of stream %s failed; counting at the append", stream_id, exc_info=True)
    return batch


def _write_batch(*, stream_id: int, batch: _Batch) -> BatchOutcome:
    """Append the batch's good events, count them, take them out of the inbox, and record the failures.

    Runs inside the caller's transaction.
    """
    outcome = BatchOutcome(fetched=len(batch.rows), full=batch.full)
    failures = list(batch.failures)
    good: list[tuple[InboxRow, LogRecord]] = []
    if batch.checked:
        good, session_failures = _records(stream_id=stream_id, checked=batch.checked)
        if session_failures:
            failures += session_failures
            batch.counted = None
    now = timezone.now()
    if good:
        offsets, done_ids, duplicates, append_failures = _append(
            stream_id=stream_id, good=good, now=now, logged_latencies=outcome.latencies_ms, counted=batch.counted
        )
        failures += append_failures
        outcome.offsets = offsets
        outcome.appended = len(offsets)
        outcome.duplicates = len(duplicates)
        if done_ids:
            with bound_cursor() as cursor:
                cursor.execute(_DELETE_SQL, [_id_array(done_ids)])
    if failures:
        outcome.retried, outcome.dead_lettered = _record_failures(stream_id=stream_id, failures=failures, now=now)
        if outcome.dead_lettered:
            max_attempts = conf.get().max_attempts
            for failure in failures:
                if failure.row.attempts + 1 >= max_attempts:
                    outcome.dead_by_stage[failure.stage] = outcome.dead_by_stage.get(failure.stage, 0) + 1
    return outcome


def _still_due(batch: _Batch) -> None:
    """Keep the rows of a batch read ahead that nobody has logged, retried or dead-lettered since.

    The caller holds the stream's processing lock.
    """
    with bound_cursor() as cursor:
        cursor.execute(_STILL_DUE_SQL, [[row.id for row in batch.rows]], binary=True)
        attempts = dict(cursor.fetchall())
    if len(attempts) < len(batch.rows) or any(attempts[row.id] != row.attempts for row in batch.rows):
        batch.keep({row.id for row in batch.rows if attempts.get(row.id) == row.attempts})


class ReadAhead:
    """Reads and checks a stream's next batch on a thread of its own while the current one is written.

    Reading, validating, enriching and counting a batch took about 40 of the
    84 µs of Python CPU an event of the drain measured in docs/BENCHMARKS.md
    (*Processing: the single writer's ceiling*); done here they overlap the
    append transaction's waits on PostgreSQL instead of adding to the time the
    stream's lock is held. The thread has its own database connection, which
    ``close`` closes. Only a drain that is not inside a transaction uses it: a
    caller's uncommitted rows are invisible to another connection.
    """

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"read-ahead-{stream_id}")
        self._next: Future[_Batch] | None = None

    def start(self, *, after_id: int, limit: int) -> Future[_Batch]:
        self._next = self._pool.submit(_read_batch, stream_id=self.stream_id, limit=limit, after_id=after_id)
        return self._next

    def take(self) -> _Batch | None:
        """The batch read ahead (None if there is none or reading it failed)."""
        pending, self._next = self._next, None
        if pending is None:
            return None
        try:
            return pending.result()
        except Exception:
            logger.warning("reading ahead on stream %s failed; reading again", self.stream_id, exc_info=True)
            return None

    def close(self) -> None:
        self._next = None
        # Run on the thread: ``connection`` names each thread's own connection.
        self._pool.submit(lambda: connection.close()).result()
        self._pool.shutdown()


def stream_process_batch(*, stream_id: int, limit: int | None = None, ahead: ReadAhead | None = None) -> BatchOutcome:
    """Move one batch of the stream's due inbox rows into the log. Safe to run twice, or concurrently.

    With ``ahead``, the batch it read meanwhile is written (what is still due of
    it), and when this batch is full the next one is read ahead while it is written.
    """
    limit = limit or conf.get().process_batch_size
    with _gc_paused(), transaction.atomic():
        with bound_cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [PROCESS_LOCK_CLASS, stream_id])
            if not cursor.fetchone()[0]:  # type: ignore[index]
                if ahead is not None:
                    ahead.take()
                return BatchOutcome(busy=True)
        batch = ahead.take() if ahead is not None else None
        if batch is not None and batch.rows:
            _still_due(batch)
        if batch is None or not batch.rows:
            batch = _read_batch(stream_id=stream_id, limit=limit)
        if not batch.rows:
            return BatchOutcome()
        if ahead is not None and batch.full:
            ahead.start(after_id=batch.rows[-1].id, limit=_next_limit(limit))
        outcome = _write_batch(stream_id=stream_id, batch=batch)
    processing_counted(
        batch.stream_slug,
        latencies_ms=outcome.latencies_ms,
        dead_by_stage=outcome.dead_by_stage,
        retried=outcome.retried,
    )
    return outcome


def stream_has_due(stream_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(_DUE_SQL, [stream_id])
        return bool(cursor.fetchone()[0])


def streams_with_due_events() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(_STREAMS_DUE_SQL)
        return [row[0] for row in cursor.fetchall()]


def stream_drain(
    *, stream_id: int, budget_seconds: float = 20.0, before_recheck: Callable[[], None] | None = None
) -> BatchOutcome:
    """Process batches until the stream has nothing due or the time budget is spent.

    ``before_recheck`` is called before each look for more due rows once a
    batch is done; whatever commits after it returns is either seen by that
    look or must be asked for anew. Returns the totals; ``full`` is True when
    work remains.
    """
    deadline = time.monotonic() + budget_seconds
    total = BatchOutcome()
    limit = conf.get().process_batch_size
    ahead = ReadAhead(stream_id) if not connection.in_atomic_block else None
    try:
        while True:
            outcome = stream_process_batch(stream_id=stream_id, limit=limit, ahead=ahead)
            if outcome.busy:
                total.busy = True
                return total
            total.add(outcome)
            if outcome.full and time.monotonic() <= deadline:
                limit = _next_limit(limit)
                continue
            if before_recheck is not None:
                before_recheck()
            # The lock is released now: anything committed while we held it (whose
            # own task found us busy) is visible to this check.
            if time.monotonic() > deadline:
                total.full = stream_has_due(stream_id)
                return total
            if not stream_has_due(stream_id):
                return total
            limit = conf.get().process_batch_size
    finally:
        if ahead is not None:
            ahead.close()
