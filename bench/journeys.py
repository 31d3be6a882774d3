"""Funnels, paths, retention and processing health at volume, each against a raw query of comparable shape.

A stream's log is filled by COPY with realistic events (default 10,000,000 over 30 days, 100,000 people, 60 %
signed in; sessions of 1 to 15 events of the starter types plus ``signup`` and ``Order Completed``; pages,
browsers, devices and utm sources), day by day in event-time order as a live log is, then the log's indexes are
built and the table analysed. The processing rollup gets a row per minute of the 30 days.

Then, in one run, each endpoint is called through Django's test client (the view, the SQL, the rendering;
no HTTP server) ``--repeat`` times, and the baseline of the same shape right after it:

- funnel, three steps over 7 days (the target: < 1 s), with and without a breakdown; baseline: people per step
  type over the same rows (``count(DISTINCT person) … GROUP BY type``);
- paths from a page over 7 days, depth 3; baseline: events per session over the same range;
- retention, 8 weeks by week (the target: < 2 s); baseline: people per week over the same range;
- processing over 24 hours by hour; baseline: ``sum(events)`` of the same rollup rows.

The plans (EXPLAIN ANALYZE, BUFFERS) of the statements the endpoints ran go to docs/QUERIES.md.

Usage: ``python -m bench.journeys [--events N] [--repeat R] [--no-write]`` (``--keep`` reuses a loaded log).
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.harness import BASE_DIR, RedisSlot, connect, django_setup, log_beside_rows, machine, write_section

DATABASE = "eventflow_bench_journeys"
QUERIES_MD = BASE_DIR / "docs" / "QUERIES.md"
END = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 30
PEOPLE = 100_000
PAGES = ["/", "/pricing", "/docs", "/signup", "/blog", "/features", "/about", "/checkout", "/account", "/login"]
BROWSERS = [("Chrome", "Windows", "desktop"), ("Firefox", "Linux", "desktop"), ("Safari", "iOS", "mobile"),
            ("Chrome Mobile", "Android", "mobile"), ("Safari", "Mac OS X", "desktop"), ("Edge", "Windows", "desktop"),
            ("Samsung Internet", "Android", "tablet")]  # fmt: skip
SOURCES = [None, None, None, "google", "newsletter", "twitter", "partner"]
# Next event type after each type: a small Markov chain so that funnels and paths have shape.
NEXT = {
    "start": [("page_view", 85), ("login", 15)],
    "page_view": [("page_view", 50), ("button_click", 25), ("form_submit", 8), ("signup", 4), ("logout", 3),
                  ("Order Completed", 3), ("login", 7)],
    "button_click": [("page_view", 45), ("form_submit", 30), ("button_click", 15), ("Order Completed", 10)],
    "form_submit": [("page_view", 50), ("signup", 25), ("Order Completed", 15), ("logout", 10)],
    "login": [("page_view", 80), ("button_click", 20)],
    "signup": [("page_view", 70), ("button_click", 30)],
    "Order Completed": [("page_view", 70), ("logout", 30)],
    "logout": [("page_view", 100)],
}  # fmt: skip
_CHOICES = {k: ([t for t, _ in v], [w for _, w in v]) for k, v in NEXT.items()}
COLUMNS = (
    'stream_id, "offset", event_id, type, event_time, received_at, logged_at, user_id, anonymous_id, session_id, '
    "payload, context, enrichment, flags"
)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _day(
    rng: random.Random, day: int, per_day: int, people: list[tuple[str | None, str, int]]
) -> list[tuple[Any, ...]]:
    start = END - timedelta(days=DAYS - day)
    events: list[tuple[Any, ...]] = []
    session = 0
    while len(events) < per_day:
        user, anon, device = people[rng.randrange(len(people))]
        browser, os_name, kind = BROWSERS[device]
        source = SOURCES[rng.randrange(len(SOURCES))]
        at = start + timedelta(seconds=rng.randrange(86_400))
        sid = f"d{day}s{session}"
        session += 1
        current = "start"
        for _ in range(rng.randint(1, 15)):
            types, weights = _CHOICES[current]
            current = rng.choices(types, weights)[0]
            page = PAGES[min(int(rng.expovariate(0.45)), len(PAGES) - 1)]
            payload: dict[str, Any] = {"page": page}
            if current == "button_click":
                payload["button"] = rng.choice(["signup", "buy", "more", "menu"])
            elif current == "Order Completed":
                payload["total"] = round(rng.uniform(5, 300), 2)
            enrichment: dict[str, Any] = {"browser": browser, "os": os_name, "device_type": kind}
            if source:
                enrichment["utm"] = {"utm_source": source}
            events.append((at, current, user, anon, sid, payload, enrichment))
            at += timedelta(seconds=rng.randint(2, 240))
    events.sort(key=lambda e: e[0])
    return events


def load(db_url: str, stream_id: int, total: int) -> None:
    rng = random.Random(42)
    people = [(f"u{n}" if rng.random() < 0.6 else None, f"a{n}", rng.randrange(len(BROWSERS))) for n in range(PEOPLE)]
    per_day = total // DAYS
    offset = 0
    context = orjson.dumps({"library": {"name": "eventflow.js"}}).decode()
    with connect(db_url, autocommit=True) as conn:
        for name in ("log_stream_time", "log_type_time_people", "log_stream_user_time", "log_stream_session_time"):
            conn.execute(f"DROP INDEX IF EXISTS {name}")
        for day in range(DAYS):
            buf = io.StringIO()
            for at, kind, user, anon, sid, payload, enrichment in _day(rng, day, per_day, people):
                stamp = at.isoformat()
                buf.write(
                    f"{stream_id}\t{offset}\tb{offset}\t{_escape(kind)}\t{stamp}\t{stamp}\t{stamp}\t"
                    f"{user or chr(92) + 'N'}\t{anon}\t{sid}\t{_escape(orjson.dumps(payload).decode())}\t{context}\t"
                    f"{_escape(orjson.dumps(enrichment).decode())}\t{{}}\n"
                )
                offset += 1
            with conn.cursor() as cur, cur.copy(f"COPY streams_log ({COLUMNS}) FROM STDIN") as copy:
                copy.write(buf.getvalue())
            print(f"  day {day + 1}/{DAYS}: {offset:,} events", flush=True)
        conn.execute("UPDATE streams_streamhead SET next_offset = %s WHERE stream_id = %s", [offset, stream_id])
        log_beside_rows(conn, stream_id)
        print("  building the log's indexes", flush=True)
        conn.execute("CREATE INDEX log_stream_time ON streams_log (stream_id, event_time)")
        conn.execute(
            "CREATE INDEX log_type_time_people ON streams_log (stream_id, type, event_time) "
            'INCLUDE (user_id, anonymous_id, "offset", logged_at)'
        )
        conn.execute(
            "CREATE INDEX log_stream_user_time ON streams_log (stream_id, user_id, event_time) WHERE user_id IS NOT NULL"
        )
        conn.execute(
            "CREATE INDEX log_stream_session_time ON streams_log (stream_id, session_id, event_time) "
            "WHERE session_id IS NOT NULL"
        )
        # A minute of the processing rollup for every minute of the range, with a latency histogram.
        conn.execute(
            """
            INSERT INTO analytics_processing_minute (stream_id, minute, events, accepted, latency_ms_sum,
                latency_ms_max, dead_letters, retries, latency_buckets)
            SELECT %s, m, 230, 230, 230 * 40, 900, 0, (random() * 2)::int,
                   ARRAY[0, 0, 5, 20, 60, 80, 40, 15, 8, 2, 0, 0, 0, 0, 0, 0, 0, 0]::bigint[]
            FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 minute', interval '1 minute') AS m
            ON CONFLICT DO NOTHING
            """,
            [stream_id, END - timedelta(days=DAYS), END],
        )
        conn.execute("VACUUM ANALYZE streams_log")
        conn.execute("ANALYZE analytics_processing_minute")


def build_activity(db_url: str, stream_id: int) -> float:
    """The per-person activity rollup of the loaded log, as ``rollups_rebuild`` counts it; seconds taken."""
    from django.db import transaction

    from analytics.activity import activity_rebuild_day, activity_rebuild_first

    started = time.perf_counter()
    for day in range(DAYS):
        with transaction.atomic():
            activity_rebuild_day(stream_id=stream_id, day=END - timedelta(days=DAYS - day))
    with transaction.atomic():
        activity_rebuild_first(stream_id=stream_id)
    seconds = time.perf_counter() - started
    with connect(db_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE analytics_person_day")
        conn.execute("VACUUM ANALYZE analytics_person_first")
    return seconds


def _retention_from_log(
    stream_id: int,
    period: Any,
    periods: int,
    time_from: datetime,
    time_to: datetime,
    event: str | None,
    returning: str | None,
    tz: str = "Europe/Berlin",
) -> None:
    """The statement retention ran over the log's events before the activity rollup, with the same bounds."""
    from zoneinfo import ZoneInfo

    from analytics.filters import EventFilter
    from analytics.journeys import _retention_rows_log, period_add, period_floor

    zone = ZoneInfo(tz)
    first_from = period_floor(time_from, period, zone)
    returns_to = period_add(period_floor(time_to - timedelta(microseconds=1), period, zone), periods + 1, period, zone)
    bounds = [first_from]
    while bounds[-1] < returns_to:
        bounds.append(period_add(bounds[-1], 1, period, zone))
    _retention_rows_log(
        stream_id=stream_id,
        bounds=bounds,
        first_from=first_from,
        time_to=time_to,
        returns_to=returns_to,
        periods=periods,
        event=event,
        returning_event=returning,
        event_filter=EventFilter(),
    )


def _timed(fn: Any, repeat: int) -> tuple[float, float, list[float]]:
    fn()  # warm: the plan, the caches
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, max(0, round(0.95 * len(times)) - 1))]
    return statistics.median(times), p95, times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--keep", action="store_true", help="reuse the loaded log when it is there")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--database", default=DATABASE, help=f"the benchmark's own database (default {DATABASE})")
    args = parser.parse_args()
    slot = RedisSlot.claim()
    try:
        # Every call computes its answer: kept answers would time Redis (analytics/cache.py).
        _, db_url = django_setup(slot, args.database, EVENTFLOW_ANALYTICS_CACHE_SECONDS="0")
        run(db_url, args)
    finally:
        slot.cleanup()


def run(db_url: str, args: argparse.Namespace) -> None:
    from django.contrib.auth.models import User
    from django.db import connection, transaction
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from rest_framework_simplejwt.tokens import RefreshToken

    from streams.models import LogEntry, Stream
    from streams.retention import log_partitions_ensure
    from streams.services import stream_create

    stream = Stream.objects.filter(slug="bench").first()
    loaded = stream is not None and LogEntry.objects.filter(stream=stream).exists()
    if not (args.keep and loaded):
        if stream is not None:
            with connect(db_url, autocommit=True) as conn:
                conn.execute("DELETE FROM analytics_processing_minute WHERE stream_id = %s", [stream.pk])
                conn.execute("DELETE FROM analytics_person_day WHERE stream_id = %s", [stream.pk])
                conn.execute("DELETE FROM analytics_person_first WHERE stream_id = %s", [stream.pk])
                conn.execute("DELETE FROM streams_log WHERE stream_id = %s", [stream.pk])
            stream.delete()
        stream = stream_create(slug="bench", name="Bench")
        print(f"loading {args.events:,} events", flush=True)
        started = time.perf_counter()
        # The log is partitioned by day of logged_at: the days loaded need their partitions.
        log_partitions_ensure(now=END - timedelta(days=DAYS), days_ahead=DAYS + 1)
        load(db_url, stream.pk, args.events)
        print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)
    assert stream is not None
    from analytics.models import PersonDay

    activity_seconds = None
    if not PersonDay.objects.filter(stream=stream).exists():
        activity_seconds = build_activity(db_url, stream.pk)
        print(f"activity rollup built in {activity_seconds:.1f} s", flush=True)
    events = LogEntry.objects.filter(stream=stream).count()
    root = User.objects.filter(username="bench-root").first() or User.objects.create_superuser(
        "bench-root", email="root@example.com", password=None
    )
    base = "/api/v1/streams/bench/analytics"
    week = {"from": (END - timedelta(days=7)).isoformat(), "to": END.isoformat()}
    steps = {
        "steps": [
            {"type": "page_view", "conditions": [{"property": "payload.page", "values": ["/pricing"]}]},
            {"type": "button_click"},
            {"type": "Order Completed"},
        ],
        "window": "1d",
    }
    query = "&".join(f"{k}={v.replace('+', '%2B')}" for k, v in week.items())

    def call(method: str, path: str, body: Any = None) -> Any:
        # A fresh token each call: a slow run outlives an access token.
        client = Client(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(root).access_token}")
        if method == "POST":
            response = client.post(path, orjson.dumps(body), content_type="application/json")
        else:
            response = client.get(path)
        assert response.status_code == 200, response.content[:500]
        return response

    def raw(sql: str, params: list[Any]) -> Any:
        def go() -> None:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                cursor.fetchall()

        return go

    eight_weeks_from = END - timedelta(weeks=8)
    people_per_type = raw(
        "SELECT type, count(DISTINCT COALESCE(user_id, anonymous_id)) FROM streams_log WHERE stream_id = %s "
        "AND type = ANY(%s) AND event_time >= %s AND event_time < %s GROUP BY type",
        [stream.pk, ["page_view", "button_click", "Order Completed"], END - timedelta(days=7), END],
    )
    by_types = {"steps": [{"type": step["type"]} for step in steps["steps"]], "window": "1d"}
    cases: list[tuple[str, Any, str, Any, str]] = [
        (
            "funnel: 3 steps by type (page_view → button_click → Order Completed), 7 days, window 1 day",
            lambda: call("POST", f"{base}/funnel?{query}", by_types),
            "people per step type over the same 7 days (count DISTINCT person … GROUP BY type)",
            people_per_type,
            "funnel-types",
        ),
        (
            "funnel: 3 steps (page_view /pricing → button_click → Order Completed), 7 days, window 1 day",
            lambda: call("POST", f"{base}/funnel?{query}", steps),
            "the same baseline",
            people_per_type,
            "funnel",
        ),
        (
            "funnel as above, broken down by browser",
            lambda: call("POST", f"{base}/funnel?{query}", {**steps, "breakdown": "browser"}),
            "the same baseline",
            None,
            "funnel-breakdown",
        ),
        (
            "paths: next 3 steps from page_view:/pricing, 7 days, top 5",
            lambda: call("GET", f"{base}/paths?start=page_view:/pricing&depth=3&{query}"),
            "events per session over the same 7 days (GROUP BY session_id)",
            raw(
                "SELECT session_id, count(*) FROM streams_log WHERE stream_id = %s AND session_id IS NOT NULL "
                "AND event_time >= %s AND event_time < %s GROUP BY session_id",
                [stream.pk, END - timedelta(days=7), END],
            ),
            "paths",
        ),
        (
            "retention: 8 weeks by week, any event, Europe/Berlin",
            lambda: call(
                "GET",
                f"{base}/retention?period=week&periods=8&tz=Europe/Berlin&from="
                f"{eight_weeks_from.isoformat().replace('+', '%2B')}&to={END.isoformat().replace('+', '%2B')}",
            ),
            "people per week over the same range (count DISTINCT person … GROUP BY week)",
            raw(
                "SELECT date_trunc('week', event_time AT TIME ZONE 'Europe/Berlin'), "
                "count(DISTINCT COALESCE(user_id, anonymous_id)) FROM streams_log WHERE stream_id = %s "
                "AND event_time >= %s AND event_time < %s GROUP BY 1",
                [stream.pk, eight_weeks_from, END],
            ),
            "retention",
        ),
        (
            "retention as above, from the log's events (as before the activity rollup)",
            lambda: _retention_from_log(stream.pk, "week", 8, eight_weeks_from, END, None, None),
            "the same baseline",
            None,
            "retention-log",
        ),
        (
            "retention: signup → Order Completed, 4 weeks by week",
            lambda: call(
                "GET",
                f"{base}/retention?period=week&periods=4&event=signup&returning_event=Order%20Completed&from="
                f"{(END - timedelta(weeks=4)).isoformat().replace('+', '%2B')}&to={END.isoformat().replace('+', '%2B')}",
            ),
            "the same baseline over 4 weeks",
            None,
            "retention-events",
        ),
        (
            "retention: signup → Order Completed, from the log's events (as before the activity rollup)",
            lambda: _retention_from_log(
                stream.pk, "week", 4, END - timedelta(weeks=4), END, "signup", "Order Completed", tz="UTC"
            ),
            "the same baseline over 4 weeks",
            None,
            "retention-events-log",
        ),
        (
            "processing: 24 hours by hour",
            lambda: call(
                "GET",
                f"{base}/processing?interval=hour&from={(END - timedelta(days=1)).isoformat().replace('+', '%2B')}"
                f"&to={END.isoformat().replace('+', '%2B')}",
            ),
            "sum of the same rollup rows",
            raw(
                "SELECT sum(events) FROM analytics_processing_minute WHERE stream_id = %s AND minute >= %s "
                "AND minute < %s",
                [stream.pk, END - timedelta(days=1), END],
            ),
            "processing",
        ),
    ]
    rows = []
    plans = []
    for title, endpoint, baseline_title, baseline, _name in cases:
        p50, p95, _ = _timed(endpoint, args.repeat)
        line = f"| {title} | **{p50:,.0f}** | {p95:,.0f} |"
        if baseline is not None:
            b50, b95, _ = _timed(baseline, args.repeat)
            line += f" {baseline_title}: {b50:,.0f} / {b95:,.0f} | {p50 / b50:.1f}x |"
        else:
            line += f" {baseline_title} | |"
        rows.append(line)
        print(line, flush=True)
        with CaptureQueriesContext(connection) as captured:
            endpoint()
        queries = [q["sql"] for q in captured.captured_queries]
        at = max(range(len(queries)), key=lambda i: len(queries[i]))
        # The settings the statement ran under (jit, work_mem, the funnel's planner settings: `SET LOCAL`
        # right before it, analytics/journeys.py `_fetch`), so that the plan is the one that ran.
        first = at
        while first > 0 and queries[first - 1].startswith("SET LOCAL"):
            first -= 1
        with transaction.atomic(), connection.cursor() as cursor:
            for setting in queries[first:at]:
                cursor.execute(setting)
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + queries[at])
            plan = "\n".join(r[0] for r in cursor.fetchall())
        plans.append((title, plan))
    info = machine(db_url)
    body = (
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m bench.journeys` (`bench/journeys.py`) on "
        f"{info['cores']} cores ({info['cpu']}, {info['memory']}), PostgreSQL {info['postgresql']}, Python "
        f"{info['python']}, Django {info['django']}. The log: {events:,} events over {DAYS} days, {PEOPLE:,} "
        "people (60 % signed in), sessions of 1 to 15 events, loaded by COPY in event-time order, indexes built "
        "after, analysed. Each endpoint through Django's test client (view, SQL, rendering; no HTTP server), "
        f"{args.repeat} calls after a warm-up; its baseline right after it, the same way. Milliseconds.\n\n"
        "| endpoint | p50 | p95 | baseline p50 / p95 | ratio |\n|---|---:|---:|---|---:|\n" + "\n".join(rows) + "\n\n"
        "Targets: a three-step funnel over 7 days < 1 s; 8-week retention < 2 s. Plans: docs/QUERIES.md, "
        'section "Funnels, paths, retention".'
    )
    print(body)
    if not args.no_write:
        write_section("journeys", "Funnels, paths, retention and processing at 10 million events", body)
        _write_plans(plans)


def _write_plans(plans: list[tuple[str, str]]) -> None:
    start, end = "<!-- journeys-plans:start -->", "<!-- journeys-plans:end -->"
    parts = [
        start,
        "## Funnels, paths, retention (plans measured by bench/journeys.py)",
        "",
        "Each statement is built in `analytics/journeys.py`; these are EXPLAIN (ANALYZE, BUFFERS) of the very "
        "statements the endpoints ran on the benchmark's log (see docs/BENCHMARKS.md, section journeys).",
    ]
    for title, plan in plans:
        parts += ["", f"### {title}", "", "```", plan, "```"]
    parts.append(end)
    block = "\n".join(parts)
    path: Path = QUERIES_MD
    text = path.read_text() if path.exists() else "# Queries of the log and their plans\n"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
