"""Processing as it scales out: 1, 2 and 4 worker processes over 1, 4 and 16 streams, in one run.

    make bench-scale              (or: python bench/scale.py with DATABASE_URL / REDIS_URL set)

For each pair (worker processes, streams) the inboxes of fresh streams are
filled with the same realistic events as ``bench/process.py`` (``--events``
in all, shared evenly between the streams) by a raw COPY; then one
``celery worker --concurrency N`` (the command line of ``python -m eventflow
up``, started and ready before the clock starts) is asked to process every
stream, and the run ends when every stream's log holds its events. Each run
is checked: every event logged once, offsets gapless, the inbox empty, the
rollups equal to the log.

One stream has one writer at a time by design (its offsets are assigned under
the stream's lock), so more processes help only with more streams; the row
"one stream" of each worker count is the ceiling of a hot stream. The
baseline, measured in the same run on an identical inbox, is the database's
own limit for the move: one ``INSERT INTO streams_log SELECT … FROM
ingestion_inbox`` and a ``DELETE`` of those rows.

CPU is counted per process: the worker's processes, the benchmark database's
PostgreSQL backends and the server's own helpers, and the rest of the machine
("other", work that is not this benchmark's). It uses its own database
(eventflow_bench_scale) and an empty Redis database index, and writes
docs/BENCHMARKS.md between the ``scale`` markers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness
from bench import process as proc

SCALE_DB = os.environ.get("BENCH_SCALE_DB", "eventflow_bench_scale")
WARM_EVENTS = 200


@dataclass
class Run:
    workers: int
    streams: int
    events: int
    seconds: float
    cpu: harness.CpuMeter
    # Bytes on disk by group of tables once the run's events are logged (heap, TOAST, indexes).
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def cores(self, name: str) -> float:
        return self.cpu.used.get(name, 0.0) / self.seconds

    def us_per_event(self, name: str) -> float:
        return self.cpu.used.get(name, 0.0) / self.events * 1e6


def _fill(setup: proc.Setup, streams: int, envelopes: list[dict[str, object]]) -> list[int]:
    proc.reset(setup.db_url)
    share = len(envelopes) // streams
    ids = []
    for n in range(streams):
        stream_id = proc.new_stream(f"scale-{n}")
        proc.fill_inbox(setup.db_url, stream_id, envelopes[n * share : (n + 1) * share])
        ids.append(stream_id)
    return ids


# What the events take on disk once logged: the log (its partitions and key tables
# included), the rollups, the session state. VACUUM first, so that dead inbox rows
# and upserted rollup versions don't count.
_SIZES_SQL = """
SELECT CASE WHEN relname LIKE 'streams\\_log%' THEN 'log'
            WHEN relname LIKE 'analytics\\_%' THEN 'rollups'
            ELSE 'sessions' END,
       sum(pg_total_relation_size(oid))
FROM pg_class
WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace
  AND (relname LIKE 'streams\\_log%' OR relname LIKE 'analytics\\_%' OR relname = 'ingestion_session_state')
GROUP BY 1
"""


def _sizes(db_url: str) -> dict[str, int]:
    with harness.connect(db_url, autocommit=True) as conn:
        conn.execute("VACUUM")
        return {str(part): int(size) for part, size in conn.execute(_SIZES_SQL).fetchall()}


def _logged(conn: Any, stream_ids: list[int]) -> int:
    sql = "SELECT coalesce(sum(next_offset), 0) FROM streams_streamhead WHERE stream_id = ANY(%s)"
    return int(conn.execute(sql, [stream_ids]).fetchone()[0])


def baseline(setup: proc.Setup, envelopes: list[dict[str, object]]) -> Run:
    (stream_id,) = _fill(setup, 1, envelopes)
    with harness.connect(setup.db_url) as conn, harness.CpuMeter(SCALE_DB) as cpu:
        moved = conn.execute(proc.BASELINE_SQL, {"stream_id": stream_id}).rowcount
        conn.execute("DELETE FROM ingestion_inbox WHERE stream_id = %s", [stream_id])
        conn.execute("UPDATE streams_streamhead SET next_offset = %s WHERE stream_id = %s", [moved, stream_id])
        conn.commit()
    proc.check_moved(setup.db_url, stream_id, len(envelopes), rollups=False)
    return Run(0, 1, len(envelopes), cpu.wall, cpu)


def process(setup: proc.Setup, logs: Path, *, workers: int, streams: int, envelopes: list[dict[str, object]]) -> Run:
    from ingestion.processing import processing_request

    stream_ids = _fill(setup, streams, envelopes)
    share = len(envelopes) // streams
    total = share * streams
    # A stream of a few events for each worker process, processed before the clock starts: a
    # process's first batch pays its imports, the user-agent parser's rules and a connection.
    warm = [proc.new_stream(f"warm-{n}") for n in range(workers)]
    for stream_id in warm:
        proc.fill_inbox(setup.db_url, stream_id, envelopes[:WARM_EVENTS])
    child = proc.worker(setup, logs, concurrency=workers, name=f"worker-{workers}x{streams}")
    try:
        with harness.connect(setup.db_url, autocommit=True) as conn:
            for stream_id in warm:
                processing_request(stream_id)
            while _logged(conn, warm) < WARM_EVENTS * workers:
                if child.process.poll() is not None:
                    raise SystemExit(f"the worker stopped:\n{child.output()[-3000:]}")
                time.sleep(0.01)
        with harness.connect(setup.db_url, autocommit=True) as conn, harness.CpuMeter(SCALE_DB, child.ps) as cpu:
            for stream_id in stream_ids:
                processing_request(stream_id)
            deadline = time.monotonic() + 900
            while _logged(conn, stream_ids) < total:
                if time.monotonic() > deadline or child.process.poll() is not None:
                    raise SystemExit(f"the worker did not drain the inboxes:\n{child.output()[-3000:]}")
                time.sleep(0.01)
    finally:
        child.stop()
    for stream_id in stream_ids:
        proc.check_moved(setup.db_url, stream_id, share)
    return Run(workers, streams, total, cpu.wall, cpu, sizes=_sizes(setup.db_url) if streams == 1 else {})


def report(info: dict[str, str], loads: list[str], base: Run, runs: list[Run], batch_size: int) -> str:
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench-scale` (`bench/scale.py`) on"
        f" {info['cores']} cores ({info['cpu']}, {info['memory']}), PostgreSQL {info['postgresql']},"
        f" Python {info['python']}, Django {info['django']}; load average {loads[0]} before, {loads[-1]} after."
        f" DEBUG off, processing batches of {batch_size:,} growing while a backlog lasts, the streams in `warn`"
        " schema mode with the starter schemas, IPs anonymised. The machine is shared: *other* is the CPU of"
        " work that is not this benchmark's, in cores, during each run.",
        "",
        f"{base.events:,} events in all for each run (the events of `bench/process.py`), shared evenly between"
        " the streams; one `celery worker --concurrency N` asked to process every stream, timed from the request"
        " until every log holds its events. The baseline moves the same events of one stream with one"
        " `INSERT … SELECT` and a `DELETE` (no validation, enrichment, sessions or rollups).",
        "",
        "| worker processes | streams | seconds | events/s | of the baseline | CPU µs/event: workers | PostgreSQL"
        " | events/s per busy core | other (cores) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| baseline: INSERT … SELECT + DELETE | 1 | {base.seconds:.2f} | {base.rate:,.0f} | 100% | —"
        f" | {base.us_per_event('postgres'):.0f} | {base.rate / max(0.01, base.cores('postgres')):,.0f}"
        f" | {base.cores('other'):.2f} |",
    ]
    for r in runs:
        busy = r.cores("server") + r.cores("postgres")
        lines.append(
            f"| {r.workers} | {r.streams} | {r.seconds:.2f} | {r.rate:,.0f} | {r.rate / base.rate:.0%}"
            f" | {r.us_per_event('server'):.0f} | {r.us_per_event('postgres'):.0f}"
            f" | {r.rate / max(0.01, busy):,.0f} | {r.cores('other'):.2f} |"
        )
    sized = next((r for r in runs if r.sizes), None)
    if sized:
        per_million = {part: size / sized.events * 1e6 / 2**20 for part, size in sized.sizes.items()}
        lines += [
            "",
            f"On disk once one stream's {sized.events:,} events are logged (after `VACUUM`; heap, TOAST and"
            " indexes): "
            + ", ".join(f"{part} {size / 2**20:,.1f} MB" for part, size in sorted(sized.sizes.items()))
            + "; per million events: "
            + ", ".join(f"{part} {mb:,.0f} MB" for part, mb in sorted(per_million.items()))
            + f" ({sized.sizes.get('log', 0) / sized.events:,.0f} bytes an event in the log). The rollups grow"
            " with the buckets, dimension values and people a span of time holds, not with the events: these"
            " events span about ten minutes of some thousands of people.",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=48_000, help="events in all for each run")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts")
    parser.add_argument("--streams", default="1,4,16", help="stream counts")
    parser.add_argument("--no-write", action="store_true", help="print the results without writing docs/")
    args = parser.parse_args()

    started = time.monotonic()
    slot = harness.RedisSlot.claim()
    try:
        env, db_url = harness.django_setup(slot, SCALE_DB, EVENTFLOW_RATE_LIMIT_PER_MINUTE="100000000")
        setup = proc.Setup(env=env, db_url=db_url)
        info = harness.machine(db_url)
        loads = [" ".join(f"{x:.2f}" for x in os.getloadavg())]
        print(f"machine: {info}; load average {loads[0]}", flush=True)
        from eventflow import conf

        batch_size = conf.get().process_batch_size
        envelopes = list(proc.events(args.events, seed=1))
        logs = Path(tempfile.mkdtemp(prefix="bench-scale-"))
        base = baseline(setup, envelopes)
        print(f"  baseline {base.seconds:6.2f} s {base.rate:9,.0f}/s   cores: {base.cpu.shares()}", flush=True)
        runs = []
        for workers in (int(w) for w in args.workers.split(",")):
            for streams in (int(s) for s in args.streams.split(",")):
                run = process(setup, logs, workers=workers, streams=streams, envelopes=envelopes)
                print(
                    f"  {workers} workers, {streams:2} streams {run.seconds:6.2f} s {run.rate:9,.0f}/s"
                    f"   cores: {run.cpu.shares()}",
                    flush=True,
                )
                runs.append(run)
        proc.reset(db_url)
        shutil.rmtree(logs, ignore_errors=True)
        loads.append(" ".join(f"{x:.2f}" for x in os.getloadavg()))
        text = report(info, loads, base, runs, batch_size)
        print("\n" + text)
        if not args.no_write:
            harness.write_section("scale", "Processing as it scales out: worker processes and streams", text)
            print(f"written to {harness.BENCHMARKS_MD}")
        print(f"total {time.monotonic() - started:.0f}s")
    finally:
        slot.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
