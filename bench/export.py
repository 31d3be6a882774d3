"""The event query and export at volume: latencies of each query shape, export rate against a raw COPY, and the
write cost of the log's reader indexes.

A stream's log is filled with realistic events (default 2,000,000 over 6 days: the daily volume of 10 million
over 30 days; 100,000 people, 55 % of them signed in; sessions of a few events interleaved as traffic is;
user agents, IPs, pages and campaigns from bench/process.py, enriched by the real enrichment; 2 % of events
late by up to 6 hours). Then, in one run on this machine:

- each query shape of ``GET /events`` over HTTP (gunicorn as ``python -m eventflow up`` runs it), p50/p95,
  and the plan PostgreSQL chose for it (EXPLAIN ANALYZE of the very statement the API runs);
- the user and session shapes again without their indexes;
- log appends (``log_append`` in batches of 1,000, the processor's path) with and without those indexes;
- the export (CSV and NDJSON) over HTTP, read to the end, against a raw ``COPY (SELECT …) TO STDOUT`` of the same
  rows on one psycopg connection; gunicorn runs with a timeout shorter than the export to show that a long
  export is not cut off; the web worker's memory is sampled while it streams.

Usage: ``python -m bench.export [--events N] [--no-write]``. Writes docs/BENCHMARKS.md (section "export") and
the plans in docs/QUERIES.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psutil

from bench import harness

DATABASE = "eventflow_bench_export"
SLUG = "bench-export"
APPEND_CHUNK = 10_000
PROCESSOR_BATCH = 1000
QUERIES_MD = harness.BASE_DIR / "docs" / "QUERIES.md"
# The log is partitioned (streams 0012): an index on it is built on every partition and cannot be
# built or dropped CONCURRENTLY from the parent; the benchmark's database has no other writer.
READER_INDEXES = {
    "log_stream_user_time": (
        "CREATE INDEX log_stream_user_time ON streams_log (stream_id, user_id, event_time) WHERE user_id IS NOT NULL"
    ),
    "log_stream_session_time": (
        "CREATE INDEX log_stream_session_time ON streams_log (stream_id, session_id, event_time) "
        "WHERE session_id IS NOT NULL"
    ),
}
# A gunicorn timeout well below the export's duration: the export must still finish.
WEB_TIMEOUT = 5


# --- data -------------------------------------------------------------------------------------------


@dataclass
class Visit:
    person: Any
    session_id: str
    left: int


def realistic(count: int, *, days: int, people: int, seed: int, end: datetime, first: int = 0) -> Iterator[Any]:
    """``count`` LogRecords as the processor would log them, in arrival order over ``days`` days up to ``end``."""
    from bench.process import PAGES, SITE, TYPES, _payload, _person
    from ingestion.enrichment import enrich
    from streams.log import LogRecord

    rng = random.Random(seed)
    start = end - timedelta(days=days)
    crowd = [_person(rng, number, start.timestamp()) for number in range(people)]
    names = [t for t, _ in TYPES]
    weights = [w for _, w in TYPES]
    visits: list[Visit] = []
    step = (end - start).total_seconds() / max(count, 1)

    def visit() -> Visit:
        person = rng.choice(crowd)
        return Visit(person, f"s_{rng.getrandbits(64):016x}", 1 + int(rng.expovariate(1 / 7)))

    visits = [visit() for _ in range(400)]
    for n in range(count):
        slot = rng.randrange(len(visits))
        current = visits[slot]
        person = current.person
        received = start + timedelta(seconds=n * step)
        event_time = received - timedelta(milliseconds=rng.randint(5, 900))
        if rng.random() < 0.02:
            event_time -= timedelta(minutes=rng.randint(10, 360))
        event_type = rng.choices(names, weights=weights)[0]
        page = rng.choice(PAGES)
        query = f"?{urlencode(person.campaign)}" if person.campaign and rng.random() < 0.5 else ""
        context = {
            "user_agent": person.user_agent,
            "ip": person.ip,
            "locale": "en-US",
            "page": {"url": f"{SITE}{page}{query}", "referrer": person.referrer, "title": page.strip("/") or "home"},
            "library": {"name": "eventflow-js", "version": "2.4.1"},
        }
        enriched = enrich(payload=_payload(rng, event_type, person, page), context=context, anonymize=True)
        yield LogRecord(
            event_id=f"{seed}-{first + n}-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}",
            type=event_type,
            event_time=event_time,
            received_at=received,
            user_id=person.user_id,
            anonymous_id=None if person.user_id else person.anonymous_id,
            session_id=current.session_id,
            payload=enriched.payload,
            context=enriched.context,
            enrichment=enriched.enrichment,
        )
        current.left -= 1
        if current.left <= 0:
            visits[slot] = visit()


def stream_id() -> int:
    from streams.models import Stream
    from streams.services import stream_create

    stream = Stream.objects.filter(slug=SLUG).first() or stream_create(slug=SLUG, name="Export benchmark")
    return int(stream.pk)


def fill(stream: int, count: int, *, days: int, people: int, end: datetime) -> None:
    from streams.log import log_append_now, log_head

    have = log_head(stream)
    if have >= count:
        return
    print(f"loading {count - have:,} events …", flush=True)
    started = time.perf_counter()
    batch = []
    for record in realistic(count - have, days=days, people=people, seed=11, end=end, first=have):
        batch.append(record)
        if len(batch) == APPEND_CHUNK:
            log_append_now(stream_id=stream, records=batch)
            batch = []
    if batch:
        log_append_now(stream_id=stream, records=batch)
    print(f"  loaded in {time.perf_counter() - started:.0f} s", flush=True)


def vacuum(db_url: str) -> None:
    with harness.connect(db_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) streams_log")


# --- query shapes -----------------------------------------------------------------------------------------


@dataclass
class Shape:
    name: str
    params: dict[str, str]
    samples: list[float] = field(default_factory=list)
    rows: int = 0
    plan: str = ""

    def ms(self, q: float) -> float:
        ordered = sorted(self.samples)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def shapes(db_url: str, stream: int) -> list[Shape]:
    """The query shapes, with real values picked from the log (a busy user, a long session, days)."""
    with harness.connect(db_url) as conn:
        first_time, last_time = conn.execute(
            "SELECT min(received_at), max(received_at) FROM streams_log WHERE stream_id = %s", [stream]
        ).fetchone()  # type: ignore[misc]
        user = conn.execute(
            "SELECT user_id FROM streams_log WHERE stream_id = %s AND user_id IS NOT NULL "
            'AND "offset" < 200000 GROUP BY 1 ORDER BY count(*) DESC LIMIT 1',
            [stream],
        ).fetchone()[0]  # type: ignore[index]
        session = conn.execute(
            'SELECT session_id FROM streams_log WHERE stream_id = %s AND "offset" < 50000 '
            "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
            [stream],
        ).fetchone()[0]  # type: ignore[index]
    day = timedelta(days=1)
    mid = first_time + (last_time - first_time) / 2
    old_day = {"from": _iso(mid), "to": _iso(mid + day)}
    last_day = {"from": _iso(last_time - day), "to": _iso(last_time + timedelta(minutes=1))}
    return [
        Shape("newest 100, no filter", {}),
        Shape("by time: the last day", last_day),
        Shape("by time: a day in the middle", old_day),
        Shape("by type + time: form_submit, a day in the middle", {"type": "form_submit", **old_day}),
        Shape("by type: logout, all time", {"type": "logout"}),
        Shape("by user (all time)", {"user_id": user}),
        Shape("by user + time (a day)", {"user_id": user, **old_day}),
        Shape("by session", {"session_id": session}),
        Shape("by property: payload.page=/pricing", {"payload.page": "/pricing"}),
        Shape("by property: enrichment.browser=Firefox, a day", {"enrichment.browser": "Firefox", **old_day}),
        Shape("by property, rare: payload.button_id=share + type, a day",
              {"payload.button_id": "share", "type": "button_click", **old_day}),
        Shape("oldest first, limit 1000", {"order": "oldest", "limit": "1000"}),
    ]  # fmt: skip


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Api:
    def __init__(self, port: int, key: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.headers = {"X-API-Key": key}

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            self.conn.request("GET", path, headers=self.headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # gunicorn closes a keep-alive connection left idle for a while (between phases).
            self.conn.close()
            self.conn.request("GET", path, headers=self.headers)
            response = self.conn.getresponse()
        return response.status, response.read()


def measure(api: Api, shape: Shape, repeat: int) -> None:
    import orjson

    path = f"/api/v1/streams/{SLUG}/events?" + urlencode({"limit": "100", **shape.params})
    shape.samples = []
    for i in range(repeat + 1):
        started = time.perf_counter()
        status, body = api.get(path)
        elapsed = time.perf_counter() - started
        assert status == 200, (status, body[:300])
        if i:  # the first warms the caches
            shape.samples.append(elapsed)
        shape.rows = len(orjson.loads(body)["results"])


def explain(shape: Shape, stream: int) -> str:
    """EXPLAIN ANALYZE of the statement the API runs for the shape's first page."""
    from django.db import connection
    from django.http import QueryDict

    from analytics.filters import parse_filter
    from analytics.query import page_statement

    params = QueryDict(mutable=True)
    for key, value in shape.params.items():
        params[key] = value
    order, limit = params.pop("order", ["newest"])[0], int(params.pop("limit", ["100"])[0])
    sql, args = page_statement(
        stream_id=stream, event_filter=parse_filter(params), descending=order == "newest", limit=limit + 1
    )
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON) " + sql, args)
        return "\n".join(row[0] for row in cursor.fetchall())


# --- index write cost ---------------------------------------------------------------------------------


@dataclass
class Appends:
    label: str
    events: int
    seconds: float

    @property
    def us(self) -> float:
        return 1e6 * self.seconds / self.events


def append_phase(stream: int, count: int, label: str, seed: int, end: datetime) -> Appends:
    """``count`` events appended as the processor does: batches of 1,000, each its own transaction."""
    from django.db import transaction
    from django.utils import timezone

    from streams.log import log_append

    records = list(realistic(count, days=1, people=100_000, seed=seed, end=end, first=seed * 10_000_000))
    started = time.perf_counter()
    for i in range(0, count, PROCESSOR_BATCH):
        with transaction.atomic():
            log_append(stream_id=stream, records=records[i : i + PROCESSOR_BATCH], logged_at=timezone.now())
    return Appends(label, count, time.perf_counter() - started)


def drop_indexes(db_url: str) -> None:
    with harness.connect(db_url, autocommit=True) as conn:
        for name in READER_INDEXES:
            conn.execute(f"DROP INDEX IF EXISTS {name}")


def create_indexes(db_url: str) -> dict[str, float]:
    took = {}
    with harness.connect(db_url, autocommit=True) as conn:
        for name, sql in READER_INDEXES.items():
            started = time.perf_counter()
            conn.execute(sql)
            took[name] = time.perf_counter() - started
    return took


def index_sizes(db_url: str) -> dict[str, str]:
    """Sizes summed over the log's partitions (a partitioned table or index has none of its own)."""
    with harness.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_size_pretty(sum(pg_relation_size(t.relid))::bigint) FROM pg_class c "
            "JOIN pg_index i ON i.indexrelid = c.oid CROSS JOIN LATERAL pg_partition_tree(c.oid) t "
            "WHERE i.indrelid = 'streams_log'::regclass GROUP BY c.relname ORDER BY 1"
        ).fetchall()
        table = conn.execute(
            "SELECT pg_size_pretty(sum(pg_table_size(relid))::bigint) FROM pg_partition_tree('streams_log')"
        ).fetchone()
        rows.append(("table (heap + TOAST)", table[0] if table else "?"))
    return dict(rows)


# --- export -----------------------------------------------------------------------------------------------


@dataclass
class Export:
    label: str
    rows: int
    bytes: int
    seconds: float
    peak_rss_mb: float = 0.0
    cpu: str = ""

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


class RssSampler(threading.Thread):
    def __init__(self, server: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.server, self.peak, self.stop = server, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            with contextlib.suppress(psutil.Error):
                workers = self.server.children(recursive=True)
                self.peak = max(self.peak, *(w.memory_info().rss / 2**20 for w in workers), 0.0)


def http_export(port: int, key: str, fmt: str, server: psutil.Process, database: str) -> Export:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    sampler = RssSampler(server)
    sampler.start()
    rows = size = 0
    with harness.CpuMeter(database, server) as meter:
        conn.request("GET", f"/api/v1/streams/{SLUG}/events/export?format={fmt}", headers={"X-API-Key": key})
        response = conn.getresponse()
        assert response.status == 200, response.read(500)
        disposition = response.getheader("Content-Disposition")
        while chunk := response.read(1 << 20):
            rows += chunk.count(b"\n")
            size += len(chunk)
    sampler.stop.set()
    sampler.join()
    assert disposition and disposition.startswith('attachment; filename="bench-export-events-start-')
    if fmt == "csv":
        rows -= 1  # the header
    return Export(f"HTTP export, {fmt}", rows, size, meter.wall, sampler.peak, meter.shares())


def raw_copy(db_url: str, stream: int, fmt: str, database: str) -> Export:
    from analytics.filters import EventFilter
    from analytics.query import export_statement

    statement, params = export_statement(stream_id=stream, event_filter=EventFilter(), fmt=fmt)
    rows = size = 0
    with harness.connect(db_url) as conn, harness.CpuMeter(database) as meter:
        cursor = conn.cursor()
        with cursor.copy(statement, params) as copy:
            for data in copy:
                rows += 1
                size += len(data)
    if fmt == "csv":
        rows -= 1
    return Export(f"raw COPY TO STDOUT, {fmt}", rows, size, meter.wall, 0.0, meter.shares())


# --- report ---------------------------------------------------------------------------------------------


def report(
    info: dict[str, str],
    total: int,
    days: int,
    found: list[Shape],
    without: list[Shape],
    appends: list[Appends],
    created: dict[str, float],
    sizes: dict[str, str],
    exports: list[tuple[Export, Export]],
) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {when} by `python -m bench.export` on {info['cores']} cores ({info['cpu']}, {info['memory']}), "
        f"PostgreSQL {info['postgresql']}, Python {info['python']}, Django {info['django']}, "
        f"gunicorn {info['gunicorn']}, psycopg {info['psycopg']}.",
        "",
        f"One stream's log of {total:,} realistic events over {days} days (the daily volume of 10 million over 30 "
        "days; 100,000 people, sessions of a few events interleaved, real user agents enriched, 2 % late). "
        "Over HTTP: gunicorn as `python -m eventflow up` runs it (2 workers, gthread), a secret key.",
        "",
        "### Export",
        "",
        "| what | rows | MB | seconds | rows/s | of raw COPY | web worker peak RSS | CPU (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for http_run, raw in exports:
        for run in (raw, http_run):
            ratio = f"{http_run.rate / raw.rate:.2f}x" if run is http_run else "1.00x"
            rss = f"{run.peak_rss_mb:.0f} MB" if run is http_run else "—"
            lines.append(
                f"| {run.label} | {run.rows:,} | {run.bytes / 1e6:,.0f} | {run.seconds:.1f} | **{run.rate:,.0f}** "
                f"| {ratio} | {rss} | {run.cpu} |"
            )
    longest = max(e.seconds for e, _ in exports)
    slowest = min(e.rate for e, _ in exports)
    lines += [
        "",
        f"Target ≥ 100,000 rows/s: {'met' if slowest >= 100_000 else 'missed'} (the slower format "
        f"{slowest:,.0f} rows/s). Both paths are bound by PostgreSQL writing the rows as CSV or JSON text; "
        "the web worker only gathers COPY's rows into 256 kB chunks, and its memory stays flat whatever the size.",
        "",
        f"gunicorn ran with `--timeout={WEB_TIMEOUT}`; the longest export streamed for {longest:.0f} s and finished "
        "whole (the row counts above are what the client read): a gthread worker's main thread keeps its "
        "heartbeat while a request thread streams, so the timeout never applies to a long export.",
        "",
        "### Query shapes of `GET /events` (a page of 100)",
        "",
        "| shape | rows | p50 ms | p95 ms |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {s.name} | {s.rows} | {s.ms(0.5):.1f} | {s.ms(0.95):.1f} |" for s in found]
    lines += [
        "",
        "Without the reader indexes (dropped for the run):",
        "",
        "| shape | p50 ms | p95 ms |",
        "|---|---:|---:|",
    ]
    lines += [f"| {s.name} | {s.ms(0.5):.1f} | {s.ms(0.95):.1f} |" for s in without]
    lines += [
        "",
        "### Write cost of the reader indexes",
        "",
        f"Appends as the processor makes them (`log_append`, batches of {PROCESSOR_BATCH:,}, one transaction each) "
        "onto the loaded log, alternating with and without `log_stream_user_time` and `log_stream_session_time`:",
        "",
        "| indexes | events | seconds | µs/event |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {a.label} | {a.events:,} | {a.seconds:.2f} | {a.us:.1f} |" for a in appends]
    with_us = statistics.mean(a.us for a in appends if a.label == "with")
    without_us = statistics.mean(a.us for a in appends if a.label == "without")
    lines += [
        "",
        f"Mean: {with_us:.1f} µs/event with, {without_us:.1f} without: the two indexes cost "
        f"{with_us - without_us:+.1f} µs an event ({100 * (with_us - without_us) / without_us:+.0f} % of the append).",
        "Built with CREATE INDEX on the loaded log (its partitions at once; the bench is alone on it): "
        + ", ".join(f"`{name}` {seconds:.1f} s" for name, seconds in created.items())
        + ". Sizes: "
        + ", ".join(f"{name} {size}" for name, size in sizes.items())
        + ".",
    ]
    return "\n".join(lines)


def plans_md(found: list[Shape], without: list[Shape]) -> str:
    out = []
    for shape in found:
        out += [
            f"#### {shape.name}",
            "",
            f"`{urlencode(shape.params) or '(no filter)'}`",
            "",
            "```",
            shape.plan,
            "```",
            "",
        ]
    for shape in without:
        out += [f"#### {shape.name}, without the reader indexes", "", "```", shape.plan, "```", ""]
    return "\n".join(out)


def write_plans(body: str) -> None:
    harness.write_section("plans", "Plans measured by bench/export.py", body, path=QUERIES_MD)


# --- main -------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=6)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20, help="requests per query shape")
    parser.add_argument("--appends", type=int, default=50_000, help="events per append sample")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    slot = harness.RedisSlot.claim()
    try:
        env, db_url = harness.django_setup(slot, DATABASE)
        from eventflow.__main__ import web_command
        from streams.models import ApiKeyKind, Stream
        from streams.services import api_key_create

        end = datetime(2026, 11, 20, tzinfo=UTC)
        stream = stream_id()
        fill(stream, args.events, days=args.days, people=args.people, end=end)
        create_indexes_if_missing(db_url)
        vacuum(db_url)
        info = harness.machine(db_url)
        key = api_key_create(kind=ApiKeyKind.SECRET, streams=[Stream.objects.get(pk=stream)]).raw_key
        port = harness.free_port()
        command = [*web_command(port=port, workers=2, bind="127.0.0.1"), f"--timeout={WEB_TIMEOUT}"]
        logs = Path(os.environ.get("TMPDIR", "/tmp")) / "bench-export-web.log"
        found = shapes(db_url, stream)
        without = [Shape(s.name, s.params) for s in found if s.name.startswith(("by user", "by session"))]
        appends: list[Appends] = []
        with harness.server(command, env=env, port=port, log=logs) as server:
            api = Api(port, key)
            for shape in found:
                measure(api, shape, args.repeat)
                shape.plan = explain(shape, stream)
                print(f"  {shape.name}: p50 {shape.ms(0.5):.1f} ms, p95 {shape.ms(0.95):.1f} ms", flush=True)
            appends.append(append_phase(stream, args.appends, "with", 1, end))
            drop_indexes(db_url)
            vacuum(db_url)
            for shape in without:
                measure(api, shape, max(3, args.repeat // 4))
                shape.plan = explain(shape, stream)
                print(f"  without: {shape.name}: p50 {shape.ms(0.5):.1f} ms", flush=True)
            appends.append(append_phase(stream, args.appends, "without", 2, end))
            created = create_indexes(db_url)
            appends.append(append_phase(stream, args.appends, "with", 3, end))
            drop_indexes(db_url)
            appends.append(append_phase(stream, args.appends, "without", 4, end))
            create_indexes(db_url)
            vacuum(db_url)
            for a in appends:
                print(f"  append {a.label}: {a.us:.1f} µs/event", flush=True)
            sizes = index_sizes(db_url)
            exports = []
            for fmt in ("csv", "ndjson"):
                raw = raw_copy(db_url, stream, fmt, DATABASE)
                over_http = http_export(port, key, fmt, server, DATABASE)
                assert over_http.rows == raw.rows, (over_http.rows, raw.rows)
                print(f"  {fmt}: HTTP {over_http.rate:,.0f} rows/s, raw COPY {raw.rate:,.0f} rows/s", flush=True)
                exports.append((over_http, raw))
        from streams.log import log_head

        text = report(info, log_head(stream), args.days, found, without, appends, created, sizes, exports)
        print(text)
        if not args.no_write:
            harness.write_section("export", "Event query and export", text)
            write_plans(plans_md(found, without))
    finally:
        slot.cleanup()
    return 0


def create_indexes_if_missing(db_url: str) -> None:
    with harness.connect(db_url, autocommit=True) as conn:
        for name, sql in READER_INDEXES.items():
            if conn.execute("SELECT 1 FROM pg_class WHERE relname = %s", [name]).fetchone() is None:
                conn.execute(sql)


if __name__ == "__main__":
    sys.exit(main())
