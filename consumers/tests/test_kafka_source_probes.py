"""Asking a broker whether it is back, with fake Kafka clients: the ask never holds up the bridge's loop, and a
source whose offsets could not be committed is asked about too, so it runs again once the broker answers.

The fake clients' ``list_topics`` is the ask: it waits until the test lets it answer, so a step that returns
while it waits shows the ask is off the loop. Against a real broker: test_kafka_source_recovery.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException

from consumers import kafka_sink, kafka_source
from consumers.kafka_services import kafka_sink_create, kafka_source_create
from consumers.kafka_sink import SinkRunner
from consumers.kafka_source import SourceRunner
from consumers.models import KafkaBridgeStatus, KafkaKey, KafkaSink, KafkaSource, KafkaSourceStart
from consumers.selectors import Position
from streams.models import Stream
from tests.fixtures import conf_override

from .kafka_broker import kafka_settings, wait_for

pytestmark = pytest.mark.django_db

# Far longer than a step takes: an ask on the loop would hold the step this long (the test then fails).
HELD_ASK_SECONDS = 15.0
# For what should happen within a step or two, or after a backoff (kafka_settings: at most 1 s), on a busy machine.
SOON_SECONDS = 20.0


class Broker:
    """What the fake clients' broker does: answers each ask only once the test lets it, or not at all."""

    def __init__(self) -> None:
        self.asking = threading.Event()
        self._reply = threading.Event()
        self._answers = False
        self._lock = threading.Lock()
        self.asks = 0
        self.waiting = 0

    def reply(self, *, answers: bool) -> None:
        """Let every ask from now on end at once, with ``answers``."""
        self._answers = answers
        self._reply.set()

    def ask(self) -> None:
        with self._lock:
            self.asks += 1
            self.waiting += 1
        self.asking.set()
        try:
            if not self._reply.wait(HELD_ASK_SECONDS) or not self._answers:
                raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        finally:
            with self._lock:
                self.waiting -= 1


class FakeClient:
    """A producer's or a consumer's side of the broker: only the ask goes to it, the rest is canned."""

    def __init__(self, broker: Broker, config: dict[str, Any]) -> None:
        self.broker = broker
        self.config = config
        self.messages: list[Any] = []

    def list_topics(self, topic: str, timeout: float) -> None:
        self.broker.ask()

    def subscribe(self, topics: list[str], on_assign: Callable[..., None]) -> None:
        pass

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        taken, self.messages = self.messages, []
        return taken

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        raise KafkaException(KafkaError(KafkaError.REQUEST_TIMED_OUT))

    def close(self) -> None:
        pass

    def purge(self) -> None:
        pass

    def flush(self, timeout: float) -> int:
        return 0


class FakeMessage:
    def __init__(self, value: bytes, offset: int) -> None:
        self._value = value
        self._offset = offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "orders"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Broker:
    conf_override(settings, **kafka_settings())
    one = Broker()
    clients: list[FakeClient] = []

    def client(config: dict[str, Any]) -> FakeClient:
        clients.append(FakeClient(one, config))
        return clients[-1]

    monkeypatch.setattr(kafka_source, "Consumer", client)
    monkeypatch.setattr(kafka_sink, "Producer", client)
    return one


@pytest.fixture
def source(stream: Stream, broker: Broker) -> Iterator[SourceRunner]:
    row = kafka_source_create(
        stream_id=stream.pk,
        stream_slug=stream.slug,
        topic="orders",
        start=KafkaSourceStart.EARLIEST,
        bootstrap_servers="127.0.0.1:9",
    )
    runner = SourceRunner(row)
    yield runner
    # An ask still waiting ends now, not after HELD_ASK_SECONDS.
    broker.reply(answers=False)
    runner.close()


def client_of(runner: SourceRunner) -> FakeClient:
    return cast(FakeClient, runner._consumer)


def source_status(runner: SourceRunner) -> str:
    return KafkaSource.objects.values_list("status", flat=True).get(pk=runner.source_id)


def steps_until(runner: SourceRunner | SinkRunner, done: Callable[[], bool], *, what: str) -> None:
    """The bridge's loop for one runner: a step whenever it is due, until ``done``."""

    def step() -> bool:
        if runner.due():
            runner.step()
        return done()

    wait_for(step, timeout=SOON_SECONDS, what=what, interval=0.02)


def test_a_source_asks_the_broker_off_the_loop_and_takes_the_answer_at_a_later_step(
    source: SourceRunner, broker: Broker
) -> None:
    # librdkafka says the broker can't be reached: the source asks whether it answers.
    client_of(source).config["error_cb"](KafkaError(KafkaError._ALL_BROKERS_DOWN))
    assert source.step() == 0
    wait_for(broker.asking.is_set, timeout=SOON_SECONDS, what="the source to ask the broker")
    # The step came back while the ask waits: the loop goes on with the bridge's other sinks and sources.
    assert broker.waiting == 1
    assert source.step() == 0
    assert (broker.asks, broker.waiting) == (1, 1), "one ask at a time"
    # Nothing is said about the source until the answer is in.
    assert source_status(source) == KafkaBridgeStatus.STARTING

    broker.reply(answers=False)
    steps_until(source, lambda: source_status(source) == KafkaBridgeStatus.PAUSED, what="the source to pause")
    last_error = KafkaSource.objects.values_list("last_error", flat=True).get(pk=source.source_id)
    assert last_error.startswith("_ALL_BROKERS_DOWN")

    broker.reply(answers=True)
    steps_until(source, lambda: source_status(source) == KafkaBridgeStatus.RUNNING, what="the source to run again")


def test_a_source_whose_offsets_were_not_committed_runs_again_once_the_broker_answers(
    source: SourceRunner, broker: Broker
) -> None:
    broker.reply(answers=True)
    envelope = orjson.dumps({"type": "page_view", "user_id": "u1", "payload": {"n": 1}})
    client_of(source).messages = [FakeMessage(envelope, offset=0)]
    # The batch is in the inbox, but the broker does not take its offsets (the fake's commit always fails).
    assert source.step() == 0
    assert source_status(source) == KafkaBridgeStatus.PAUSED
    last_error = KafkaSource.objects.values_list("last_error", flat=True).get(pk=source.source_id)
    assert last_error.startswith("offsets not committed")

    # No message comes and no partitions are handed out: only asking the broker shows it is back.
    steps_until(
        source,
        lambda: source_status(source) == KafkaBridgeStatus.RUNNING,
        what="the source to run again after the failed commit",
    )
    assert broker.asks >= 1


def test_a_sink_asks_the_broker_off_the_loop_and_takes_the_answer_at_a_later_step(
    stream: Stream, broker: Broker
) -> None:
    row = kafka_sink_create(
        stream_id=stream.pk,
        topic="orders.out",
        key=KafkaKey.NONE,
        start=Position(kind="earliest"),
        bootstrap_servers="127.0.0.1:9",
    )
    sink = SinkRunner(row)
    try:
        # A new sink first asks whether the broker answers; the step comes back while the ask waits.
        assert sink.step() == 0
        wait_for(broker.asking.is_set, timeout=SOON_SECONDS, what="the sink to ask the broker")
        assert broker.waiting == 1
        assert sink.step() == 0
        assert (broker.asks, broker.waiting) == (1, 1), "one ask at a time"
        assert not sink.checked

        broker.reply(answers=True)

        def running() -> bool:
            return KafkaSink.objects.filter(pk=row.pk, status=KafkaBridgeStatus.RUNNING).exists() and sink.checked

        steps_until(sink, running, what="the sink to run")
    finally:
        broker.reply(answers=False)
        sink.close()
