"""Consumer groups: creation, leases, commits, seeks, pauses and dead letters (writes).

A group reads its stream's log from ``committed_offset``. A poll hands out the
next range under a lease that only its holder can commit; while it lives,
other members get nothing. When it expires (or is given back) the range is
handed out again with its ``delivery_count`` one higher. Records that reach
``max_deliver`` become dead letters and the group moves past them, or the
group stops, as its policy says. For pull groups the last delivery before
that is handed out alone, so a dead letter holds only the record that failed.

A replayed dead letter (``consume``, or ``deliver`` for a webhook's group)
puts its offset on the group's ``redeliveries``. The next poll hands those out
before new records, under a lease of their own: an empty range at the
committed offset, so the position does not move. Committing that lease's end
settles them; giving it back (``release``) or letting it expire hands them out
again, counted, and after ``max_deliver`` they are dead letters once more.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet

from eventflow.errors import Conflict, NotFound, Unprocessable
from eventflow.metrics import CONSUMER_OFFSETS_EXPIRED, child
from streams.dead_letters import SKIP_GROUP_GONE, SKIP_LOG_ENTRY_GONE, DeadLetterIn, dead_letters_record
from streams.log import log_head, log_offset_window
from streams.log_selectors import log_earliest_offset
from streams.models import DeadLetter, DeadLetterStage, LogEntry, Stream

from .models import ConsumerGroup, GroupKind, MaxDeliverPolicy
from .notify import CONSUMER_CHANNEL, log_notifier
from .redelivery import (
    segments_counts_sql_args,
    segments_exhausted_end,
    segments_hand_out,
    segments_head_count,
    segments_trim,
)
from .selectors import Position, log_position_resolve

logger = logging.getLogger(__name__)

# The records of a lease as one JSON document built by PostgreSQL: the poll
# path never turns rows into Python objects and back.
_RECORD_JSON = """json_build_object(
    'offset', l."offset", 'event_id', l.event_id, 'type', l.type, 'timestamp', l.event_time,
    'received_at', l.received_at, 'user_id', l.user_id, 'anonymous_id', l.anonymous_id,
    'session_id', l.session_id, 'payload', l.payload, 'context', l.context, 'enrichment', l.enrichment,
    'flags', l.flags,
    'delivery_count', {delivery_count}
)"""
_RECORDS_SQL = f"""
SELECT count(*), coalesce(json_agg({
    _RECORD_JSON.format(
        delivery_count='coalesce((%(counts)s::int[])[width_bucket(l."offset", %(bounds)s::bigint[]) + 1], 1)'
    )
} ORDER BY l."offset"), '[]')::text
FROM streams_log l
WHERE l.stream_id = %(stream_id)s AND l."offset" >= %(start)s AND l."offset" < %(end)s
"""
# Redelivered records: the offsets and counts come from the group's ``redeliveries``.
_REDELIVERED_SQL = f"""
SELECT count(*), coalesce(json_agg({_RECORD_JSON.format(delivery_count="r.count")} ORDER BY l."offset"), '[]')::text
FROM json_to_recordset(%(entries)s::json) AS r("offset" bigint, count int)
JOIN streams_log l ON l.stream_id = %(stream_id)s AND l."offset" = r."offset"
"""
_TYPE_FILTER_SQL = " AND l.type = ANY(%(types)s::text[])"
# Whether the log still keeps the entry at the group's position, with the days of the range about
# to be leased as literal bounds, so only their partitions are planned and probed: 0.1 ms on a log
# of 47 partitions, where the log's oldest offset (Merge Append over every partition) took 1.5-2.5 ms,
# mostly planning. That one is asked only when this probe misses.
_KEPT_SQL = 'SELECT 1 FROM streams_log l WHERE l.stream_id = %(stream_id)s AND l."offset" = %(start)s'

# The logged_at range ``[low, high)`` of an offset range's days (``log_offset_window``; None: unbounded).
Window = tuple[datetime | None, datetime | None]

IDLE_PAUSED = "paused"
IDLE_LEASE_HELD = "lease_held"
IDLE_CAUGHT_UP = "caught_up"


@dataclass(frozen=True)
class Lease:
    id: uuid.UUID
    start_offset: int
    end_offset: int
    expires_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "start_offset": self.start_offset,
            "end_offset": self.end_offset,
            "expires_at": self.expires_at.isoformat(),
        }


@dataclass
class PollResult:
    group_id: int
    stream_id: int
    committed_offset: int
    head: int
    paused: bool
    lease: Lease | None = None
    records_json: str = "[]"
    record_count: int = 0
    # Why no lease was given: paused, lease_held (another member) or caught_up.
    idle_reason: str | None = None
    # How long another member's lease still lives, by the database's clock (the one that times leases).
    busy_seconds: float | None = None
    dead_lettered: int = 0
    delivery_count: int = 0
    # Offsets this poll moved the group past because retention had removed them (its position was
    # below the log's oldest kept offset): they can never be delivered.
    expired_skipped: int = 0

    @property
    def next_offset(self) -> int:
        """The offset to commit once every record of the lease is handled."""
        return self.lease.end_offset if self.lease else self.committed_offset

    def as_json(self) -> bytes:
        meta = orjson.dumps(
            {
                "next_offset": self.next_offset,
                "lease": self.lease.as_dict() if self.lease else None,
                "committed_offset": self.committed_offset,
                "head": self.head,
                "lag": max(0, self.head - self.committed_offset),
                "paused": self.paused,
                "idle_reason": self.idle_reason,
                "expired_skipped": self.expired_skipped,
            }
        )
        return b'{"records":' + self.records_json.encode() + b"," + meta[1:]


@dataclass
class CommitResult:
    committed_offset: int
    head: int
    lease: Lease | None = field(default=None)


# --- helpers ---------------------------------------------------------------------------


def _not_found() -> NotFound:
    return NotFound("consumer_group_not_found", "No such consumer group.")


@dataclass
class LockedGroup:
    """A consumer group's row, locked for the rest of the transaction, with its stream's head.

    Read and written with plain SQL: the poll path runs this on every request,
    and the ORM's query building would cost more than the queries themselves.
    """

    pk: int
    stream_id: int
    name: str
    kind: str
    committed_offset: int
    deliveries: list[list[int]]
    lease_id: uuid.UUID | None
    lease_start: int | None
    lease_end: int | None
    lease_expires_at: datetime | None
    paused: bool
    paused_reason: str
    max_deliver: int
    on_max_deliver: str
    head: int
    # The database's clock: leases are timed by one clock, whichever host serves the request.
    now: datetime
    # Replayed dead letters to hand out again: [{"offset", "count", "letter", "leased"}, …] by offset.
    redeliveries: list[dict[str, Any]]
    # The stream's retention (None: kept for ever): only a position near its edge can have been expired.
    retention_days: int | None = None

    @property
    def holds_redeliveries(self) -> bool:
        """Whether the current lease is one of redelivered records (an empty range)."""
        return self.lease_start is not None and self.lease_start == self.lease_end

    def save(self, *, update_fields: list[str]) -> None:
        columns = [name for name in update_fields if name != "updated_at"]
        values = [
            orjson.dumps(getattr(self, name)).decode() if name in _JSON_COLUMNS else getattr(self, name)
            for name in columns
        ]
        assignments = ", ".join(f"{name} = %s::jsonb" if name in _JSON_COLUMNS else f"{name} = %s" for name in columns)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE consumers_consumergroup SET {assignments}, updated_at = now() WHERE id = %s",
                [*values, self.pk],
            )


_JSON_COLUMNS = frozenset({"deliveries", "redeliveries"})

_LOCK_SQL = """
SELECT g.id, g.stream_id, g.name, g.kind, g.committed_offset, g.deliveries::text, g.lease_id, g.lease_start,
       g.lease_end, g.lease_expires_at, g.paused, g.paused_reason, g.max_deliver, g.on_max_deliver, h.next_offset,
       clock_timestamp(), g.redeliveries::text, s.retention_days
FROM consumers_consumergroup g JOIN streams_streamhead h ON h.stream_id = g.stream_id
JOIN streams_stream s ON s.id = g.stream_id
WHERE {where}
FOR UPDATE OF g
"""
_LOCK_BY_ID = _LOCK_SQL.format(where="g.id = %s")
_LOCK_BY_NAME = _LOCK_SQL.format(where="g.stream_id = %s AND g.name = %s AND g.kind = %s")


# What a poll or a seek changes: the group's position, its deliveries and its lease.
_POSITION_FIELDS = [
    "committed_offset",
    "deliveries",
    "lease_id",
    "lease_start",
    "lease_end",
    "lease_expires_at",
    "updated_at",
]


def _locked_group(**lookup: Any) -> LockedGroup:
    if "pk" in lookup:
        sql, params = _LOCK_BY_ID, [lookup["pk"]]
    else:
        sql, params = _LOCK_BY_NAME, [lookup["stream_id"], lookup["name"], lookup["kind"]]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        raise _not_found()
    values = list(row)
    values[5] = orjson.loads(values[5])
    values[16] = orjson.loads(values[16])
    return LockedGroup(*values)


def _head(group: LockedGroup) -> int:
    return group.head


def _live_lease(group: LockedGroup, now: datetime) -> Lease | None:
    if group.lease_id is None or group.lease_expires_at is None or group.lease_expires_at <= now:
        return None
    assert group.lease_start is not None and group.lease_end is not None
    return Lease(group.lease_id, group.lease_start, group.lease_end, group.lease_expires_at)


def _notify_group(group: LockedGroup) -> None:
    """Wake the group's waiting polls (delivered when the transaction commits)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [CONSUMER_CHANNEL, f"{group.stream_id}:{group.pk}"])


def _log_event(entry: LogEntry) -> dict[str, Any]:
    return {
        "offset": entry.offset,
        "event_id": entry.event_id,
        "type": entry.type,
        "event_time": entry.event_time.isoformat(),
        "received_at": entry.received_at.isoformat(),
        "user_id": entry.user_id,
        "anonymous_id": entry.anonymous_id,
        "session_id": entry.session_id,
        "payload": entry.payload,
        "context": entry.context,
        "enrichment": entry.enrichment,
        "flags": entry.flags,
    }


def _dead_letters_of_entries(
    *,
    group: LockedGroup,
    entries: QuerySet[LogEntry],
    error_class: str,
    error_message: str,
    attempts: int | dict[int, int],
    now: datetime,
) -> int:
    """Record log entries as the group's dead letters (``attempts`` per offset, or one for all)."""
    stage = DeadLetterStage.DELIVER if group.kind == GroupKind.WEBHOOK else DeadLetterStage.CONSUME
    return dead_letters_record(
        letters=[
            DeadLetterIn(
                stream_id=group.stream_id,
                event_id=entry.event_id,
                event=_log_event(entry),
                stage=stage,
                group_id=group.pk,
                subscriber=group.name,
                log_offset=entry.offset,
                error_class=error_class,
                error_message=error_message,
                attempts=attempts if isinstance(attempts, int) else attempts.get(entry.offset, 1),
                first_failed_at=now,
            )
            for entry in entries.order_by("offset")
        ],
        now=now,
    )


def _dead_letter_range(
    *,
    group: LockedGroup,
    start: int,
    end: int,
    error_class: str,
    error_message: str,
    attempts: int,
    now: datetime,
    event_types: list[str] | None = None,
) -> int:
    """Copy the log entries ``[start, end)`` to the dead letters, as the group's failures."""
    entries = LogEntry.objects.filter(stream_id=group.stream_id, offset__gte=start, offset__lt=end)
    if event_types:
        entries = entries.filter(type__in=event_types)
    return _dead_letters_of_entries(
        group=group, entries=entries, error_class=error_class, error_message=error_message, attempts=attempts, now=now
    )


def _dead_letter_redeliveries(
    *, group: LockedGroup, redeliveries: list[dict[str, Any]], error_class: str, error_message: str, now: datetime
) -> int:
    """Redelivered records that failed again become new dead letters (the replayed ones stay replayed)."""
    if not redeliveries:
        return 0
    counts = {entry["offset"]: entry["count"] for entry in redeliveries}
    replayed = ", ".join(str(entry["letter"]) for entry in redeliveries)
    return _dead_letters_of_entries(
        group=group,
        entries=LogEntry.objects.filter(stream_id=group.stream_id, offset__in=list(counts)),
        error_class=error_class,
        error_message=f"{error_message} (redelivery of dead letter {replayed})",
        attempts=counts,
        now=now,
    )


def _settle_redeliveries(group: LockedGroup, now: datetime) -> tuple[int, bool]:
    """With no live lease: hand back what the last lease held, dead-letter what reached max_deliver.

    Returns the dead letters made and whether ``redeliveries`` changed.
    """
    if not group.redeliveries:
        return 0, False
    changed = False
    for entry in group.redeliveries:
        if entry["leased"]:
            entry["leased"] = False
            changed = True
    exhausted = [entry for entry in group.redeliveries if entry["count"] >= group.max_deliver]
    if not exhausted:
        return 0, changed
    made = _dead_letter_redeliveries(
        group=group,
        redeliveries=exhausted,
        error_class="MaxDeliverExceeded",
        error_message=f"Redelivered {group.max_deliver} times to {group.name} without a commit",
        now=now,
    )
    group.redeliveries = [entry for entry in group.redeliveries if entry["count"] < group.max_deliver]
    return made, True


def _redeliveries_hand_out(group: LockedGroup, max_records: int) -> list[dict[str, Any]]:
    """Lease the first pending redeliveries (the last attempt of a pull group's record comes alone)."""
    first = group.redeliveries[0]
    take = max_records
    if group.kind == GroupKind.PULL and first["count"] >= 1 and first["count"] + 1 >= group.max_deliver:
        take = 1
    batch = group.redeliveries[:take]
    for entry in batch:
        entry["count"] += 1
        entry["leased"] = True
    return batch


def _settle_exhausted(group: LockedGroup, now: datetime, event_types: list[str] | None) -> int:
    """Dead-letter (or stop at) the records that reached max_deliver. Returns the dead letters made."""
    committed = group.committed_offset
    exhausted_end = segments_exhausted_end(group.deliveries, committed, group.max_deliver)
    if exhausted_end <= committed:
        return 0
    attempts = segments_head_count(group.deliveries, committed)
    if group.on_max_deliver == MaxDeliverPolicy.STOP:
        group.paused = True
        group.paused_reason = (
            f"Stopped: offsets {committed}..{exhausted_end - 1} were delivered {attempts} times without a commit. "
            "Seek past them, or resume to give them new attempts."
        )[:500]
        return 0
    made = _dead_letter_range(
        group=group,
        start=committed,
        end=exhausted_end,
        error_class="MaxDeliverExceeded",
        error_message=f"Delivered {attempts} times to {group.name} without a commit (max_deliver {group.max_deliver}).",
        attempts=attempts,
        now=now,
        event_types=event_types,
    )
    group.committed_offset = exhausted_end
    group.deliveries = segments_trim(group.deliveries, exhausted_end)
    return made


def _in_window(sql: str, params: dict[str, Any], window: Window) -> str:
    """``sql`` bounded to the days that hold an offset range (``log_offset_window``), so it probes their partitions only."""
    low, high = window
    if low is not None:
        sql += " AND l.logged_at >= %(low)s"
        params["low"] = low
    if high is not None:
        sql += " AND l.logged_at < %(high)s"
        params["high"] = high
    return sql


def _records(
    *,
    stream_id: int,
    start: int,
    end: int,
    deliveries: list[list[int]],
    event_types: list[str] | None,
    window: Window | None = None,
) -> tuple[int, str]:
    bounds, counts = segments_counts_sql_args(deliveries)
    params: dict[str, Any] = {"stream_id": stream_id, "start": start, "end": end, "bounds": bounds, "counts": counts}
    # The days that hold these offsets: the read probes their partitions only (docs/SCALING.md).
    if window is None:
        window = log_offset_window(stream_id=stream_id, start=start, end=end)
    sql = _in_window(_RECORDS_SQL, params, window)
    if event_types:
        sql += _TYPE_FILTER_SQL
        params["types"] = list(event_types)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def _may_be_expired(group: LockedGroup, window: Window) -> bool:
    """Whether retention can have removed the group's position: its day (``window``'s low) is within a day of
    the stream's retention edge, or older, or unknown. Retention drops whole days older than the edge, so a
    position in a later day is kept, and the poll asks nothing more (the probe cost a poll of 100 records a
    fifth of its database time)."""
    if group.retention_days is None:
        return False
    low = window[0]
    return low is None or low <= group.now - timedelta(days=group.retention_days - 1)


def _expired_skip(group: LockedGroup, *, head: int, window: Window) -> int:
    """Move a group whose position retention removed to the log's oldest kept offset; returns the offsets skipped.

    Offsets are gapless and retention deletes only a stream's oldest events, so
    the log keeps exactly ``[oldest, head)``: when the entry at the position is
    gone, so is every offset before the oldest kept one. Nothing there can be
    delivered or committed; leasing it would hand out empty ranges of ``max``
    offsets, poll after poll, while kept events wait. ``window`` holds the
    position's days (``log_offset_window``). Never moves past a kept event: the
    target is the oldest offset the log holds, found by its primary key.
    """
    start = group.committed_offset
    params: dict[str, Any] = {"stream_id": group.stream_id, "start": start}
    with connection.cursor() as cursor:
        cursor.execute(_in_window(_KEPT_SQL, params, window), params)
        kept = cursor.fetchone() is not None
    if kept:
        return 0
    oldest = log_earliest_offset(stream_id=group.stream_id)
    # An empty log kept nothing below the head; an oldest beyond the head read with the lock came since.
    target = head if oldest is None else min(oldest, head)
    if target <= start:
        return 0
    group.committed_offset = target
    group.deliveries = segments_trim(group.deliveries, target)
    _expired_report(group, start=start, end=target)
    return target - start


def _expired_report(group: LockedGroup, *, start: int, end: int) -> None:
    """Count and log, once the transaction commits, that the group moved past the expired offsets ``[start, end)``."""
    stream_id, name, kind = group.stream_id, group.name, group.kind

    def report() -> None:
        slug = Stream.objects.filter(pk=stream_id).values_list("slug", flat=True).first() or str(stream_id)
        child(CONSUMER_OFFSETS_EXPIRED, slug, kind).inc(end - start)
        logger.warning(
            "consumer group %s of stream %s was behind retention: moved past offsets %d..%d, which the log no longer keeps",
            name,
            slug,
            start,
            end - 1,
        )

    transaction.on_commit(report)


# --- polling -----------------------------------------------------------------------------


def consumer_group_poll_once(
    *,
    lookup: dict[str, Any],
    max_records: int,
    lease_seconds: float,
    event_types: list[str] | None = None,
) -> PollResult:
    """One attempt to lease the group's next records; never waits."""
    with transaction.atomic():
        group = _locked_group(**lookup)
        now = group.now
        head = _head(group)
        result = PollResult(
            group_id=group.pk,
            stream_id=group.stream_id,
            committed_offset=group.committed_offset,
            head=head,
            paused=group.paused,
        )
        if group.paused:
            result.idle_reason = IDLE_PAUSED
            return result
        live = _live_lease(group, now)
        if live is not None:
            result.idle_reason = IDLE_LEASE_HELD
            result.busy_seconds = (live.expires_at - now).total_seconds()
            return result
        before = (group.committed_offset, group.paused)
        # A position retention removed moves to the oldest kept offset first, in this poll: the records
        # leased below are kept ones, and attempts counted for expired offsets stop nothing.
        window: Window | None = None
        probed = (group.committed_offset, min(head, group.committed_offset + max_records))
        if group.committed_offset < head:
            window = log_offset_window(stream_id=group.stream_id, start=probed[0], end=probed[1])
            if _may_be_expired(group, window):
                result.expired_skipped = _expired_skip(group, head=head, window=window)
        redeliveries_dead, redeliveries_changed = _settle_redeliveries(group, now)
        result.dead_lettered = redeliveries_dead + _settle_exhausted(group, now, event_types)
        result.committed_offset, result.paused = group.committed_offset, group.paused
        if not group.paused and group.redeliveries:
            return _redeliveries_lease(group, result, max_records=max_records, lease_seconds=lease_seconds)
        if group.paused or group.committed_offset >= head:
            result.idle_reason = IDLE_PAUSED if group.paused else IDLE_CAUGHT_UP
            if (group.committed_offset, group.paused) != before or redeliveries_changed:
                group.save(
                    update_fields=[
                        "committed_offset",
                        "deliveries",
                        "redeliveries",
                        "paused",
                        "paused_reason",
                        "updated_at",
                    ]
                )
            return result
        start = group.committed_offset
        end = min(head, start + max_records)
        handed_out = segments_head_count(group.deliveries, start)
        if group.kind == GroupKind.PULL and handed_out >= 1 and handed_out + 1 >= group.max_deliver:
            end = start + 1
        group.deliveries = segments_hand_out(group.deliveries, start, end)
        group.lease_id = uuid.uuid4()
        group.lease_start, group.lease_end = start, end
        group.lease_expires_at = now + timedelta(seconds=lease_seconds)
        # Redeliveries settled above (dead-lettered at max_deliver) must not come back at the next poll.
        group.save(update_fields=[*_POSITION_FIELDS, "redeliveries"] if redeliveries_changed else _POSITION_FIELDS)
        deliveries = group.deliveries
    result.lease = Lease(group.lease_id, start, end, group.lease_expires_at)
    result.delivery_count = handed_out + 1
    result.record_count, result.records_json = _records(
        stream_id=group.stream_id,
        start=start,
        end=end,
        deliveries=deliveries,
        event_types=event_types,
        # The probe's days serve the read when it leases within them (a settled or skipped position did not).
        window=window if start == probed[0] and end <= probed[1] else None,
    )
    return result


def _redeliveries_lease(
    group: LockedGroup, result: PollResult, *, max_records: int, lease_seconds: float
) -> PollResult:
    """Lease redelivered records: an empty range at the committed offset, so the position stays."""
    batch = _redeliveries_hand_out(group, max_records)
    group.lease_id = uuid.uuid4()
    group.lease_start = group.lease_end = group.committed_offset
    group.lease_expires_at = group.now + timedelta(seconds=lease_seconds)
    group.save(update_fields=[*_POSITION_FIELDS, "redeliveries", "paused", "paused_reason"])
    result.lease = Lease(group.lease_id, group.committed_offset, group.committed_offset, group.lease_expires_at)
    result.delivery_count = batch[0]["count"]
    with connection.cursor() as cursor:
        cursor.execute(
            _REDELIVERED_SQL,
            {
                "stream_id": group.stream_id,
                "entries": orjson.dumps([{"offset": e["offset"], "count": e["count"]} for e in batch]).decode(),
            },
        )
        row = cursor.fetchone()
    assert row is not None
    result.record_count, result.records_json = int(row[0]), str(row[1])
    return result


def _db_connection_release() -> None:
    """A waiting poll gives its database connection back; the next query opens one."""
    if not connection.in_atomic_block:
        connection.close()


def consumer_group_poll(
    *, stream_id: int, name: str, max_records: int, lease_seconds: float, wait_ms: int
) -> PollResult:
    """Lease the next records of a pull group, waiting up to ``wait_ms`` for some to arrive.

    The wait holds no database connection: the poll sleeps until the process's
    log listener hears that the stream grew (or that the group's lease was
    given back), the other member's lease expires, or the time is up.
    """
    lookup = {"stream_id": stream_id, "name": name, "kind": GroupKind.PULL}
    if wait_ms <= 0:
        return consumer_group_poll_once(lookup=lookup, max_records=max_records, lease_seconds=lease_seconds)
    deadline = time.monotonic() + wait_ms / 1000
    notifier = log_notifier()
    waited = False
    try:
        with notifier.waiter(stream_id) as waiter:
            while True:
                result = consumer_group_poll_once(lookup=lookup, max_records=max_records, lease_seconds=lease_seconds)
                remaining = deadline - time.monotonic()
                if result.lease is not None or remaining <= 0:
                    return result
                waiter.group_id = result.group_id
                if result.busy_seconds is not None:
                    remaining = min(remaining, max(result.busy_seconds + 0.01, 0.001))
                _db_connection_release()
                waited = True
                notifier.wait(waiter, remaining)
    finally:
        # A thread that serves long polls keeps no idle connection between them either.
        if waited:
            _db_connection_release()


# --- commit, seek, pause --------------------------------------------------------------------


def consumer_group_commit(
    *, lookup: dict[str, Any], lease_id: uuid.UUID, offset: int, release: bool = False
) -> CommitResult:
    """Record that every record before ``offset`` is handled, under the lease that holds them.

    The lease ends when the commit reaches its end (or with ``release``); what
    is left of its range is then handed out again by the next poll.
    """
    with transaction.atomic():
        group = _locked_group(**lookup)
        now = group.now
        head = _head(group)
        committed = group.committed_offset
        if group.lease_id != lease_id:
            raise Conflict(
                "lease_not_held",
                "This lease is not the group's current lease: it expired and the range was handed out again, "
                "or the group was sought.",
                {"committed_offset": committed},
            )
        if group.lease_expires_at is None:
            if offset == committed:
                return CommitResult(committed_offset=committed, head=head)
            raise Conflict("lease_released", "This lease was already given back.", {"committed_offset": committed})
        if group.lease_expires_at <= now:
            raise Conflict(
                "lease_expired",
                "The lease expired; its records will be delivered again.",
                {"committed_offset": committed, "expired_at": group.lease_expires_at.isoformat()},
            )
        if offset > head:
            raise Unprocessable(
                "offset_beyond_head", "The offset is beyond the head of the log.", {"offset": offset, "head": head}
            )
        if offset < committed:
            raise Conflict(
                "offset_backwards",
                "Commits only move forward; use seek to go back.",
                {"offset": offset, "committed_offset": committed},
            )
        assert group.lease_start is not None and group.lease_end is not None
        if offset > group.lease_end:
            raise Unprocessable(
                "offset_beyond_lease",
                "The offset is beyond the range this lease holds.",
                {"offset": offset, "lease_end": group.lease_end},
            )
        if group.holds_redeliveries:
            # All or nothing: a commit settles the redelivered records, a release gives them back.
            if release:
                for entry in group.redeliveries:
                    entry["leased"] = False
            else:
                group.redeliveries = [entry for entry in group.redeliveries if not entry["leased"]]
            group.lease_expires_at = None
            group.save(update_fields=["redeliveries", "lease_expires_at", "updated_at"])
            _notify_group(group)
            return CommitResult(committed_offset=committed, head=head)
        group.committed_offset = offset
        group.deliveries = segments_trim(group.deliveries, offset)
        done = release or offset == group.lease_end
        if done:
            group.lease_expires_at = None
        group.save(update_fields=["committed_offset", "deliveries", "lease_expires_at", "updated_at"])
        if done:
            _notify_group(group)
        lease = None if done else _live_lease(group, now)
    return CommitResult(committed_offset=offset, head=head, lease=lease)


def consumer_group_seek(*, lookup: dict[str, Any], position: Position) -> LockedGroup:
    """Move the group to a position; the current lease ends and delivery counts start afresh.

    An offset below the oldest the log keeps moves it to that oldest one (``log_position_resolve``).
    """
    with transaction.atomic():
        group = _locked_group(**lookup)
        offset = log_position_resolve(stream_id=group.stream_id, position=position, head=_head(group))
        if position.kind == "offset" and position.offset is not None and offset > position.offset:
            # Raised to the oldest kept offset: what lay between is gone, as a poll would have skipped it.
            _expired_report(group, start=position.offset, end=offset)
        group.committed_offset = offset
        group.deliveries = []
        group.lease_id = None
        group.lease_start = group.lease_end = None
        group.lease_expires_at = None
        group.save(update_fields=_POSITION_FIELDS)
        _notify_group(group)
    return group


def consumer_group_pause(*, lookup: dict[str, Any], reason: str = "") -> LockedGroup:
    with transaction.atomic():
        group = _locked_group(**lookup)
        if group.paused:
            # Already paused: the reason it was paused for (a record out of attempts, say) stays.
            return group
        group.paused = True
        group.paused_reason = reason[:500]
        group.save(update_fields=["paused", "paused_reason", "updated_at"])
    return group


def consumer_group_resume(*, lookup: dict[str, Any]) -> LockedGroup:
    """Resume delivery. Records that stopped the group get a fresh set of attempts."""
    with transaction.atomic():
        group = _locked_group(**lookup)
        group.paused = False
        group.paused_reason = ""
        if segments_exhausted_end(group.deliveries, group.committed_offset, group.max_deliver) > group.committed_offset:
            group.deliveries = []
        group.save(update_fields=["paused", "paused_reason", "deliveries", "updated_at"])
        _notify_group(group)
    return group


def consumer_group_create(
    *,
    stream_id: int,
    name: str,
    start: Position,
    max_deliver: int = 5,
    on_max_deliver: str = MaxDeliverPolicy.DEAD_LETTER,
    kind: str = GroupKind.PULL,
) -> ConsumerGroup:
    offset = log_position_resolve(stream_id=stream_id, position=start, head=log_head(stream_id))
    try:
        with transaction.atomic():
            return ConsumerGroup.objects.create(
                stream_id=stream_id,
                name=name,
                kind=kind,
                committed_offset=offset,
                max_deliver=max_deliver,
                on_max_deliver=on_max_deliver,
            )
    except IntegrityError:
        raise Conflict(
            "consumer_group_exists", "The stream already has a consumer group of this name.", {"name": name}
        ) from None


def consumer_group_delete(*, lookup: dict[str, Any]) -> None:
    with transaction.atomic():
        group = _locked_group(**lookup)
        _notify_group(group)
        ConsumerGroup.objects.filter(pk=group.pk).delete()


def consumer_group_dead_letter_lease(
    *, group_id: int, lease_id: uuid.UUID, error_class: str, error_message: str, event_types: list[str] | None = None
) -> int:
    """Give up on a lease's records now: they become dead letters and the group moves past them.

    Safe to repeat: once the lease is gone it does nothing.
    """
    with transaction.atomic():
        group = _locked_group(pk=group_id)
        now = group.now
        live = _live_lease(group, now)
        if live is None or live.id != lease_id:
            return 0
        if group.holds_redeliveries:
            made = _dead_letter_redeliveries(
                group=group,
                redeliveries=[entry for entry in group.redeliveries if entry["leased"]],
                error_class=error_class,
                error_message=error_message,
                now=now,
            )
            group.redeliveries = [entry for entry in group.redeliveries if not entry["leased"]]
            group.lease_expires_at = None
            group.save(update_fields=["redeliveries", "lease_expires_at", "updated_at"])
            return made
        made = _dead_letter_range(
            group=group,
            start=group.committed_offset,
            end=live.end_offset,
            error_class=error_class,
            error_message=error_message,
            attempts=segments_head_count(group.deliveries, group.committed_offset),
            now=now,
            event_types=event_types,
        )
        group.committed_offset = live.end_offset
        group.deliveries = segments_trim(group.deliveries, live.end_offset)
        group.lease_expires_at = None
        group.save(update_fields=["committed_offset", "deliveries", "lease_expires_at", "updated_at"])
    return made


# --- replay of dead letters --------------------------------------------------------------------


def consumer_group_redeliver(letters: list[DeadLetter]) -> dict[int, str]:
    """Queue the log entries of replayed letters for their groups again (``consume`` and ``deliver``).

    Runs in the replay's transaction, with the letters locked. A letter whose
    group is gone, or whose log entry retention removed, is skipped. An offset
    already waiting for its group is not queued twice.
    """
    skipped: dict[int, str] = {}
    by_group: dict[int, list[DeadLetter]] = {}
    for letter in letters:
        if letter.group_id is None or letter.log_offset is None:
            skipped[letter.pk] = SKIP_GROUP_GONE
        else:
            by_group.setdefault(letter.group_id, []).append(letter)
    if not by_group:
        return skipped
    logged = set(
        LogEntry.objects.filter(
            stream_id__in={letter.stream_id for letter in letters},
            offset__in={letter.log_offset for letter in letters if letter.log_offset is not None},
        ).values_list("stream_id", "offset")
    )
    for group_id in sorted(by_group):
        try:
            group = _locked_group(pk=group_id)
        except NotFound:
            skipped.update((letter.pk, SKIP_GROUP_GONE) for letter in by_group[group_id])
            continue
        waiting = {entry["offset"] for entry in group.redeliveries}
        for letter in by_group[group_id]:
            if (letter.stream_id, letter.log_offset) not in logged:
                skipped[letter.pk] = SKIP_LOG_ENTRY_GONE
            elif letter.log_offset not in waiting:
                waiting.add(letter.log_offset)
                group.redeliveries.append(
                    {"offset": letter.log_offset, "count": 0, "letter": letter.pk, "leased": False}
                )
        group.redeliveries.sort(key=lambda entry: entry["offset"])
        group.save(update_fields=["redeliveries", "updated_at"])
        _notify_group(group)
    return skipped
