"""Rollups: what each logged event adds, how a batch is written, and how a time range is read back.

Written by the processor inside its append transaction (``rollups_write``), and
by ``rollups_rebuild`` from the log; both go through ``Tally``, so the
rebuilt rollups are the ones the processor would have written.

Tables (all per stream, buckets are UTC):

- ``analytics_minute_count``, ``analytics_hour_count``, ``analytics_day_count``:
  events per bucket and type;
- ``analytics_hour_dimension``, ``analytics_day_dimension``: events per bucket,
  dimension, value and type (the common dimensions in ``DIMENSIONS``; a missing
  value is kept as '' so that a breakdown adds up to the total);
- ``analytics_user_sketch``: unique users per hour and day as HyperLogLog
  sketches (Apache DataSketches, ``LG_K``), for all events (dimension ''),
  per type (dimension 'type') and per value of each dimension.

A user is the event's ``user_id``, or its ``anonymous_id`` when it has none;
events with neither count as events but not as users.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import datasketches
import orjson
from django.db import connection
from django.utils import timezone

from eventflow.db import bound_cursor
from streams.log import logged_at_floor

from .activity import activity_write
from .spans import late_hours, spans_invalidate

DIMENSIONS = (
    "browser",
    "os",
    "device_type",
    "referrer_host",
    "page",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "country",
    "api_key",
)
MAX_VALUE_CHARS = 200
# 2^12 registers: relative standard error about 1.6% (measured in README, Analytics);
# HLL_4 is the smallest form (about 2.6 kB when dense), sparse sketches are far smaller.
LG_K = 12
SKETCH_TYPE = datasketches.tgt_hll_type.HLL_4
HOUR = "h"
DAY = "d"
ALL = ""
TYPE = "type"


# --- what an event adds ------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value[:MAX_VALUE_CHARS] if isinstance(value, str) else ""


def page_path(payload: dict[str, Any] | None, context: dict[str, Any] | None) -> str:
    """``payload.page``, else ``context.page.path``, without query or fragment."""
    page = (payload or {}).get("page")
    if not isinstance(page, str):
        ctx_page = (context or {}).get("page")
        page = ctx_page.get("path") if isinstance(ctx_page, dict) else None
    if not isinstance(page, str):
        return ""
    return page.split("?", 1)[0].split("#", 1)[0][:MAX_VALUE_CHARS]


def country(context: dict[str, Any] | None) -> str:
    """``context.country``, else ``context.location.country`` (as sent; nothing is looked up)."""
    context = context or {}
    value = context.get("country")
    if not isinstance(value, str):
        location = context.get("location")
        value = location.get("country") if isinstance(location, dict) else None
    return _text(value)


def dimension_values(
    *,
    enrichment: dict[str, Any] | None,
    payload: dict[str, Any] | None,
    context: dict[str, Any] | None,
    api_key_id: int | None,
) -> tuple[str, ...]:
    """The event's value of each of ``DIMENSIONS``, in order ('' when it has none)."""
    enrichment = enrichment or {}
    utm = enrichment.get("utm")
    utm = utm if isinstance(utm, dict) else {}
    return (
        _text(enrichment.get("browser")),
        _text(enrichment.get("os")),
        _text(enrichment.get("device_type")),
        _text(enrichment.get("referrer_host")),
        page_path(payload, context),
        _text(utm.get("utm_source")),
        _text(utm.get("utm_medium")),
        _text(utm.get("utm_campaign")),
        country(context),
        "" if api_key_id is None else str(api_key_id),
    )


# The same values in SQL over the log (``alias``), for the parts of a range the rollups
# don't cover; tests/test_rollups.py checks that both agree on awkward events.
def _sql_text(expr: str) -> str:
    return f"left(CASE WHEN jsonb_typeof({expr}) = 'string' THEN {expr} #>> '{{}}' ELSE '' END, {MAX_VALUE_CHARS})"


def dimension_sql(dimension: str, alias: str = "l") -> str:
    a = alias
    if dimension in ("browser", "os", "device_type", "referrer_host"):
        return _sql_text(f"{a}.enrichment -> '{dimension}'")
    if dimension.startswith("utm_"):
        return _sql_text(f"{a}.enrichment #> '{{utm,{dimension}}}'")
    if dimension == "page":
        page = (
            f"CASE WHEN jsonb_typeof({a}.payload -> 'page') = 'string' THEN {a}.payload ->> 'page' "
            f"WHEN jsonb_typeof({a}.context #> '{{page,path}}') = 'string' THEN {a}.context #>> '{{page,path}}' "
            "ELSE '' END"
        )
        return f"left(split_part(split_part({page}, '?', 1), '#', 1), {MAX_VALUE_CHARS})"
    if dimension == "country":
        return (
            f"left(CASE WHEN jsonb_typeof({a}.context -> 'country') = 'string' THEN {a}.context ->> 'country' "
            f"WHEN jsonb_typeof({a}.context #> '{{location,country}}') = 'string' "
            f"THEN {a}.context #>> '{{location,country}}' ELSE '' END, {MAX_VALUE_CHARS})"
        )
    if dimension == "api_key":
        return f"COALESCE({a}.api_key_id::text, '')"
    raise ValueError(dimension)


def user_key(user_id: str | None, anonymous_id: str | None) -> str | None:
    if user_id:
        return "u:" + user_id
    if anonymous_id:
        return "a:" + anonymous_id
    return None


def user_key_sql(alias: str = "l") -> str:
    return (
        f"CASE WHEN {alias}.user_id <> '' THEN 'u:' || {alias}.user_id "
        f"WHEN {alias}.anonymous_id <> '' THEN 'a:' || {alias}.anonymous_id END"
    )


def minute_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(second=0, microsecond=0)


def hour_of(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return at.replace(minute=0, second=0, microsecond=0)


def day_of(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def new_sketch() -> Any:
    return datasketches.hll_sketch(LG_K, SKETCH_TYPE)


def sketch_load(data: bytes) -> Any:
    return datasketches.hll_sketch.deserialize(bytes(data))


# --- a batch's worth of rollups ----------------------------------------------------------------


@dataclass
class Tally:
    """Counts and user sets of some events, by bucket; ``rollups_write`` adds them to the rollups.

    Each event is reduced once to (minute, type, dimension values, user) and the events
    are counted by distinct key; the hour and day rows are expanded from the distinct
    keys, not from each event (a batch of 1,000 realistic events holds about 500
    distinct hour keys). Measured on such batches: 14 ms a batch counted event by
    event, 5 ms so (bench/rollup_cost.py).
    """

    minutes: Counter[tuple[datetime, str]] = field(default_factory=Counter)
    hours: Counter[tuple[datetime, str]] = field(default_factory=Counter)
    days: Counter[tuple[datetime, str]] = field(default_factory=Counter)
    hour_dims: Counter[tuple[datetime, str, str, str]] = field(default_factory=Counter)
    day_dims: Counter[tuple[datetime, str, str, str]] = field(default_factory=Counter)
    # (grain, start, dimension, value) -> user keys
    users: defaultdict[tuple[str, datetime, str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    days_too: bool = True

    def add_records(self, records: Iterable[Any]) -> Tally:
        keyed: list[tuple[datetime, str, tuple[str, ...], str | None]] = []
        for r in records:
            at = r.event_time
            if at.tzinfo is not UTC:
                at = at.astimezone(UTC)
            keyed.append(
                (
                    at.replace(second=0, microsecond=0),
                    r.type,
                    dimension_values(
                        enrichment=r.enrichment, payload=r.payload, context=r.context, api_key_id=r.api_key_id
                    ),
                    user_key(r.user_id, r.anonymous_id),
                )
            )
        if not keyed:
            return self
        self.minutes.update((m, t) for m, t, _, _ in keyed)
        hour_of = {m: m.replace(minute=0) for m in {k[0] for k in keyed}}
        hours: Counter[tuple[datetime, str]] = Counter()
        hour_dims: Counter[tuple[datetime, str, str, str]] = Counter()
        for (hour, type_, values), n in Counter((hour_of[m], t, v) for m, t, v, _ in keyed).items():
            hours[(hour, type_)] += n
            for dimension, value in zip(DIMENSIONS, values, strict=True):
                hour_dims[(hour, dimension, value, type_)] += n
        # The users of each distinct (hour, type, values) first, then whole sets into each
        # sketch's: set unions run in C. Adding user by user to twelve sets, the whole
        # count took 12.4-14.6 µs an event of a batch of 5,000, now 10.9-12.2 (same result).
        groups: defaultdict[tuple[datetime, str, tuple[str, ...]], set[str]] = defaultdict(set)
        for m, t, v, u in keyed:
            if u is not None:
                groups[(hour_of[m], t, v)].add(u)
        users: defaultdict[tuple[datetime, str, str], set[str]] = defaultdict(set)
        for (hour, type_, values), members in groups.items():
            users[(hour, ALL, "")] |= members
            users[(hour, TYPE, type_)] |= members
            for dimension, value in zip(DIMENSIONS, values, strict=True):
                users[(hour, dimension, value)] |= members
        self.hours.update(hours)
        self.hour_dims.update(hour_dims)
        for (hour, dimension, value), members in users.items():
            self.users[(HOUR, hour, dimension, value)] |= members
        if self.days_too:
            for (hour, type_), n in hours.items():
                self.days[(hour.replace(hour=0), type_)] += n
            for (hour, dimension, value, type_), n in hour_dims.items():
                self.day_dims[(hour.replace(hour=0), dimension, value, type_)] += n
            for (hour, dimension, value), members in users.items():
                self.users[(DAY, hour.replace(hour=0), dimension, value)] |= members
        return self

    def __bool__(self) -> bool:
        return bool(self.minutes)


def _counts_json(counter: Counter[Any], names: Sequence[str]) -> str:
    return orjson.dumps([dict(zip(names, (*key, n), strict=True)) for key, n in counter.items()]).decode()


_SKETCHES_READ_SQL = """
SELECT s.grain, s.start, s.dimension, s.value, s.sketch
FROM json_to_recordset(%s::json) AS k(grain text, start timestamptz, dimension text, value text)
JOIN analytics_user_sketch s
  ON s.stream_id = %s AND s.grain = k.grain AND s.dimension = k.dimension AND s.start = k.start
 AND s.value = k.value
"""

# Every count rollup and the sketches in one statement (data-modifying CTEs), so that a
# batch costs two round trips whatever it holds: this read of the sketches it touches, and
# this write. Rows come aggregated from Python (a batch of 1,000 events is some 300 rows).
# The sketches' arrays are bound in binary (%b), as analytics/activity.py says why.
_WRITE_SQL = """
WITH minute_rows AS (
    INSERT INTO analytics_minute_count (stream_id, minute, type, count)
    SELECT %(stream_id)s, r.t, r.type, r.n FROM json_to_recordset(%(minutes)s::json) AS r(t timestamptz, type text, n bigint)
    ON CONFLICT (stream_id, minute, type) DO UPDATE SET count = analytics_minute_count.count + EXCLUDED.count
), hour_rows AS (
    INSERT INTO analytics_hour_count (stream_id, hour, type, count)
    SELECT %(stream_id)s, r.t, r.type, r.n FROM json_to_recordset(%(hours)s::json) AS r(t timestamptz, type text, n bigint)
    ON CONFLICT (stream_id, hour, type) DO UPDATE SET count = analytics_hour_count.count + EXCLUDED.count
), day_rows AS (
    INSERT INTO analytics_day_count (stream_id, day, type, count)
    SELECT %(stream_id)s, r.t, r.type, r.n FROM json_to_recordset(%(days)s::json) AS r(t timestamptz, type text, n bigint)
    ON CONFLICT (stream_id, day, type) DO UPDATE SET count = analytics_day_count.count + EXCLUDED.count
), hour_dim_rows AS (
    INSERT INTO analytics_hour_dimension (stream_id, dimension, hour, value, type, count)
    SELECT %(stream_id)s, r.d, r.t, r.v, r.type, r.n
    FROM json_to_recordset(%(hour_dims)s::json) AS r(t timestamptz, d text, v text, type text, n bigint)
    ON CONFLICT (stream_id, dimension, hour, value, type)
    DO UPDATE SET count = analytics_hour_dimension.count + EXCLUDED.count
), day_dim_rows AS (
    INSERT INTO analytics_day_dimension (stream_id, dimension, day, value, type, count)
    SELECT %(stream_id)s, r.d, r.t, r.v, r.type, r.n
    FROM json_to_recordset(%(day_dims)s::json) AS r(t timestamptz, d text, v text, type text, n bigint)
    ON CONFLICT (stream_id, dimension, day, value, type)
    DO UPDATE SET count = analytics_day_dimension.count + EXCLUDED.count
)
INSERT INTO analytics_user_sketch (stream_id, grain, dimension, start, value, users, sketch)
SELECT %(stream_id)s, g, d, t, v, u, s
FROM unnest(%(s_grain)b::text[], %(s_dim)b::text[], %(s_start)b::timestamptz[], %(s_value)b::text[],
            %(s_users)b::bigint[], %(s_sketch)b::bytea[]) AS r(g, d, t, v, u, s)
ON CONFLICT (stream_id, grain, dimension, start, value)
DO UPDATE SET users = EXCLUDED.users, sketch = EXCLUDED.sketch
"""


def rollups_write(*, stream_id: int, tally: Tally) -> None:
    """Add ``tally`` to the stream's rollups: two statements, whatever the batch holds.

    The sketches are read, merged and written back: safe because the caller holds
    the stream's processing lock (the processor, or ``rollups_rebuild``).
    """
    if not tally:
        return
    keys = list(tally.users)
    late = late_hours({start for grain, start, _, _ in keys if grain == HOUR}, now=timezone.now())
    if late:
        spans_invalidate(stream_id=stream_id, lo=late[0], hi=late[-1] + timedelta(hours=1))
    merged: dict[tuple[str, datetime, str, str], Any] = {}
    with bound_cursor() as cursor:
        if keys:
            document = orjson.dumps(
                [{"grain": g, "start": t, "dimension": d, "value": v} for g, t, d, v in keys]
            ).decode()
            cursor.execute(_SKETCHES_READ_SQL, [document, stream_id], binary=True)
            for grain, start, dimension, value, data in cursor.fetchall():
                merged[(grain, start.astimezone(UTC), dimension, value)] = sketch_load(data)
        columns: dict[str, list[Any]] = {n: [] for n in ("s_grain", "s_dim", "s_start", "s_value", "s_users")}
        blobs: list[bytes] = []
        for key, users in tally.users.items():
            sketch = merged.get(key)
            if sketch is None:
                sketch = new_sketch()
            for user in users:
                sketch.update(user)
            grain, start, dimension, value = key
            columns["s_grain"].append(grain)
            columns["s_dim"].append(dimension)
            columns["s_start"].append(start)
            columns["s_value"].append(value)
            columns["s_users"].append(round(sketch.get_estimate()))
            blobs.append(sketch.serialize_compact())
        cursor.execute(
            _WRITE_SQL,
            {
                "stream_id": stream_id,
                "minutes": _counts_json(tally.minutes, ("t", "type", "n")),
                "hours": _counts_json(tally.hours, ("t", "type", "n")),
                "days": _counts_json(tally.days, ("t", "type", "n")),
                "hour_dims": _counts_json(tally.hour_dims, ("t", "d", "v", "type", "n")),
                "day_dims": _counts_json(tally.day_dims, ("t", "d", "v", "type", "n")),
                **columns,
                "s_sketch": blobs,
            },
        )


# --- ranges ------------------------------------------------------------------------------------

MINUTE = "minute"
GRAIN_STEP = {MINUTE: timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
LOG = "log"


def floor_to(at: datetime, grain: str) -> datetime:
    at = at.astimezone(UTC)
    if grain == MINUTE:
        return at.replace(second=0, microsecond=0)
    if grain == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def ceil_to(at: datetime, grain: str) -> datetime:
    floor = floor_to(at, grain)
    return floor if floor == at else floor + GRAIN_STEP[grain]


Piece = tuple[str, datetime, datetime]


def decompose(start: datetime, end: datetime, grains: Sequence[str]) -> list[Piece]:
    """[start, end) as whole buckets of the coarsest grains that fit, finer ones at the edges,
    and what no grain covers as ``("log", a, b)``. ``grains`` run from fine to coarse."""
    if start >= end:
        return []
    if not grains:
        return [(LOG, start, end)]
    grain = grains[-1]
    c1, c2 = ceil_to(start, grain), floor_to(end, grain)
    if c1 >= c2:
        return decompose(start, end, grains[:-1])
    return [*decompose(start, c1, grains[:-1]), (grain, c1, c2), *decompose(c2, end, grains[:-1])]


# --- rebuilding from the log -------------------------------------------------------------------

# Only the parts of payload and context that a rollup reads, so a rebuild moves little.
_LOG_ROLLUP_COLUMNS_SQL = """
SELECT type, event_time, user_id, anonymous_id,
       jsonb_build_object('page', payload -> 'page'),
       jsonb_build_object('page', context -> 'page', 'country', context -> 'country',
                          'location', context -> 'location'),
       enrichment, api_key_id
FROM streams_log
"""
_LOG_HOUR_SQL = _LOG_ROLLUP_COLUMNS_SQL + "WHERE stream_id = %s AND event_time >= %s AND event_time < %s\n"
_CLEAR_HOUR_SQL = """
DELETE FROM analytics_minute_count WHERE stream_id = %(s)s AND minute >= %(h)s AND minute < %(h)s + interval '1 hour';
DELETE FROM analytics_hour_count WHERE stream_id = %(s)s AND hour = %(h)s;
DELETE FROM analytics_hour_dimension WHERE stream_id = %(s)s AND dimension = ANY(%(dims)s) AND hour = %(h)s;
DELETE FROM analytics_user_sketch WHERE stream_id = %(s)s AND grain = 'h' AND dimension = ANY(%(sdims)s)
    AND start = %(h)s;
"""
# What the rollups have counted of one hour: its count rollup's total over all types, or its
# minute rollup's where that is kept longer (the settings allow it); two index ranges of a
# few dozen rows, nothing where no rollup exists yet.
_HOUR_COUNTED_SQL = """
SELECT GREATEST(
    (SELECT sum(count) FROM analytics_hour_count WHERE stream_id = %(s)s AND hour = %(lo)s),
    (SELECT sum(count) FROM analytics_minute_count WHERE stream_id = %(s)s AND minute >= %(lo)s AND minute < %(hi)s))
"""
# What the hour's minute, count and dimension rollups hold (the minute NULL but for a minute row,
# the dimension NULL for a count row): a recount moves its day by the difference, and a kept
# hour takes the log's events its minutes lack (``_kept_hour_floor``). A few hundred rows.
_HOUR_ROLLUPS_SQL = """
SELECT minute, NULL::text, NULL::text, type, count FROM analytics_minute_count
WHERE stream_id = %(s)s AND minute >= %(lo)s AND minute < %(hi)s
UNION ALL
SELECT NULL, NULL, NULL, type, count FROM analytics_hour_count WHERE stream_id = %(s)s AND hour = %(lo)s
UNION ALL
SELECT NULL, dimension, value, type, count FROM analytics_hour_dimension
WHERE stream_id = %(s)s AND dimension = ANY(%(dims)s) AND hour = %(lo)s
"""
# A row that a difference has taken to zero (or below, where it was already wrong) goes, as a
# recount would not write it.
_COUNTS_ZERO_SQL = """
DELETE FROM analytics_{grain}_count a
USING json_to_recordset(%(rows)s::json) AS r(t timestamptz, type text, n bigint)
WHERE a.stream_id = %(s)s AND a.{grain} = r.t AND a.type = r.type AND a.count <= 0
"""
_REBUILD_DAY_SQL = """
DELETE FROM analytics_day_count WHERE stream_id = %(s)s AND day = %(d)s;
INSERT INTO analytics_day_count (stream_id, day, type, count)
SELECT %(s)s, %(d)s, type, sum(count) FROM analytics_hour_count
WHERE stream_id = %(s)s AND hour >= %(d)s AND hour < %(d)s + interval '1 day' GROUP BY type;
DELETE FROM analytics_day_dimension WHERE stream_id = %(s)s AND dimension = ANY(%(dims)s) AND day = %(d)s;
INSERT INTO analytics_day_dimension (stream_id, dimension, day, value, type, count)
SELECT %(s)s, dimension, %(d)s, value, type, sum(count) FROM analytics_hour_dimension
WHERE stream_id = %(s)s AND dimension = ANY(%(dims)s) AND hour >= %(d)s AND hour < %(d)s + interval '1 day'
GROUP BY dimension, value, type;
DELETE FROM analytics_user_sketch WHERE stream_id = %(s)s AND grain = 'd' AND dimension = ANY(%(sdims)s)
    AND start = %(d)s;
"""
_DAY_SKETCHES_SQL = """
SELECT dimension, value, sketch FROM analytics_user_sketch
WHERE stream_id = %s AND grain = 'h' AND dimension = ANY(%s) AND start >= %s AND start < %s
"""
_SKETCH_INSERT_SQL = """
INSERT INTO analytics_user_sketch (stream_id, grain, dimension, start, value, users, sketch)
SELECT %s, 'd', d, %s, v, u, s FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bytea[]) AS r(d, v, u, s)
"""
SKETCH_DIMENSIONS = [ALL, TYPE, *DIMENSIONS]


@dataclass
class _Row:
    type: str
    event_time: datetime
    user_id: str | None
    anonymous_id: str | None
    payload: dict[str, Any]
    context: dict[str, Any]
    enrichment: dict[str, Any]
    api_key_id: int | None


def rebuild_hour(*, stream_id: int, hour: datetime) -> int | None:
    """Recount one UTC hour's minute, hour and dimension rollups and hour sketches from the log.

    Returns the events recounted, or None where the log holds fewer of the hour's events than
    its rollups have counted (the rule of ``_AGAINST_LOG_SQL``): retention took some, and a
    recount would lose them and their users, so the hour's rollups are kept, and take only the
    log's events they certainly never counted (``_kept_hour_floor``). From ``wholly_logged_from``
    on retention has taken none, and such an hour is recounted. Where the recount changes the
    hour, its day follows in the same transaction (``_day_follow``). The caller holds the
    stream's processing lock in its transaction.
    """
    end = hour + timedelta(hours=1)
    was = Tally(days_too=False)
    with bound_cursor() as cursor:
        cursor.execute(_LOG_HOUR_SQL, [stream_id, hour, end], binary=True)
        rows = [_Row(*r) for r in cursor.fetchall()]
        # The rows the recount reads anyway are the log's side of the rule: no count of the log more.
        cursor.execute(_HOUR_COUNTED_SQL, {"s": stream_id, "lo": hour, "hi": end})
        counted = cursor.fetchone()[0]  # type: ignore[index]
        cursor.execute(_HOUR_ROLLUPS_SQL, {"s": stream_id, "lo": hour, "hi": end, "dims": list(DIMENSIONS)})
        for minute, dimension, value, type_, n in cursor.fetchall():
            if minute is not None:
                was.minutes[(minute.astimezone(UTC), type_)] = n
            elif dimension is None:
                was.hours[(hour, type_)] = n
            else:
                was.hour_dims[(hour, dimension, value, type_)] = n
    logged = Tally(days_too=False).add_records(rows)
    if counted is not None and counted > len(rows):
        whole_from = wholly_logged_from(stream_id=stream_id)
        if whole_from is None or hour < whole_from:
            _kept_hour_floor(stream_id=stream_id, hour=hour, rows=rows, logged=logged, was=was)
            return None
    # The merged spans that hold the hour go first: the hour may lose users (an erasure).
    spans_invalidate(stream_id=stream_id, lo=hour, hi=end)
    # Several statements in one round trip: Django's cursor binds on the client, which allows them.
    with connection.cursor() as django_cursor:
        django_cursor.execute(
            _CLEAR_HOUR_SQL, {"s": stream_id, "h": hour, "dims": list(DIMENSIONS), "sdims": SKETCH_DIMENSIONS}
        )
    # An hour without count rows moves no day (``_day_follow``).
    moved = (_shift(logged.hours, was.hours), _shift(logged.hour_dims, was.hour_dims)) if was.hours else None
    _hour_write(stream_id=stream_id, hour=hour, rows=rows, tally=logged, moved=moved)
    return len(rows)


def _kept_hour_floor(*, stream_id: int, hour: datetime, rows: Sequence[_Row], logged: Tally, was: Tally) -> None:
    """Add to a kept hour the log's events that its rollups certainly never counted.

    The log never holds more events of a kind than happened, so a kept count below the log's
    is wrong for certain; but raised key by key (a minute's, a type's, a dimension value's) the
    grains would no longer add up, as a raise can't tell which of the log's events it stands
    for. Events of a minute and type that the kept minute rollup has no row for can be told:
    the processor writes a batch to every grain in one statement (``_WRITE_SQL``) and retention
    takes an hour's minutes together, so where the hour still has minute and count rows, those
    events are in none of its rollups, and are added as the processor would have added them:
    to every grain, users (a union) and active people, and the day by as much
    (``_day_follow``). A kept row below the log's but not empty, or a count too high, is left
    as it is: the log no longer tells which events it lacks, and a count too high cannot be
    told from retention's taking (before ``wholly_logged_from``). A kept day moves only with
    its hours: against its own log it would take a count of the whole day's log again.
    """
    if not (was.minutes and was.hours):
        return
    missing = {key for key in logged.minutes if key not in was.minutes}
    if not missing:
        return
    rows = [r for r in rows if (minute_of(r.event_time), r.type) in missing]
    tally = Tally(days_too=False).add_records(rows)
    _hour_write(stream_id=stream_id, hour=hour, rows=rows, tally=tally, moved=(tally.hours, tally.hour_dims))


def _hour_write(
    *,
    stream_id: int,
    hour: datetime,
    rows: Sequence[_Row],
    tally: Tally,
    moved: tuple[Counter[tuple[datetime, str]], Counter[tuple[datetime, str, str, str]]] | None,
) -> None:
    """Add ``tally`` to the hour's rollups, and to its day what it takes of the hour's ``moved`` counts."""
    follows = moved is not None and _day_follow(stream_id=stream_id, hour=hour, tally=tally, moved=moved)
    rollups_write(stream_id=stream_id, tally=tally)
    if follows:
        activity_write(stream_id=stream_id, records=rows)
        _rows_at_zero_drop(stream_id=stream_id, grain="day", counts=tally.days, dims=tally.day_dims)


def _day_follow(
    *,
    stream_id: int,
    hour: datetime,
    tally: Tally,
    moved: tuple[Counter[tuple[datetime, str]], Counter[tuple[datetime, str, str, str]]],
) -> bool:
    """Add to ``tally`` (written to the hour) what the hour's day takes of how the hour's counts and
    dimension counts ``moved``; whether it takes any.

    A day is its hours' sum, and the union of their users and active people. A day the log
    holds all of is rebuilt from its hours afterwards (``rebuild_day``), but one it holds only
    part of is kept (``buckets_partly_logged``): its other hours may be kept, or their rollups
    may have expired before the day's, so it cannot be summed again. Its counts and dimension
    counts move by the difference the recount made to the hour instead, which leaves the day
    equal to the sum of its hours where it was before: the processor adds a batch to an hour
    and its day in one statement, so what the hour missed (or had too many of), the day did
    too. Users and active people can only be added: the day's sketches take the union of the
    hour's recounted users (a union is idempotent, so users the day already holds count once),
    and its people's first and last times widen to the hour's events (``activity_write``). A
    user or person the recount no longer finds in the hour stays in the kept day: a sketch
    cannot take one out, and merging the day again from its hours' sketches would be sound
    only where all of them are kept and right, which the kept ones need not be.

    The day follows only an hour that moved and that had count rows (one without has expired
    from the rollups, its events still counted in the day, or has none yet, and then nor has
    its day: the caller passes no ``moved``), and only a day the log holds part of, asked only
    then (a count of the day's log): a day the log holds all of must not move first, or it
    would look partly logged (counted more than the log holds) and be kept. A day that moves
    stays kept where the hour gained; where it lost (an hour from ``wholly_logged_from`` on
    that had counted too many) the day may come to hold what the log holds, and is then
    rebuilt from its hours as a whole day is.
    """
    days = Counter({(day_of(h), t): n for (h, t), n in moved[0].items()})
    day_dims = Counter({(day_of(h), d, v, t): n for (h, d, v, t), n in moved[1].items()})
    if not (days or day_dims):
        return False
    day = day_of(hour)
    if not buckets_partly_logged(stream_id=stream_id, grain=DAY, starts=[day]):
        return False
    tally.days, tally.day_dims = days, day_dims
    for (_, _, dimension, value), members in list(tally.users.items()):
        tally.users[(DAY, day, dimension, value)] = members
    return True


def _rows_at_zero_drop(
    *, stream_id: int, grain: str, counts: Counter[tuple[datetime, str]], dims: Counter[tuple[datetime, str, str, str]]
) -> None:
    """After differences were added to the rollups of ``grain``: the rows they took down to zero go."""
    counts = Counter({key: n for key, n in counts.items() if n < 0})
    dims = Counter({key: n for key, n in dims.items() if n < 0})
    with connection.cursor() as django_cursor:
        if counts:
            rows = _counts_json(counts, ("t", "type", "n"))
            django_cursor.execute(_COUNTS_ZERO_SQL.format(grain=grain), {"s": stream_id, "rows": rows})
        if dims:
            rows = _counts_json(dims, ("t", "d", "v", "type", "n"))
            django_cursor.execute(_DIMS_ZERO_SQL.format(grain=grain), {"s": stream_id, "rows": rows})


def rebuild_day(*, stream_id: int, day: datetime) -> None:
    """Day rollups and day sketches of one UTC day from its (already rebuilt) hours.

    The caller leaves out a day the log holds only part of (``buckets_partly_logged``): its
    hours' rollups may have expired before it, and its people are recounted from the log.
    """
    with connection.cursor() as django_cursor:
        django_cursor.execute(
            _REBUILD_DAY_SQL, {"s": stream_id, "d": day, "dims": list(DIMENSIONS), "sdims": SKETCH_DIMENSIONS}
        )
    _day_sketches_from_hours(stream_id=stream_id, day=day, cleared=True)


def _day_sketches_from_hours(*, stream_id: int, day: datetime, cleared: bool = False) -> None:
    """A day's sketches as the union of its hours' sketches."""
    with bound_cursor() as cursor:
        if not cleared:
            cursor.execute(_CLEAR_SKETCHES_SQL, [stream_id, DAY, SKETCH_DIMENSIONS, day])
        cursor.execute(_DAY_SKETCHES_SQL, [stream_id, SKETCH_DIMENSIONS, day, day + timedelta(days=1)], binary=True)
        unions: dict[tuple[str, str], Any] = {}
        for dimension, value, data in cursor.fetchall():
            union = unions.get((dimension, value))
            if union is None:
                union = unions[(dimension, value)] = datasketches.hll_union(LG_K)
            union.update(sketch_load(data))
        if not unions:
            return
        dims, values, users, blobs = [], [], [], []
        for (dimension, value), union in unions.items():
            sketch = union.get_result(SKETCH_TYPE)
            dims.append(dimension)
            values.append(value)
            users.append(round(sketch.get_estimate()))
            blobs.append(sketch.serialize_compact())
        cursor.execute(_SKETCH_INSERT_SQL, [stream_id, day, dims, values, users, blobs])


# An erasure's tombstones: the dimension counts move by the difference per key, where the
# bucket's rows are still kept (a count row of the bucket and type exists: retention takes a
# bucket's rows together), and a row left at zero goes, as a recount would not write it.
_DIMS_SHIFT_SQL = """
INSERT INTO analytics_{grain}_dimension AS a (stream_id, dimension, {grain}, value, type, count)
SELECT %(s)s, r.d, r.t, r.v, r.type, r.n
FROM json_to_recordset(%(rows)s::json) AS r(t timestamptz, d text, v text, type text, n bigint)
WHERE EXISTS (SELECT 1 FROM analytics_{grain}_count c WHERE c.stream_id = %(s)s AND c.{grain} = r.t AND c.type = r.type)
ON CONFLICT (stream_id, dimension, {grain}, value, type) DO UPDATE SET count = a.count + EXCLUDED.count
"""
_DIMS_ZERO_SQL = """
DELETE FROM analytics_{grain}_dimension a
USING json_to_recordset(%(rows)s::json) AS r(t timestamptz, d text, v text, type text, n bigint)
WHERE a.stream_id = %(s)s AND a.dimension = r.d AND a.{grain} = r.t AND a.value = r.v AND a.type = r.type
  AND a.count <= 0
"""
_CLEAR_SKETCHES_SQL = """
DELETE FROM analytics_user_sketch WHERE stream_id = %s AND grain = %s AND dimension = ANY(%s) AND start = %s
"""
_SKETCH_GRAIN_INSERT_SQL = """
INSERT INTO analytics_user_sketch (stream_id, grain, dimension, start, value, users, sketch)
SELECT %s, %s, d, %s, v, u, s FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bytea[]) AS r(d, v, u, s)
"""
# The buckets among ``starts`` whose count rollup's events, all types together, are equal to
# (``=``: the log still holds every one of them) or more than (``>``) the bucket's log rows,
# tombstones included. The log never holds more than was counted, so a shortfall means
# retention took some (a late event sits in a later day's partition than the rest of its
# bucket) and a recount would drop them and their users; a bucket without count rows has left
# the rollups, or has none yet. From ``wholly_logged_from`` on retention has taken nothing, and
# a shortfall there means the rollups counted too many (``_against_log``). One index range
# count of the log a bucket that has count rows, about the cost of the recount that follows.
_AGAINST_LOG_SQL = """
SELECT c.{grain} FROM analytics_{grain}_count c
WHERE c.stream_id = %(s)s AND c.{grain} = ANY(%(starts)s)
GROUP BY c.{grain}
HAVING sum(c.count) {compare} (
    SELECT count(*) FROM streams_log l
    WHERE l.stream_id = %(s)s AND l.event_time >= c.{grain} AND l.event_time < c.{grain} + %(step)s)
"""
_LOG_OFFSETS_SQL = (
    _LOG_ROLLUP_COLUMNS_SQL
    + 'WHERE stream_id = %s AND "offset" = ANY(%s::bigint[]) AND logged_at >= %s AND logged_at <= %s\n'
)


def redaction_records(*, stream_id: int, offsets: Sequence[int], logged: tuple[datetime, datetime]) -> list[Any]:
    """What the rollups counted of the log entries at ``offsets``, read before an erasure redacts them."""
    with bound_cursor() as cursor:
        cursor.execute(_LOG_OFFSETS_SQL, [stream_id, list(offsets), *logged], binary=True)
        return [_Row(*r) for r in cursor.fetchall()]


def _shift(new: Counter[Any], old: Counter[Any]) -> Counter[Any]:
    delta: Counter[Any] = Counter(new)
    delta.subtract(old)
    return Counter({key: n for key, n in delta.items() if n})


# The stream's oldest event left in the log: its offsets follow logged_at, which never goes
# back, so one probe of the primary key a partition.
_LOG_OLDEST_SQL = 'SELECT logged_at FROM streams_log WHERE stream_id = %s ORDER BY "offset" LIMIT 1'


def wholly_logged_from(*, stream_id: int) -> datetime | None:
    """An event time from which the log still holds every event of the stream (None: it holds none).

    Retention takes a stream's events by whole UTC days of ``logged_at``, oldest first, all of
    a day's before any of the next day's (streams/retention.py, ``log_expire``): the days after
    the oldest the log still holds some of are whole. No event is logged before
    ``logged_at_floor`` of its event time (the intake's future tolerance), so every event from
    the time whose floor is the start of those days is in them. Rollups of a bucket from then on
    that has counted more than the log holds counted too many, and a recount corrects them.
    """
    with bound_cursor() as cursor:
        cursor.execute(_LOG_OLDEST_SQL, [stream_id])
        row = cursor.fetchone()
    if row is None:
        return None
    whole_days_from = day_of(row[0]) + timedelta(days=1)
    return whole_days_from + (whole_days_from - logged_at_floor(whole_days_from))


def _against_log(*, stream_id: int, grain: str, starts: Sequence[datetime], compare: str) -> list[datetime]:
    if not starts:
        return []
    name, step = ("hour", timedelta(hours=1)) if grain == HOUR else ("day", timedelta(days=1))
    whole_from = wholly_logged_from(stream_id=stream_id)
    before = [s for s in starts if whole_from is None or s < whole_from]
    asked = [(before, compare)]
    if compare == "=":
        # From ``whole_from`` on, a bucket that counted more than the log holds is whole too.
        asked.append(([s for s in starts if whole_from is not None and s >= whole_from], ">="))
    found: list[datetime] = []
    with bound_cursor() as cursor:
        for buckets, how in asked:
            if buckets:
                sql = _AGAINST_LOG_SQL.format(grain=name, compare=how)
                cursor.execute(sql, {"s": stream_id, "starts": buckets, "step": step})
                found += [row[0].astimezone(UTC) for row in cursor.fetchall()]
    return sorted(found)


def _whole(*, stream_id: int, grain: str, starts: Sequence[datetime]) -> list[datetime]:
    """The buckets (``HOUR`` or ``DAY``) among ``starts`` whose sketches the log can rebuild (``_AGAINST_LOG_SQL``)."""
    return _against_log(stream_id=stream_id, grain=grain, starts=starts, compare="=")


def buckets_partly_logged(*, stream_id: int, grain: str, starts: Sequence[datetime]) -> list[datetime]:
    """The buckets (``HOUR`` or ``DAY``) among ``starts`` whose rollups have counted more events than
    the log still holds (``_AGAINST_LOG_SQL``) before ``wholly_logged_from``: a recount from the log
    would lose the others."""
    return _against_log(stream_id=stream_id, grain=grain, starts=starts, compare=">")


def _sketches_replace(*, stream_id: int, grain: str, start: datetime, users: dict[tuple[str, str], set[str]]) -> None:
    with bound_cursor() as cursor:
        cursor.execute(_CLEAR_SKETCHES_SQL, [stream_id, grain, SKETCH_DIMENSIONS, start])
        if not users:
            return
        dims, values, counts, blobs = [], [], [], []
        for (dimension, value), members in users.items():
            sketch = new_sketch()
            for user in members:
                sketch.update(user)
            dims.append(dimension)
            values.append(value)
            counts.append(round(sketch.get_estimate()))
            blobs.append(sketch.serialize_compact())
        cursor.execute(_SKETCH_GRAIN_INSERT_SQL, [stream_id, grain, start, dims, values, counts, blobs])


def _log_users(*, stream_id: int, lo: datetime, hi: datetime, grain: str) -> dict[tuple[str, str], set[str]]:
    with bound_cursor() as cursor:
        cursor.execute(_LOG_HOUR_SQL, [stream_id, lo, hi], binary=True)
        rows = [_Row(*r) for r in cursor.fetchall()]
    tally = Tally(days_too=grain == DAY).add_records(rows)
    return {(d, v): users for (g, start, d, v), users in tally.users.items() if g == grain and start == lo}


def rollups_redacted(*, stream_id: int, records: Sequence[Any], hours_kept_from: datetime) -> None:
    """Correct the rollups for ``records`` (``redaction_records``) that an erasure has just made tombstones.

    Counts by type stay: a tombstone keeps its type and time. The dimension counts move by
    the difference between the records and their tombstones, where their hour or day rows are
    kept. Nothing is recounted from the log: rollups outlive the log's events (README,
    Retention), and an hour whose other events the log no longer holds (an event that came in
    late sits in a later day's partition than the others of its hour) would lose them. A
    HyperLogLog sketch cannot take a user out, so the sketches of the records' hours are
    rebuilt from the log where the log still holds all of the hour (``_whole``), and their
    days from their hours, or from the log for a day that begins before ``hours_kept_from``
    (the hour rollups' retention boundary) where it holds all of the day. A sketch of a bucket
    the log holds only part of is left as it was: rebuilt, it would lose the other users whose
    events have left the log, so its estimate keeps the erased person (README, Erasure). The
    caller holds the stream's processing lock in its transaction.
    """
    if not records:
        return
    tombstones = [_Row(r.type, r.event_time, None, None, {}, {}, {}, r.api_key_id) for r in records]
    old, new = Tally().add_records(records), Tally().add_records(tombstones)
    with connection.cursor() as django_cursor:
        for grain, delta in (
            ("hour", _shift(new.hour_dims, old.hour_dims)),
            ("day", _shift(new.day_dims, old.day_dims)),
        ):
            if delta:
                rows = _counts_json(delta, ("t", "d", "v", "type", "n"))
                django_cursor.execute(_DIMS_SHIFT_SQL.format(grain=grain), {"s": stream_id, "rows": rows})
                django_cursor.execute(_DIMS_ZERO_SQL.format(grain=grain), {"s": stream_id, "rows": rows})
    hours = sorted({start for grain, start, _, _ in old.users if grain == HOUR})
    days = sorted({start for grain, start, _, _ in old.users if grain == DAY})
    # Only a sketch that changes invalidates the kept windows over it: one left as it was still
    # equals their union.
    for hour in _whole(stream_id=stream_id, grain=HOUR, starts=hours):
        spans_invalidate(stream_id=stream_id, lo=hour, hi=hour + timedelta(hours=1))
        users = _log_users(stream_id=stream_id, lo=hour, hi=hour + timedelta(hours=1), grain=HOUR)
        _sketches_replace(stream_id=stream_id, grain=HOUR, start=hour, users=users)
    # A day whose hours are all kept is their union whether or not each was rebuilt (each hour
    # sketch is right either way), and changes only where an hour did, whose windows went above.
    for day in [d for d in days if d >= hours_kept_from]:
        _day_sketches_from_hours(stream_id=stream_id, day=day)
    for day in _whole(stream_id=stream_id, grain=DAY, starts=[d for d in days if d < hours_kept_from]):
        spans_invalidate(stream_id=stream_id, lo=day, hi=day + timedelta(days=1))
        users = _log_users(stream_id=stream_id, lo=day, hi=day + timedelta(days=1), grain=DAY)
        _sketches_replace(stream_id=stream_id, grain=DAY, start=day, users=users)


def log_time_bounds(*, stream_id: int) -> tuple[datetime, datetime] | None:
    with bound_cursor() as cursor:
        cursor.execute("SELECT min(event_time), max(event_time) FROM streams_log WHERE stream_id = %s", [stream_id])
        low, high = cursor.fetchone()  # type: ignore[misc]
    return None if low is None else (low, high)
