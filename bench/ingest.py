"""Ingestion over HTTP against its physical baselines, measured side by side in one run.

    make bench-ingest            (or: python bench/ingest.py with DATABASE_URL / REDIS_URL set)

(a) batches of 500 events from concurrent clients    vs (c) raw COPY of the same rows
(b) single events over 16 keep-alive connections      vs (d) a minimal Django view doing one INSERT

Both servers run the command line of ``python -m eventflow up`` (gunicorn, same
workers and threads) at the same time; phases alternate between product and
baseline for a few rounds so that drift on a shared machine hits both, and the
best round of each is reported. The inbox is emptied before every phase. The
results go to docs/BENCHMARKS.md between the ``ingest`` markers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from bench import harness
from bench.loadgen import LoadResult, capacity, run_load

BENCH_DB = "eventflow_bench"
SLUG = "bench"
BATCH_SIZE = 500
COPY_COLUMNS = (
    "stream_id, event_id, type, event_time, received_at, user_id, anonymous_id,"
    " session_id, payload, context, flags, attempts, next_attempt_at, last_error"
)


@dataclass
class Setup:
    env: dict[str, str]
    db_url: str
    stream_id: int
    key: str


def prepare(slot: harness.RedisSlot) -> Setup:
    db_url = harness.database_url(BENCH_DB)
    harness.ensure_database(db_url)
    env = dict(
        os.environ,
        DATABASE_URL=db_url,
        REDIS_URL=slot.url,
        CELERY_BROKER_URL=slot.url,
        CACHE_KEY_PREFIX=slot.prefix,
        DJANGO_SETTINGS_MODULE="eventflow.settings",
        # A deployment runs without DEBUG (which keeps a log of every query).
        DEBUG="0",
        # The limiter stays on (its Redis calls are part of the cost) but never refuses the benchmark.
        EVENTFLOW_RATE_LIMIT_PER_MINUTE="100000000",
        PYTHONUNBUFFERED="1",
    )
    harness.migrate(env)
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connection

    from streams.models import ApiKeyKind, Stream
    from streams.services import api_key_create, stream_create

    stream = Stream.objects.filter(slug=SLUG).first() or stream_create(
        slug=SLUG, name="Benchmark", with_starter_schemas=True
    )
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream], name="benchmark").raw_key
    connection.close()
    return Setup(env=env, db_url=db_url, stream_id=stream.pk, key=key)


# --- data --------------------------------------------------------------------------------------


def realistic_events(count: int, seed: int) -> list[dict[str, Any]]:
    from ingestion.management.commands.simulate_events import Traffic

    traffic = Traffic(visitors=2000, seed=seed, duplicate_rate=0.0)
    return [traffic.next_event() for _ in range(count)]


def _copy_value(value: Any) -> bytes:
    if value is None:
        return b"\\N"
    raw = value if isinstance(value, bytes) else str(value).encode()
    return raw.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def copy_data(events: list[dict[str, Any]], stream_id: int) -> bytes:
    """The rows the intake would write, in COPY text format."""
    received = datetime.now(UTC).isoformat().encode()
    lines = []
    for event in events:
        fields = [
            str(stream_id).encode(),
            _copy_value(event["event_id"]),
            _copy_value(event["type"]),
            _copy_value(event["timestamp"]),
            received,
            _copy_value(event.get("user_id")),
            _copy_value(event.get("anonymous_id")),
            _copy_value(event.get("session_id")),
            _copy_value(orjson.dumps(event.get("payload") or {})),
            _copy_value(orjson.dumps(event.get("context") or {})),
            b"{}",
            b"0",
            received,
            b"",
        ]
        lines.append(b"\t".join(fields))
    return b"\n".join(lines) + b"\n"


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# --- phases ------------------------------------------------------------------------------------------


def truncate(db_url: str) -> None:
    with harness.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE ingestion_inbox")


def inbox_count(db_url: str) -> int:
    with harness.connect(db_url) as conn:
        return int(conn.execute("SELECT count(*) FROM ingestion_inbox").fetchone()[0])  # type: ignore[index]


@dataclass
class Phase:
    name: str
    rate: float  # events/s or requests/s
    events: int
    elapsed: float
    cpu: harness.CpuMeter
    load: LoadResult | None = None

    def cpu_per(self, unit: float) -> dict[str, float]:
        """CPU microseconds per event (or request) for each party."""
        return {name: used / unit * 1e6 for name, used in self.cpu.used.items()}


def copy_phase(setup: Setup, batches: list[bytes], clients: int) -> Phase:
    truncate(setup.db_url)
    connections = [harness.connect(setup.db_url) for _ in range(clients)]
    work = iter(batches)
    lock = threading.Lock()

    def client(conn: Any) -> None:
        while True:
            with lock:
                data = next(work, None)
            if data is None:
                return
            with conn.cursor() as cursor, cursor.copy(f"COPY ingestion_inbox ({COPY_COLUMNS}) FROM STDIN") as copy:
                copy.write(data)
            conn.commit()

    threads = [threading.Thread(target=client, args=(conn,)) for conn in connections]
    with harness.CpuMeter(BENCH_DB) as cpu:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for conn in connections:
        conn.close()
    events = inbox_count(setup.db_url)
    assert events == len(batches) * BATCH_SIZE, events
    return Phase("raw COPY", events / cpu.wall, events, cpu.wall, cpu)


def http_batch_phase(setup: Setup, port: int, server: Any, bodies: list[bytes], clients: int) -> Phase:
    truncate(setup.db_url)
    with harness.CpuMeter(BENCH_DB, server) as cpu:
        load = run_load(
            host="127.0.0.1",
            port=port,
            path=f"/api/v1/streams/{SLUG}/events/batch",
            headers={"Content-Type": "application/json", "X-API-Key": setup.key},
            bodies=iter(bodies),
            concurrency=clients,
            keep_bodies=True,
        )
    accepted = sum(orjson.loads(body)["accepted"] for body in load.bodies if body.startswith(b'{"accepted"'))
    assert load.statuses == {202: len(bodies)}, (load.statuses, load.bodies[:1])
    assert accepted == len(bodies) * BATCH_SIZE == inbox_count(setup.db_url), accepted
    return Phase("HTTP batch", accepted / load.elapsed, accepted, load.elapsed, cpu, load)


def single_phase(
    name: str, setup: Setup, port: int, server: Any, bodies: list[bytes], seconds: float, connections: int
) -> Phase:
    truncate(setup.db_url)
    with harness.CpuMeter(BENCH_DB, server) as cpu:
        load = run_load(
            host="127.0.0.1",
            port=port,
            path=f"/api/v1/streams/{SLUG}/events",
            headers={"Content-Type": "application/json", "X-API-Key": setup.key},
            bodies=iter(bodies),
            concurrency=connections,
            duration=seconds,
        )
    assert set(load.statuses) == {202}, (load.statuses, load.bodies[:1])
    stored = inbox_count(setup.db_url)
    assert stored == load.requests, (stored, load.requests)
    return Phase(name, load.rate, load.requests, load.elapsed, cpu, load)


def warm_up(setup: Setup, port: int, batches: list[bytes], singles: list[bytes]) -> None:
    """Every worker thread gets its database connection, prepared statements and caches."""
    headers = {"Content-Type": "application/json", "X-API-Key": setup.key}
    run_load(
        host="127.0.0.1",
        port=port,
        path=f"/api/v1/streams/{SLUG}/events",
        headers=headers,
        bodies=iter(singles),
        concurrency=16,
    )
    if batches:
        run_load(
            host="127.0.0.1",
            port=port,
            path=f"/api/v1/streams/{SLUG}/events/batch",
            headers=headers,
            bodies=iter(batches),
            concurrency=4,
        )


# --- report ---------------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _best(phases: list[Phase]) -> Phase:
    return max(phases, key=lambda p: p.rate)


def _cpu_row(phase: Phase, unit: str) -> str:
    per = phase.cpu_per(phase.events)
    cores = {name: used / phase.cpu.wall for name, used in phase.cpu.used.items()}
    parts = [
        f"{per.get(n, 0):.0f} µs ({cores.get(n, 0):.2f})" for n in ("server", "postgres", "redis", "client", "other")
    ]
    return f"| {phase.name} | " + " | ".join(parts) + f" | {cores['machine']:.2f} |"


def report(
    info: dict[str, str],
    args: argparse.Namespace,
    command: str,
    copies: list[Phase],
    batches: list[Phase],
    singles: list[Phase],
    minimals: list[Phase],
    client: LoadResult,
) -> str:
    copy, batch = _best(copies), _best(batches)
    single, minimal = _best(singles), _best(minimals)
    batch_ratio = batch.rate / copy.rate
    single_ratio = single.rate / minimal.rate
    assert single.load is not None and minimal.load is not None

    def rounds(phases: list[Phase]) -> str:
        return ", ".join(f"{p.rate:,.0f}" for p in phases)

    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench-ingest` ({args.rounds} rounds, best shown;"
        " baselines measured in the same run).",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in info.items()),
        "",
        "Settings: both servers run the command line of `python -m eventflow up` with its default"
        f" {args.workers} workers on this machine: `{command}`, with `DEBUG=0`. The rate limiter is on"
        " (its limit raised so that it never refuses the benchmark). Events are realistic traffic of"
        " the five starter types from `simulate_events` (about"
        f" {statistics.mean(len(b) for b in args.sample_bodies):.0f} bytes each as JSON), every one with its own"
        " event_id; the stream's schema mode is `warn` (the default). The inbox is emptied before each phase.",
        "",
        "| | EventFlow | baseline | ratio | target |",
        "|---|---|---|---|---|",
        f"| batch ingestion, {BATCH_SIZE}-event batches, {args.batch_clients} concurrent clients"
        f" | **{batch.rate:,.0f} events/s** | raw `COPY` of the same rows, {args.batch_clients} connections,"
        f" one transaction per {BATCH_SIZE}: **{copy.rate:,.0f} events/s**"
        f" | **{batch_ratio:.2f}x** | ≥ 0.7x {'met' if batch_ratio >= 0.7 else 'missed'} |",
        f"| single event, {args.connections} keep-alive connections | **{single.rate:,.0f} requests/s**,"
        f" p50 {_ms(single.load.percentile(0.5))}, p99 {_ms(single.load.percentile(0.99))}"
        f" | minimal Django view, one INSERT: **{minimal.rate:,.0f} requests/s**,"
        f" p50 {_ms(minimal.load.percentile(0.5))}, p99 {_ms(minimal.load.percentile(0.99))}"
        f" | **{single_ratio:.2f}x** | ≥ 1.0x {'met' if single_ratio >= 1.0 else 'missed'} |",
        "",
        f"Every round (events/s or requests/s): raw COPY {rounds(copies)}; HTTP batch {rounds(batches)};"
        f" single event {rounds(singles)}; minimal view {rounds(minimals)}.",
        "",
        "Where the CPU goes in the best round: CPU time per event (batch phases) or per request (single"
        " phases), and in brackets the cores busy on average. *postgres* counts the backends of the benchmark's"
        " database and the server's own processes (WAL writer, checkpointer), *redis* the whole Redis server,"
        " *other* the rest of the machine (other work running at the same time).",
        "",
        "| phase | server | postgres | redis | client | other | machine, cores |",
        "|---|---|---|---|---|---|---|",
        _cpu_row(copy, "event"),
        _cpu_row(batch, "event"),
        _cpu_row(single, "request"),
        _cpu_row(minimal, "request"),
        "",
        "The load generator (`bench/loadgen.py`) is a single asyncio process that sends prepared bytes"
        " over keep-alive connections and parses only the status line and Content-Length. It is not"
        f" the bottleneck: alone against a responder that does no work it sends {client.rate:,.0f}"
        f" requests/s at {client.client_cpu / client.requests * 1e6:.0f} µs of CPU each, and during the"
        f" single-event phase it used {single.cpu.used['client'] / single.cpu.wall:.2f} of a core"
        f" ({single.cpu.used['client'] / single.events * 1e6:.0f} µs a request).",
    ]
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batches", type=int, default=160, help="batches of 500 per round")
    parser.add_argument("--batch-clients", type=int, default=4)
    parser.add_argument("--single-seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    parser.add_argument("--no-write", action="store_true", help="print the results without writing docs/")
    args = parser.parse_args()

    started = time.monotonic()
    slot = harness.RedisSlot.claim()
    try:
        setup = prepare(slot)
        info = harness.machine(setup.db_url)
        print(f"machine: {info}", flush=True)

        # The inbox is emptied before every phase, so each phase can send the same events.
        events = realistic_events(args.batches * BATCH_SIZE, seed=1)
        batch_bodies = [orjson.dumps({"events": c}) for c in chunks(events, BATCH_SIZE)]
        copy_batches = [copy_data(c, setup.stream_id) for c in chunks(events, BATCH_SIZE)]
        # More than a server can take in the time.
        single_bodies = [orjson.dumps(e) for e in realistic_events(int(args.single_seconds * 5000), seed=2)]
        args.sample_bodies = single_bodies[:1000]
        print(f"data ready ({time.monotonic() - started:.0f}s)", flush=True)

        client = capacity(
            port=harness.free_port(),
            bodies=lambda: iter(single_bodies),
            concurrency=args.connections,
            duration=2.0,
        )
        print(f"client alone: {client.rate:,.0f} requests/s", flush=True)

        from eventflow.__main__ import web_command

        product_port, minimal_port = harness.free_port(), harness.free_port()
        product_cmd = web_command(port=product_port, workers=args.workers, bind="127.0.0.1")
        minimal_cmd = web_command(port=minimal_port, workers=args.workers, bind="127.0.0.1")
        minimal_env = dict(
            setup.env, DJANGO_SETTINGS_MODULE="bench.minimal_settings", BENCH_STREAM_ID=str(setup.stream_id)
        )
        logs = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
        copies: list[Phase] = []
        batches: list[Phase] = []
        single_phases: list[Phase] = []
        minimals: list[Phase] = []
        with (
            harness.server(product_cmd, env=setup.env, port=product_port, log=logs / "product.log") as product,
            harness.server(minimal_cmd, env=minimal_env, port=minimal_port, log=logs / "minimal.log") as minimal,
        ):
            warm_up(setup, product_port, batch_bodies[:4], single_bodies[:2000])
            warm_up(setup, minimal_port, [], single_bodies[:2000])
            for index in range(args.rounds):
                copies.append(copy_phase(setup, copy_batches, args.batch_clients))
                batches.append(http_batch_phase(setup, product_port, product, batch_bodies, args.batch_clients))
                single_phases.append(
                    single_phase(
                        "HTTP single event",
                        setup,
                        product_port,
                        product,
                        single_bodies,
                        args.single_seconds,
                        args.connections,
                    )
                )
                minimals.append(
                    single_phase(
                        "minimal view",
                        setup,
                        minimal_port,
                        minimal,
                        single_bodies,
                        args.single_seconds,
                        args.connections,
                    )
                )
                for phase in (copies[-1], batches[-1], single_phases[-1], minimals[-1]):
                    print(
                        f"round {index + 1}: {phase.name:18} {phase.rate:10,.0f}/s   cores: {phase.cpu.shares()}",
                        flush=True,
                    )
        truncate(setup.db_url)

        import shlex

        command = shlex.join(["gunicorn", *product_cmd[1:]])
        text = report(info, args, command, copies, batches, single_phases, minimals, client)
        print("\n" + text)
        if not args.no_write:
            harness.write_section("ingest", "Ingestion", text)
            print(f"\nwritten to {harness.BENCHMARKS_MD}")
        print(f"total {time.monotonic() - started:.0f}s")
    finally:
        slot.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
