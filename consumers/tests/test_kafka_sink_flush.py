"""A sink's batch waits for the broker's acknowledgements over several turns of the bridge's loop, a short slice at
a time: a broker that is away never holds the loop (the bridge's other sinks and sources, its shutdown) for the
delivery timeout, and the sink's position still moves only once every message of the batch was acknowledged.

With fake producers whose flush waits out its whole timeout (a turn that waits for the delivery timeout is plainly
seen), and against real brokers (Tansu, test_kafka_sink.py's) of which one is stopped with a batch out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError

from consumers import kafka_sink
from consumers.kafka_bridge import Bridge
from consumers.kafka_services import kafka_sink_create
from consumers.kafka_sink import SinkRunner
from consumers.models import ConsumerGroup, KafkaBridgeStatus, KafkaKey, KafkaSink
from consumers.selectors import Position
from streams.models import Stream
from tests.fixtures import conf_override

from .conftest import append
from .kafka_broker import (
    TansuBroker,
    assert_first_offsets_rise,
    event_offsets,
    kafka_settings,
    started_broker,  # noqa: F401  (the broker fixture)
    wait_for,
)
from .test_kafka_sink import committed, run_bridge, sink_for

# The longest a turn of the loop may take: a flush slice, and the step's few queries on a busy machine.
TURN_BOUND_SECONDS = 1.5
# Far longer than a turn takes: a turn that waits for the delivery timeout stands out.
DELIVERY_TIMEOUT_SECONDS = 10.0
# For what should happen within a few turns, or after a delivery timeout and a backoff, on a busy machine.
SOON_SECONDS = 60.0


def timed(call: Callable[[], Any]) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


def sink_status(sink: KafkaSink) -> str:
    return KafkaSink.objects.values_list("status", flat=True).get(pk=sink.pk)


def lease_held(sink: KafkaSink) -> bool:
    return ConsumerGroup.objects.filter(
        pk=sink.group_id, lease_id__isnull=False, lease_expires_at__isnull=False
    ).exists()


# --- fake producers: a flush waits its whole timeout while the broker holds the acknowledgements back -------------

# What a fake flush or poll waits at most: a step that passes the delivery timeout to it is held this long.
HELD_SECONDS = 15.0


class HeldBroker:
    """What the fake producers' broker does: it answers asks, and acknowledges messages only once the test lets it
    (``ack``), then at once, with ``error`` (None: delivered)."""

    def __init__(self) -> None:
        self.acking = threading.Event()
        self.error: KafkaError | None = None
        self.delivered: list[int] = []
        self.producers: list[HeldProducer] = []

    def ack(self, error: KafkaError | None = None) -> None:
        self.error = error
        self.acking.set()

    def hold(self) -> None:
        self.acking.clear()


class HeldProducer:
    def __init__(self, broker: HeldBroker, config: dict[str, Any]) -> None:
        self.broker = broker
        self.config = config
        self.pending: list[tuple[int, Callable[[KafkaError | None, Any], None]]] = []
        self.waits: list[float] = []

    def list_topics(self, topic: str, timeout: float) -> None:
        pass  # the broker answers

    def produce(self, topic: str, *, value: bytes, key: bytes | None, headers: Any, on_delivery: Any) -> None:
        self.pending.append((orjson.loads(value)["offset"], on_delivery))

    def _wait(self, timeout: float) -> None:
        self.waits.append(timeout)
        if self.pending and self.broker.acking.wait(min(timeout, HELD_SECONDS)):
            served, self.pending = self.pending, []
            for offset, on_delivery in served:
                if self.broker.error is None:
                    self.broker.delivered.append(offset)
                on_delivery(self.broker.error, None)

    def flush(self, timeout: float = -1) -> int:
        self._wait(HELD_SECONDS if timeout < 0 else timeout)
        return len(self.pending)

    def poll(self, timeout: float = -1) -> int:
        self._wait(HELD_SECONDS if timeout < 0 else timeout)
        return 0

    def __len__(self) -> int:
        return len(self.pending)

    def purge(self, *args: Any, **kwargs: Any) -> None:
        self.pending = []


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch, settings: Any) -> HeldBroker:
    conf_override(settings, **kafka_settings(kafka_delivery_timeout_seconds=DELIVERY_TIMEOUT_SECONDS))
    one = HeldBroker()

    def producer(config: dict[str, Any]) -> HeldProducer:
        one.producers.append(HeldProducer(one, config))
        return one.producers[-1]

    monkeypatch.setattr(kafka_sink, "Producer", producer)
    return one


@pytest.fixture
def held_sink(stream: Stream, held: HeldBroker) -> Iterator[SinkRunner]:
    row = kafka_sink_create(
        stream_id=stream.pk,
        topic="orders.out",
        key=KafkaKey.NONE,
        start=Position(kind="earliest"),
        bootstrap_servers="127.0.0.1:9",
    )
    runner = SinkRunner(row)
    # The first steps ask whether the broker answers (on a thread of its own); it does.
    wait_for(
        lambda: runner.step() == 0 and runner.checked, timeout=SOON_SECONDS, what="the sink to start", interval=0.02
    )
    yield runner
    held.ack()  # a flush still waiting ends now
    runner.close()


def held_row(runner: SinkRunner) -> KafkaSink:
    return KafkaSink.objects.get(pk=runner.sink_id)


def turn(runner: SinkRunner) -> int:
    """A turn of the bridge's loop for one runner (a step when it is due), timed: it never takes long."""
    moved = 0
    if runner.due():
        started = time.monotonic()
        moved = runner.step()
        took = time.monotonic() - started
        assert took < TURN_BOUND_SECONDS, f"a turn took {took:.1f} s"
    return moved


def turns_until(runner: SinkRunner, done: Callable[[], bool], *, what: str) -> int:
    """Turns until ``done``; returns how many events they published."""
    moved = [0]

    def one() -> bool:
        moved[0] += turn(runner)
        return done()

    wait_for(one, timeout=SOON_SECONDS, what=what, interval=0.02)
    return moved[0]


@pytest.mark.django_db
def test_a_turn_with_a_batch_out_waits_a_short_slice_and_the_position_moves_once_the_broker_acknowledged_it(
    stream: Stream, held: HeldBroker, held_sink: SinkRunner
) -> None:
    append(stream, 30)
    row = held_row(held_sink)
    # The broker holds the acknowledgements back: the turn that sends the batch comes back anyway (turn's bound).
    assert turn(held_sink) == 0
    assert max(held.producers[-1].waits) < TURN_BOUND_SECONDS
    assert committed(row) == 0
    assert lease_held(row), "the batch stays leased while it is out"
    # Later turns too, as long as the acknowledgements are held back; nothing is sent twice meanwhile.
    for _ in range(3):
        assert turn(held_sink) == 0
    assert committed(row) == 0
    assert sum(len(p.pending) for p in held.producers) == 30

    held.ack()
    assert turns_until(held_sink, lambda: committed(row) == 30, what="the batch to be committed") == 30
    assert held.delivered == list(range(30))
    row.refresh_from_db()
    assert (row.published, row.status, row.errors) == (30, KafkaBridgeStatus.RUNNING, 0)


@pytest.mark.django_db
def test_a_batch_the_broker_refuses_at_a_later_turn_is_given_back_and_sent_again_from_the_committed_position(
    stream: Stream, held: HeldBroker, held_sink: SinkRunner
) -> None:
    append(stream, 10)
    row = held_row(held_sink)
    assert turn(held_sink) == 0
    held.ack(KafkaError(KafkaError._MSG_TIMED_OUT))
    assert turn(held_sink) == 0
    # Paused, as a flush that timed out pauses it: visible, the lease given back, nothing committed.
    row.refresh_from_db()
    assert row.status == KafkaBridgeStatus.PAUSED
    assert row.errors == 1 and "_MSG_TIMED_OUT" in row.last_error
    assert committed(row) == 0
    assert not lease_held(row)

    held.hold()
    append(stream, 5)
    # Sent again from the committed position (once the backoff is over and the broker answered), then acknowledged.
    turns_until(held_sink, lambda: bool(held.producers[-1].pending), what="the batch to be sent again")
    assert [offset for offset, _ in held.producers[-1].pending] == list(range(15))
    assert committed(row) == 0
    held.ack()
    assert turns_until(held_sink, lambda: committed(row) == 15, what="the commit") == 15
    assert held.delivered == list(range(15))
    assert sink_status(row) == KafkaBridgeStatus.RUNNING


@pytest.mark.django_db
def test_closing_a_sink_with_a_batch_out_does_not_wait_for_it_and_a_new_runner_sends_it_again(
    stream: Stream, held: HeldBroker, held_sink: SinkRunner
) -> None:
    append(stream, 10)
    row = held_row(held_sink)
    assert turn(held_sink) == 0
    closing = timed(held_sink.close)
    assert closing < TURN_BOUND_SECONDS, f"closing took {closing:.1f} s"
    assert committed(row) == 0
    assert not lease_held(row), "the batch's lease is given back: the next runner sends it at once"

    held.ack()
    again = SinkRunner(held_row(held_sink))
    try:
        assert turns_until(again, lambda: committed(row) == 10, what="a new runner to send the batch again") == 10
    finally:
        again.close()
    assert held.delivered == list(range(10))


# --- real brokers ----------------------------------------------------------------------------------------------


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[TansuBroker, TansuBroker]]:
    away, up = TansuBroker(tmp_path), TansuBroker(tmp_path)
    away.start()
    up.start()
    yield away, up
    away.stop()
    up.stop()


class TimedBridge:
    """A bridge whose every turn (``run_once``) is timed, and whose sink ``watched`` is never seen past ``limit``."""

    def __init__(self, watched: KafkaSink, limit: int) -> None:
        self.bridge = Bridge()
        self.watched = watched
        self.limit = limit
        self.turns: list[float] = []

    def until(self, done: Callable[[], bool], *, what: str, timeout: float = SOON_SECONDS) -> None:
        def one() -> bool:
            self.turns.append(timed(self.bridge.run_once))
            assert committed(self.watched) <= self.limit, "the position passed an event the broker did not take"
            return done()

        wait_for(one, timeout=timeout, what=what, interval=0.01)

    @property
    def longest(self) -> float:
        return max(self.turns)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_broker_away_with_a_batch_out_holds_no_turn_of_the_loop_for_the_delivery_timeout(
    stream: Stream, other_stream: Stream, brokers: tuple[TansuBroker, TansuBroker], settings: Any
) -> None:
    conf_override(settings, **kafka_settings(kafka_delivery_timeout_seconds=DELIVERY_TIMEOUT_SECONDS))
    away, up = brokers
    away.create_topic("away", partitions=3)
    up.create_topic("up", partitions=1)
    append(stream, 20)
    append(other_stream, 5)
    lost = sink_for(stream, away, "away", batch_size=100)
    other = sink_for(other_stream, up, "up", batch_size=100)
    loop = TimedBridge(lost, 20)
    try:
        loop.until(lambda: committed(lost) == 20 and committed(other) == 5, what="both sinks' first events")
        loop.turns.clear()
        away.stop()
        append(stream, 30)
        outage = time.monotonic()
        append(other_stream, 5)
        # The other stream's sink goes on while the first one's batch is out, well within the delivery timeout.
        loop.until(lambda: committed(other) == 10, what="the other sink")
        other_took = time.monotonic() - outage
        assert loop.longest < TURN_BOUND_SECONDS, f"the longest turn took {loop.longest:.1f} s"
        assert other_took < DELIVERY_TIMEOUT_SECONDS / 2, f"the other sink waited {other_took:.1f} s"
        assert lease_held(lost), "the first sink's batch is out"
        # Then the first sink pauses, visibly, once its batch was not acknowledged within the delivery timeout.
        loop.until(lambda: sink_status(lost) == KafkaBridgeStatus.PAUSED, what="the sink to pause")
        paused_after = time.monotonic() - outage
        assert loop.longest < TURN_BOUND_SECONDS, f"the longest turn took {loop.longest:.1f} s"
        assert paused_after >= DELIVERY_TIMEOUT_SECONDS - 1, "the batch was given up before its delivery timeout"
        lost.refresh_from_db()
        assert lost.errors >= 1 and lost.last_error
        assert committed(lost) == 20

        away.start()
        # The broker creates a topic a client asks about: it may have made it first, with its own partitions.
        away.create_topic("away", partitions=3, exist_ok=True)
        loop.limit = 50
        loop.until(lambda: committed(lost) == 50, what="the sink to resume", timeout=SOON_SECONDS * 2)
        assert sink_status(lost) == KafkaBridgeStatus.RUNNING
    finally:
        loop.bridge.close()
    assert loop.longest < TURN_BOUND_SECONDS, f"the longest turn took {loop.longest:.1f} s"
    # The broker came back empty (memory storage): every event from the outage's start is in it, in order.
    got = away.read_events("away", range(20, 50), timeout=30)
    assert set(event_offsets(got)) >= set(range(20, 50))
    assert_first_offsets_rise(got, per=lambda message: message.partition)
    got_other = up.read("up", partitions=1, until=lambda m: len(m) >= 10, timeout=30)
    assert event_offsets(got_other) == list(range(10))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_bridge_stopped_with_a_batch_out_stops_at_once_and_a_restart_resumes_from_the_committed_position(
    stream: Stream, broker: TansuBroker, settings: Any
) -> None:
    conf_override(settings, **kafka_settings(kafka_delivery_timeout_seconds=DELIVERY_TIMEOUT_SECONDS))
    broker.create_topic("restart", partitions=3)
    append(stream, 20)
    sink = sink_for(stream, broker, "restart", batch_size=100)
    stop = threading.Event()
    thread = threading.Thread(target=run_bridge, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: committed(sink) == 20, timeout=SOON_SECONDS, what="the first events")
        broker.stop()
        append(stream, 30)
        wait_for(lambda: lease_held(sink), timeout=SOON_SECONDS, what="the batch to be out")
        stopping = time.monotonic()
        stop.set()
        thread.join(SOON_SECONDS)
        stop_took = time.monotonic() - stopping
        assert not thread.is_alive()
    finally:
        stop.set()
        thread.join(SOON_SECONDS)
    assert stop_took < 2 * TURN_BOUND_SECONDS, f"the bridge took {stop_took:.1f} s to stop"
    assert committed(sink) == 20
    assert not lease_held(sink)

    broker.start()
    broker.create_topic("restart", partitions=3, exist_ok=True)
    restarted = TimedBridge(sink, 50)
    try:
        restarted.until(lambda: committed(sink) == 50, what="the restarted bridge to resume", timeout=SOON_SECONDS * 2)
    finally:
        restarted.bridge.close()
    got = broker.read_events("restart", range(20, 50), timeout=30)
    assert set(event_offsets(got)) >= set(range(20, 50))
    assert_first_offsets_rise(got, per=lambda message: message.partition)
