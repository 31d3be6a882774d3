"""Rollup-backed analytics at volume, each endpoint against a raw GROUP BY over the log in the same run.

A stream's log is filled by COPY with realistic events (default 10,000,000 over 30 days, 100,000 users,
the five starter types plus ``signup`` and ``checkout.completed``, real user-agent strings enriched through
``ingestion.enrichment``, pages, referrers, UTM campaigns, countries and three API keys), then
``rollups_rebuild`` counts them into the rollups, as it would after an upgrade.

Then each case (a named entry of ``CASES``) is called through Django's test client (view, SQL, rendering;
no HTTP server, the Redis cache off) ``--repeat`` times over 1, 7, 30 and 90 days ending with the data, and
its baseline, a raw GROUP BY over the log of the same question, right after it. p50/p95 in milliseconds go
to docs/BENCHMARKS.md ("Analytics"), the plans (EXPLAIN ANALYZE, BUFFERS) of the statements each case ran
to docs/QUERIES.md. Unique users are checked against exact counts from the log (the error of the sketches).

Another endpoint joins by adding a ``Case`` to ``CASES`` (``register``).

Usage: ``python -m bench.analytics [--events N] [--repeat R] [--keep] [--no-write]``
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson

from bench.harness import BASE_DIR, RedisSlot, connect, django_setup, log_beside_rows, machine, write_section

DATABASE = "eventflow_bench_analytics"
QUERIES_MD = BASE_DIR / "docs" / "QUERIES.md"
END = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 30
USERS = 100_000
RANGES = (1, 7, 30, 90)
TYPES = [("page_view", 55), ("button_click", 18), ("form_submit", 6), ("login", 8), ("logout", 4),
         ("signup", 3), ("checkout.completed", 2), ("search", 4)]  # fmt: skip
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
]  # fmt: skip
PAGES = ["/", "/pricing", "/docs", "/docs/start", "/signup", "/blog", "/blog/launch", "/features", "/about",
         "/checkout", "/account", "/login", "/search", "/changelog", "/careers"]  # fmt: skip
REFERRERS = [None, None, None, "https://www.google.com/", "https://news.ycombinator.com/", "https://t.co/x",
             "https://www.bing.com/", "https://partner.example/"]  # fmt: skip
CAMPAIGNS = [None, None, None, None, ("google", "cpc", "autumn"), ("newsletter", "email", "launch"),
             ("twitter", "social", "launch")]  # fmt: skip
COUNTRIES = [None, "DE", "US", "FR", "GB", "NL", "IN", "BR", "JP", "ES"]
COLUMNS = (
    'stream_id, "offset", event_id, type, event_time, received_at, logged_at, user_id, anonymous_id, session_id, '
    "payload, context, enrichment, flags, api_key_id"
)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def load(db_url: str, stream_id: int, total: int, key_ids: list[int]) -> None:
    """COPY ``total`` events into the stream's log, day by day in event-time order."""
    from ingestion.enrichment import enrich

    rng = random.Random(8)
    types, weights = [t for t, _ in TYPES], [w for _, w in TYPES]
    per_day = total // DAYS
    offset = 0
    with connect(db_url, autocommit=True) as conn:
        for day in range(DAYS):
            start = END - timedelta(days=DAYS - day)
            buf = io.StringIO()
            times = sorted(rng.randrange(86_400_000) for _ in range(per_day))
            chosen = rng.choices(types, weights, k=per_day)
            for ms, event_type in zip(times, chosen, strict=True):
                # Two in five events from a regular tenth of the users, the rest from anyone.
                person = rng.randrange(USERS // 10) if rng.random() < 0.4 else rng.randrange(USERS)
                at = start + timedelta(milliseconds=ms)
                signed_in = person % 10 < 6
                ua = USER_AGENTS[person % len(USER_AGENTS)]
                page = PAGES[rng.randrange(len(PAGES))]
                context: dict[str, Any] = {"user_agent": ua, "ip": f"203.0.{person % 250}.{person % 200}"}
                referrer = REFERRERS[person % len(REFERRERS)]
                campaign = CAMPAIGNS[(person // 7) % len(CAMPAIGNS)]
                url = f"https://shop.example{page}"
                if campaign:
                    url += f"?utm_source={campaign[0]}&utm_medium={campaign[1]}&utm_campaign={campaign[2]}"
                context["page"] = {"url": url, "path": page, "referrer": referrer}
                country = COUNTRIES[person % len(COUNTRIES)]
                if country:
                    context["country" if person % 2 else "location"] = country if person % 2 else {"country": country}
                payload = {"page": page, "plan": "pro" if person % 5 == 0 else "free"}
                enriched = enrich(payload=payload, context=context, anonymize=True)
                key = key_ids[person % len(key_ids)] if person % 17 else None
                buf.write(
                    "\t".join(
                        [
                            str(stream_id),
                            str(offset),
                            f"ev-{offset}",
                            event_type,
                            at.isoformat(),
                            at.isoformat(),
                            at.isoformat(),
                            f"user-{person}" if signed_in else "\\N",
                            "\\N" if signed_in else f"anon-{person}",
                            f"s-{person}-{ms // 1_800_000}",
                            _escape(orjson.dumps(enriched.payload).decode()),
                            _escape(orjson.dumps(enriched.context).decode()),
                            _escape(orjson.dumps(enriched.enrichment).decode()),
                            "{}",
                            "\\N" if key is None else str(key),
                        ]
                    )
                    + "\n"
                )
                offset += 1
            with conn.cursor() as cur, cur.copy(f"COPY streams_log ({COLUMNS}) FROM STDIN") as copy:
                copy.write(buf.getvalue())
            print(f"  day {day + 1}/{DAYS}: {offset:,} events", flush=True)
        conn.execute("UPDATE streams_streamhead SET next_offset = %s WHERE stream_id = %s", [offset, stream_id])
        log_beside_rows(conn, stream_id)
        conn.execute("VACUUM ANALYZE streams_log")


# --- the cases ------------------------------------------------------------------------------------


@dataclass
class Case:
    """One endpoint question over a range of days, and the raw query over the log that answers it."""

    name: str
    path: str
    params: Callable[[datetime, datetime], dict[str, str]]
    baseline: str
    # The baseline's SQL: %(s)s the stream, %(lo)s and %(hi)s the range.
    baseline_sql: str
    ranges: tuple[int, ...] = RANGES


CASES: list[Case] = []


def register(case: Case) -> Case:
    CASES.append(case)
    return case


def _range(lo: datetime, hi: datetime) -> dict[str, str]:
    return {"from": lo.isoformat(), "to": hi.isoformat()}


_USER = "COALESCE(user_id, anonymous_id)"
register(
    Case(
        "count-by-type",
        "count-by-type",
        _range,
        "SELECT type, count(*) … GROUP BY type",
        "SELECT type, count(*) FROM streams_log WHERE stream_id = %(s)s AND event_time >= %(lo)s "
        "AND event_time < %(hi)s GROUP BY type",
    )
)
register(
    Case(
        "group-by-key-and-type",
        "group-by-key-and-type",
        _range,
        "SELECT api_key_id, type, count(*) … GROUP BY 1, 2",
        "SELECT api_key_id, type, count(*) FROM streams_log WHERE stream_id = %(s)s AND event_time >= %(lo)s "
        "AND event_time < %(hi)s GROUP BY 1, 2",
    )
)
register(
    Case(
        "timeseries by day, UTC, with unique users",
        "timeseries",
        lambda lo, hi: {**_range(lo, hi), "interval": "day"},
        "date_trunc('day'), count(*), count(DISTINCT user) … GROUP BY 1",
        f"SELECT date_trunc('day', event_time), count(*), count(DISTINCT {_USER}) FROM streams_log "
        "WHERE stream_id = %(s)s AND event_time >= %(lo)s AND event_time < %(hi)s GROUP BY 1",
    )
)
register(
    Case(
        "timeseries by day, Europe/Berlin, with unique users",
        "timeseries",
        lambda lo, hi: {**_range(lo, hi), "interval": "day", "tz": "Europe/Berlin"},
        "the same in Berlin days",
        f"SELECT date_trunc('day', event_time, 'Europe/Berlin'), count(*), count(DISTINCT {_USER}) FROM streams_log "
        "WHERE stream_id = %(s)s AND event_time >= %(lo)s AND event_time < %(hi)s GROUP BY 1",
    )
)
register(
    Case(
        "timeseries by hour, per type",
        "timeseries",
        lambda lo, hi: {**_range(lo, hi), "interval": "hour", "per_type": "true"},
        "date_trunc('hour'), type, count(*), count(DISTINCT user) … GROUP BY 1, 2",
        f"SELECT date_trunc('hour', event_time), type, count(*), count(DISTINCT {_USER}) FROM streams_log "
        "WHERE stream_id = %(s)s AND event_time >= %(lo)s AND event_time < %(hi)s GROUP BY 1, 2",
        # Hourly series per type over a month are answers of 6,000 points or more: not a dashboard question.
        ranges=(1, 7),
    )
)
register(
    Case(
        "breakdown by browser, top 10",
        "breakdown",
        lambda lo, hi: {**_range(lo, hi), "dimension": "browser"},
        "enrichment->>'browser', count(*), count(DISTINCT user) … GROUP BY 1",
        f"SELECT enrichment->>'browser', count(*), count(DISTINCT {_USER}) FROM streams_log "
        "WHERE stream_id = %(s)s AND event_time >= %(lo)s AND event_time < %(hi)s GROUP BY 1",
    )
)
register(
    Case(
        "breakdown by page, top 10",
        "breakdown",
        lambda lo, hi: {**_range(lo, hi), "dimension": "page"},
        "payload->>'page', count(*), count(DISTINCT user) … GROUP BY 1",
        f"SELECT payload->>'page', count(*), count(DISTINCT {_USER}) FROM streams_log "
        "WHERE stream_id = %(s)s AND event_time >= %(lo)s AND event_time < %(hi)s GROUP BY 1",
    )
)
register(
    Case(
        "active users (DAU, WAU, MAU per day)",
        "active-users",
        _range,
        "count(DISTINCT user) per day",
        f"SELECT date_trunc('day', event_time), count(DISTINCT {_USER}) FROM streams_log "
        "WHERE stream_id = %(s)s AND event_time >= %(lo)s AND event_time < %(hi)s GROUP BY 1",
    )
)


# --- timing -------------------------------------------------------------------------------------


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    fn()  # warm: plans and caches
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, max(0, round(0.95 * len(times)) - 1))]


@contextmanager
def _recorded(statements: list[tuple[str, Any]]) -> Any:
    """Record the statements the analytics selectors run on their bound cursors."""
    import analytics.aggregates as aggregates

    original = aggregates.bound_cursor

    class Recording:
        def __init__(self, cursor: Any) -> None:
            self._cursor = cursor

        def execute(self, sql: Any, params: Any = None, **kwargs: Any) -> Any:
            statements.append((sql, params))
            return self._cursor.execute(sql, params, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._cursor, name)

    @contextmanager
    def recording() -> Any:
        with original() as cursor:
            yield Recording(cursor)

    aggregates.bound_cursor = recording  # type: ignore[assignment]
    try:
        yield
    finally:
        aggregates.bound_cursor = original  # type: ignore[assignment]


def _explain(statements: list[tuple[str, Any]]) -> str:
    import psycopg
    from django.db import connection

    connection.ensure_connection()
    plans = []
    for sql, params in statements:
        with psycopg.ClientCursor(connection.connection) as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            plans.append("\n".join(r[0] for r in cursor.fetchall()))
    return "\n\n".join(plans)


def _user_error(stream_id: int, client: Any, base: str) -> list[str]:
    """Unique users from the sketches against exact counts from the log, over each range."""
    from django.db import connection

    lines = []
    for days in RANGES[:3]:
        lo, hi = END - timedelta(days=days), END
        answer = orjson.loads(
            client.get(f"{base}/breakdown?" + urlencode({**_range(lo, hi), "dimension": "os"})).content
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(DISTINCT CASE WHEN user_id <> '' THEN 'u:' || user_id ELSE 'a:' || anonymous_id END) "
                "FROM streams_log WHERE stream_id = %s AND event_time >= %s AND event_time < %s",
                [stream_id, lo, hi],
            )
            exact = cursor.fetchone()[0]
        estimate = answer["unique_users"]
        lines.append(f"| {days} day(s) | {exact:,} | {estimate:,} | {100 * (estimate - exact) / exact:+.2f} % |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="reuse the loaded log and rollups when they are there")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--baseline-calls",
        type=int,
        default=None,
        help="calls of each raw GROUP BY after its warm-up (default R/5, 3 at least)",
    )
    parser.add_argument("--database", default=DATABASE, help=f"the benchmark's own database (default {DATABASE})")
    args = parser.parse_args()
    slot = RedisSlot.claim()
    try:
        _, db_url = django_setup(slot, args.database, EVENTFLOW_ANALYTICS_CACHE_SECONDS="0")
        run(db_url, args)
    finally:
        slot.cleanup()


def run(db_url: str, args: argparse.Namespace) -> None:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from rest_framework_simplejwt.tokens import RefreshToken

    from analytics.management.commands.rollups_rebuild import rollups_rebuild
    from streams.models import ApiKeyKind, LogEntry, Stream
    from streams.retention import log_partitions_ensure
    from streams.services import api_key_create, stream_create

    stream = Stream.objects.filter(slug="bench").first()
    loaded = stream is not None and LogEntry.objects.filter(stream=stream).exists()
    load_seconds = rebuild_seconds = None
    if not (args.keep and loaded):
        if stream is not None:
            with connect(db_url, autocommit=True) as conn:
                for table in (
                    "minute_count",
                    "hour_count",
                    "day_count",
                    "hour_dimension",
                    "day_dimension",
                    "user_sketch",
                ):
                    conn.execute(f"DELETE FROM analytics_{table} WHERE stream_id = %s", [stream.pk])
                conn.execute("DELETE FROM streams_log WHERE stream_id = %s", [stream.pk])
            stream.delete()
        stream = stream_create(slug="bench", name="Bench")
        keys = [api_key_create(kind=ApiKeyKind.INGEST, streams=[stream], name=f"app-{i}").api_key.pk for i in range(3)]
        print(f"loading {args.events:,} events", flush=True)
        started = time.perf_counter()
        # The log is partitioned by day of logged_at: the days loaded need their partitions.
        log_partitions_ensure(now=END - timedelta(days=DAYS), days_ahead=DAYS + 1)
        load(db_url, stream.pk, args.events, keys)
        load_seconds = time.perf_counter() - started
        print(f"loaded in {load_seconds:.0f} s; rollups_rebuild", flush=True)
        started = time.perf_counter()
        rollups_rebuild(stream_id=stream.pk, progress=lambda day, n: print(f"  {day:%Y-%m-%d}: {n:,}", flush=True))
        rebuild_seconds = time.perf_counter() - started
        with connect(db_url, autocommit=True) as conn:
            for table in ("minute_count", "hour_count", "day_count", "hour_dimension", "day_dimension", "user_sketch"):
                conn.execute(f"VACUUM ANALYZE analytics_{table}")
    assert stream is not None
    events = LogEntry.objects.filter(stream=stream).count()
    root = User.objects.filter(username="bench-root").first() or User.objects.create_superuser(
        "bench-root", email="root@example.com", password=None
    )
    client = Client(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(root).access_token}")
    base = "/api/v1/streams/bench/analytics"
    rows = []
    plans = []
    for case in CASES:
        for days in case.ranges:
            lo, hi = END - timedelta(days=days), END
            url = f"{base}/{case.path}?" + urlencode(case.params(lo, hi))
            # A fresh token for each row: the whole run outlives an access token.
            client = Client(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(root).access_token}")

            def call(url: str = url, client: Client = client) -> None:
                response = client.get(url)
                assert response.status_code == 200, response.content[:500]
                assert orjson.loads(response.content)["source"] == "rollups"

            def baseline(lo: datetime = lo, hi: datetime = hi, sql: str = case.baseline_sql) -> None:
                with connection.cursor() as cursor:
                    cursor.execute(sql, {"s": stream.pk, "lo": lo, "hi": hi})
                    cursor.fetchall()

            # The first call merges the windows no question asked before (analytics/spans.py): timed
            # alone with none kept, then the calls that read them back.
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM analytics_sketch_span WHERE stream_id = %s", [stream.pk])
                # Not the dead rows of every row before it for the reads to step over.
                cursor.execute("VACUUM analytics_sketch_span")
            started = time.perf_counter()
            call()
            first = (time.perf_counter() - started) * 1000
            p50, p95 = _timed(call, args.repeat)
            b50, b95 = _timed(baseline, args.baseline_calls or max(3, args.repeat // 5))
            line = (
                f"| {case.name} | {days} | {first:,.1f} | **{p50:,.1f}** | **{p95:,.1f}** | {b50:,.0f} / {b95:,.0f} "
                f"| {b50 / p50:,.0f}x |"
            )
            rows.append(line)
            print(line, flush=True)
            if days in (7, 90):
                statements: list[tuple[str, Any]] = []
                with _recorded(statements):
                    call()
                plans.append((f"{case.name}, {days} days", _explain(statements)))
    errors = _user_error(stream.pk, client, base)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relname IN "
            "('streams_log', 'analytics_minute_count', 'analytics_hour_count', 'analytics_day_count', "
            "'analytics_hour_dimension', 'analytics_day_dimension', 'analytics_user_sketch') ORDER BY 1"
        )
        sizes = cursor.fetchall()
    info = machine(db_url)
    loading = (
        f" Loading took {load_seconds:.0f} s (COPY, enrichment of each event included), `rollups_rebuild` "
        f"{rebuild_seconds:.0f} s ({events / rebuild_seconds:,.0f} events/s)."
        if load_seconds and rebuild_seconds
        else ""
    )
    body = (
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m bench.analytics --events {args.events}` on "
        f"{info['cores']} cores ({info['cpu']}, {info['memory']}), PostgreSQL {info['postgresql']}, Python "
        f"{info['python']}, Django {info['django']}. The log: {events:,} events over {DAYS} days, {USERS:,} users "
        "(60 % signed in), real user agents enriched by `ingestion.enrichment`, 15 pages, referrers, UTM "
        f"campaigns, countries, three API keys.{loading} Each endpoint through Django's test client (view, SQL, "
        f"rendering; no HTTP server; the Redis cache off), {args.repeat} calls after a warm-up, over the N days "
        "ending with the data (90 days: 60 of them empty); its baseline, the raw GROUP BY over the log, right "
        "after it. Milliseconds.\n\n"
        "| endpoint (from rollups) | days | first call | p50 | p95 | raw GROUP BY over the log p50 / p95 | faster |\n"
        "|---|---:|---:|---:|---:|---|---:|\n" + "\n".join(rows) + "\n\n"
        "Target: rollup-backed counts, time series and breakdowns p95 < 10 ms over any range up to 90 days. "
        "The first call of each row ran with no merged window kept (it merges and keeps them); p50 and p95 are "
        "the calls after it.\n\n"
        "Unique users (HyperLogLog, 2^12 registers) against the exact count from the log, whole stream:\n\n"
        "| range | exact | estimate | error |\n|---|---:|---:|---:|\n" + "\n".join(errors) + "\n\n"
        "Sizes: " + ", ".join(f"{name} {size / 2**20:,.0f} MiB" for name, size in sizes) + ". Plans: "
        'docs/QUERIES.md, section "Analytics from rollups".'
    )
    print(body)
    if not args.no_write:
        write_section("analytics", "Analytics from rollups", body)
        _write_plans(plans)


def _write_plans(plans: list[tuple[str, str]]) -> None:
    start, end = "<!-- analytics-plans:start -->", "<!-- analytics-plans:end -->"
    parts = [
        start,
        "## Analytics from rollups (plans measured by bench/analytics.py)",
        "",
        "Every statement the endpoint ran, with the range's parameters, EXPLAIN (ANALYZE, BUFFERS). The rollup "
        "tables are read by their primary keys (stream, [dimension,] bucket, …); the log only for the seconds "
        "(counts) or partial hours (breakdowns) at a range's edges, by `log_stream_time`.",
    ]
    for title, plan in plans:
        parts += ["", f"### {title}", "", "```", plan, "```"]
    parts.append(end)
    block = "\n".join(parts)
    text = QUERIES_MD.read_text() if QUERIES_MD.exists() else "# Query plans\n"
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    QUERIES_MD.write_text(text)


if __name__ == "__main__":
    main()
