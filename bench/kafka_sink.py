"""Kafka sink benchmark: a stream's log published by the bridge, against a bare producer of the same messages.

    python -m launcher.devservices python bench/kafka_sink.py [--events 50000] [--rounds 3]

It uses its own database (``eventflow_bench_kafka`` on the server of
DATABASE_URL, migrated here), a Redis database index that was empty, and a
Tansu broker (memory storage) of its own on a free port, and writes its
section of docs/BENCHMARKS.md.

The log is filled with realistic events (bench/consume.py's, about 1 kB of
JSON each). Each round, back to back:

- **sink**: a Kafka sink from the earliest offset to a fresh topic, run by
  ``Bridge.run_once`` in this process until its group committed the head
  (lease a batch of 500 from the consumer group, produce, flush, wait for
  every delivery report, commit, as ``manage.py kafka_bridge`` does);
- **bare producer**: the same messages (value, key, headers, built before the
  clock starts) sent to another fresh topic by one confluent-kafka producer
  with the sink's settings (idempotent, acks=all, linger.ms=5) and one flush at
  the end: what Kafka itself can take from one client here.

CPU is counted per party (this process, the broker, PostgreSQL, other work);
the machine is shared, so the pair with the least CPU of other work is the one
reported, with every pair's ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench import harness  # noqa: E402

DATABASE = "eventflow_bench_kafka"
SLUG = "bench-kafka"
PARTITIONS = 3


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500, help="the sink's batch_size")
    parser.add_argument("--no-write", action="store_true", help="print the section, do not write BENCHMARKS.md")
    args = parser.parse_args()

    slot = harness.RedisSlot.claim()
    try:
        _env, db_url = harness.django_setup(slot, DATABASE, LOG_LEVEL="WARNING")
        return run(args, db_url)
    finally:
        slot.cleanup()


def run(args: argparse.Namespace, db_url: str) -> int:
    import tempfile

    import orjson
    import psutil
    from confluent_kafka import Producer

    from bench.consume import fill_realistic
    from consumers.kafka_bridge import Bridge
    from consumers.kafka_services import kafka_sink_create
    from consumers.models import ConsumerGroup, KafkaKey, KafkaSink
    from consumers.selectors import Position
    from consumers.services import consumer_group_commit, consumer_group_create, consumer_group_poll_once
    from consumers.tests.kafka_broker import TansuBroker
    from streams.models import Stream
    from streams.services import stream_create

    Stream.objects.filter(slug=SLUG).delete()
    stream = stream_create(slug=SLUG, name=SLUG)
    started = time.perf_counter()
    fill_realistic(stream.pk, args.events)
    print(f"{args.events:,} events appended in {time.perf_counter() - started:.1f}s", flush=True)

    # The bare producer's messages: the consumer API's records, exactly as the sink sends them.
    consumer_group_create(stream_id=stream.pk, name="bench-reader", start=Position(kind="earliest"))
    lookup = {"stream_id": stream.pk, "name": "bench-reader", "kind": "pull"}
    messages: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []
    while len(messages) < args.events:
        poll = consumer_group_poll_once(lookup=lookup, max_records=1000, lease_seconds=60)
        assert poll.lease is not None
        for record in orjson.loads(poll.records_json):
            key = record.get("user_id")
            headers = [
                ("event_id", record["event_id"].encode()),
                ("type", record["type"].encode()),
                ("offset", str(record["offset"]).encode()),
            ]
            messages.append((key.encode() if key else None, orjson.dumps(record), headers))
        consumer_group_commit(lookup=lookup, lease_id=poll.lease.id, offset=poll.lease.end_offset)
    size = sum(len(value) for _, value, _ in messages) / len(messages)

    phases = _phase_timers()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as logs:
        broker = TansuBroker(Path(logs))
        broker.start()
        broker_process = next(
            p for p in psutil.process_iter(["cmdline"]) if str(broker.port) in " ".join(p.info["cmdline"] or [])
        )
        try:
            for round_no in range(args.rounds):
                topic = f"sink-{round_no}"
                broker.create_topic(topic, PARTITIONS)
                sink = kafka_sink_create(
                    stream_id=stream.pk,
                    topic=topic,
                    key=KafkaKey.USER_ID,
                    start=Position(kind="earliest"),
                    batch_size=args.batch,
                    bootstrap_servers=broker.bootstrap,
                )
                bridge = Bridge(f"bench-{round_no}")
                phases.clear()
                with harness.CpuMeter(DATABASE, server=broker_process) as sink_cpu:
                    published = 0
                    while published < args.events:
                        published += bridge.run_once()
                bridge.close()
                assert ConsumerGroup.objects.get(pk=sink.group_id).committed_offset == args.events
                KafkaSink.objects.filter(pk=sink.pk).update(is_active=False)

                topic = f"bare-{round_no}"
                broker.create_topic(topic, PARTITIONS)
                producer = Producer(
                    {
                        "bootstrap.servers": broker.bootstrap,
                        "enable.idempotence": True,
                        "acks": "all",
                        "linger.ms": 5,
                    }
                )
                with harness.CpuMeter(DATABASE, server=broker_process) as bare_cpu:
                    for key, value, headers in messages:
                        while True:
                            try:
                                producer.produce(topic, value=value, key=key, headers=headers)
                                break
                            except BufferError:
                                producer.poll(0.05)
                    assert producer.flush(60) == 0
                one = {
                    "phases": dict(phases),
                    "sink": args.events / sink_cpu.wall,
                    "bare": args.events / bare_cpu.wall,
                    "sink_cpu": sink_cpu,
                    "bare_cpu": bare_cpu,
                }
                one["ratio"] = one["sink"] / one["bare"]
                results.append(one)
                print(
                    f"round {round_no + 1}: sink {one['sink']:,.0f} events/s ({sink_cpu.shares()}), "
                    f"bare producer {one['bare']:,.0f} events/s ({bare_cpu.shares()}), ratio {one['ratio']:.2f}",
                    flush=True,
                )
        finally:
            broker.stop()

    best = min(results, key=lambda r: r["sink_cpu"].used["other"] + r["bare_cpu"].used["other"])
    per_event_us = {
        name: {k: v / args.events * 1e6 for k, v in best[f"{name}_cpu"].used.items()} for name in ("sink", "bare")
    }
    info = harness.machine(db_url)
    body = f"""`bench/kafka_sink.py`, {args.events:,} realistic events (about {size:,.0f} bytes of JSON each) of one
stream's log, {PARTITIONS} partitions, keyed by `user_id`, to a Tansu broker (memory storage) on the same
machine; {args.rounds} rounds, the sink and the bare producer back to back in each. The machine
({info["cores"]} cores, {info["cpu"]}) was shared with other work; the round with the least CPU of
other work is reported, every round's ratio below.

| | events/s | CPU µs per event: this process | broker | PostgreSQL | other work |
|---|---:|---:|---:|---:|---:|
| Kafka sink (`Bridge.run_once`: lease {args.batch}, produce, flush, commit) | {best["sink"]:,.0f} | {per_event_us["sink"]["client"]:.1f} | {per_event_us["sink"]["server"]:.1f} | {per_event_us["sink"]["postgres"]:.1f} | {per_event_us["sink"]["other"]:.1f} |
| bare confluent-kafka producer, same messages, one flush | {best["bare"]:,.0f} | {per_event_us["bare"]["client"]:.1f} | {per_event_us["bare"]["server"]:.1f} | {per_event_us["bare"]["postgres"]:.1f} | {per_event_us["bare"]["other"]:.1f} |

Sink / bare producer, each round: {", ".join(f"{r['ratio']:.2f}" for r in results)}. The bare producer reads
nothing from PostgreSQL: its PostgreSQL column is other work on the same server (negative when
one of its backends ended during the phase; the harness counts CPU per process).

Where the sink's time went in that round (wall seconds for {args.events:,} events, {args.events // args.batch} batches):

{_phase_table(best["phases"], best["sink_cpu"].wall)}

The sink waits for every batch's delivery reports before it commits the batch and leases the
next (at least once, in order): one broker round trip per {args.batch} events that the bare producer,
which keeps sending and flushes once, does not pay; and it reads each batch from PostgreSQL
(the consumer API's record SQL) and writes the group's position and the sink's counts. What
would raise it, not done: reading the next batch while the broker acknowledges this one (two
batches in flight, committed in order), and the commit and the counts in one transaction."""
    print(body)
    if not args.no_write:
        harness.write_section("kafka-sink", "Kafka sink: the bridge against a bare producer", body)
    return 0


def _phase_timers() -> dict[str, float]:
    """Wall time of each part of a sink's step, added up: the consumer group's lease and records (the
    consumer API's SQL), producing, the commit, the counters; waiting for the delivery reports falls in the rest."""
    from consumers import kafka_sink

    spent: dict[str, float] = {}

    def timed(owner: Any, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - started

        setattr(owner, name, wrapper)

    timed(kafka_sink, "consumer_group_poll_once", "lease and read the batch (PostgreSQL)")
    timed(kafka_sink.SinkRunner, "_publish", "produce (hand the batch to the producer)")
    timed(kafka_sink, "consumer_group_commit", "commit the group's position")
    timed(kafka_sink, "kafka_sink_published", "count on the sink's row")
    return spent


def _phase_table(phases: dict[str, float], wall: float) -> str:
    rows = ["| part of a step | seconds | share |", "|---|---:|---:|"]
    rows += [f"| {name} | {seconds:.2f} | {seconds / wall:.0%} |" for name, seconds in phases.items()]
    rest = wall - sum(phases.values())
    rows.append(
        f"| the rest (the delivery reports, parsing the batch, the loop, scans) | {rest:.2f} | {rest / wall:.0%} |"
    )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
