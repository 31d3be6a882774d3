"""Consumer benchmark: reading a stream through the REST consumer, and webhook delivery.

    make bench-consume            # or: python -m launcher.devservices python bench/consume.py

It uses its own database (``eventflow_bench_consume`` on the server of
DATABASE_URL, migrated here) and a Redis database index that was empty, and
writes its section of docs/BENCHMARKS.md.

(a) REST consumer. Two streams' logs are filled through ``log_append`` (the
    real append path): realistic events (simulated sessions of the starter
    types with context and enrichment, about 1 kB of JSON each) and compact
    ones (about 250 bytes). gunicorn runs as ``python -m eventflow up`` starts
    it; ``eventflow_client.Consumer`` reads each whole log through a fresh
    consumer group: polls of 1,000 records, a commit after each. The baseline
    is a raw ``SELECT`` of the same offsets, 1,000 at a time, over one psycopg
    connection. The two run back to back, several times; the pair during which
    other work on the machine took the least CPU is reported, with the ratios
    of every pair.
(b) Webhook delivery. A subscription delivers the realistic log to a local
    HTTP receiver (``http.server``, answering 200 after parsing the body); the
    delivery runs as the Celery task runs it, in this process.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench import harness  # noqa: E402

DATABASE = "eventflow_bench_consume"
REALISTIC = "bench-consume"
COMPACT = "bench-consume-compact"
POLL_SIZE = 1000
APPEND_CHUNK = 5000


@dataclass
class Setup:
    env: dict[str, str]
    db_url: str
    streams: dict[str, int]
    key: str


def prepare(slot: harness.RedisSlot, realistic: int, compact: int) -> Setup:
    env, db_url = harness.django_setup(slot, DATABASE, LOG_LEVEL="WARNING", EVENTFLOW_WEBHOOK_ALLOW_LOOPBACK="1")
    from django.db import connection

    from streams.models import ApiKeyKind, Stream
    from streams.services import api_key_create, stream_create

    streams = {}
    for slug, count, fill in ((REALISTIC, realistic, fill_realistic), (COMPACT, compact, fill_compact)):
        Stream.objects.filter(slug=slug).delete()
        stream = stream_create(slug=slug, name=slug)
        started = time.perf_counter()
        fill(stream.pk, count)
        print(f"{slug}: {count:,} events appended in {time.perf_counter() - started:.1f}s", flush=True)
        streams[slug] = stream.pk
    key = api_key_create(
        kind=ApiKeyKind.SECRET, streams=list(Stream.objects.filter(pk__in=streams.values())), name="benchmark"
    ).raw_key
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE streams_log")
    connection.close()
    return Setup(env=env, db_url=db_url, streams=streams, key=key)


def _append(stream_id: int, count: int, record: Any) -> None:
    from streams.log import log_append_now

    for start in range(0, count, APPEND_CHUNK):
        log_append_now(stream_id=stream_id, records=[record(i) for i in range(start, min(count, start + APPEND_CHUNK))])


def fill_realistic(stream_id: int, count: int) -> None:
    from ingestion.management.commands.simulate_events import Traffic
    from streams.log import LogRecord

    traffic = Traffic(visitors=2000, seed=7, duplicate_rate=0.0)
    received = datetime.now(UTC) - timedelta(hours=1)

    def record(i: int) -> LogRecord:
        event = traffic.next_event()
        return LogRecord(
            event_id=event["event_id"],
            type=event["type"],
            event_time=datetime.fromisoformat(event["timestamp"]),
            received_at=received + timedelta(milliseconds=i),
            user_id=event.get("user_id"),
            anonymous_id=event.get("anonymous_id"),
            session_id=event.get("session_id"),
            payload=event.get("payload") or {},
            context=event.get("context") or {},
            # What enrichment adds, in size and shape.
            enrichment={
                "browser": {"family": "Chrome", "version": "131.0"},
                "os": {"family": "Windows", "version": "10"},
                "device": {"family": "Other", "type": "desktop"},
                "ip": "203.0.113.0",
            },
        )

    _append(stream_id, count, record)


def fill_compact(stream_id: int, count: int) -> None:
    from streams.log import LogRecord

    received = datetime.now(UTC) - timedelta(hours=1)

    def record(i: int) -> LogRecord:
        at = received + timedelta(milliseconds=i)
        return LogRecord(
            event_id=f"c{i}",
            type="button_click",
            event_time=at,
            received_at=at,
            user_id=f"u{i % 5000}",
            payload={"button": "buy", "page": f"/product/{i % 300}"},
        )

    _append(stream_id, count, record)


def event_bytes(setup: Setup, stream_id: int) -> float:
    """The average size of one event as JSON."""
    with harness.connect(setup.db_url) as conn:
        row = conn.execute(
            'SELECT avg(octet_length(row_to_json(l)::text)) FROM streams_log l WHERE stream_id = %s AND "offset" < 1000',
            [stream_id],
        ).fetchone()
    return float(row[0]) if row and row[0] else 0.0


# --- (a) reading -------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    events: int
    seconds: float
    cpu: str = ""
    used: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def other(self) -> float:
        """Cores used by other work on the machine during the phase."""
        return self.used.get("other", 0.0) / self.seconds

    def cpu_ms(self, party: str | None = None) -> float:
        """CPU milliseconds per 1,000 events (of one party, or of server, PostgreSQL and client together)."""
        parties = [party] if party else ["server", "postgres", "client"]
        return sum(self.used.get(name, 0.0) for name in parties) / self.events * 1e6

    def per_thousand(self) -> str:
        return ", ".join(
            f"{name} {self.cpu_ms(name):.1f}" for name in ("server", "postgres", "client") if name in self.used
        )


RAW_SQL = """
SELECT "offset", event_id, type, event_time, received_at, user_id, anonymous_id, session_id,
       payload, context, enrichment, flags
FROM streams_log WHERE stream_id = %s AND "offset" >= %s AND "offset" < %s ORDER BY "offset"
"""


def raw_select_phase(setup: Setup, stream_id: int, head: int) -> Phase:
    with harness.connect(setup.db_url) as conn:
        conn.execute("SELECT 1")
        read = 0
        with harness.CpuMeter(DATABASE) as meter:
            for start in range(0, head, POLL_SIZE):
                rows = conn.execute(RAW_SQL, [stream_id, start, start + POLL_SIZE]).fetchall()
                read += len(rows)
                conn.commit()
    assert read == head, (read, head)
    return Phase("raw SELECT", read, meter.wall, meter.shares(), meter.used)


def rest_phase(setup: Setup, slug: str, base_url: str, server: Any, head: int) -> Phase:
    import requests

    from eventflow_client import Consumer

    group = f"bench-{int(time.time() * 1000)}"
    created = requests.post(
        f"{base_url}/api/v1/streams/{slug}/consumer-groups",
        json={"name": group, "start": "earliest"},
        headers={"X-API-Key": setup.key},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    read = 0
    stop = threading.Event()

    def handle(records: list[dict[str, Any]]) -> None:
        nonlocal read
        read += len(records)
        if read >= head:
            stop.set()

    with Consumer(base_url, stream=slug, group=group, api_key=setup.key, max_records=POLL_SIZE, wait_ms=0) as consumer:
        # A first request opens the connection; seeking back ends its lease.
        consumer.poll(wait_ms=0)
        consumer.session.post(f"{consumer.base}/seek", json={"to": "earliest"}, timeout=10).raise_for_status()
        with harness.CpuMeter(DATABASE, server) as meter:
            consumer.run(handle, stop=stop)
    assert read == head, (read, head)
    return Phase("REST consumer", read, meter.wall, meter.shares(), meter.used)


def quietest(pairs: list[tuple[Phase, Phase]]) -> tuple[Phase, Phase]:
    return min(pairs, key=lambda pair: pair[0].other + pair[1].other)


# --- (b) webhooks ------------------------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        import orjson

        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        events = len(orjson.loads(body)["events"])
        with _Receiver.lock:
            _Receiver.received += events
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def webhook_phase(setup: Setup, stream_id: int, head: int, count: int, batch_size: int) -> Phase:
    """Deliver the last ``count`` events of the log."""
    from django.db import connection

    from consumers.models import ConsumerGroup, WebhookSubscription
    from consumers.webhook_services import webhook_create, webhook_deliver

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        WebhookSubscription.objects.filter(stream_id=stream_id).delete()
        created = webhook_create(
            stream_id=stream_id, url=f"http://127.0.0.1:{server.server_address[1]}/hook", batch_size=batch_size
        )
        ConsumerGroup.objects.filter(pk=created.webhook.group_id).update(committed_offset=head - count)
        _Receiver.received = 0
        with harness.CpuMeter(DATABASE) as meter:
            while _Receiver.received < count:
                outcome = webhook_deliver(webhook_id=created.webhook.pk, budget_seconds=20)
                if outcome.stopped_because not in ("budget", "caught_up"):
                    raise RuntimeError(f"delivery stopped: {outcome}")
    finally:
        server.shutdown()
        server.server_close()
        connection.close()
    assert _Receiver.received == count, (_Receiver.received, count)
    label = f"webhook delivery, batches of {batch_size}" + (" (the default)" if batch_size == 500 else "")
    return Phase(label, count, meter.wall, meter.shares(), meter.used)


# --- (c) long polls ----------------------------------------------------------------------------


@dataclass
class LongPolls:
    waiting: int
    threads: int
    rss_before_mb: float
    rss_waiting_mb: float
    connections_before: int
    connections_waiting: int
    cpu_waiting: float
    first_ms: float
    answered_ms: float


def _rss_mb(server: Any) -> float:
    import psutil

    total = 0
    for process in [server, *server.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def _connections(setup: Setup) -> int:
    with harness.connect(harness.database_url("postgres")) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [DATABASE]).fetchone()
    return int(row[0]) if row else 0


def long_poll_phase(setup: Setup, base_url: str, server: Any, waiting: int, threads: int) -> LongPolls:
    """``waiting`` consumers long-poll groups of a stream with nothing new, then one event arrives."""
    import requests

    from consumers.models import ConsumerGroup, GroupKind
    from streams.log import LogRecord, log_append_now, log_head

    stream_id = setup.streams[COMPACT]
    head = log_head(stream_id)
    ConsumerGroup.objects.filter(stream_id=stream_id, name__startswith="wait-").delete()
    ConsumerGroup.objects.bulk_create(
        [
            ConsumerGroup(stream_id=stream_id, name=f"wait-{i}", kind=GroupKind.PULL, committed_offset=head)
            for i in range(waiting)
        ]
    )
    rss_before, connections_before = _rss_mb(server), _connections(setup)
    answered: list[float] = []
    lock = threading.Lock()

    def consumer(i: int) -> None:
        with requests.Session() as session:
            response = session.post(
                f"{base_url}/api/v1/streams/{COMPACT}/consumer-groups/wait-{i}/poll",
                json={"wait_ms": 30000},
                headers={"X-API-Key": setup.key},
                timeout=60,
            )
            assert response.status_code == 200 and len(response.json()["records"]) == 1, response.text[:200]
            with lock:
                answered.append(time.perf_counter())

    clients = [threading.Thread(target=consumer, args=(i,), daemon=True) for i in range(waiting)]
    for client in clients:
        client.start()
    time.sleep(3)  # every poll has found nothing and is waiting
    with harness.CpuMeter(DATABASE, server) as meter:
        time.sleep(2)
    rss_waiting, connections_waiting = _rss_mb(server), _connections(setup)
    at = datetime.now(UTC)
    appended = time.perf_counter()
    log_append_now(
        stream_id=stream_id,
        records=[LogRecord(event_id=f"wake-{time.time()}", type="button_click", event_time=at, received_at=at)],
    )
    for client in clients:
        client.join(60)
    assert len(answered) == waiting, (len(answered), waiting)
    return LongPolls(
        waiting=waiting,
        threads=threads,
        rss_before_mb=rss_before,
        rss_waiting_mb=rss_waiting,
        connections_before=connections_before,
        connections_waiting=connections_waiting,
        cpu_waiting=meter.used.get("server", 0.0) / meter.wall,
        first_ms=(min(answered) - appended) * 1000,
        answered_ms=(max(answered) - appended) * 1000,
    )


# --- report --------------------------------------------------------------------------------------


@dataclass
class Reading:
    label: str
    events: int
    size: float
    pairs: list[tuple[Phase, Phase]]


def _reading_rows(reading: Reading) -> list[str]:
    raw, rest = quietest(reading.pairs)
    return [
        f"| REST consumer, {reading.label} ({reading.size:,.0f} B each): `eventflow_client.Consumer`, polls of"
        f" {POLL_SIZE:,}, a commit after each, gunicorn (2 workers, gthread) | **{rest.rate:,.0f} events/s** |"
        f" raw `SELECT` of the same offsets, {POLL_SIZE:,} at a time, one psycopg connection:"
        f" **{raw.rate:,.0f} events/s** | **{rest.rate / raw.rate:.2f}x** | REST: {rest.cpu}; per 1,000:"
        f" {rest.per_thousand()}. Raw: {raw.cpu}; per 1,000: {raw.per_thousand()} |"
    ]


def _every(reading: Reading) -> str:
    return ", ".join(
        f"{rest.rate / raw.rate:.2f} ({rest.rate:,.0f} vs {raw.rate:,.0f} events/s; others used"
        f" {raw.other:.1f} and {rest.other:.1f} cores)"
        for raw, rest in reading.pairs
    )


def _quiet_ratio(reading: Reading) -> float:
    raw, rest = quietest(reading.pairs)
    return rest.rate / raw.rate


def _ratios(readings: list[Reading]) -> tuple[float, float]:
    ratios = [rest.rate / raw.rate for reading in readings for raw, rest in reading.pairs]
    return min(ratios), max(ratios)


def report(info: dict[str, str], readings: list[Reading], hooks: list[Phase], polls: LongPolls) -> str:
    realistic, compact = readings
    _, rest = quietest(realistic.pairs)
    _, small = quietest(compact.pairs)
    rest_ms, small_ms = rest.cpu_ms(), small.cpu_ms()
    lines = [
        f"Machine: {info['cores']} cores ({info['cpu']}), {info['memory']}; PostgreSQL {info['postgresql']};"
        f" Python {info['python']}, Django {info['django']}, gunicorn {info['gunicorn']}, psycopg {info['psycopg']}.",
        "",
        f"Two logs in the same database: {realistic.events:,} realistic events (simulated sessions of the"
        " starter types, with context and enrichment) and"
        f" {compact.events:,} compact ones. The machine is shared with other work, so each measurement is"
        " a pair run back to back (raw SELECT, then REST); the pair during which other work took the"
        " least CPU is shown, and every pair's ratio is listed under the table. CPU in cores used over"
        " the phase, and in CPU milliseconds per 1,000 events.",
        "",
        "| what | rate | baseline, same run | ratio | CPU |",
        "|---|---|---|---|---|",
        *_reading_rows(realistic),
        *_reading_rows(compact),
    ]
    for hook in hooks:
        lines.append(
            f"| {hook.name}, realistic events, to a local `http.server` receiver, signed; the delivery"
            f" task's loop | **{hook.rate:,.0f} events/s** | — | — | {hook.cpu}; per 1,000: {hook.per_thousand()} |"
        )
    lines += [
        "",
        f"Every pair, REST / raw SELECT: realistic events {_every(realistic)}; compact events {_every(compact)}.",
        "",
        "Targets: REST consumer ≥ 100,000 events/s and ≥ 0.5x the raw SELECT; webhook delivery ≥ 10,000 events/s.",
        "",
        f"Long polls: {polls.waiting} consumers waiting at once (gunicorn, 2 workers x {polls.threads} threads),"
        f" each on its own group with nothing to read. While they waited the server used"
        f" {polls.cpu_waiting:.2f} cores and {polls.rss_waiting_mb:,.0f} MB of memory"
        f" ({polls.rss_before_mb:,.0f} MB before), and the database had {polls.connections_waiting}"
        f" connections from the benchmark's processes ({polls.connections_before} before): each web process"
        " holds one LISTEN connection, and waiting polls hold none. One appended event answered the first"
        f" of them {polls.first_ms:,.0f} ms after its commit and all {polls.waiting} within"
        f" {polls.answered_ms:,.0f} ms (each woken poll opens a database connection again to take its lease).",
        "",
        "Where the time goes. A poll is one short transaction that locks the group row (joined with the"
        " stream's head, in plain SQL) and writes the lease, then one query in which PostgreSQL builds the"
        " records' JSON array (`json_agg(json_build_object(…))`), which the view sends without parsing it;"
        " a commit is one more short transaction. The raw SELECT returns rows whose four `jsonb` columns"
        " psycopg parses into Python objects; in the REST phase the client parses the JSON the server"
        " sends (with orjson when installed). Reading 1,000 realistic events costs"
        f" {rest_ms:.0f} CPU-ms over the REST path ({rest.per_thousand()}), 1,000 compact ones"
        f" {small_ms:.0f} CPU-ms ({small.per_thousand()}): the cost follows the bytes (PostgreSQL's JSON"
        " output, the transfer, the client's parse), with a few milliseconds per request for Django. One"
        " consumer is a sequence (poll, parse, commit), so on an idle machine it could read at most"
        f" about {1e6 / rest_ms:,.0f} realistic or {1e6 / small_ms:,.0f} compact events/s, and the two"
        f" cores together about {2e6 / rest_ms:,.0f} and {2e6 / small_ms:,.0f} across several groups."
        f" At {realistic.size / 1000:.1f} kB an event, 100,000 events/s would be"
        f" {realistic.size * 1e5 / 1e6:,.0f} MB/s of JSON to build, send and parse on these two cores: the"
        " absolute target is out of reach here. Against the raw SELECT of the same rows the REST path"
        f" reached {_quiet_ratio(realistic):.2f}x (realistic) and {_quiet_ratio(compact):.2f}x (compact)"
        f" in the quietest pairs, and between {_ratios(readings)[0]:.2f}x and {_ratios(readings)[1]:.2f}x"
        " over all pairs, the low end when other work took more of the machine during the REST phase.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="realistic events")
    parser.add_argument("--compact-events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--long-polls", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing it")
    args = parser.parse_args()

    slot = harness.RedisSlot.claim()
    try:
        setup = prepare(slot, args.events, args.compact_events)
        info = harness.machine(setup.db_url)
        print(f"machine: {info}", flush=True)
        from eventflow.__main__ import web_command

        port = harness.free_port()
        command = [
            part
            for part in web_command(port=port, workers=args.workers, bind="127.0.0.1")
            if not part.startswith("--access-log")
        ]
        base_url = f"http://127.0.0.1:{port}"
        readings = [
            Reading("realistic events", args.events, event_bytes(setup, setup.streams[REALISTIC]), []),
            Reading("compact events", args.compact_events, event_bytes(setup, setup.streams[COMPACT]), []),
        ]
        log = Path(os.environ.get("TMPDIR", "/tmp")) / "eventflow-bench-consume-web.log"
        with harness.server(command, env=setup.env, port=port, log=log) as web:
            for _ in range(args.runs):
                for reading, slug in zip(readings, (REALISTIC, COMPACT), strict=True):
                    raw = raw_select_phase(setup, setup.streams[slug], reading.events)
                    rest = rest_phase(setup, slug, base_url, web, reading.events)
                    reading.pairs.append((raw, rest))
                    print(
                        f"{reading.label}: raw SELECT {raw.rate:,.0f} events/s ({raw.cpu}); REST {rest.rate:,.0f}"
                        f" events/s ({rest.cpu})",
                        flush=True,
                    )
        threads = 128
        port = harness.free_port()
        command = [
            f"--threads={threads}" if part.startswith("--threads=") else part
            for part in web_command(port=port, workers=args.workers, bind="127.0.0.1")
            if not part.startswith("--access-log")
        ]
        with harness.server(command, env=setup.env, port=port, log=log) as web:
            polls = long_poll_phase(setup, f"http://127.0.0.1:{port}", web, args.long_polls, threads)
        print(f"long polls: {polls}", flush=True)
        hooks = []
        for batch_size, count in ((1000, args.events), (500, args.events), (100, args.events // 4)):
            hooks.append(webhook_phase(setup, setup.streams[REALISTIC], args.events, count, batch_size))
            print(f"{hooks[-1].name}: {hooks[-1].rate:,.0f} events/s ({hooks[-1].cpu})", flush=True)
        text = report(info, readings, hooks, polls)
        if args.no_write:
            print(text)
        else:
            harness.write_section("consume", "Consuming: REST consumer and webhook delivery", text)
            print(f"written to {harness.BENCHMARKS_MD}")
    finally:
        slot.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
