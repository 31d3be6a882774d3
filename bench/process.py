"""Processing against its physical baseline, and accepted -> logged latency, measured in one run.

    make bench-process            (or: python bench/process.py with DATABASE_URL / REDIS_URL set)

(a) Drain rate of one process. The inbox of a fresh stream is filled with
    realistic events by a raw COPY, then moved to the log with validation,
    enrichment, sessions, rollups and latency stats (one transaction per batch)
      - by ``stream_drain`` called in this process, and
      - by one ``celery worker --concurrency 1`` started as ``python -m eventflow up``
        starts its worker, from the kick until the inbox is empty.
    The baseline is the database's own limit for the same move, measured on
    an identical inbox in the same run: one ``INSERT INTO streams_log SELECT …
    FROM ingestion_inbox`` plus the DELETE of those rows.
(b) Latency. gunicorn, the workers and beat run as ``python -m eventflow up``
    runs them; events go over HTTP at a steady rate, and the p50/p99 of
    ``logged_at - received_at`` are read from the log.

It uses its own database (eventflow_bench_process, migrated here) and an
empty Redis database index, and writes docs/BENCHMARKS.md between the
``process`` markers.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import http.client
import itertools
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
import psutil

from bench import harness

BENCH_DB = os.environ.get("BENCH_PROCESS_DB", "eventflow_bench_process")


@dataclass
class Setup:
    env: dict[str, str]
    db_url: str


def prepare(slot: harness.RedisSlot) -> Setup:
    env, db_url = harness.django_setup(slot, BENCH_DB, EVENTFLOW_RATE_LIMIT_PER_MINUTE="100000000")
    return Setup(env=env, db_url=db_url)


# --- realistic events ------------------------------------------------------------------

SITE = "https://shop.example.com"
CHROME_BUILDS = ["6367.60", "6367.82", "6367.118", "6367.207", "6478.61", "6478.126", "6533.88", "6533.119"]
SAFARI_VERSIONS = ["16.6", "17.1", "17.2.1", "17.3", "17.4.1", "17.5"]
ANDROID_MODELS = ["Pixel 7", "Pixel 8", "SM-S911B", "SM-A546B", "moto g(60)", "Redmi Note 12", "CPH2451"]


def _user_agent(rng: random.Random) -> tuple[str, str]:
    """A user agent from a realistic mix of browsers and devices (several hundred distinct strings)."""
    roll = rng.random()
    chrome = f"{rng.randint(120, 126)}.0.{rng.choice(CHROME_BUILDS)}"
    safari = rng.choice(SAFARI_VERSIONS)
    ios = safari.replace(".", "_")
    if roll < 0.30:
        return "desktop", (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"Chrome/{chrome} Safari/537.36"
        )
    if roll < 0.38:
        return "desktop", (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"Chrome/{chrome} Safari/537.36 Edg/{chrome.split('.')[0]}.0.{rng.randint(2000, 2600)}.{rng.randint(10, 99)}"
        )
    if roll < 0.46:
        return "desktop", (
            f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            f"Version/{safari} Safari/605.1.15"
        )
    if roll < 0.51:
        version = rng.randint(118, 126)
        system = rng.choice(["X11; Ubuntu; Linux x86_64", "Windows NT 10.0; Win64; x64"])
        return "desktop", f"Mozilla/5.0 ({system}; rv:{version}.0) Gecko/20100101 Firefox/{version}.0"
    if roll < 0.71:
        return "mobile", (
            f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            f"Version/{safari} Mobile/15E148 Safari/604.1"
        )
    if roll < 0.86:
        return "mobile", (
            f"Mozilla/5.0 (Linux; Android {rng.randint(11, 14)}; {rng.choice(ANDROID_MODELS)}) AppleWebKit/537.36 "
            f"(KHTML, like Gecko) Chrome/{chrome} Mobile Safari/537.36"
        )
    if roll < 0.90:
        return "mobile", (
            f"Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"SamsungBrowser/{rng.randint(22, 25)}.0 Chrome/{chrome} Mobile Safari/537.36"
        )
    if roll < 0.95:
        return "tablet", (
            f"Mozilla/5.0 (iPad; CPU OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            f"Version/{safari} Mobile/15E148 Safari/604.1"
        )
    if roll < 0.97:
        return "tablet", (
            "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"Chrome/{chrome} Safari/537.36"
        )
    return "bot", rng.choice(
        [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "python-requests/2.31.0",
        ]
    )


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.25:
        prefix = rng.choice(["2001:db8:85a3", "2a02:8108:1140", "2600:1700:3e4", "2c0f:f248:10"])
        return ":".join([prefix, *(f"{rng.randrange(1 << 16):x}" for _ in range(5))])
    return f"{rng.choice([31, 62, 81, 92, 151, 176, 185, 203])}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


PAGES = [
    "/",
    "/products",
    "/products/espresso-machine",
    "/products/grinder",
    "/cart",
    "/checkout",
    "/account",
    "/blog/latte-art",
    "/pricing",
    "/help",
    "/search",
]
REFERRERS = [
    None,
    None,
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://t.co/x1y2z3",
    "https://news.ycombinator.com/",
    f"{SITE}/",
]
CAMPAIGNS = [
    {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring_sale"},
    {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "brand", "utm_term": "espresso machine"},
    {"utm_source": "facebook", "utm_medium": "social", "utm_campaign": "launch", "utm_content": "video"},
]
# (type, weight); the last two have no registered schema.
TYPES = [
    ("page_view", 50),
    ("button_click", 20),
    ("form_submit", 5),
    ("login", 4),
    ("logout", 3),
    ("add_to_cart", 12),
    ("search", 6),
]


@dataclass
class Person:
    device: str
    user_agent: str
    ip: str
    user_id: str | None
    anonymous_id: str
    # Some SDKs send their own session id; the rest get a derived one.
    session_id: str | None
    clock: float
    campaign: dict[str, str] | None = None
    referrer: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _person(rng: random.Random, number: int, start: float) -> Person:
    device, ua = _user_agent(rng)
    logged_in = device != "bot" and rng.random() < 0.55
    return Person(
        device=device,
        user_agent=ua,
        ip=_ip(rng),
        user_id=f"u{number:06d}" if logged_in else None,
        anonymous_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        session_id=f"sdk_{rng.getrandbits(64):016x}" if rng.random() < 0.35 else None,
        clock=start + rng.uniform(0, 300),
        campaign=rng.choice(CAMPAIGNS) if rng.random() < 0.3 else None,
        referrer=rng.choice(REFERRERS),
        extra={"screen": rng.choice([[1920, 1080], [1440, 900], [390, 844], [412, 915], [820, 1180]])},
    )


def _payload(rng: random.Random, event_type: str, person: Person, page: str) -> dict[str, Any]:
    uid = person.user_id or person.anonymous_id
    if event_type == "page_view":
        return {"page": page, "referrer": person.referrer, "device": person.device}
    if event_type == "button_click":
        return {"button_id": rng.choice(["add-to-cart", "hero-cta", "checkout", "filter-price", "share"]), "page": page}
    if event_type == "form_submit":
        return {"form_id": rng.choice(["newsletter", "checkout", "contact"]), "fields": ["email", "name"]}
    if event_type == "login":
        return {"user_id": uid, "ip": person.ip, "device": person.device}
    if event_type == "logout":
        return {"user_id": uid, "duration": round(rng.uniform(5, 3000), 1)}
    if event_type == "add_to_cart":
        return {
            "sku": f"SKU-{rng.randint(1000, 9999)}",
            "quantity": rng.randint(1, 3),
            "price": rng.choice([9.5, 24.0, 349.0]),
        }
    return {"query": rng.choice(["beans", "grinder", "milk jug", "descaler"]), "results": rng.randint(0, 40)}


def events(count: int, *, seed: int, start: float | None = None, people: int | None = None) -> Iterator[dict[str, Any]]:
    """``count`` envelopes as producers send them, interleaved over many people."""
    rng = random.Random(seed)
    start = start if start is not None else time.time() - 600
    crowd = [_person(rng, number, start) for number in range(people or max(50, count // 12))]
    names = [t for t, _ in TYPES]
    weights = [w for _, w in TYPES]
    for n in range(count):
        person = rng.choice(crowd)
        person.clock += rng.expovariate(1 / 20)
        event_type = rng.choices(names, weights=weights)[0]
        page = rng.choice(PAGES)
        query = f"?{urlencode(person.campaign)}" if person.campaign and rng.random() < 0.5 else ""
        context: dict[str, Any] = {
            "user_agent": person.user_agent,
            "ip": person.ip,
            "locale": "en-US",
            "page": {"url": f"{SITE}{page}{query}", "referrer": person.referrer, "title": page.strip("/") or "home"},
            "library": {"name": "eventflow-js", "version": "2.4.1"},
            "screen": person.extra["screen"],
        }
        event: dict[str, Any] = {
            "event_id": f"{seed}-{n}-{rng.getrandbits(32):08x}",
            "type": event_type,
            "timestamp": datetime.fromtimestamp(person.clock, UTC).isoformat(timespec="milliseconds"),
            "payload": _payload(rng, event_type, person, page),
            "context": context,
        }
        if person.user_id:
            event["user_id"] = person.user_id
        else:
            event["anonymous_id"] = person.anonymous_id
        if person.session_id:
            event["session_id"] = person.session_id
        yield event


# --- database ---------------------------------------------------------------------------------

COPY_SQL = """
COPY ingestion_inbox (stream_id, event_id, type, event_time, received_at, user_id, anonymous_id, session_id,
                      payload, context, flags, attempts, next_attempt_at, last_error) FROM STDIN
"""
BASELINE_SQL = """
INSERT INTO streams_log
    ("stream_id", "offset", event_id, type, event_time, received_at, logged_at, user_id, anonymous_id,
     session_id, payload, context, enrichment, flags)
SELECT stream_id, row_number() OVER (ORDER BY id) - 1, event_id, type, event_time, received_at, now(), user_id,
       anonymous_id, session_id, payload, context, '{}'::jsonb, flags
FROM ingestion_inbox WHERE stream_id = %(stream_id)s
"""


def reset(db_url: str) -> None:
    """Empty every table the benchmark writes (in its own database)."""
    from django.db import connection

    connection.close()
    with harness.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE streams_log, ingestion_inbox, ingestion_session_state, ingestion_deadletter,"
            " analytics_minute_count, analytics_processing_minute"
        )
        conn.execute("TRUNCATE streams_stream CASCADE")
        conn.execute("VACUUM ANALYZE streams_log, ingestion_inbox, ingestion_session_state")


def new_stream(slug: str) -> int:
    from django.db import connection

    from streams.services import stream_create

    stream_id = int(stream_create(slug=slug, name=slug, with_starter_schemas=True).pk)
    connection.close()
    return stream_id


def fill_inbox(db_url: str, stream_id: int, envelopes: list[dict[str, Any]]) -> None:
    """COPY the envelopes into the inbox as the intake stores them."""
    received = datetime.now(UTC)
    with harness.connect(db_url) as conn, conn.cursor() as cur, cur.copy(COPY_SQL) as copy:
        for e in envelopes:
            copy.write_row(
                (
                    stream_id,
                    e["event_id"],
                    e["type"],
                    e["timestamp"],
                    received,
                    e.get("user_id"),
                    e.get("anonymous_id"),
                    e.get("session_id"),
                    orjson.dumps(e["payload"]).decode(),
                    orjson.dumps(e["context"]).decode(),
                    "{}",
                    0,
                    received,
                    "",
                )
            )
    with harness.connect(db_url, autocommit=True) as conn:
        conn.execute("ANALYZE ingestion_inbox")


def head(conn: Any, stream_id: int) -> int:
    row = conn.execute("SELECT next_offset FROM streams_streamhead WHERE stream_id = %s", [stream_id]).fetchone()
    return int(row[0])


def check_moved(db_url: str, stream_id: int, expected: int, *, rollups: bool = True) -> None:
    """The log holds every event once with offsets 0..n-1, the inbox is empty, the rollups agree."""
    with harness.connect(db_url) as conn:

        def one(sql: str) -> Any:
            return conn.execute(sql, [stream_id]).fetchone()

        logged, low, high = one('SELECT count(*), min("offset"), max("offset") FROM streams_log WHERE stream_id = %s')
        waiting = one("SELECT count(*) FROM ingestion_inbox WHERE stream_id = %s")[0]
        dead = one("SELECT count(*) FROM ingestion_deadletter WHERE stream_id = %s")[0]
        counted = one("SELECT coalesce(sum(count), 0) FROM analytics_minute_count WHERE stream_id = %s")[0]
    problems = []
    if logged != expected or waiting or dead:
        problems.append(f"logged {logged} of {expected}, {waiting} left in the inbox, {dead} dead letters")
    if logged and (low, high) != (0, logged - 1):
        problems.append(f"offsets run {low}..{high} for {logged} events")
    if rollups and counted != logged:
        problems.append(f"the rollups count {counted}, the log holds {logged}")
    if problems:
        raise SystemExit(f"stream {stream_id}: " + "; ".join(problems))


# --- processes ---------------------------------------------------------------------------------------


class Child:
    """A process of the application, in its own session, with its output in a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv, env=env, cwd=harness.BASE_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.ps = psutil.Process(self.process.pid)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 60) -> Child:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not start:\n{self.output()[-3000:]}")
            time.sleep(0.05)
        return self

    def cpu(self) -> float:
        total = 0.0
        for process in [self.ps, *self.ps.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def worker(setup: Setup, logs: Path, concurrency: int, name: str = "worker") -> Child:
    from eventflow.__main__ import worker_command

    return Child(name, worker_command(concurrency=concurrency), setup.env, logs).wait_for(r" ready\.")


# --- (a) drain rate ----------------------------------------------------------------------------------------


@dataclass
class Drain:
    name: str
    events: int
    seconds: float
    cpu: harness.CpuMeter
    stages: dict[str, list[float]] = field(default_factory=dict)  # name -> [wall s, cpu s]

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def _stage_timers() -> tuple[dict[str, list[float]], Callable[[], None]]:
    """Time the processor's stages per batch (wall and CPU); returns the totals and an undo."""
    import ingestion.pipeline as pipeline

    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    originals: dict[str, Any] = {}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name][0] += time.perf_counter() - wall
                totals[name][1] += time.thread_time() - cpu

        return run

    for name in (
        "_read_batch",
        "_check",
        "rollups_count",
        "_write_batch",
        "sessions_assign",
        "log_append",
        "rollups_apply",
        "processing_stats_record",
    ):
        originals[name] = getattr(pipeline, name)
        setattr(pipeline, name, timed(name, originals[name]))

    def undo() -> None:
        for name, fn in originals.items():
            setattr(pipeline, name, fn)

    return totals, undo


def drain_in_process(setup: Setup, stream_id: int, count: int) -> Drain:
    from ingestion.pipeline import stream_drain

    # The generated events are garbage the collector would otherwise keep walking.
    gc.collect()
    totals, undo = _stage_timers()
    try:
        with harness.CpuMeter(BENCH_DB) as cpu:
            while stream_drain(stream_id=stream_id, budget_seconds=600).full:
                pass
    finally:
        undo()
    t = totals

    def minus(name: str, *parts: str) -> list[float]:
        return [t[name][i] - sum(t[part][i] for part in parts) for i in (0, 1)]

    stages = {
        "read: fetch and load the rows (read ahead)": minus("_read_batch", "_check", "rollups_count"),
        "validate + enrich (read ahead)": t["_check"],
        "rollups: count in Python (read ahead)": t["rollups_count"],
        "sessions: read, assign, upsert": t["sessions_assign"],
        "log append: COPY, head": t["log_append"],
        "rollups: write + latency stats": [t["rollups_apply"][i] + t["processing_stats_record"][i] for i in (0, 1)],
        "records, inbox delete": minus(
            "_write_batch", "sessions_assign", "log_append", "rollups_apply", "processing_stats_record"
        ),
    }
    return Drain("stream_drain in one process", count, cpu.wall, cpu, stages)


def drain_with_worker(setup: Setup, stream_id: int, count: int, logs: Path) -> Drain:
    from ingestion.processing import processing_request

    child = worker(setup, logs, concurrency=1, name="drain-worker")
    try:
        with harness.connect(setup.db_url, autocommit=True) as conn, harness.CpuMeter(BENCH_DB, child.ps) as cpu:
            processing_request(stream_id)
            deadline = time.monotonic() + 600
            while head(conn, stream_id) < count:
                if time.monotonic() > deadline or child.process.poll() is not None:
                    raise SystemExit(f"the worker did not drain the inbox:\n{child.output()[-3000:]}")
                time.sleep(0.01)
    finally:
        child.stop()
    return Drain("one celery worker, concurrency 1", count, cpu.wall, cpu)


def baseline(setup: Setup, stream_id: int, count: int) -> Drain:
    with harness.connect(setup.db_url) as conn, harness.CpuMeter(BENCH_DB) as cpu:
        moved = conn.execute(BASELINE_SQL, {"stream_id": stream_id}).rowcount
        conn.execute("DELETE FROM ingestion_inbox WHERE stream_id = %s", [stream_id])
        conn.execute("UPDATE streams_streamhead SET next_offset = %s WHERE stream_id = %s", [moved, stream_id])
        conn.commit()
    return Drain("baseline", count, cpu.wall, cpu)


def run_drains(setup: Setup, count: int, logs: Path, *, with_worker: bool) -> list[Drain]:
    envelopes = list(events(count, seed=1))
    runs: list[tuple[str, Callable[[int], Drain]]] = [
        ("baseline", lambda sid: baseline(setup, sid, count)),
        ("drain", lambda sid: drain_in_process(setup, sid, count)),
    ]
    if with_worker:
        runs.append(("worker", lambda sid: drain_with_worker(setup, sid, count, logs)))
    results = []
    for slug, run in runs:
        reset(setup.db_url)
        stream_id = new_stream(slug)
        fill_inbox(setup.db_url, stream_id, envelopes)
        result = run(stream_id)
        check_moved(setup.db_url, stream_id, count, rollups=slug != "baseline")
        print(
            f"  {result.name:34} {result.seconds:6.2f} s {result.rate:9,.0f}/s   cores: {result.cpu.shares()}",
            flush=True,
        )
        results.append(result)
    return results


# --- (b) latency under steady load ----------------------------------------------------------------------------


@dataclass
class Latency:
    rate: int
    batch: int
    seconds: float
    sent: int = 0
    accepted: int = 0
    failed_requests: int = 0
    send_rate: float = 0.0
    http_ms: list[float] = field(default_factory=list)
    measured: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    catch_up_s: float = 0.0
    cores: dict[str, float] = field(default_factory=dict)
    web_workers: int = 0
    web_threads: str = ""
    worker_concurrency: int = 0
    sweep_seconds: str = ""
    activity: list[tuple[float, str, str]] = field(default_factory=list)

    def http_percentile(self, q: float) -> float:
        ordered = sorted(self.http_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


class ActivitySampler(threading.Thread):
    """Which statements PostgreSQL is busy with: pg_stat_activity sampled every 20 ms."""

    SQL = """
    SELECT query, coalesce(wait_event_type || ':' || wait_event, 'on CPU')
    FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()
    """

    def __init__(self, db_url: str) -> None:
        super().__init__(daemon=True)
        self.db_url = db_url
        self.counts: Counter[tuple[str, str]] = Counter()
        self.samples = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        with harness.connect(self.db_url, autocommit=True) as conn:
            while not self.stopping.wait(0.02):
                for query, wait in conn.execute(self.SQL).fetchall():
                    self.counts[(" ".join(query.split())[:60], wait)] += 1
                self.samples += 1

    def __enter__(self) -> ActivitySampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.join()

    def top(self, n: int) -> list[tuple[float, str, str]]:
        """(average number of backends, statement, wait) for the busiest statements."""
        return [(count / max(1, self.samples), query, wait) for (query, wait), count in self.counts.most_common(n)]


LATENCY_SQL = """
SELECT count(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM logged_at - received_at)),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM logged_at - received_at)),
       max(extract(epoch FROM logged_at - received_at))
FROM streams_log WHERE stream_id = %s AND received_at >= %s AND received_at < %s
"""


def _send_steadily(
    port: int, path: str, key: str, bodies: list[bytes], interval: float, result: Latency, warmup: float, senders: int
) -> float:
    """POST ``bodies`` one every ``interval`` seconds (open loop: a slow answer doesn't slow the sending)."""
    headers = {"Content-Type": "application/json", "X-API-Key": key}
    counter = itertools.count()
    lock = threading.Lock()
    start = time.perf_counter() + 0.2
    wall_start = time.time() + 0.2

    def sender() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while (index := next(counter)) < len(bodies):
            due = start + index * interval
            if (pause := due - time.perf_counter()) > 0:
                time.sleep(pause)
            began = time.perf_counter()
            try:
                conn.request("POST", path, body=bodies[index], headers=headers)
                response = conn.getresponse()
                data, ok = response.read(), response.status == 202
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                data, ok = b"", False
            elapsed_ms = (time.perf_counter() - began) * 1000
            with lock:
                result.sent += result.batch
                if not ok:
                    result.failed_requests += 1
                    continue
                result.accepted += orjson.loads(data)["accepted"]
                if due >= start + warmup:
                    result.http_ms.append(elapsed_ms)
        conn.close()

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.send_rate = result.sent / (time.perf_counter() - start)
    return wall_start


def run_latency(
    setup: Setup,
    logs: Path,
    *,
    rate: int,
    seconds: float,
    warmup: float,
    batch: int,
    web_workers: int,
    worker_concurrency: int,
) -> Latency:
    from eventflow.__main__ import beat_command, web_command, webhook_worker_command
    from streams.models import ApiKeyKind, Stream
    from streams.services import api_key_create

    reset(setup.db_url)
    stream_id = new_stream("latency")
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[Stream.objects.get(pk=stream_id)]).raw_key
    total = warmup + seconds
    requests = int(rate * total / batch)
    generated = events(requests * batch, seed=2, start=time.time() - 900, people=20_000)
    bodies = [orjson.dumps({"events": list(itertools.islice(generated, batch))}) for _ in range(requests)]
    gc.collect()

    port = harness.free_port()
    web = web_command(port=port, workers=web_workers, bind="127.0.0.1")
    result = Latency(
        rate=rate,
        batch=batch,
        seconds=seconds,
        web_workers=web_workers,
        worker_concurrency=worker_concurrency,
        web_threads=next(a.split("=", 1)[1] for a in web if a.startswith("--threads=")),
        sweep_seconds=setup.env.get("EVENTFLOW_SWEEP_SECONDS", "2"),
    )
    children: list[Child] = []
    try:
        children.append(Child("web", web, setup.env, logs))
        children.append(worker(setup, logs, concurrency=worker_concurrency))
        children.append(Child("webhooks", webhook_worker_command(concurrency=8), setup.env, logs))
        children.append(Child("beat", beat_command(schedule=logs / "celerybeat-schedule"), setup.env, logs))
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError, http.client.HTTPException):
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                probe.request("GET", "/health")
                probe.getresponse().read()
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the web server did not start:\n{children[0].output()[-3000:]}")
            time.sleep(0.1)
        print(f"  {rate:,} events/s in batches of {batch} for {warmup:.0f} s + {seconds:.0f} s …", flush=True)
        before = {child.name: child.cpu() for child in children}
        sampler = ActivitySampler(setup.db_url)
        with harness.CpuMeter(BENCH_DB) as cpu, sampler:
            wall_start = _send_steadily(
                port, "/api/v1/streams/latency/events/batch", key, bodies, batch / rate, result, warmup, senders=16
            )
        result.cores = {child.name: (child.cpu() - before[child.name]) / cpu.wall for child in children}
        result.cores["postgres"] = cpu.used["postgres"] / cpu.wall
        result.cores["load generator"] = cpu.used["client"] / cpu.wall
        result.activity = sampler.top(6)
        finished = time.perf_counter()
        with harness.connect(setup.db_url, autocommit=True) as conn:
            while head(conn, stream_id) < result.accepted and time.perf_counter() - finished < 60:
                time.sleep(0.02)
            result.catch_up_s = time.perf_counter() - finished
            window = [datetime.fromtimestamp(wall_start + warmup, UTC), datetime.fromtimestamp(wall_start + total, UTC)]
            row = conn.execute(LATENCY_SQL, [stream_id, *window]).fetchone()
        check_moved(setup.db_url, stream_id, result.accepted)
    finally:
        for child in reversed(children):
            child.stop()
    result.measured = int(row[0])
    result.p50_ms, result.p99_ms, result.max_ms = (float(v or 0) * 1000 for v in row[1:])
    return result


# --- report ----------------------------------------------------------------------------------------------------


def report(
    info: dict[str, str], loads: list[str], drains: list[Drain], latency: Latency | None, batch_size: int
) -> str:
    from ingestion.pipeline import BACKLOG_BATCH_FACTOR

    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench-process` (`bench/process.py`) on"
        f" {info['cores']} cores ({info['cpu']}, {info['memory']}), PostgreSQL {info['postgresql']},"
        f" Python {info['python']}, Django {info['django']}, psycopg {info['psycopg']};"
        f" load average {loads[0]} before, {loads[-1]} after. DEBUG off, processing batches of {batch_size:,}"
        f" doubling up to {batch_size * BACKLOG_BATCH_FACTOR:,} while a backlog lasts,"
        " the stream in `warn` schema mode with the starter schemas, IPs anonymised.",
        "",
    ]
    if drains:
        base = drains[0]
        n = base.events
        lines += [
            f"**Drain rate of one process.** {n:,} events COPYed into the inbox (a mix of desktop, mobile, tablet"
            " and bot user agents in several hundred versions, IPv4 and IPv6, page URLs with and without utm"
            " parameters, signed-in users and anonymous visitors, 35 % sending their own session id and the rest"
            " given derived sessions), then moved to the log with validation, enrichment, sessions, rollups and"
            " latency stats. The baseline moves the same rows with one `INSERT INTO streams_log SELECT … FROM"
            " ingestion_inbox` and a `DELETE` (no validation, enrichment, sessions or rollups): the database's"
            " own limit for the move. Each run starts from empty tables.",
            "",
            "| path | seconds | events/s | of the baseline | CPU µs/event: Python | PostgreSQL |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for d in drains:
            python = d.cpu.used.get("server", d.cpu.used["client"] if d is not base else 0.0)
            label = "baseline: INSERT … SELECT + DELETE" if d is base else d.name
            lines.append(
                f"| {label} | {d.seconds:.2f} | {d.rate:,.0f} | {d.rate / base.rate:.0%}"
                f" | {python / n * 1e6:.0f} | {d.cpu.used['postgres'] / n * 1e6:.0f} |"
            )
        staged = next((d for d in drains if d.stages), None)
        if staged:
            lines += [
                "",
                f"Where the time of `stream_drain` goes ({staged.seconds / n * 1e6:.1f} µs an event in all). The"
                " stages marked *read ahead* run on the drain's read-ahead thread while the batch before is"
                " written (the first batch of a drain reads its own), so the wall times add up to more than the"
                " whole; wall time includes PostgreSQL's work and waiting for the CPU (and for the GIL):",
                "",
                "| stage | wall µs/event | Python CPU µs/event |",
                "|---|---:|---:|",
            ]
            for stage, (wall, cpu) in staged.stages.items():
                lines.append(f"| {stage} | {wall / n * 1e6:.1f} | {cpu / n * 1e6:.1f} |")
        lines.append("")
    if latency:
        r = latency
        cores = ", ".join(f"{name} {share:.2f}" for name, share in r.cores.items())
        lines += [
            f"**Accepted → logged latency** at {r.rate:,} events/s sent over HTTP in batches of {r.batch}"
            f" (open loop: one request every {r.batch / r.rate * 1000:.0f} ms whatever the answers) to gunicorn"
            f" ({r.web_workers} gthread workers x {r.web_threads} threads), one processing worker (concurrency"
            f" {r.worker_concurrency}), the webhooks worker and beat (sweep every {r.sweep_seconds} s), the command"
            f" lines of `python -m eventflow up`; {r.seconds:.0f} s measured after a warm-up. CPU in cores: {cores}.",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| events sent / accepted | {r.sent:,} / {r.accepted:,} ({r.failed_requests} failed requests) |",
            f"| send rate achieved | {r.send_rate:,.0f} events/s |",
            f"| events in the measured window | {r.measured:,} |",
            f"| `logged_at - received_at` p50 | {r.p50_ms:,.0f} ms |",
            f"| `logged_at - received_at` p99 | {r.p99_ms:,.0f} ms |",
            f"| `logged_at - received_at` max | {r.max_ms:,.0f} ms |",
            f"| HTTP request p50 / p99 | {r.http_percentile(0.5):,.0f} / {r.http_percentile(0.99):,.0f} ms |",
            f"| inbox empty after the last request | {r.catch_up_s:.2f} s |",
            "",
            "What PostgreSQL was doing meanwhile (pg_stat_activity every 20 ms; average number of backends):",
            "",
            "| backends | statement | waiting on |",
            "|---:|---|---|",
            *(f"| {share:.2f} | `{query}…` | {wait} |" for share, query, wait in r.activity),
            "",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="events in the inbox for each drain")
    parser.add_argument("--rate", type=int, default=5_000, help="events/s sent over HTTP for the latency run")
    parser.add_argument("--seconds", type=float, default=30, help="measured seconds of the latency run")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of load before the measured window")
    parser.add_argument("--batch", type=int, default=100, help="events per HTTP request")
    parser.add_argument("--web-workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    parser.add_argument("--worker-concurrency", type=int, default=int(os.environ.get("WORKER_CONCURRENCY", "2")))
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument("--skip-worker", action="store_true", help="drain in this process only")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print the results without writing docs/")
    args = parser.parse_args()

    started = time.monotonic()
    slot = harness.RedisSlot.claim()
    try:
        setup = prepare(slot)
        info = harness.machine(setup.db_url)
        loads = [" ".join(f"{x:.2f}" for x in os.getloadavg())]
        print(f"machine: {info}; load average {loads[0]}", flush=True)
        from eventflow import conf

        batch_size = conf.get().process_batch_size
        logs = Path(tempfile.mkdtemp(prefix="bench-process-"))
        drains = [] if args.skip_drain else run_drains(setup, args.events, logs, with_worker=not args.skip_worker)
        latency = None
        if not args.skip_latency:
            latency = run_latency(
                setup,
                logs,
                rate=args.rate,
                seconds=args.seconds,
                warmup=args.warmup,
                batch=args.batch,
                web_workers=args.web_workers,
                worker_concurrency=args.worker_concurrency,
            )
            print(
                f"  latency p50 {latency.p50_ms:,.0f} ms, p99 {latency.p99_ms:,.0f} ms over {latency.measured:,}"
                f" events; sent {latency.send_rate:,.0f}/s; cores {latency.cores}",
                flush=True,
            )
        reset(setup.db_url)
        # The servers' logs stay behind only when the run failed.
        shutil.rmtree(logs, ignore_errors=True)
        loads.append(" ".join(f"{x:.2f}" for x in os.getloadavg()))
        text = report(info, loads, drains, latency, batch_size)
        print("\n" + text)
        if not args.no_write and (drains or latency):
            harness.write_section("process", "Processing: inbox → log", text)
            print(f"written to {harness.BENCHMARKS_MD}")
        print(f"total {time.monotonic() - started:.0f}s")
    finally:
        slot.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
