"""Processing benchmark: how fast one worker drains the inbox, and how late events reach the log.

    make bench-process            # or: python -m eventflow.devservices python bench/process.py

It runs against its own database (``eventflow_bench_process`` on the server of
DATABASE_URL, migrated here) and its own Redis database number, so it never
touches anybody else's data, and writes its section of docs/BENCHMARKS.md.

(a) Drain rate. The inbox of a fresh stream is filled with realistic events by
    a raw COPY, then drained (validate, enrich, append, rollups, delete) by
      - ``stream_drain`` called in this process, and
      - one real ``celery -A eventflow worker --concurrency 1`` process,
    timed until the inbox is empty. The baseline is the database's own limit
    for the same move: one ``INSERT INTO streams_log SELECT … FROM
    ingestion_inbox`` plus the DELETE of those rows, on an identical inbox.
(b) Latency. gunicorn, a worker and beat run as ``python -m eventflow up``
    starts them; events are sent over HTTP at a steady rate, and the p50/p99
    of ``logged_at - received_at`` are read from the log.
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import itertools
import os
import platform
import pstats
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

BENCH_DATABASE = "eventflow_bench_process"
# The shared Redis keeps everyone else in database 0; the Celery queue, kick
# markers and caches of this benchmark live apart from them.
BENCH_REDIS_DB = 14
CACHE_PREFIX = "efbench-process"
DOC = BASE_DIR / "docs" / "BENCHMARKS.md"
START_MARK = "<!-- process:start -->"
END_MARK = "<!-- process:end -->"

# --- environment ---------------------------------------------------------------------


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=path))


def bench_environment() -> dict[str, str]:
    """Point this process and its children at the benchmark's own database and Redis."""
    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/eventflow")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    env = {
        "DATABASE_URL": _with_path(database_url, f"/{BENCH_DATABASE}"),
        "REDIS_URL": _with_path(redis_url, f"/{BENCH_REDIS_DB}"),
        "CACHE_KEY_PREFIX": CACHE_PREFIX,
        "DEBUG": "0",
        "DJANGO_SETTINGS_MODULE": "eventflow.settings",
        "PYTHONUNBUFFERED": "1",
    }
    env["CELERY_BROKER_URL"] = env["REDIS_URL"]
    os.environ.update(env)
    return dict(os.environ)


def _pg_params(dbname: str) -> dict[str, Any]:
    import dj_database_url

    cfg = dj_database_url.parse(os.environ["DATABASE_URL"])
    params = {"dbname": dbname, "host": cfg["HOST"], "port": cfg["PORT"] or 5432, "user": cfg["USER"]}
    if cfg.get("PASSWORD"):
        params["password"] = cfg["PASSWORD"]
    return params


def pg_connect(dbname: str = BENCH_DATABASE, autocommit: bool = False) -> Any:
    import psycopg

    return psycopg.connect(**_pg_params(dbname), autocommit=autocommit)


def ensure_database() -> None:
    with pg_connect("postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DATABASE]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
    subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--noinput", "-v", "0"], check=True, cwd=BASE_DIR
    )


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with pg_connect() as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "postgres": pg_version.split()[0],
        "python": platform.python_version(),
    }


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


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


# --- database helpers -----------------------------------------------------------------------

COPY_SQL = """
COPY ingestion_inbox (stream_id, event_id, type, event_time, received_at, user_id, anonymous_id, session_id,
                      payload, context, flags, attempts, next_attempt_at, last_error) FROM STDIN
"""


def reset_data() -> None:
    """Empty every table this benchmark writes (its own database only)."""
    with pg_connect() as conn:
        conn.execute(
            "TRUNCATE streams_log, ingestion_inbox, ingestion_session_state, ingestion_deadletter,"
            " analytics_minute_count, analytics_processing_minute"
        )
        conn.execute("TRUNCATE streams_stream CASCADE")
    with pg_connect(autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE streams_log, ingestion_inbox")


def new_stream(slug: str) -> int:
    from streams.services import stream_create

    return int(stream_create(slug=slug, name=slug, with_starter_schemas=True).pk)


def fill_inbox(stream_id: int, envelopes: list[dict[str, Any]]) -> float:
    """COPY the envelopes into the inbox as the ingest path would store them; returns seconds taken."""
    received = datetime.now(UTC)
    started = time.perf_counter()
    with pg_connect() as conn, conn.cursor() as cur, cur.copy(COPY_SQL) as copy:
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
    with pg_connect(autocommit=True) as conn:
        conn.execute("ANALYZE ingestion_inbox")
    return time.perf_counter() - started


BASELINE_SQL = """
INSERT INTO streams_log
    ("stream_id", "offset", event_id, type, event_time, received_at, logged_at, user_id, anonymous_id,
     session_id, payload, context, enrichment, flags)
SELECT stream_id, row_number() OVER (ORDER BY id) - 1, event_id, type, event_time, received_at, now(), user_id,
       anonymous_id, session_id, payload, context, '{}'::jsonb, flags
FROM ingestion_inbox WHERE stream_id = %(stream_id)s
"""


def baseline_move(stream_id: int) -> float:
    """The database's own limit: move the rows inbox → log in one INSERT … SELECT + DELETE."""
    with pg_connect() as conn:
        started = time.perf_counter()
        moved = conn.execute(BASELINE_SQL, {"stream_id": stream_id}).rowcount
        conn.execute("DELETE FROM ingestion_inbox WHERE stream_id = %s", [stream_id])
        conn.execute("UPDATE streams_streamhead SET next_offset = %s WHERE stream_id = %s", [moved, stream_id])
        conn.commit()
        return time.perf_counter() - started


def check_moved(stream_id: int, expected: int, *, rollups: bool = True) -> None:
    with pg_connect() as conn:
        logged = conn.execute("SELECT count(*) FROM streams_log WHERE stream_id = %s", [stream_id]).fetchone()[0]
        waiting = conn.execute("SELECT count(*) FROM ingestion_inbox WHERE stream_id = %s", [stream_id]).fetchone()[0]
        dead = conn.execute("SELECT count(*) FROM ingestion_deadletter WHERE stream_id = %s", [stream_id]).fetchone()[0]
        offsets = conn.execute(
            'SELECT min("offset"), max("offset") FROM streams_log WHERE stream_id = %s', [stream_id]
        ).fetchone()
        counted = conn.execute(
            "SELECT coalesce(sum(count), 0) FROM analytics_minute_count WHERE stream_id = %s", [stream_id]
        ).fetchone()[0]
    problems = []
    if logged != expected or waiting or dead:
        problems.append(f"logged {logged} of {expected}, {waiting} still in the inbox, {dead} dead letters")
    if logged and tuple(offsets) != (0, logged - 1):
        problems.append(f"offsets {offsets} are not 0..{logged - 1}")
    if rollups and counted != logged:
        problems.append(f"rollups count {counted}, log holds {logged}")
    if problems:
        raise SystemExit(f"stream {stream_id}: " + "; ".join(problems))


def head(conn: Any, stream_id: int) -> int:
    return int(
        conn.execute("SELECT next_offset FROM streams_streamhead WHERE stream_id = %s", [stream_id]).fetchone()[0]
    )


# --- processes -----------------------------------------------------------------------------


class Child:
    """A child process in its own session, with its output in a file; stopped by its id."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            argv, env=env, cwd=BASE_DIR, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.output()):
                return
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited early:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        raise SystemExit(f"{self.name} did not become ready:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def celery_argv(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "celery"), "-A", "eventflow", *args]


def worker(env: dict[str, str], workdir: Path, concurrency: int, name: str = "worker") -> Child:
    child = Child(
        name,
        celery_argv(
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            f"{name}-{uuid.uuid4().hex[:6]}@%h",
        ),
        env,
        workdir,
    )
    child.wait_for(r"ready\.")
    return child


def forget_redis_keys() -> None:
    """Remove what the benchmark left in its Redis database (only its own keys)."""
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    for pattern in (f"{CACHE_PREFIX}*", f":1:{CACHE_PREFIX}*", "celery", "_kombu.binding.*", "unacked*"):
        for key in client.scan_iter(pattern):
            client.delete(key)


# --- (a) drain rate ----------------------------------------------------------------------------------


@dataclass
class DrainResult:
    events: int
    baseline_s: float
    in_process_s: float
    worker_s: float | None
    fill_s: float
    profile: str = ""


def drain_in_process(stream_id: int, *, profile: bool) -> tuple[float, str]:
    from django.db import connection

    from ingestion.pipeline import stream_drain

    connection.close()
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    while stream_drain(stream_id=stream_id, budget_seconds=300).full:
        pass
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - started
    text = ""
    if profiler:
        out = Path(tempfile.gettempdir()) / "bench-process.prof"
        profiler.dump_stats(out)
        import io

        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).sort_stats("tottime").print_stats(25)
        text = buffer.getvalue()
    return elapsed, text


def drain_with_worker(stream_id: int, expected: int, env: dict[str, str], workdir: Path) -> float:
    from ingestion.processing import processing_request

    child = worker(env, workdir, concurrency=1, name="drain-worker")
    try:
        with pg_connect(autocommit=True) as conn:
            started = time.perf_counter()
            processing_request(stream_id)
            deadline = started + 300
            while head(conn, stream_id) < expected:
                if time.perf_counter() > deadline or child.process.poll() is not None:
                    raise SystemExit(f"worker did not drain the inbox:\n{child.output()[-3000:]}")
                time.sleep(0.02)
            return time.perf_counter() - started
    finally:
        child.stop()


def run_drain(count: int, env: dict[str, str], workdir: Path, *, with_worker: bool, profile: bool) -> DrainResult:
    print(f"generating {count:,} events …", flush=True)
    envelopes = list(events(count, seed=1))

    reset_data()
    baseline_stream = new_stream("baseline")
    fill_s = fill_inbox(baseline_stream, envelopes)
    baseline_s = baseline_move(baseline_stream)
    check_moved(baseline_stream, count, rollups=False)
    print(
        f"  baseline INSERT…SELECT + DELETE: {baseline_s:.2f} s ({count / baseline_s:,.0f}/s); COPY {fill_s:.2f} s",
        flush=True,
    )

    reset_data()
    stream = new_stream("drain")
    fill_inbox(stream, envelopes)
    in_process_s, profile_text = drain_in_process(stream, profile=profile)
    check_moved(stream, count)
    print(f"  stream_drain in one process: {in_process_s:.2f} s ({count / in_process_s:,.0f}/s)", flush=True)

    worker_s = None
    if with_worker:
        reset_data()
        stream = new_stream("worker")
        fill_inbox(stream, envelopes)
        worker_s = drain_with_worker(stream, count, env, workdir)
        check_moved(stream, count)
        print(f"  celery worker --concurrency 1: {worker_s:.2f} s ({count / worker_s:,.0f}/s)", flush=True)
    return DrainResult(count, baseline_s, in_process_s, worker_s, fill_s, profile_text)


# --- (b) latency under steady load ---------------------------------------------------------------------


@dataclass
class LatencyResult:
    rate: int
    batch: int
    seconds: float
    sent: int
    accepted: int
    http_errors: int
    achieved_rate: float
    http_p50_ms: float
    http_p99_ms: float
    measured: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    catch_up_s: float
    web_workers: int
    web_threads: int
    worker_concurrency: int
    sweep_seconds: str


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_latency(
    env: dict[str, str],
    workdir: Path,
    *,
    rate: int,
    seconds: float,
    warmup: float,
    batch: int,
    web_workers: int,
    worker_concurrency: int,
) -> LatencyResult:
    from streams.models import ApiKeyKind, Stream
    from streams.services import api_key_create

    reset_data()
    stream_id = new_stream("latency")
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[Stream.objects.get(pk=stream_id)]).raw_key
    total_seconds = warmup + seconds
    requests_total = int(rate * total_seconds / batch)
    print(f"generating {requests_total * batch:,} events for {total_seconds:.0f} s at {rate:,}/s …", flush=True)
    generator = events(requests_total * batch, seed=2, start=time.time() - 60, people=20_000)
    bodies = [orjson.dumps({"events": list(itertools.islice(generator, batch))}) for _ in range(requests_total)]

    port = _free_port()
    bin_dir = Path(sys.executable).parent
    threads = 8
    children: list[Child] = []
    try:
        children.append(
            Child(
                "web",
                [
                    str(bin_dir / "gunicorn"),
                    "eventflow.wsgi:application",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    str(web_workers),
                    "--worker-class",
                    "gthread",
                    "--threads",
                    str(threads),
                    "--access-logfile",
                    "-",
                    "--access-logformat",
                    '%(h)s "%(r)s" %(s)s %(b)s %(M)sms',
                    "--graceful-timeout",
                    "10",
                    "--no-control-socket",
                ],
                env,
                workdir,
            )
        )
        children.append(worker(env, workdir, concurrency=worker_concurrency))
        children.append(
            Child(
                "beat",
                celery_argv("beat", "--loglevel", "INFO", "--schedule", str(workdir / "celerybeat-schedule")),
                env,
                workdir,
            )
        )
        _wait_for_port(port)
        path = "/api/v1/streams/latency/events/batch"
        headers = {"Content-Type": "application/json", "X-API-Key": key}
        # One warm request per web process thread so imports and caches are ready.
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        warm.request("GET", "/health")
        warm.getresponse().read()
        warm.close()

        interval = batch / rate
        counter = itertools.count()
        lock = threading.Lock()
        http_ms: list[float] = []
        stats = {"accepted": 0, "errors": 0, "sent": 0}
        start = time.perf_counter() + 0.5
        wall_start = time.time() + 0.5

        def sender() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while True:
                index = next(counter)
                if index >= requests_total:
                    break
                due = start + index * interval
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                began = time.perf_counter()
                try:
                    conn.request("POST", path, body=bodies[index], headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    ok = response.status == 202
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    ok, data = False, b""
                elapsed = (time.perf_counter() - began) * 1000
                with lock:
                    stats["sent"] += batch
                    if ok:
                        stats["accepted"] += orjson.loads(data)["accepted"]
                        if due >= start + warmup:
                            http_ms.append(elapsed)
                    else:
                        stats["errors"] += 1
            conn.close()

        print(
            f"  sending {rate:,} events/s in batches of {batch} for {warmup:.0f} s warm-up + {seconds:.0f} s …",
            flush=True,
        )
        senders = [threading.Thread(target=sender) for _ in range(threads * web_workers)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join()
        sent_for = time.perf_counter() - start
        finished = time.perf_counter()
        with pg_connect(autocommit=True) as conn:
            while head(conn, stream_id) < stats["accepted"] and time.perf_counter() - finished < 60:
                time.sleep(0.05)
            catch_up = time.perf_counter() - finished
            window = (
                datetime.fromtimestamp(wall_start + warmup, UTC),
                datetime.fromtimestamp(wall_start + total_seconds, UTC),
            )
            row = conn.execute(
                """
                SELECT count(*),
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM logged_at - received_at)),
                       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM logged_at - received_at)),
                       max(extract(epoch FROM logged_at - received_at))
                FROM streams_log WHERE stream_id = %s AND received_at >= %s AND received_at < %s
                """,
                [stream_id, *window],
            ).fetchone()
        check_moved(stream_id, stats["accepted"])
    finally:
        for child in reversed(children):
            child.stop()
    return LatencyResult(
        rate=rate,
        batch=batch,
        seconds=seconds,
        sent=stats["sent"],
        accepted=stats["accepted"],
        http_errors=stats["errors"],
        achieved_rate=stats["sent"] / sent_for,
        http_p50_ms=_percentile(http_ms, 0.5),
        http_p99_ms=_percentile(http_ms, 0.99),
        measured=int(row[0]),
        p50_ms=float(row[1] or 0) * 1000,
        p99_ms=float(row[2] or 0) * 1000,
        max_ms=float(row[3] or 0) * 1000,
        catch_up_s=catch_up,
        web_workers=web_workers,
        web_threads=threads,
        worker_concurrency=worker_concurrency,
        sweep_seconds=os.environ.get("EVENTFLOW_SWEEP_SECONDS", "2"),
    )


# --- report ----------------------------------------------------------------------------------------


def report(info: dict[str, str], drain: DrainResult | None, latency: LatencyResult | None, loads: list[str]) -> str:
    from django.conf import settings

    lines = [
        "## Processing: inbox → log",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench-process` (bench/process.py) on"
        f" {info['cores']} cores ({info['cpu']}), PostgreSQL {info['postgres']}, Python {info['python']};"
        f" load average {loads[0]} at the start, {loads[-1]} at the end. DEBUG off; batch size"
        f" {settings.EVENTFLOW['PROCESS_BATCH_SIZE']:,}; stream in `warn` schema mode with the starter schemas;"
        " IPs anonymised.",
        "",
    ]
    if drain:
        n = drain.events
        lines += [
            f"**Drain rate of one process** — {n:,} events (mixed desktop/mobile/tablet/bot user agents, IPv4 and"
            " IPv6, page URLs with and without utm parameters, users and anonymous visitors, 35 % with their own"
            " session id) COPYed into the inbox, then moved to the log with validation, enrichment, sessions,"
            " rollups and latency stats, one transaction per batch:",
            "",
            "| path | seconds | events/s | vs baseline |",
            "|---|---:|---:|---:|",
            f"| baseline: one `INSERT INTO streams_log SELECT … FROM ingestion_inbox` + `DELETE` | {drain.baseline_s:.2f}"
            f" | {n / drain.baseline_s:,.0f} | 1.00x |",
            f"| `stream_drain` in one process | {drain.in_process_s:.2f} | {n / drain.in_process_s:,.0f}"
            f" | {drain.baseline_s / drain.in_process_s:.2f}x |",
        ]
        if drain.worker_s is not None:
            lines.append(
                f"| one `celery -A eventflow worker --concurrency 1`, from kick to empty inbox | {drain.worker_s:.2f}"
                f" | {n / drain.worker_s:,.0f} | {drain.baseline_s / drain.worker_s:.2f}x |"
            )
        lines += ["", f"(Filling the inbox by COPY took {drain.fill_s:.2f} s.)", ""]
    if latency:
        r = latency
        lines += [
            f"**Accepted → logged latency** — {r.rate:,} events/s sent over HTTP in batches of {r.batch} to gunicorn"
            f" ({r.web_workers} gthread workers x {r.web_threads} threads) with one Celery worker (concurrency"
            f" {r.worker_concurrency}) and beat (sweep every {r.sweep_seconds} s), all as `python -m eventflow up`"
            f" runs them; {r.seconds:.0f} s measured after a warm-up:",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| events sent / accepted | {r.sent:,} / {r.accepted:,} ({r.http_errors} failed requests) |",
            f"| achieved send rate | {r.achieved_rate:,.0f} events/s |",
            f"| events in the measured window | {r.measured:,} |",
            f"| `logged_at - received_at` p50 | {r.p50_ms:,.0f} ms |",
            f"| `logged_at - received_at` p99 | {r.p99_ms:,.0f} ms |",
            f"| `logged_at - received_at` max | {r.max_ms:,.0f} ms |",
            f"| HTTP request p50 / p99 | {r.http_p50_ms:,.0f} / {r.http_p99_ms:,.0f} ms |",
            f"| inbox empty after the last request | {r.catch_up_s:.2f} s |",
            "",
        ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    section = f"{START_MARK}\n{text.rstrip()}\n{END_MARK}"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    current = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if START_MARK in current and END_MARK in current:
        before, rest = current.split(START_MARK, 1)
        after = rest.split(END_MARK, 1)[1]
        updated = before + section + after
    else:
        updated = current.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(updated)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="events in the inbox for the drain runs")
    parser.add_argument("--rate", type=int, default=5_000, help="events/s sent over HTTP for the latency run")
    parser.add_argument("--seconds", type=float, default=30, help="measured seconds of the latency run")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of load before the measured window")
    parser.add_argument("--batch", type=int, default=100, help="events per HTTP request")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument("--skip-worker", action="store_true", help="drain in this process only")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the in-process drain")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/BENCHMARKS.md")
    args = parser.parse_args()

    env = bench_environment()
    ensure_database()
    import django

    django.setup()
    info = machine()
    loads = [load_average()]
    print(f"machine: {info}; load average {loads[0]}", flush=True)
    drain = latency = None
    with tempfile.TemporaryDirectory(prefix="bench-process-") as tmp:
        workdir = Path(tmp)
        try:
            if not args.skip_drain:
                drain = run_drain(args.events, env, workdir, with_worker=not args.skip_worker, profile=args.profile)
                if drain.profile:
                    print(drain.profile)
            if not args.skip_latency:
                latency = run_latency(
                    env,
                    workdir,
                    rate=args.rate,
                    seconds=args.seconds,
                    warmup=args.warmup,
                    batch=args.batch,
                    web_workers=args.web_workers,
                    worker_concurrency=args.worker_concurrency,
                )
                print(
                    f"  latency p50 {latency.p50_ms:,.0f} ms, p99 {latency.p99_ms:,.0f} ms, max {latency.max_ms:,.0f} ms"
                    f" over {latency.measured:,} events; sent {latency.achieved_rate:,.0f}/s,"
                    f" HTTP p99 {latency.http_p99_ms:,.0f} ms, {latency.http_errors} errors",
                    flush=True,
                )
        finally:
            forget_redis_keys()
    loads.append(load_average())
    text = report(info, drain, latency, loads)
    print("\n" + text)
    if not args.no_write and (drain or latency):
        write_section(text)
        print(f"written to {DOC.relative_to(BASE_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
