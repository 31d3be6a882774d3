"""Reading a stream's events: a page of the log by filter, one event wherever it is, and the export.

The filter language (``analytics/filters.py``) compiles to a WHERE fragment over
the log table, so these readers speak SQL to the log: the fragment, the stream,
the cursor's offset bound and the order, in one statement per page. Their plans
are written out in docs/QUERIES.md.

Pages are keyed by log offset, never by position: a cursor holds the offset of
the last event a page showed, so events logged while someone pages through
never shift a page (newest first, they are all above the first page; oldest
first, they come after the last one). It also holds a digest of the question
it answers (stream, filter, order), so it is refused, not misread, when brought
to another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
from django.db import connection, transaction

from eventflow.db import bound_cursor
from eventflow.errors import Invalid
from ingestion.models import InboxEvent
from streams.events import CSV_FIELDS, JSON_FIELDS, LOGGED_FIELDS
from streams.models import DeadLetter

from .filters import MAX_OFFSET, EventFilter

Order = Literal["newest", "oldest"]
ORDERS: tuple[Order, ...] = ("newest", "oldest")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
EXPORT_FORMATS = ("csv", "ndjson")

# The columns of an event, as the API names them (event_time is "timestamp" on the wire).
_COLUMNS = """
l."offset", l.event_id, l.type, l.event_time, l.received_at, l.logged_at, l.user_id, l.anonymous_id,
l.session_id, l.payload, l.context, l.enrichment, l.flags
"""
# _COLUMNS in the order of streams.events.LOGGED_FIELDS, which names them in each event.
EVENT_FIELDS = LOGGED_FIELDS
CSV_COLUMNS = CSV_FIELDS


# --- cursors -----------------------------------------------------------------------------------

# A cursor says which side of an offset the page lies on, in the order asked for:
# "n" the events after it (the next page), "p" the events before it (the page before).
_AFTER, _BEFORE = "n", "p"
# Bytes of a cursor: its side, the offset (8, big-endian) and the question's digest.
_DIGEST_BYTES = 8
_CURSOR_BYTES = 1 + 8 + _DIGEST_BYTES
_CURSOR_RE = re.compile(r"[A-Za-z0-9_-]{1,40}")
_NOT_OURS = "The cursor is not one this API gave out."


def question_digest(*, stream_id: int, event_filter: EventFilter, order: Order) -> bytes:
    """A short digest of what a page answers: the stream, the filter (normalized) and the order.

    The filter is compared by meaning, not by spelling: types, conditions and
    their values are sets (``type=a,b`` and ``type=b&type=a`` ask the same) and
    times are instants in UTC. The limit is not part of it: it may change from
    page to page. A keyless hash is enough: the digest catches a cursor brought
    to another question, it guards no secret (the cursor's own URL carries the
    question in plain text, and a forged cursor only names an offset, which the
    ``offset_from`` filter names too).
    """
    f = event_filter
    conditions = sorted({(c.root, c.path, c.op, tuple(sorted(set(c.values)))) for c in f.conditions})
    question = [
        stream_id,
        order,
        sorted(set(f.types)),
        f.user_id,
        f.anonymous_id,
        f.session_id,
        f.time_from.astimezone(UTC).isoformat() if f.time_from is not None else None,
        f.time_to.astimezone(UTC).isoformat() if f.time_to is not None else None,
        f.offset_from,
        f.offset_to,
        conditions,
    ]
    return hashlib.blake2b(orjson.dumps(question), digest_size=_DIGEST_BYTES, person=b"eventflow.cursor").digest()


@dataclass(frozen=True)
class Cursor:
    direction: str
    offset: int
    # question_digest() of the page that gave the cursor out: it serves that question only.
    question: bytes

    def encode(self) -> str:
        raw = self.direction.encode("ascii") + self.offset.to_bytes(8, "big") + self.question
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        """The cursor in ``raw``, or ``Invalid`` (``invalid_cursor``) if this API did not write it."""
        if not _CURSOR_RE.fullmatch(raw):
            raise Invalid("invalid_cursor", _NOT_OURS)
        try:
            data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (binascii.Error, ValueError):
            raise Invalid("invalid_cursor", _NOT_OURS) from None
        direction = chr(data[0]) if data else ""
        offset = int.from_bytes(data[1:9], "big")
        if len(data) != _CURSOR_BYTES or direction not in (_AFTER, _BEFORE) or offset > MAX_OFFSET:
            raise Invalid("invalid_cursor", _NOT_OURS)
        return cls(direction, offset, data[9:])


@dataclass(frozen=True)
class EventPage:
    events: list[dict[str, Any]]
    next: Cursor | None
    previous: Cursor | None


def _event(row: tuple[Any, ...]) -> dict[str, Any]:
    event = dict(zip(EVENT_FIELDS, row, strict=True))
    for name in JSON_FIELDS:
        # Django's cursor hands jsonb over as text (its JSONField decodes it).
        if isinstance(event[name], str):
            event[name] = orjson.loads(event[name])
    return event


def page_statement(
    *, stream_id: int, event_filter: EventFilter, descending: bool, limit: int, after: int | None = None
) -> tuple[str, list[Any]]:
    """The SELECT of one page: matching events beyond offset ``after`` in the order read, ``limit`` of them."""
    where, params = event_filter.to_sql("l")
    bound = ""
    if after is not None:
        bound = f' AND l."offset" {"<" if descending else ">"} %s'
        params = [*params, after]
    direction = "DESC" if descending else "ASC"
    # Raw SQL: the filter language compiles to SQL (filters.py), and the page is one
    # indexed scan of the log in offset order; the ORM would only wrap the same text.
    select = f"SELECT {_COLUMNS} FROM streams_log l WHERE l.stream_id = %s AND {where}{bound}"
    if event_filter.time_from is None and event_filter.time_to is None:
        return f'{select} ORDER BY l."offset" {direction} LIMIT %s', [stream_id, *params, limit]
    # A time range is read in up to three parts by the day the events were logged:
    # the days the range covers, in offset order (their partitions' primary keys, where
    # matches are dense), and the events logged before or after those days, late or
    # early for their time (a few, found by the time index of each later partition and
    # sorted). As one scan in offset order, the plan walked every partition logged after
    # the range, row by row: 156-188 ms for a day three days back at 2 M events
    # (docs/SCALING.md). Offsets follow logged_at, so the parts never overlap.
    low = _day(event_filter.time_from) if event_filter.time_from is not None else None
    high = _day(event_filter.time_to, up=True) if event_filter.time_to is not None else None
    parts: list[str] = []
    values: list[Any] = []
    spans: list[tuple[datetime | None, datetime | None, bool]] = [(low, high, True)]
    if low is not None:
        spans.insert(0, (None, low, False))
    if high is not None:
        spans.append((high, None, False))
    for start, end, ordered in spans:
        condition = ""
        if start is not None:
            condition += " AND l.logged_at >= %s"
        if end is not None:
            condition += " AND l.logged_at < %s"
        # "+ 0": not the primary key's order, so the plan finds the rows by their time.
        order = 'l."offset"' if ordered else 'l."offset" + 0'
        parts.append(f"({select}{condition} ORDER BY {order} {direction} LIMIT %s)")
        values += [stream_id, *params, *(v for v in (start, end) if v is not None), limit]
    sql = f'SELECT * FROM ({" UNION ALL ".join(parts)}) AS l ORDER BY l."offset" {direction} LIMIT %s'
    return sql, [*values, limit]


def _day(at: datetime, *, up: bool = False) -> datetime:
    """The UTC day's start at or before ``at`` (at or after with ``up``): the log's partition bounds."""
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=1) if up and day != at else day


def events_page(
    *,
    stream_id: int,
    event_filter: EventFilter,
    order: Order = "newest",
    limit: int = DEFAULT_LIMIT,
    cursor: Cursor | None = None,
) -> EventPage:
    """One page of the stream's events that match ``event_filter``, by log offset.

    A cursor serves only the question it was given out for (stream, filter and
    order, ``question_digest``): brought to another, its offset would silently
    give a page of a different list, so it is ``Invalid`` (``cursor_mismatch``).
    """
    question = question_digest(stream_id=stream_id, event_filter=event_filter, order=order)
    if cursor is not None and cursor.question != question:
        raise Invalid(
            "cursor_mismatch",
            "The cursor was given out for another question: a different stream, filters or order. "
            "Ask again without it to start from the first page.",
        )
    newest = order == "newest"
    # The page before a cursor is read in the opposite order and turned round.
    backwards = cursor is not None and cursor.direction == _BEFORE
    descending = newest != backwards
    sql, params = page_statement(
        stream_id=stream_id,
        event_filter=event_filter,
        descending=descending,
        limit=limit + 1,
        after=None if cursor is None else cursor.offset,
    )
    with connection.cursor() as db:
        db.execute(sql, params)
        rows = db.fetchall()
    more = len(rows) > limit
    events = [_event(row) for row in rows[:limit]]
    if backwards:
        events.reverse()
    if not events:
        return EventPage(events=[], next=None, previous=None)
    first, last = events[0]["offset"], events[-1]["offset"]
    # Going forward, "more" speaks of the next page; going back, of the page before.
    has_next = more if not backwards else True
    has_previous = (cursor is not None) if not backwards else more
    return EventPage(
        events=events,
        next=Cursor(_AFTER, last, question) if has_next else None,
        previous=Cursor(_BEFORE, first, question) if has_previous else None,
    )


# --- one event, wherever it is -------------------------------------------------------------------

EventState = Literal["logged", "accepted", "dead_letter"]


@dataclass(frozen=True)
class EventWhereabouts:
    event_id: str
    state: EventState
    logged: dict[str, Any] | None
    accepted: InboxEvent | None
    dead_letters: list[DeadLetter]


def event_find(*, stream_id: int, event_id: str) -> EventWhereabouts | None:
    """The event in the log, the inbox and the dead letters of the stream (three index probes); None if nowhere.

    An event can be in more than one place: a logged event may have dead
    letters of its consumer groups or webhooks, and a replayed processing
    letter sits in the inbox again. ``state`` says where it is now: logged,
    else accepted (waiting in the inbox), else only a dead letter.
    """
    if "\x00" in event_id or len(event_id) > 128:
        return None
    with connection.cursor() as db:
        # The key table says where the event is; its logged_at picks the one partition probed.
        db.execute(
            f"SELECT {_COLUMNS} FROM streams_log_key k JOIN streams_log l ON l.stream_id = k.stream_id "
            'AND l."offset" = k."offset" AND l.logged_at = k.logged_at WHERE k.stream_id = %s AND k.event_id = %s',
            [stream_id, event_id],
        )
        row = db.fetchone()
    logged = _event(row) if row is not None else None
    accepted = None if logged is not None else InboxEvent.objects.filter(stream_id=stream_id, event_id=event_id).first()
    letters = list(DeadLetter.objects.filter(stream_id=stream_id, event_id=event_id).order_by("first_failed_at", "id"))
    if logged is None and accepted is None and not letters:
        return None
    state: EventState = "logged" if logged is not None else "accepted" if accepted is not None else "dead_letter"
    return EventWhereabouts(event_id=event_id, state=state, logged=logged, accepted=accepted, dead_letters=letters)


# --- export -----------------------------------------------------------------------------------------

# Times as the JSON API writes them (ISO 8601, UTC, "Z"), whatever the session's zone.
_ISO = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
# Producers' text that a spreadsheet would run as a formula (a cell starting with = + - @, a tab
# or a carriage return) goes out behind an apostrophe, which the spreadsheet shows as text: OWASP's
# "CSV Injection". The JSON columns start with "{" and need none.
_TEXT_CELL = "CASE WHEN l.{0} ~ '^[-=+@\\t\\r]' THEN '''' || l.{0} ELSE l.{0} END AS {0}"
_CSV_SELECT = ", ".join(
    [
        'l."offset"',
        _TEXT_CELL.format("event_id"),
        _TEXT_CELL.format("type"),
        _ISO.format("l.event_time") + ' AS "timestamp"',
        _ISO.format("l.received_at") + " AS received_at",
        _TEXT_CELL.format("user_id"),
        _TEXT_CELL.format("anonymous_id"),
        _TEXT_CELL.format("session_id"),
        "l.payload",
        "l.context",
        "l.enrichment",
    ]
)
_NDJSON_SELECT = (
    "json_build_object('offset', l.\"offset\", 'event_id', l.event_id, 'type', l.type, "
    f"'timestamp', {_ISO.format('l.event_time')}, 'received_at', {_ISO.format('l.received_at')}, "
    "'user_id', l.user_id, 'anonymous_id', l.anonymous_id, 'session_id', l.session_id, "
    "'payload', l.payload, 'context', l.context, 'enrichment', l.enrichment)::text"
)
# Rows are gathered into chunks of about this size before they go to the client.
EXPORT_CHUNK_BYTES = 256 * 1024


def export_statement(*, stream_id: int, event_filter: EventFilter, fmt: str) -> tuple[str, list[Any]]:
    """The COPY statement of an export, oldest first, and its parameters."""
    where, params = event_filter.to_sql("l")
    select = _CSV_SELECT if fmt == "csv" else _NDJSON_SELECT
    options = "(FORMAT CSV, HEADER)" if fmt == "csv" else ""
    query = f'SELECT {select} FROM streams_log l WHERE l.stream_id = %s AND {where} ORDER BY l."offset"'
    return f"COPY ({query}) TO STDOUT {options}", [stream_id, *params]


def events_export(*, stream_id: int, event_filter: EventFilter, fmt: str) -> Iterator[bytes]:
    """The matching events as CSV or NDJSON, oldest first, in chunks: memory stays constant however many.

    PostgreSQL writes the rows itself (``COPY (SELECT …) TO STDOUT``): the CSV
    quoting and the JSON are its own, and Python only gathers rows into chunks.
    COPY's text format escapes a backslash as two (JSON text has no raw tab or
    newline for it to escape), which NDJSON lines undo. The statement runs on
    the request's connection, in a transaction of its own with no statement
    timeout; if the client goes away, closing the generator cancels it on the
    server.
    """
    statement, params = export_statement(stream_id=stream_id, event_filter=event_filter, fmt=fmt)
    ndjson = fmt == "ndjson"
    with transaction.atomic(), bound_cursor() as cursor:
        # However long it takes: the export is one statement that streams as it runs.
        cursor.execute("SET LOCAL statement_timeout = 0")
        with cursor.copy(statement, params) as copy:
            chunk: list[bytes] = []
            size = 0
            for row in copy:
                data = bytes(row)
                if ndjson and b"\\" in data:
                    data = data.replace(b"\\\\", b"\\")
                chunk.append(data)
                size += len(data)
                if size >= EXPORT_CHUNK_BYTES:
                    yield b"".join(chunk)
                    chunk, size = [], 0
            if chunk:
                yield b"".join(chunk)


def export_filename(*, slug: str, event_filter: EventFilter, fmt: str, now: datetime) -> str:
    """``<slug>-events-<from>-<to>.<ext>``: the range asked for (UTC), "start" and the time of asking when open."""

    def stamp(at: datetime) -> str:
        return at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")

    start = stamp(event_filter.time_from) if event_filter.time_from else "start"
    end = stamp(event_filter.time_to) if event_filter.time_to else stamp(now)
    return f"{slug}-events-{start}-{end}.{fmt}"
