"""Kafka sources against a real broker (Tansu): messages become events once each, bad ones are skipped visibly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumers.kafka_bridge import Bridge
from consumers.kafka_services import kafka_source_create
from consumers.models import KafkaBridgeStatus, KafkaSource, KafkaSourceStart
from ingestion.models import InboxEvent
from streams.models import DeadLetter, DeadLetterStage, LogEntry, Stream
from tests.fixtures import conf_override

from .kafka_broker import TansuBroker, kafka_settings, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# A consumer joining a group on Tansu waits a few seconds for it to settle; a rejoin up to about 10 s.
GROUP_SETTLE_SECONDS = 45


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TansuBroker]:
    one = TansuBroker(tmp_path)
    one.start()
    yield one
    one.stop()


@pytest.fixture
def bridge_settings(settings: Any) -> None:
    conf_override(settings, **kafka_settings())


def event(n: int, **fields: Any) -> bytes:
    return orjson.dumps({"type": "page_view", "user_id": f"u{n % 3}", "payload": {"n": n}, **fields})


def events_of(stream: Stream) -> dict[str, Any]:
    """Every event of the stream, in the inbox or already processed into the log (tasks run in the test)."""
    waiting = list(InboxEvent.objects.filter(stream=stream).values_list("event_id", "payload"))
    logged = list(LogEntry.objects.filter(stream=stream).values_list("event_id", "payload"))
    assert len({event_id for event_id, _ in waiting + logged}) == len(waiting) + len(logged)
    return dict(waiting + logged)


def source_for(stream: Stream, broker: TansuBroker, topic: str, **kwargs: Any) -> KafkaSource:
    return kafka_source_create(
        stream_id=stream.pk,
        stream_slug=stream.slug,
        topic=topic,
        start=KafkaSourceStart.EARLIEST,
        bootstrap_servers=broker.bootstrap,
        **kwargs,
    )


def run_until_consumed(bridge: Bridge, source: KafkaSource, count: int) -> KafkaSource:
    def done() -> KafkaSource | None:
        bridge.run_once()
        source.refresh_from_db()
        return source if source.consumed >= count else None

    return wait_for(done, timeout=GROUP_SETTLE_SECONDS, what=f"the source to take {count} messages", interval=0.02)


def test_messages_become_events_once_each_and_bad_ones_are_skipped_visibly(
    stream: Stream, broker: TansuBroker, bridge_settings: None
) -> None:
    broker.create_topic("incoming", partitions=1)
    messages = [
        event(0, event_id="given-0"),
        event(1),
        b"{not json",
        orjson.dumps({"user_id": "no type"}),
        orjson.dumps([1, 2, 3]),
        None,
        event(2, event_id="given-2"),
        event(3),
        # The same event_id again: a duplicate, not a second event.
        event(4, event_id="given-0"),
    ]
    broker.produce("incoming", messages)
    source = source_for(stream, broker, "incoming", batch_size=4)
    bridge = Bridge()
    try:
        source = run_until_consumed(bridge, source, len(messages))
    finally:
        bridge.close()

    assert events_of(stream) == {
        "given-0": {"n": 0},
        "kafka:incoming:0:1": {"n": 1},
        "given-2": {"n": 2},
        "kafka:incoming:0:7": {"n": 3},
    }
    assert (source.consumed, source.accepted, source.duplicates, source.rejected) == (9, 4, 1, 4)
    assert source.status == KafkaBridgeStatus.RUNNING
    rejected = sorted(source.recent_rejections, key=lambda r: r["offset"])
    assert [(r["partition"], r["offset"]) for r in rejected] == [(0, 2), (0, 3), (0, 4), (0, 5)]
    assert rejected[0]["errors"][0]["code"] == "invalid_json"
    assert rejected[0]["value"] == "{not json"
    assert rejected[1]["event_id"] == "kafka:incoming:0:3"
    assert rejected[1]["errors"]
    # Each refused message is also a dead letter, written before the offsets were committed.
    letters = DeadLetter.objects.filter(stream=stream, stage=DeadLetterStage.SOURCE).order_by("event_id")
    assert [(letter.event_id, letter.event["value"]) for letter in letters] == [
        ("kafka:incoming:0:2", "{not json"),
        ("kafka:incoming:0:3", '{"user_id":"no type"}'),
        ("kafka:incoming:0:4", "[1,2,3]"),
        ("kafka:incoming:0:5", None),
    ]


def test_the_same_offsets_read_again_make_no_duplicates(
    stream: Stream, broker: TansuBroker, bridge_settings: None
) -> None:
    broker.create_topic("again", partitions=2)
    for partition_key in (b"a", b"b"):
        broker.produce("again", [event(n) for n in range(20)], key=partition_key)
    first = source_for(stream, broker, "again", batch_size=7)
    bridge = Bridge()
    try:
        first = run_until_consumed(bridge, first, 40)
        assert (first.accepted, first.duplicates) == (40, 0)
        # A second source with a fresh Kafka group reads every offset again, as a redelivery would.
        second = source_for(stream, broker, "again", consumer_group="replay")
        second = run_until_consumed(bridge, second, 40)
    finally:
        bridge.close()
    assert (second.accepted, second.duplicates, second.rejected) == (0, 40, 0)
    taken = events_of(stream)
    assert len(taken) == 40
    assert all(event_id.startswith("kafka:again:") for event_id in taken)


def test_a_restarted_source_resumes_from_its_committed_offsets(
    stream: Stream, broker: TansuBroker, bridge_settings: None
) -> None:
    broker.create_topic("resume", partitions=1)
    broker.produce("resume", [event(n) for n in range(10)])
    source = source_for(stream, broker, "resume")
    bridge = Bridge()
    try:
        run_until_consumed(bridge, source, 10)
    finally:
        bridge.close()
    broker.produce("resume", [event(n) for n in range(10, 15)])
    again = Bridge()
    try:
        # The same Kafka group rejoins (Tansu may take about 10 s to settle it) and reads only what is new.
        source = run_until_consumed(again, source, 15)
    finally:
        again.close()
    assert (source.consumed, source.accepted, source.duplicates) == (15, 15, 0)
    assert len(events_of(stream)) == 15
