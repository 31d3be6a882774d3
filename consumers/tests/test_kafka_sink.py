"""Kafka sinks against a real broker (Tansu): order, keys, headers, values, restarts and outages."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.db import connection

from consumers.kafka_bridge import Bridge
from consumers.kafka_services import kafka_sink_create
from consumers.models import ConsumerGroup, KafkaBridgeStatus, KafkaKey, KafkaSink
from consumers.selectors import Position
from consumers.services import consumer_group_create, consumer_group_poll_once
from streams.log import log_head
from streams.models import Stream
from tests.fixtures import conf_override
from tests.subprocesses import BASE_DIR, child_env

from .conftest import append
from .kafka_broker import (
    TansuBroker,
    assert_first_offsets_rise,
    event_offsets,
    kafka_settings,
    started_broker,  # noqa: F401  (the broker fixture)
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def bridge_settings(settings: Any) -> None:
    conf_override(settings, **kafka_settings())


def sink_for(stream: Stream, broker: TansuBroker, topic: str, **kwargs: Any) -> KafkaSink:
    return kafka_sink_create(
        stream_id=stream.pk,
        topic=topic,
        key=kwargs.pop("key", KafkaKey.USER_ID),
        start=Position(kind="earliest"),
        bootstrap_servers=broker.bootstrap,
        **kwargs,
    )


def committed(sink: KafkaSink) -> int:
    return ConsumerGroup.objects.get(pk=sink.group_id).committed_offset


def run_bridge(stop: threading.Event) -> None:
    try:
        Bridge().run(stop)
    finally:
        connection.close()


def run_until(bridge: Bridge, done: Any, *, timeout: float, what: str) -> None:
    def step() -> bool:
        bridge.run_once()
        return bool(done())

    wait_for(step, timeout=timeout, what=what, interval=0.01)


def test_sink_publishes_the_log_in_offset_order_with_keys_headers_and_the_consumer_api_value(
    stream: Stream, broker: TansuBroker, bridge_settings: None
) -> None:
    broker.create_topic("events", partitions=3)
    append(stream, 250)
    sink = sink_for(stream, broker, "events", batch_size=40)
    bridge = Bridge()
    try:
        run_until(bridge, lambda: committed(sink) == 250, timeout=60, what="the sink to publish 250 events")
    finally:
        bridge.close()

    got = broker.read("events", partitions=3, until=lambda m: len(m) >= 250, timeout=30)
    assert sorted(event_offsets(got)) == list(range(250))
    # The same record the consumer API hands out for each offset.
    consumer_group_create(stream_id=stream.pk, name="reader", start=Position(kind="earliest"))
    poll = consumer_group_poll_once(
        lookup={"stream_id": stream.pk, "name": "reader", "kind": "pull"}, max_records=1000, lease_seconds=30
    )
    api_records = {r["offset"]: r for r in orjson.loads(poll.records_json)}
    by_partition: dict[int, list[int]] = {}
    for message in got:
        record = orjson.loads(message.value)
        offset = record["offset"]
        assert record == api_records[offset]
        assert message.key == record["user_id"].encode()
        assert message.headers == {
            "event_id": record["event_id"].encode(),
            "type": record["type"].encode(),
            "offset": str(offset).encode(),
        }
        by_partition.setdefault(message.partition, []).append(offset)
    # One key, one partition; within each partition the log's order.
    for offsets in by_partition.values():
        assert offsets == sorted(offsets)
    keys_by_partition: dict[int, set[bytes | None]] = {m.partition: set() for m in got}
    for m in got:
        keys_by_partition[m.partition].add(m.key)
    all_keys = [k for keys in keys_by_partition.values() for k in keys]
    assert len(all_keys) == len(set(all_keys)) == 7

    sink.refresh_from_db()
    assert (sink.published, sink.status, sink.errors) == (250, KafkaBridgeStatus.RUNNING, 0)


def test_sink_without_key_and_from_latest(stream: Stream, broker: TansuBroker, bridge_settings: None) -> None:
    broker.create_topic("nokey", partitions=1)
    append(stream, 5)
    sink = kafka_sink_create(
        stream_id=stream.pk,
        topic="nokey",
        key=KafkaKey.NONE,
        start=Position(kind="latest"),
        bootstrap_servers=broker.bootstrap,
    )
    append(stream, 3)
    bridge = Bridge()
    try:
        run_until(bridge, lambda: committed(sink) == 8, timeout=60, what="the sink to publish the new events")
    finally:
        bridge.close()
    got = broker.read("nokey", partitions=1, until=lambda m: len(m) >= 3, timeout=30)
    assert event_offsets(got) == [5, 6, 7]
    assert all(m.key is None for m in got)


def _bridge_process(log: Path) -> subprocess.Popen[bytes]:
    env = child_env(
        EVENTFLOW_KAFKA_DELIVERY_TIMEOUT_SECONDS="3",
        EVENTFLOW_KAFKA_RUNNER_LEASE_SECONDS="3",
        EVENTFLOW_KAFKA_IDLE_SECONDS="0.05",
        EVENTFLOW_KAFKA_RETRY_MAX_SECONDS="1",
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, str(BASE_DIR / "manage.py"), "kafka_bridge"],
            cwd=BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_sink_killed_midway_resumes_where_it_stopped_without_skipping(
    stream: Stream, broker: TansuBroker, tmp_path: Path
) -> None:
    broker.create_topic("restart", partitions=3)
    append(stream, 3000)
    sink = sink_for(stream, broker, "restart", batch_size=50)
    log = tmp_path / "bridge.log"
    first = _bridge_process(log)
    try:
        wait_for(lambda: committed(sink) >= 500, timeout=60, what="the first bridge to publish some of the log")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        stopped_at = committed(sink)
        assert stopped_at < 3000, "the first bridge published everything before it was killed: nothing to resume"
        second = _bridge_process(log)
        try:
            wait_for(lambda: committed(sink) == 3000, timeout=90, what="the second bridge to finish the log")
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(20)
    finally:
        if first.poll() is None:
            first.kill()
    got = broker.read_events("restart", range(3000), partitions=3, timeout=60)
    offsets = event_offsets(got)
    assert set(offsets) == set(range(3000)), log.read_text()[-3000:]
    # In order per key: within each key, the first time each offset appears, the offsets rise.
    assert_first_offsets_rise(got, per=lambda message: message.key)
    # The restart resumed near where the first bridge stopped: at most a batch or so sent twice.
    assert len(offsets) - 3000 <= 3 * 50


def test_broker_outage_pauses_the_sink_visibly_then_it_resumes_and_skips_nothing(
    stream: Stream, broker: TansuBroker, bridge_settings: None, client: Any, settings: Any
) -> None:
    broker.create_topic("outage", partitions=2)
    append(stream, 100)
    sink = sink_for(stream, broker, "outage", batch_size=100)
    stop = threading.Event()
    thread = threading.Thread(target=run_bridge, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: committed(sink) == 100, timeout=60, what="the first 100 events")
        broker.stop()
        append(stream, 150)
        wait_for(
            lambda: KafkaSink.objects.filter(pk=sink.pk, status=KafkaBridgeStatus.PAUSED).exists(),
            timeout=60,
            what="the sink to pause",
        )
        assert committed(sink) == 100
        sink.refresh_from_db()
        assert sink.errors >= 1 and sink.last_error

        health = client.get("/health").json()
        assert health["checks"]["kafka"]["status"] == "paused"
        assert health["checks"]["kafka"]["paused"] == 1
        conf_override(settings, metrics_token="t0ken")
        metrics = client.get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken").content.decode()
        assert f'eventflow_kafka_sink_up{{sink="{sink.pk}",stream="{stream.slug}",topic="outage"}} 0.0' in metrics
        assert f'eventflow_kafka_sink_lag{{sink="{sink.pk}",stream="{stream.slug}",topic="outage"}} 150.0' in metrics

        broker.start()
        # The sink asks whether the broker is back, and this broker creates a topic a client asks about: it may
        # have made the topic first, with its own number of partitions.
        broker.create_topic("outage", partitions=2, exist_ok=True)
        wait_for(lambda: committed(sink) == 250, timeout=90, what="the sink to resume after the outage")
        wait_for(
            lambda: KafkaSink.objects.filter(pk=sink.pk, status=KafkaBridgeStatus.RUNNING).exists(),
            timeout=10,
            what="the sink to run again",
        )
    finally:
        stop.set()
        thread.join(30)
    # The broker came back empty (memory storage): everything after the outage's start is in it.
    got = broker.read_events("outage", range(100, 250), timeout=30)
    assert set(event_offsets(got)) >= set(range(100, 250))
    assert log_head(stream.pk) == 250
