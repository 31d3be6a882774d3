"""Ingestion over HTTP against its physical baselines, measured side by side in one run.

    make bench-ingest            (or: python bench/ingest.py with DATABASE_URL / REDIS_URL set)

(a) batches of 500 events from concurrent clients    vs (c) raw COPY of the same rows
(b) single events over 16 keep-alive connections      vs (d) a minimal Django view doing one INSERT
                                                      and (e) a minimal Express + pg server doing one
                                                          INSERT (bench/node_baseline; `npm ci` on first use)

The servers (EventFlow, the minimal view, and a bare WSGI app that shows
gunicorn's own cost) run side by side with the command line of ``python -m
eventflow up``. Each measurement is a pair, product and baseline back to back;
the pair with the median ratio is reported, with every pair. The inbox is emptied before every phase. The results go
to docs/BENCHMARKS.md between the ``ingest`` markers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
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
    env, db_url = harness.django_setup(
        slot,
        BENCH_DB,
        # The limiter stays on (its Redis calls are part of the cost) but never refuses the benchmark.
        EVENTFLOW_RATE_LIMIT_PER_MINUTE="100000000",
    )
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
    if name != BARE:
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

PRODUCT_SINGLE = "HTTP single event"
MINIMAL = "minimal view"
NODE = "Express + pg"
BARE = "bare WSGI app"
NODE_DIR = harness.BASE_DIR / "bench" / "node_baseline"


def bare_command(product: list[str]) -> list[str]:
    """The product's command line serving ``bench.bare_wsgi`` instead of EventFlow."""
    return ["bench.bare_wsgi:application" if arg == "eventflow.wsgi:application" else arg for arg in product]


def node_command() -> list[str]:
    """The Express + pg baseline's command line; its packages are installed (``npm ci``) when missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise SystemExit("bench/ingest.py needs Node.js (node and npm) for its Express + pg baseline")
    if not (NODE_DIR / "node_modules" / "express").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True)
    return [node, str(NODE_DIR / "server.js")]


@dataclass
class Pair:
    """A product phase and its baseline, run back to back."""

    product: Phase
    baseline: Phase

    @property
    def ratio(self) -> float:
        return self.product.rate / self.baseline.rate

    def describe(self, unit: str) -> str:
        return (
            f"{self.ratio:.2f} ({self.product.rate:,.0f} vs {self.baseline.rate:,.0f} {unit};"
            f" others used {self.product.cpu.used['other'] / self.product.cpu.wall:.1f}"
            f" and {self.baseline.cpu.used['other'] / self.baseline.cpu.wall:.1f} cores)"
        )


def median_pair(pairs: list[Pair]) -> Pair:
    """The pair with the median ratio: one stall (a checkpoint, other work) moves neither side's figure."""
    return sorted(pairs, key=lambda pair: pair.ratio)[len(pairs) // 2]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _cpu_row(phase: Phase) -> str:
    per = phase.cpu_per(phase.events)
    cores = {name: used / phase.cpu.wall for name, used in phase.cpu.used.items()}
    parts = [
        f"{per.get(n, 0):,.0f} ({cores.get(n, 0):.2f})" for n in ("server", "postgres", "redis", "client", "other")
    ]
    own = per.get("server", 0) + per.get("postgres", 0) + per.get("redis", 0)
    return f"| {phase.name} | " + " | ".join(parts) + f" | **{own:,.0f}** |"


def report(
    info: dict[str, str],
    args: argparse.Namespace,
    command: str,
    batch_pairs: list[Pair],
    single_pairs: list[Pair],
    node_pairs: list[Pair],
    bare: Phase,
    client: LoadResult,
    sample_bytes: float,
) -> str:
    batch, single, versus_node = median_pair(batch_pairs), median_pair(single_pairs), median_pair(node_pairs)
    product, minimal = single.product, single.baseline
    node_product, node = versus_node.product, versus_node.baseline
    assert product.load is not None and minimal.load is not None
    assert node_product.load is not None and node.load is not None
    machine = (
        f"Machine: {info['cores']} cores ({info['cpu']}), {info['memory']}; PostgreSQL {info['postgresql']};"
        f" Python {info['python']}, Django {info['django']}, gunicorn {info['gunicorn']}, psycopg {info['psycopg']}."
    )
    per_product = product.cpu_per(product.events)
    per_minimal = minimal.cpu_per(minimal.events)
    per_bare = bare.cpu_per(bare.events)
    lines = [
        machine,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench-ingest`, load average"
        f" {info['load']} at the start. The servers run the command line of `python -m eventflow up`"
        f" (`{command}`) with `DEBUG=0`; the minimal view runs under the same command and the same"
        " settings (middleware, database options), from `bench/minimal_settings.py`. The rate limiter is on,"
        " its limit raised so that it never refuses the benchmark. Events are realistic traffic of the five"
        f" starter types from `simulate_events` (about {sample_bytes:.0f} bytes each as JSON), each with its own"
        " event_id; the stream's schema mode is `warn`, the default. The inbox is emptied before every phase."
        f" The machine is shared with other work, so each measurement is a pair run back to back ({args.rounds}"
        " pairs of each kind, alternating which goes first; a round's single-event phase for EventFlow is"
        " paired with both single-event baselines, run around it in turn); the table shows the pair with"
        " the median ratio, and every pair is listed under it.",
        "",
        "| what | EventFlow | baseline, same run | ratio | target |",
        "|---|---|---|---|---|",
        f"| batch ingestion: `POST …/events/batch`, {BATCH_SIZE} events a request, {args.batch_clients}"
        f" concurrent clients | **{batch.product.rate:,.0f} events/s** | raw `COPY` of the same rows into"
        f" `ingestion_inbox`, {args.batch_clients} connections, one transaction per {BATCH_SIZE}:"
        f" **{batch.baseline.rate:,.0f} events/s** | **{batch.ratio:.2f}x** | ≥ 0.7x:"
        f" {'met' if batch.ratio >= 0.7 else 'missed'} |",
        f"| single events: `POST …/events`, {args.connections} keep-alive connections |"
        f" **{product.rate:,.0f} requests/s**, p50 {_ms(product.load.percentile(0.5))},"
        f" p99 {_ms(product.load.percentile(0.99))} | a minimal Django view doing one `INSERT`:"
        f" **{minimal.rate:,.0f} requests/s**, p50 {_ms(minimal.load.percentile(0.5))},"
        f" p99 {_ms(minimal.load.percentile(0.99))} | **{single.ratio:.2f}x** | ≥ 1.0x:"
        f" {'met' if single.ratio >= 1.0 else 'missed'} |",
        f"| single events, the same phases | **{node_product.rate:,.0f} requests/s**,"
        f" p50 {_ms(node_product.load.percentile(0.5))}, p99 {_ms(node_product.load.percentile(0.99))} |"
        " a minimal Express + pg server doing one `INSERT` (Node.js, a pool of 10):"
        f" **{node.rate:,.0f} requests/s**, p50 {_ms(node.load.percentile(0.5))},"
        f" p99 {_ms(node.load.percentile(0.99))} | **{versus_node.ratio:.2f}x** | ≥ 1.0x:"
        f" {'met' if versus_node.ratio >= 1.0 else 'missed'} |",
        "",
        "Every pair, EventFlow / baseline: batch "
        + ", ".join(pair.describe("events/s") for pair in batch_pairs)
        + "; single events against the minimal view "
        + ", ".join(pair.describe("requests/s") for pair in single_pairs)
        + "; against Express + pg "
        + ", ".join(pair.describe("requests/s") for pair in node_pairs)
        + ".",
        "",
        "CPU per event (batch phases) or per request (single-event phases) in microseconds, by process, and in"
        " brackets the cores busy on average. *postgres* is the benchmark database's backends and the server's"
        " own processes (WAL writer, checkpointer), *redis* the whole Redis server, *other* the rest of the"
        " machine; *total* is server + postgres + redis, the work one request costs.",
        "",
        "| phase | server | postgres | redis | client | other | total |",
        "|---|---|---|---|---|---|---|",
        _cpu_row(batch.baseline),
        _cpu_row(batch.product),
        _cpu_row(product),
        _cpu_row(minimal),
        _cpu_row(node),
        _cpu_row(bare),
        "",
        f"*{BARE}* is a WSGI application that reads the body and answers 202, under the same gunicorn command:"
        f" gunicorn's own cost, {per_bare['server']:,.0f} µs of the {per_minimal['server']:,.0f} µs the minimal"
        f" view's server spends on a request and of the {per_product['server']:,.0f} µs EventFlow's does.",
        "",
        "The load generator (`bench/loadgen.py`) is one asyncio process that sends prepared bytes over"
        " keep-alive connections and parses only the status line and Content-Length. It is not the"
        f" bottleneck: alone against a responder that does no work it sends {client.rate:,.0f} requests/s"
        f" ({client.client_cpu / client.requests * 1e6:.0f} µs of CPU each), and in the single-event phase"
        f" above it used {product.cpu.used['client'] / product.cpu.wall:.2f} of a core.",
    ]
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="pairs of each kind")
    parser.add_argument("--batches", type=int, default=120, help="batches of 500 per batch phase")
    parser.add_argument("--batch-clients", type=int, default=4)
    parser.add_argument("--single-seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    parser.add_argument(
        "--server", default=None, help="the web server of all Python servers (default: WEB_SERVER, else gunicorn)"
    )
    parser.add_argument("--no-write", action="store_true", help="print the results without writing docs/")
    args = parser.parse_args()

    started = time.monotonic()
    slot = harness.RedisSlot.claim()
    try:
        setup = prepare(slot)
        info = harness.machine(setup.db_url)
        info["load"] = " / ".join(f"{value:.2f}" for value in os.getloadavg())
        print(f"machine: {info}", flush=True)

        # The inbox is emptied before every phase, so each phase can send the same events.
        events = realistic_events(args.batches * BATCH_SIZE, seed=1)
        batch_bodies = [orjson.dumps({"events": c}) for c in chunks(events, BATCH_SIZE)]
        copy_batches = [copy_data(c, setup.stream_id) for c in chunks(events, BATCH_SIZE)]
        # More than a server can take in the time.
        single_bodies = [orjson.dumps(e) for e in realistic_events(int(args.single_seconds * 4000), seed=2)]
        sample_bytes = statistics.mean(len(b) for b in single_bodies[:1000])
        print(f"data ready ({time.monotonic() - started:.0f}s)", flush=True)

        client = capacity(
            port=harness.free_port(), bodies=lambda: iter(single_bodies), concurrency=args.connections, duration=2.0
        )
        print(f"client alone: {client.rate:,.0f} requests/s", flush=True)

        from eventflow.__main__ import web_command

        ports = {name: harness.free_port() for name in ("product", "minimal", "bare", "node")}
        commands = {
            name: web_command(
                port=port, workers=args.workers, bind="127.0.0.1", **({"server": args.server} if args.server else {})
            )
            for name, port in ports.items()
        }
        commands["bare"] = bare_command(commands["bare"])
        commands["node"] = node_command()
        envs = {
            "product": setup.env,
            "minimal": dict(
                setup.env, DJANGO_SETTINGS_MODULE="bench.minimal_settings", BENCH_STREAM_ID=str(setup.stream_id)
            ),
            "bare": setup.env,
            "node": dict(setup.env, PORT=str(ports["node"]), BENCH_STREAM_ID=str(setup.stream_id)),
        }
        logs = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
        batch_pairs: list[Pair] = []
        single_pairs: list[Pair] = []
        node_pairs: list[Pair] = []
        with contextlib.ExitStack() as stack:
            servers = {
                name: stack.enter_context(
                    harness.server(commands[name], env=envs[name], port=ports[name], log=logs / f"{name}.log")
                )
                for name in ports
            }
            warm_up(setup, ports["product"], batch_bodies[:4], single_bodies[:2000])
            warm_up(setup, ports["minimal"], [], single_bodies[:2000])
            warm_up(setup, ports["bare"], [], single_bodies[:2000])
            warm_up(setup, ports["node"], [], single_bodies[:2000])

            def http_batch() -> Phase:
                return http_batch_phase(setup, ports["product"], servers["product"], batch_bodies, args.batch_clients)

            def raw_copy() -> Phase:
                return copy_phase(setup, copy_batches, args.batch_clients)

            def single(name: str, server: str) -> Callable[[], Phase]:
                return lambda: single_phase(
                    name, setup, ports[server], servers[server], single_bodies, args.single_seconds, args.connections
                )

            def show(index: int, phase: Phase) -> None:
                print(
                    f"round {index + 1}: {phase.name:18} {phase.rate:10,.0f}/s   cores: {phase.cpu.shares()}",
                    flush=True,
                )

            for index in range(args.rounds):
                # Alternate which of a pair goes first, so that drift does not favour one side.
                if index % 2 == 0:
                    product, baseline = http_batch(), raw_copy()
                else:
                    baseline, product = raw_copy(), http_batch()
                batch_pairs.append(Pair(product, baseline))
                show(index, product)
                show(index, baseline)
                # The single-event phase sits between its two baselines, which take turns going first.
                baselines = [single(MINIMAL, "minimal"), single(NODE, "node")]
                if index % 2:
                    baselines.reverse()
                before = baselines[0]()
                single_product = single(PRODUCT_SINGLE, "product")()
                after = baselines[1]()
                for phase in (before, single_product, after):
                    show(index, phase)
                minimal_phase, node_phase = (before, after) if before.name == MINIMAL else (after, before)
                single_pairs.append(Pair(single_product, minimal_phase))
                node_pairs.append(Pair(single_product, node_phase))
            bare = single(BARE, "bare")()
            print(f"{BARE}: {bare.rate:,.0f}/s   cores: {bare.cpu.shares()}", flush=True)
        truncate(setup.db_url)

        command = shlex.join([os.path.basename(commands["product"][0]), *commands["product"][1:]])
        text = report(info, args, command, batch_pairs, single_pairs, node_pairs, bare, client, sample_bytes)
        print("\n" + text)
        if not args.no_write:
            harness.write_section("ingest", "Ingestion", text + "\n\n" + ANALYSIS.strip())
            print(f"\nwritten to {harness.BENCHMARKS_MD}")
        print(f"total {time.monotonic() - started:.0f}s")
    finally:
        slot.cleanup()
    return 0


# Written from profiles (py-spy, CPU samples only) and a before/after run; the
# figures above it are measured again on every run.
ANALYSIS = """
### Where the time goes

What sets each ratio is the CPU one event or request costs (the *total*
column) and how much of the two cores each side gets: this machine is shared
with other work (the *other* column; while these figures were taken it used 1.3
to 1.6 of the 2 cores, load average 10 to 13), which also inflates every CPU
figure about 1.5 to 2.5 times against a quiet machine. Compare phases of one run
with each other, not with another run.

**Single events, where a request's CPU goes now** (the lean path under the
default gunicorn command; cProfile with the thread's CPU clock, one process, no
HTTP server): the Redis round trip that reads the cached key and counts the
request for the rate limiter 28 %, the checks and the group-committed `INSERT`
27 % (the statement itself about 17 %), the audit row, metrics, request id and
security headers of the middleware kept on the lean path about 20 %, reading
the request and writing the response the rest. The content-security policy
was 16 % more, built twice per answer by django-csp, until the lean path built
it once (`ingestion/wsgi.py`). Around that, the HTTP server: gunicorn spends
about 400 µs of its own on a request here (*bare WSGI app*), granian about 150
µs. The Express server spends 300 to 600 µs in Node and 200 to 700 µs in
PostgreSQL (one `INSERT` and one commit per request); EventFlow's group commit
brings PostgreSQL to 260 to 310 µs a request with the idempotency check
included, so what is left between the two is Python: the server, Django's
request object and middleware, and redis-py.

**Batches.** A raw `COPY` costs PostgreSQL about 15 µs per row on a quiet
machine; EventFlow's one `INSERT … SELECT FROM jsonb_to_recordset(…) WHERE NOT
EXISTS (…) ON CONFLICT DO NOTHING RETURNING event_id` about 20 µs, the same work
plus the idempotency `COPY` does not do, and the web process about 17 µs more per
event (parsing, the envelope check, the row and the result). The lean path
serves batches too; their cost per event is unchanged within the noise (85 →
80 µs, 0.43x → 0.46x of `COPY`, the machine shared). 0.7x would need the web
process under 2 µs per event: no per-event work in Python at all.

### The lean path and group commit, before and after

Measured on this machine, shared (other work used 0.9 to 1.6 of the 2 cores):
three rounds each, medians, the same `bench/ingest.py` before (commit 87d7cb4,
the full Django cycle, one `INSERT` and one COMMIT per request) and after:

| | before | after, gunicorn (the default) | after, `WEB_SERVER=granian`, `WEB_THREADS=8` |
|---|---|---|---|
| EventFlow single events / minimal Django view | 418 / 613 requests/s: **0.68x** | 291 / 133: **2.19x** | 225 / 128: **1.75x** |
| EventFlow single events / Express + pg | 465 / 1,452: **0.32x** | 291 / 435: **0.67x** | 267 / 313: **0.85x** |
| CPU per request, EventFlow (server + PostgreSQL + Redis) | 2,623 µs (2,064 + 479 + 80) | 1,928 µs (1,595 + 259 + 73) | 1,704 µs (1,333 + 306 + 66) |
| CPU per request, minimal view / Express + pg | 1,773 / 501 µs | 2,716 / 790 µs | 4,101 / 1,346 µs |
| batch events/s / raw COPY | 10,084 / 23,408: **0.43x**, 85 µs an event | 5,122 / 11,109: **0.46x**, 80 µs | 7,413 / 15,793: **0.47x**, 66 µs |

The single-event target (≥ 1.0x the Express server) is still missed: 0.67x
under gunicorn, 0.85x under granian, in a run where the Express server, one
Node process that waits on PostgreSQL more than it computes, lost less to the
machine's other work than the Python servers did. Against the minimal Django
view EventFlow now takes about twice as many requests while doing every check.

- **Lean path** (`ingestion/wsgi.py`, in front of Django in `eventflow/wsgi.py`):
  `POST …/events` and `…/events/batch` reach the intake's own view through the
  middleware that acts on them (security headers and the HTTPS redirect,
  metrics, audit and request id, host check, frame options, CSP, tracing when
  on) and not the rest (sessions, CSRF, authentication, messages, htmx, static
  files); the routes are resolved once at start from the URLconf; the CSP
  policy is built once; Django's per-request connection upkeep is done with
  its own calls, except the `SELECT 1` health check of a connection used in
  the last second (a failed connection is still checked and closed after the
  request). Everything else goes through Django as before. The intake tests
  run through both paths (`ingestion/tests/conftest.py`), and a test compares
  status, headers and body of the two.
- **Group commit** (`ingestion/group_commit.py`): single events that arrive in
  one process while a statement is in flight are written together by the next
  one, in one transaction, with the same `INSERT` (idempotency and log check
  included); each request is answered after that COMMIT; processing is asked
  for once per group and stream instead of once per request. No timer: an
  event alone is written at once. PostgreSQL's CPU per request fell from 479 to
  259 µs, the after-commit Redis `SET NX` from one per request to one per group.
- **granian** (`WEB_SERVER=granian`) costs about 150 µs of its own per request
  against gunicorn's 400, and took EventFlow from 0.67x to 0.85x of the Express
  server. It is an option, not the default: its WSGI threads all take work in
  turn, so each holds a PostgreSQL connection (2 x 32 threads for three servers
  ran this PostgreSQL out of connections; 8 threads a worker did not), it has
  no hook for a worker that exits (gunicorn's `child_exit` tidies the metrics),
  and the fault tests run gunicorn.

Measured and left out: an API-key cache inside the process with invalidation
published through Redis. The key is read in the pipeline that counts the
request for the per-key rate limit shared by every process, so the cache would
save one `GET` inside a round trip the limiter still makes, and a revocation
published to other processes arrives a moment after the next request may
already have been served. The round trip stays. Also measured and left out:
that round trip as one Lua script (`GET`, `INCR`, `EXPIRE` on the first hit)
instead of a pipeline of three commands: 115 -> 92 µs of redis-py CPU per call
in isolation, about 1.5 % of a request, within this machine's noise.

### Earlier changes, before and after

Same machine, same gunicorn command (2 x 32), the ingest path as it was before
these changes (commit 8a65701) and after them, measured side by side, medians
of three runs each: single events 549 → 823 requests/s (the minimal view:
1,297), CPU per request 2,980 → 1,900 µs (the minimal view: 1,250); batches
32,900 → 44,900 events/s (raw COPY: 104,000), CPU per event 55 → 41 µs (raw
COPY: 15).

- The API key cache and the rate limiter share one pipelined Redis round trip
  on the shared client (`streams/auth.py`), instead of Django's cache (a new
  client object per call) and django-ratelimit (three round trips: `SET NX`,
  `EXISTS`, `INCRBY`): about 300 µs less CPU per request.
- The inbox `INSERT` is bound on the server and prepared
  (`eventflow.db.prepared_cursor`): Django's cursors bind on the client, so
  `prepare_threshold` never applied, and PostgreSQL parsed and planned the
  statement on every request (about 410 µs of PostgreSQL CPU against 190 µs
  prepared) while psycopg quoted the whole JSON document into the SQL text.
- `jsonb_to_recordset` instead of `json_to_recordset`: the document is parsed
  once, and `payload` and `context` reach their columns without a second parse
  (about 3 µs less PostgreSQL CPU per row).
- The two intake endpoints are plain Django views; DRF's dispatch (request
  wrapper, content negotiation, exception handler) was about 8 % of a
  single-event request. The APIView classes still describe both endpoints, so
  `/api/schema/` is unchanged, and so are the responses (status, headers, body).
- The envelope check reads its settings once per request, not twice per event,
  and when the body holds no `\\u0000` escape it only checks the depth instead
  of searching every string for NUL (about 2.3 µs less per event).

Measured and left out: `hiredis` (no difference measurable in a whole
request), a lower GIL switch interval (no gain), other worker counts (above).
"""


if __name__ == "__main__":
    sys.exit(main())
