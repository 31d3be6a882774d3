"""Journeys through the log: funnels, paths within sessions, and retention cohorts.

Each question is one SQL statement over the log (``streams_log``), built here
and nowhere else. Raw SQL because each needs window functions, ordered
aggregates or ``DISTINCT ON`` over derived columns that the ORM cannot say in
one statement; the plans and their measured cost are in docs/QUERIES.md and
docs/BENCHMARKS.md.

A person is ``user_id``, else ``anonymous_id``; events with neither take no part
in funnels or retention. Events are ordered by event time, then log offset.
"""

from __future__ import annotations

import itertools
import time as clock
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from django.db import connection, transaction

from eventflow import conf
from eventflow.errors import Invalid, Unavailable
from streams.log import log_head, log_offset_floor, logged_at_floor

from .cache import cached_result
from .filters import Condition, EventFilter, parse_path
from .rollups import DIMENSIONS as ROLLUP_DIMENSIONS
from .rollups import dimension_sql as rollup_dimension_sql

PERSON = "COALESCE(l.user_id, l.anonymous_id)"
# Where a page is written: the payload's page (the tracker and the starter schemas), else context.page.path.
PAGE = "COALESCE(l.payload ->> 'page', l.context #>> '{page,path}')"
OTHER = "$other"
END = "$end"
MAX_STEPS = 10
MAX_WINDOW = timedelta(days=90)
MAX_DEPTH = 5
# Paths from a start with at most this many events in the range read only the sessions that hold it.
FEW_STARTS = 5000
MAX_TOP = 50
MAX_PERIODS = 12

# Dimensions by name (funnel breakdowns): SQL over the log row ``l``. Any property
# (payload.…, context.…, enrichment.…) is a dimension too. The names the breakdown endpoint
# knows mean what they mean there (analytics/rollups.py: a page without its query, a country
# from the context as sent), so a funnel and a breakdown put the same people under the same
# value; an event without one has none (NULL) rather than ''.
DIMENSIONS: dict[str, str] = {
    "type": "l.type",
    **{name: f"NULLIF({rollup_dimension_sql(name, 'l')}, '')" for name in ROLLUP_DIMENSIONS if name != "api_key"},
}


def dimension_sql(name: str) -> tuple[str, list[Any]]:
    """SQL of a dimension over ``l`` and its parameters, or ``Invalid``."""
    if name in DIMENSIONS:
        return DIMENSIONS[name], []
    if name.split(".", 1)[0] in ("payload", "context", "enrichment"):
        root, path = parse_path(name)
        return f"l.{root} #>> %s", [list(path)]
    raise Invalid(
        "invalid_parameter",
        f"breakdown is one of {', '.join(DIMENSIONS)}, or a property (payload.…, context.…, enrichment.…).",
        {"breakdown": name},
    )


def _conditions_sql(conditions: tuple[Condition, ...]) -> tuple[str, list[Any]]:
    return EventFilter(conditions=conditions).to_sql("l")


# The funnel's plan: each later step joins its events with the people of the step before, one row
# per person. The planner cannot know that and chose merge joins, sorting a step's 420,000 events
# by person (1.3 s of a 2.9 s funnel at 10 M); a hash of the step before takes a tenth of it. Nor
# does it know how few rows a step's aggregate hands on: at the default costs it read a step's
# events in one process (step 1 of a 10 M-event week: 707-779 ms alone, 473 ms with two workers).
FUNNEL_PLANNER = (("enable_mergejoin", "off"), ("parallel_setup_cost", "10"), ("parallel_tuple_cost", "0.001"))


# pg_try_advisory_xact_lock(class, slot): one of EVENTFLOW_JOURNEY_CONCURRENCY slots a heavy statement.
JOURNEY_LOCK_CLASS = 7303
# Takes the first free slot: the scan stops at the first lock taken, so it never holds two.
_SLOT_SQL = "SELECT s FROM generate_series(0, %s - 1) AS s WHERE pg_try_advisory_xact_lock(%s, s) LIMIT 1"
SLOT_RETRY_SECONDS = 0.1


def _journey_work_mem() -> str:
    """``work_mem`` of the heavy journey statements (EVENTFLOW_JOURNEY_WORK_MEM_MB): room to sort and hash in memory."""
    return f"{conf.get().journey_work_mem_mb}MB"


def _slot_take(cursor: Any) -> None:
    """Wait for one of the installation's journey slots (held until the transaction ends), or raise ``Unavailable``."""
    settings = conf.get()
    deadline = clock.monotonic() + settings.journey_wait_seconds
    while True:
        cursor.execute(_SLOT_SQL, [settings.journey_concurrency, JOURNEY_LOCK_CLASS])
        if cursor.fetchone() is not None:
            return
        if clock.monotonic() >= deadline:
            raise Unavailable(
                "analytics_busy",
                "Other funnels, paths or retention questions are being answered; ask again in a few seconds.",
                retry_after=5,
                details={"concurrency": settings.journey_concurrency},
            )
        clock.sleep(SLOT_RETRY_SECONDS)


@contextmanager
def _journey_statement(*, work_mem: str | None = None, planner: tuple[tuple[str, str], ...] = ()) -> Iterator[Any]:
    """A cursor in a transaction that holds a journey slot, without JIT and with room to sort and hash in memory.

    JIT compiled these statements for 1.4 to 6.3 s at 10 million events (of a funnel's 3 s and
    paths' 100 s, EXPLAIN ANALYZE on the benchmark's log) to save far less in execution; with the
    default 4 MB of ``work_mem`` their sorts and hashes spilled to disk. The slots
    (EVENTFLOW_JOURNEY_CONCURRENCY) bound how many run at once, and so their memory.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        _slot_take(cursor)
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(f"SET LOCAL work_mem = '{work_mem or _journey_work_mem()}'")
        for name, value in planner:
            cursor.execute(f"SET LOCAL {name} = {value}")
        yield cursor


def _fetch(
    sql: str, params: list[Any], *, work_mem: str = "64MB", planner: tuple[tuple[str, str], ...] = ()
) -> list[tuple[Any, ...]]:
    """Rows of one journey statement (``_journey_statement``)."""
    with _journey_statement(work_mem=work_mem, planner=planner) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- funnels -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    type: str
    conditions: tuple[Condition, ...] = ()
    label: str = ""


@dataclass
class StepResult:
    index: int
    type: str
    label: str
    count: int
    conversion_from_previous: float | None
    conversion_from_first: float | None
    drop_off: int
    median_seconds: float | None
    p90_seconds: float | None


@dataclass
class FunnelGroup:
    value: str | None
    steps: list[StepResult]


@dataclass
class FunnelResult:
    steps: list[StepResult]
    breakdown: list[FunnelGroup] | None = None


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _step_results(steps: list[Step], counts: list[int], medians: list[Any], p90s: list[Any]) -> list[StepResult]:
    out = []
    for i, step in enumerate(steps):
        count = counts[i] or 0
        previous = (counts[i - 1] or 0) if i else count
        out.append(
            StepResult(
                index=i + 1,
                type=step.type,
                label=step.label or step.type,
                count=count,
                conversion_from_previous=_rate(count, previous) if i else (1.0 if count else None),
                conversion_from_first=_rate(count, counts[0] or 0) if i else (1.0 if count else None),
                drop_off=previous - count,
                median_seconds=None if not i or medians[i] is None else round(float(medians[i]), 3),
                p90_seconds=None if not i or p90s[i] is None else round(float(p90s[i]), 3),
            )
        )
    return out


# A packed key must stay below 2**63 with room to spare.
PACKED_KEY_LIMIT = 2**62


def _packed_key(*, stream_id: int, event_filter: EventFilter) -> tuple[int, int, int, int] | None:
    """(lo, base, width, head) of a funnel's one-bigint key, ``(µs - lo) * width + (offset - base)``, or
    None where the range's microseconds and offsets don't fit in one.

    The key orders events as (event time, offset) does when every offset read lies in [base, base +
    width): the events of the range were logged at or after the filter's ``logged_at`` floor, so
    their offsets are at least the first offset of that day (``log_offset_floor``), and below the
    head read now (the statement reads only those).
    """
    if event_filter.time_from is None or event_filter.time_to is None:
        return None
    lo = round(event_filter.time_from.timestamp() * 1_000_000)
    span = round(event_filter.time_to.timestamp() * 1_000_000) - lo + 1
    head = log_head(stream_id)
    base = log_offset_floor(stream_id=stream_id, logged_from=logged_at_floor(event_filter.time_from))
    width = max(1, head - base)
    if span <= 0 or span * width >= PACKED_KEY_LIMIT:
        return None
    return lo, base, width, head


def _funnel(
    *,
    stream_id: int,
    steps: list[Step],
    window: timedelta,
    event_filter: EventFilter,
    breakdown: str | None = None,
    top: int = 10,
) -> FunnelResult:
    """People through ``steps`` in order within ``window`` of their entry (one statement).

    A person enters at their first step-1 event in the range; each later step is
    the person's earliest event matching it after the previous step (by event
    time, then log offset) and no later than entry + ``window``. Other events in
    between, repeats and out-of-order steps are passed over: A, C, B, C converts
    A → B → C with the second C. A person counts once, by their first entry.
    Every step's events lie in the range; ``event_filter`` (property filters and
    segments) applies to the events of every step.
    """
    if not 2 <= len(steps) <= MAX_STEPS:
        raise Invalid("invalid_funnel", f"A funnel has 2 to {MAX_STEPS} steps.")
    if not timedelta(seconds=1) <= window <= MAX_WINDOW:
        raise Invalid("invalid_funnel", "The conversion window is from 1 second to 90 days.")
    where, params = event_filter.to_sql("l")
    b_sql, b_params = dimension_sql(breakdown) if breakdown else ("NULL::text", [])
    b_col, b_params = (f", {b_sql} AS b", b_params) if breakdown else ("", [])
    n = len(steps)
    # One scan per distinct step (type and conditions), each free to take its own plan; steps
    # alike share one scan. A step's rows are (person, key), the key ordering events by event time,
    # then log offset, so that one min() per person finds the earliest and each step is a hash
    # aggregate, where sorting the step-1 rows by person took most of the time (docs/BENCHMARKS.md,
    # journeys). The key is one bigint where the range's microseconds and offsets fit in one
    # (``_packed_key``), else an array [event time in µs, offset]; min() over arrays took a third
    # of step 1 at 10 M events. The microseconds come from date_part's float8 seconds, rounded:
    # exact for any time within 285 years of 1970 (a 53-bit mantissa), and cheaper per row than
    # extract's numeric. People are compared byte by byte (COLLATE "C"); equality is the same
    # under any collation.
    micros = "round(date_part('epoch', l.event_time) * 1000000)::bigint"
    packed = _packed_key(stream_id=stream_id, event_filter=event_filter)
    if packed is not None:
        lo, base, width, head = packed
        key_sql, key_params = f'({micros} - %s) * %s + (l."offset" - %s)', [lo, width, base]
        # Events appended after the head was read are left out: the answer is the log's first ``head`` offsets.
        head_sql, head_params = ' AND l."offset" < %s', [head]

        def at(key: str) -> str:
            return f"({key}) / {width}"

    else:
        key_sql, key_params = f'ARRAY[{micros}, l."offset"]', []
        head_sql, head_params = "", []

        def at(key: str) -> str:
            return f"({key})[1]"

    ctes: list[str] = []
    all_params: list[Any] = []
    scans: dict[tuple[str, str, str], str] = {}
    scan_of: list[str] = []
    for step in steps:
        cond, cond_params = _conditions_sql(step.conditions)
        key = (step.type, cond, repr(cond_params))
        if key not in scans:
            scans[key] = f"e{len(scans) + 1}"
            ctes.append(
                f"""{scans[key]} AS (
    SELECT {PERSON} COLLATE "C" AS p, {key_sql} AS k{b_col}
    FROM streams_log l
    WHERE l.stream_id = %s AND l.type = %s AND (l.user_id IS NOT NULL OR l.anonymous_id IS NOT NULL)
      AND {where} AND {cond}{head_sql}
)"""
            )
            all_params += [*key_params, *b_params, stream_id, step.type, *params, *cond_params, *head_params]
        scan_of.append(scans[key])
    if breakdown:
        # The entry's breakdown value is its first step-1 event's: that row, whole.
        ctes.append(f"s1 AS (SELECT DISTINCT ON (p) p, k, {at('k')} AS t0, b FROM {scan_of[0]} ORDER BY p, k)")
    else:
        ctes.append(
            f"s1 AS (SELECT p, min(k) AS k, {at('min(k)')} AS t0, NULL::text AS b FROM {scan_of[0]} GROUP BY p)"
        )
    for i in range(2, n + 1):
        ctes.append(
            f"""s{i} AS (
    SELECT e.p, min(e.k) AS k, min(prev.t0) AS t0 FROM {scan_of[i - 1]} e JOIN s{i - 1} prev ON prev.p = e.p
    WHERE e.k > prev.k AND {at("e.k")} <= prev.t0 + %s
    GROUP BY e.p
)"""
        )
    joins = " ".join(f"LEFT JOIN s{i} ON s{i}.p = s1.p" for i in range(2, n + 1))
    times = ", ".join(f"({at(f's{i}.k')} - {at(f's{i - 1}.k')}) / 1000000.0 AS d{i}" for i in range(2, n + 1))
    ctes.append(
        f"people AS (SELECT s1.b, {', '.join(f's{i}.k IS NOT NULL AS r{i}' for i in range(2, n + 1))}, {times} "
        f"FROM s1 {joins})"
    )
    # Breakdown values ranked by entrants; joined on (is null, value) so that the join can hash.
    ctes.append(
        "ranked AS (SELECT b IS NULL AS bn, COALESCE(b, '') AS bk, "
        "row_number() OVER (ORDER BY count(*) DESC, b NULLS LAST) AS rn FROM people GROUP BY b)"
    )
    aggregates = ["count(*)"]
    for i in range(2, n + 1):
        aggregates.append(f"count(*) FILTER (WHERE r{i})")
    for i in range(2, n + 1):
        aggregates.append(f"percentile_cont(0.5) WITHIN GROUP (ORDER BY d{i})")
        aggregates.append(f"percentile_cont(0.9) WITHIN GROUP (ORDER BY d{i})")
    if breakdown:
        sql = (
            "WITH "
            + ",\n".join(ctes)
            + f"""
SELECT grouping(g.bucket) = 1 AS total, g.bucket, {", ".join(aggregates)}
FROM (
    SELECT people.*, CASE WHEN ranked.rn <= %s THEN people.b ELSE %s END AS bucket
    FROM people JOIN ranked ON ranked.bn = (people.b IS NULL) AND ranked.bk = COALESCE(people.b, '')
) g
GROUP BY GROUPING SETS ((g.bucket), ())
"""
        )
        tail: list[Any] = [top, OTHER]
    else:
        sql = "WITH " + ",\n".join(ctes[:-1]) + f"\nSELECT true, NULL::text, {', '.join(aggregates)} FROM people"
        tail = []
    window_us = window // timedelta(microseconds=1)
    all_params += [*([window_us] * (n - 1)), *tail]
    rows = _fetch(sql, all_params, work_mem=_journey_work_mem(), planner=FUNNEL_PLANNER)

    def results(row: tuple[Any, ...]) -> list[StepResult]:
        counts = list(row[2 : 2 + n])
        pct = row[2 + n :]
        medians = [None, *pct[0::2]]
        p90s = [None, *pct[1::2]]
        return _step_results(steps, counts, medians, p90s)

    total = next((row for row in rows if row[0]), None)
    result = FunnelResult(steps=results(total) if total else _step_results(steps, [0] * n, [None] * n, [None] * n))
    if breakdown:
        groups = [row for row in rows if not row[0]]
        groups.sort(key=lambda row: (row[1] == OTHER, -row[2], row[1] is None, str(row[1])))
        result.breakdown = [FunnelGroup(value=row[1], steps=results(row)) for row in groups]
    return result


def funnel(
    *,
    stream_id: int,
    steps: list[Step],
    window: timedelta,
    event_filter: EventFilter,
    breakdown: str | None = None,
    top: int = 10,
) -> FunnelResult:
    """``_funnel``'s answer, kept a short while (analytics/cache.py): the funnel API and page share it."""
    question = {
        "steps": [
            {"type": s.type, "conditions": [c.as_dict() for c in s.conditions], "label": s.label or s.type}
            for s in steps
        ],
        "window": window.total_seconds(),
        "filter": event_filter.as_dict(),
        "breakdown": breakdown,
        # Only a breakdown has a top.
        "top": top if breakdown else None,
    }
    return cached_result(
        stream_id=stream_id,
        endpoint="funnel",
        question=question,
        kind=FunnelResult,
        compute=lambda: _funnel(
            stream_id=stream_id, steps=steps, window=window, event_filter=event_filter, breakdown=breakdown, top=top
        ),
    )


# --- paths ---------------------------------------------------------------------------------------

Direction = Literal["next", "previous"]
# The label of a step: its type, and its page where it has one.
LABEL = f"l.type || COALESCE(':' || {PAGE}, '')"


@dataclass(frozen=True)
class PathStart:
    type: str
    page: str | None = None

    @property
    def label(self) -> str:
        return self.type if self.page is None else f"{self.type}:{self.page}"


@dataclass
class PathNode:
    step: str
    count: int
    children: list[PathNode] = field(default_factory=list)


@dataclass(frozen=True)
class PathRow:
    """A node of the tree, flat: its steps from the start (``path``), the last of which is ``step``."""

    level: int
    path: list[str]
    step: str
    count: int


@dataclass
class PathsResult:
    start: str
    direction: str
    sessions: int
    nodes: list[PathRow]


def _flatten(nodes: list[PathNode], prefix: list[str]) -> list[PathRow]:
    rows: list[PathRow] = []
    for node in nodes:
        path = [*prefix, node.step]
        rows.append(PathRow(level=len(path), path=path, step=node.step, count=node.count))
        rows.extend(_flatten(node.children, path))
    return rows


def _tree(
    children_of: dict[tuple[str, ...], list[tuple[str, int]]],
    prefix: tuple[str, ...],
    parent: int,
    depth: int,
    top: int,
) -> list[PathNode]:
    children = sorted(children_of.get(prefix, []), key=lambda item: (-item[1], item[0]))
    nodes: list[PathNode] = []
    for step, count in children[:top]:
        below = _tree(children_of, (*prefix, step), count, depth, top) if len(prefix) + 1 < depth else []
        nodes.append(PathNode(step=step, count=count, children=below))
    rest = sum(count for _, count in children[top:])
    if rest:
        nodes.append(PathNode(step=OTHER, count=rest))
    # Sessions whose walk stops here, before ``depth``: at any level, the start's own included, so a
    # start no session goes on from answers its sessions as one ``$end`` rather than nothing.
    ended = parent - sum(count for _, count in children)
    if ended > 0:
        nodes.append(PathNode(step=END, count=ended))
    return nodes


def _paths(
    *,
    stream_id: int,
    start: PathStart,
    direction: Direction,
    depth: int,
    top: int,
    event_filter: EventFilter,
) -> PathsResult:
    """The steps sessions take after (or before) ``start``, as a tree of the ``top`` steps per branch.

    In each session (``session_id``) with the start event in the range, the
    path runs from its first occurrence forward (``next``), or from its last
    occurrence backward (``previous``), over up to ``depth`` events of the
    session in the range that pass ``event_filter``. A step is named by the
    event's type, with ``:<page>`` where the event has a page. Per branch the
    ``top`` steps are kept; the rest add up in ``$other``, and sessions whose
    path ends there in ``$end``.
    """
    if not 1 <= depth <= MAX_DEPTH:
        raise Invalid("invalid_parameter", f"depth is from 1 to {MAX_DEPTH}.", {"depth": depth})
    where, params = event_filter.to_sql("l")
    start_sql = "l.type = %s"
    start_params: list[Any] = [start.type]
    if start.page is not None:
        start_sql += f" AND {PAGE} = %s"
        start_params.append(start.page)
    # Few sessions hold the start (at most FEW_STARTS start events): only theirs are read, by name,
    # through the (stream, session_id, event_time) index; many: one pass over the range. At 10 million
    # events, a start held by 766 sessions of a week took 0.3 s this way and 3.3 s in a pass.
    starts = _fetch(
        f"SELECT l.session_id FROM streams_log l WHERE l.stream_id = %s AND l.session_id IS NOT NULL "
        f"AND {start_sql} AND {where} LIMIT %s",
        [stream_id, *start_params, *params, FEW_STARTS + 1],
    )
    few = sorted({session for (session,) in starts}) if len(starts) <= FEW_STARTS else None
    if few == []:
        return PathsResult(start=start.label, direction=direction, sessions=0, nodes=[])
    order = "" if direction == "next" else " DESC"
    # One pass over the range's events of sessions, sorted by session and time (oldest first for
    # ``next``, newest first for ``previous``): each event is numbered in its session, the session's
    # first start found (``first``), and the ``depth`` events after it kept. At 10 million events a
    # walk from each start along the (stream, session_id, event_time) index cost 29 s over 7 days: a
    # session's walk probed each of the range's day partitions; this takes 3 to 5 s (docs/BENCHMARKS.md).
    # The label and the start's test end the sort key although (event_time, offset) is unique: so
    # they are computed before the sort, which carries them instead of the payload and context they
    # are made of (a start by page without it: 3.8 s and 200 MB sorted on disk, with it 3.2 s).
    # Sessions are compared byte by byte (COLLATE "C"): any order of sessions will do, and it is the
    # cheapest.
    sql = f"""
WITH walks AS MATERIALIZED (
    SELECT array_agg(label ORDER BY n) FILTER (WHERE n > first) AS labels
    FROM (
        SELECT s, label, n, min(n) FILTER (WHERE is_start) OVER (PARTITION BY s) AS first
        FROM (
            SELECT l.session_id COLLATE "C" AS s, ({start_sql}) AS is_start, {LABEL} AS label,
                   row_number() OVER (
                       PARTITION BY l.session_id COLLATE "C"
                       ORDER BY l.event_time{order}, l."offset"{order}, {LABEL}, ({start_sql})
                   ) AS n
            FROM streams_log l
            WHERE l.stream_id = %s AND l.session_id IS NOT NULL{" AND l.session_id = ANY(%s)" if few else ""} AND {where}
        ) numbered
    ) marked
    WHERE n BETWEEN first AND first + %s
    GROUP BY s
)
SELECT (SELECT count(*) FROM walks), w.labels[1:d.n], count(*)
FROM walks w CROSS JOIN generate_series(1, %s) AS d(n)
WHERE cardinality(w.labels) >= d.n
GROUP BY 2
"""
    rows = _fetch(
        sql,
        [*start_params, *start_params, stream_id, *([few] if few else []), *params, depth, depth],
        work_mem=_journey_work_mem(),
    )
    sessions = (
        rows[0][0]
        if rows
        else len(few)
        if few
        else _fetch(
            f"SELECT count(DISTINCT l.session_id) FROM streams_log l WHERE l.stream_id = %s AND l.session_id IS NOT NULL "
            f"AND {start_sql} AND {where}",
            [stream_id, *start_params, *params],
        )[0][0]
    )
    children_of: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
    for _, labels, count in rows:
        children_of[tuple(labels[:-1])].append((labels[-1], count))
    return PathsResult(
        start=start.label,
        direction=direction,
        sessions=sessions,
        nodes=_flatten(_tree(children_of, (), sessions, depth, top), []),
    )


def paths(
    *,
    stream_id: int,
    start: PathStart,
    direction: Direction,
    depth: int,
    top: int,
    event_filter: EventFilter,
) -> PathsResult:
    """``_paths``'s answer, kept a short while (analytics/cache.py): the paths API and page share it."""
    question = {
        "start": [start.type, start.page],
        "direction": direction,
        "depth": depth,
        "top": top,
        "filter": event_filter.as_dict(),
    }
    return cached_result(
        stream_id=stream_id,
        endpoint="paths",
        question=question,
        kind=PathsResult,
        compute=lambda: _paths(
            stream_id=stream_id, start=start, direction=direction, depth=depth, top=top, event_filter=event_filter
        ),
    )


# --- retention -----------------------------------------------------------------------------------

Period = Literal["day", "week"]


@dataclass
class Cohort:
    start: datetime
    people: int
    returning: list[int | None]
    percentages: list[float | None]


@dataclass
class RetentionResult:
    period: str
    periods: int
    cohorts: list[Cohort]
    average: list[float | None]


def period_floor(at: datetime, period: Period, tz: ZoneInfo) -> datetime:
    local = at.astimezone(tz)
    day = local.date()
    if period == "week":
        day = day - timedelta(days=day.weekday())
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def period_add(start: datetime, count: int, period: Period, tz: ZoneInfo) -> datetime:
    """The local midnight ``count`` periods after ``start`` (a DST day is 23 or 25 hours long)."""
    day = start.astimezone(tz).date() + timedelta(days=count * (7 if period == "week" else 1))
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def _days_hold_one_start(bounds: list[datetime]) -> bool:
    """True when no UTC day holds two period starts after its midnight: then a day's first and
    last event time say in which of the (at most two) periods it meets the person was active.
    Weeks always; days in every zone but those whose local midnight falls just after UTC's."""
    for lo, hi in itertools.pairwise(bounds):
        lo_utc, hi_utc = lo.astimezone(UTC), hi.astimezone(UTC)
        if lo_utc.date() == hi_utc.date() and lo_utc.time() != time(0):
            return False
    return True


def _retention_rows_log(
    *,
    stream_id: int,
    bounds: list[datetime],
    first_from: datetime,
    time_to: datetime,
    returns_to: datetime,
    periods: int,
    event: str | None,
    returning_event: str | None,
    event_filter: EventFilter,
) -> list[tuple[Any, ...]]:
    """(cohort bucket, None, size) and (cohort bucket, k, returning) from the log's events."""
    where, params = event_filter.with_time(None, None).to_sql("l")
    first_sql = "l.type = %s" if event else "TRUE"
    return_sql = "l.type = %s" if returning_event else "TRUE"
    # Only the rows that can count are read: with both events chosen, those two types (through
    # log_type_time_people, not every event of the log); with only the first event chosen, older
    # rows of other types could only return before the first cohort, which is never counted.
    scope_sql, scope_params = "TRUE", list[Any]()
    if event and returning_event:
        scope_sql, scope_params = "l.type = ANY(%s)", [sorted({event, returning_event})]
    elif event:
        scope_sql, scope_params = "(l.type = %s OR l.event_time >= %s)", [event, first_from]
    # One pass over the log: per person and period, the first first-event and the last returning
    # event. A person's first sighting is the least of their periods' first; they came back in a
    # period when its last returning event is at or after that sighting. Exact, and one hash
    # aggregate over the log instead of a second scan joined on the person (measured 5x slower).
    sql = f"""
WITH pb AS (
    SELECT {PERSON} AS p, width_bucket(l.event_time, %s::timestamptz[]) AS b,
           min(l.event_time) FILTER (WHERE {first_sql}) AS fa,
           max(l.event_time) FILTER (WHERE {return_sql}) AS lr
    FROM streams_log l
    WHERE l.stream_id = %s AND (l.user_id IS NOT NULL OR l.anonymous_id IS NOT NULL)
      AND l.event_time < %s AND {scope_sql} AND {where}
    GROUP BY 1, 2
),
cohorts AS (
    SELECT p, min(fa) AS f, width_bucket(min(fa), %s::timestamptz[]) AS c
    FROM pb GROUP BY p HAVING min(fa) >= %s AND min(fa) < %s
)
SELECT c.c, NULL::int, count(*) FROM cohorts c GROUP BY c.c
UNION ALL
SELECT c.c, pb.b - c.c, count(*) FROM cohorts c JOIN pb ON pb.p = c.p
WHERE pb.lr >= c.f AND pb.b - c.c BETWEEN 0 AND %s
GROUP BY 1, 2
"""
    all_params: list[Any] = [bounds, *([event] if event else []), *([returning_event] if returning_event else [])]
    all_params += [stream_id, returns_to, *scope_params, *params, bounds, first_from, time_to, periods]
    # The per-person-and-period aggregate holds up to people x periods groups: let it stay in
    # memory (at 10M events it spilled to disk with the default work_mem and took twice as long).
    return _fetch(sql, all_params, work_mem=_journey_work_mem())


# Retention from the per-person activity rollup (analytics/activity.py), which keeps any-type
# activity only: cohorts from the first sightings, returns from the person-day rows, whose first
# and last time each fall in a period (width_bucket over the periods' starts, as over the log).
# Period 0 is everyone in the cohort (any event returns), so only later periods are counted.
_RETENTION_ROLLUP_SQL = """
WITH cohorts AS MATERIALIZED (
    SELECT person AS p, width_bucket(first_at, %(bounds)s::timestamptz[]) AS c
    FROM analytics_person_first
    WHERE stream_id = %(s)s AND type = '' AND first_at >= %(first_from)s AND first_at < %(time_to)s
),
act AS (
    SELECT c.c, c.p,
           width_bucket(a.first_at, %(bounds)s::timestamptz[]) - c.c AS k1,
           width_bucket(a.last_at, %(bounds)s::timestamptz[]) - c.c AS k2
    FROM analytics_person_day a JOIN cohorts c ON c.p = a.person
    WHERE a.stream_id = %(s)s AND a.type = '' AND a.day >= %(d0)s AND a.day < %(d1)s
),
-- Per person, the periods they came back in as the bits of one integer (bit k: period k).
per AS (
    SELECT c, p,
           bit_or(CASE WHEN k1 BETWEEN 1 AND %(periods)s THEN 1 << k1 ELSE 0 END
                | CASE WHEN k2 BETWEEN 1 AND %(periods)s THEN 1 << k2 ELSE 0 END) AS m
    FROM act GROUP BY c, p
)
SELECT c, NULL::int, count(*) FROM cohorts GROUP BY c
UNION ALL
SELECT per.c, k, count(*) FROM per CROSS JOIN generate_series(1, %(periods)s) AS k
WHERE per.m & (1 << k) <> 0 GROUP BY 1, 2
"""


def _retention_rows_rollup(
    *,
    stream_id: int,
    bounds: list[datetime],
    first_from: datetime,
    time_to: datetime,
    returns_to: datetime,
    periods: int,
) -> list[tuple[Any, ...]]:
    """The rows of ``_retention_rows_log`` for any first and any returning event, read from the
    per-person activity rollup."""
    last = returns_to.astimezone(UTC) - timedelta(microseconds=1)
    params: dict[str, Any] = {
        "bounds": bounds,
        "s": stream_id,
        "first_from": first_from,
        "time_to": time_to,
        "d0": first_from.astimezone(UTC).date(),
        "d1": last.date() + timedelta(days=1),
        "periods": periods,
    }
    with _journey_statement() as cursor:
        cursor.execute(_RETENTION_ROLLUP_SQL, params)
        return cursor.fetchall()


def _retention(
    *,
    stream_id: int,
    period: Period,
    periods: int,
    time_from: datetime,
    time_to: datetime,
    tz: ZoneInfo,
    event: str | None,
    returning_event: str | None,
    event_filter: EventFilter,
    now: datetime,
) -> RetentionResult:
    """Cohorts of people by the local day or week they were first seen, and how many came back after.

    First seen: a person's first event (of type ``event`` when given) in the
    whole log; the cohorts are those first seen in [time_from, time_to).
    Returning in period k: an event (of type ``returning_event`` when given) in
    the k-th local day or week after the cohort's own. Period 0 is the cohort's
    own period (everyone, when no ``returning_event``). Periods that have not
    begun at ``now`` are null. ``event_filter`` (property filters and segments)
    applies to both the first and the returning events.
    """
    if not 1 <= periods <= MAX_PERIODS:
        raise Invalid("invalid_parameter", f"periods is from 1 to {MAX_PERIODS}.", {"periods": periods})
    first_from = period_floor(time_from, period, tz)
    last_cohort = period_floor(time_to - timedelta(microseconds=1), period, tz)
    returns_to = period_add(last_cohort, periods + 1, period, tz)
    # The local period starts as instants, computed here with the zone's rules (a DST day is 23 or
    # 25 hours): width_bucket puts each event in its period by binary search, so no row needs a
    # time zone conversion. Bucket i (from 1) starts at bounds[i - 1]; 0 is the time before.
    bounds = [first_from]
    while bounds[-1] < returns_to:
        bounds.append(period_add(bounds[-1], 1, period, tz))
    # The rollup keeps any-type activity only: by event type, retention reads the log.
    any_event = event is None and returning_event is None
    if any_event and event_filter.only_types_and_time and not event_filter.types and _days_hold_one_start(bounds):
        rows = _retention_rows_rollup(
            stream_id=stream_id,
            bounds=bounds,
            first_from=first_from,
            time_to=time_to,
            returns_to=returns_to,
            periods=periods,
        )
    else:
        rows = _retention_rows_log(
            stream_id=stream_id,
            bounds=bounds,
            first_from=first_from,
            time_to=time_to,
            returns_to=returns_to,
            periods=periods,
            event=event,
            returning_event=returning_event,
            event_filter=event_filter,
        )
    sizes: dict[Any, int] = {}
    back: dict[Any, dict[int, int]] = defaultdict(dict)
    for bucket, k, count in rows:
        day = bounds[bucket - 1].date()
        if k is None:
            sizes[day] = count
        else:
            back[day][k] = count
    cohorts: list[Cohort] = []
    start = first_from
    while start <= last_cohort:
        day = start.date()
        size = sizes.get(day, 0)
        returning: list[int | None] = []
        for k in range(periods + 1):
            if period_add(start, k, period, tz) > now:
                returning.append(None)
            elif k == 0 and not returning_event:
                returning.append(size)
            else:
                returning.append(back[day].get(k, 0))
        percentages = [None if r is None or not size else round(r / size, 4) for r in returning]
        cohorts.append(Cohort(start=start, people=size, returning=returning, percentages=percentages))
        start = period_add(start, 1, period, tz)
    average: list[float | None] = []
    for k in range(periods + 1):
        known = [(c.returning[k], c.people) for c in cohorts if c.returning[k] is not None and c.people]
        total = sum(people for _, people in known)
        average.append(round(sum(r or 0 for r, _ in known) / total, 4) if total else None)
    return RetentionResult(period=period, periods=periods, cohorts=cohorts, average=average)


def retention(
    *,
    stream_id: int,
    period: Period,
    periods: int,
    time_from: datetime,
    time_to: datetime,
    tz: ZoneInfo,
    event: str | None,
    returning_event: str | None,
    event_filter: EventFilter,
    now: datetime,
) -> RetentionResult:
    """``_retention``'s answer, kept a short while (analytics/cache.py): the retention API and page share it.

    ``now`` only says which periods have begun, so the question holds the start of the period it is in."""
    question = {
        "period": period,
        "periods": periods,
        "from": time_from.astimezone(UTC).isoformat(),
        "to": time_to.astimezone(UTC).isoformat(),
        "tz": tz.key,
        "event": event,
        "returning_event": returning_event,
        "filter": event_filter.as_dict(),
        "begun": period_floor(now, period, tz).isoformat(),
    }
    return cached_result(
        stream_id=stream_id,
        endpoint="retention",
        question=question,
        kind=RetentionResult,
        compute=lambda: _retention(
            stream_id=stream_id,
            period=period,
            periods=periods,
            time_from=time_from,
            time_to=time_to,
            tz=tz,
            event=event,
            returning_event=returning_event,
            event_filter=event_filter,
            now=now,
        ),
    )
