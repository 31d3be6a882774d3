"""A sink's loop step: lease the next batch of the log, publish it, commit once the broker has it all.

At least once, in offset order, nothing skipped:

- the batch comes from the sink's consumer group (``consumer_group_poll_once``),
  as the consumer API's records, and each message's value is that record;
- the producer is idempotent (``enable.idempotence``), so its own retries keep
  the order within a partition and write no copies;
- the group's position moves to the batch's end only once every delivery
  report is in and each was a success. Anything else (a timeout, a refusal)
  gives the lease back and the whole batch is sent again after a backoff: the
  messages the broker did take are then there twice, never missing;
- a step waits for the reports a short slice at most (FLUSH_SLICE_SECONDS) and
  the batch stays out, leased, until a later step has them all (or the delivery
  timeout is over): a broker that is away holds the bridge's loop, its other
  sinks and sources and its stopping, no longer than that slice. No other
  batch is leased while one is out;
- while the broker is unreachable the sink is ``paused`` (API, /health,
  /metrics) and only asks the broker whether it is back, leasing nothing. It
  asks on a thread of its own (BrokerProbe): the bridge's loop goes on with its
  other sinks and sources meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from django.utils import timezone

from eventflow import celery_helpers, conf
from eventflow.errors import Conflict

from .kafka_services import (
    kafka_bridge_failed,
    kafka_bridge_running,
    kafka_client_config,
    kafka_sink_published,
    kafka_sink_take_over,
)
from .models import KafkaKey, KafkaSink
from .services import consumer_group_commit, consumer_group_poll_once

logger = logging.getLogger(__name__)
LIBRDKAFKA_LOGGER = logging.getLogger("consumers.kafka.librdkafka")

# Asking a paused sink's broker whether it is back.
PROBE_TIMEOUT_SECONDS = 2.0
# The longest a step waits for the delivery reports of the batch it sent; later steps take the rest without waiting.
FLUSH_SLICE_SECONDS = 0.5


def backoff_seconds(failures: int) -> float:
    """1, 2, 4, … seconds up to EVENTFLOW_KAFKA_RETRY_MAX_SECONDS, with jitter so bridges do not retry in step."""
    return celery_helpers.backoff_seconds(failures, base=1.0, cap=conf.get().kafka_retry_max_seconds)


def broker_answers(client: Any, topic: str) -> bool:
    """Whether the broker answers a metadata request for ``topic`` (a producer's or a consumer's) in time."""
    try:
        client.list_topics(topic, timeout=PROBE_TIMEOUT_SECONDS)
    except KafkaException:
        return False
    return True


class BrokerProbe:
    """Asks the broker whether it answers (broker_answers) on a thread of its own, one ask at a time.

    An ask waits up to PROBE_TIMEOUT_SECONDS for a broker that is away, and the bridge runs every sink and source
    it holds on one loop: asked there, a broker that is away would hold up all of them at each ask. The runner
    calls ``answer`` at each of its steps instead, and goes on with the ask's answer once it is in.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._asking: threading.Thread | None = None
        self._answer = False
        # False once the ask under way (or its answer not yet taken) is no longer about the present.
        self._wanted = True

    def answer(self, client: Any, topic: str) -> bool | None:
        """Whether the broker answered the last ask; None until it is in (an ask is started when none is under way)."""
        if self._asking is not None and self._asking.is_alive():
            return None
        if self._asking is not None and self._wanted:
            self._asking = None
            return self._answer
        self._wanted = True
        self._asking = threading.Thread(target=self._ask, args=(client, topic), name=self._name, daemon=True)
        self._asking.start()
        return None

    def forget(self) -> None:
        """What was asked about is settled otherwise: the next answer comes from an ask started after now."""
        self._wanted = False

    def wait(self) -> None:
        """Let an ask under way end (within its timeout): the client it uses is about to be closed."""
        if self._asking is not None:
            self._asking.join()

    def _ask(self, client: Any, topic: str) -> None:
        self._answer = broker_answers(client, topic)


@dataclass
class Batch:
    """A batch sent and not settled yet: the lease that holds it, where it starts and ends, by when it is settled."""

    lease_id: uuid.UUID
    start: int
    end: int
    count: int
    deadline: float


class SinkRunner:
    """One sink, run by one bridge process: a producer and the sink's consumer group."""

    def __init__(self, sink: KafkaSink) -> None:
        self.sink_id = sink.pk
        self.stream_id = sink.stream_id
        self.group_id = sink.group_id
        self.topic = sink.topic
        self.key_field = None if sink.key == KafkaKey.NONE else sink.key
        self.batch_size = sink.batch_size
        self.settings_version = sink.updated_at
        self.failures = 0
        self.retry_at = 0.0
        # Whether the broker answered once since the runner started (the sink is then "running").
        self.checked = False
        settings = conf.get()
        self.delivery_timeout = settings.kafka_delivery_timeout_seconds
        self._config: dict[str, Any] = {
            **kafka_client_config(sink),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": int(self.delivery_timeout * 1000),
            "error_cb": self._broker_error,
            # librdkafka's own lines go through logging, not straight to stderr.
            "logger": LIBRDKAFKA_LOGGER,
        }
        self._producer: Producer | None = None
        self._failed: list[str] = []
        self._out: Batch | None = None
        self._probe = BrokerProbe(f"kafka-sink-{self.sink_id}-probe")

    def _broker_error(self, error: KafkaError) -> None:
        # librdkafka's own reports (broker down, authentication): the delivery reports decide what is done.
        logger.debug("kafka sink %s: %s", self.sink_id, error)

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self._config)
        return self._producer

    def due(self) -> bool:
        return time.monotonic() >= self.retry_at

    def step(self) -> int:
        """Send the next batch, or take the reports of the one out; returns how many events were published."""
        if self._out is not None:
            return self._settle(0)
        if self.failures or not self.checked:
            answers = self._probe.answer(self.producer, self.topic)
            if answers is None:
                return 0  # the broker is being asked: a later step takes its answer
            if not answers:
                self._fail("the broker does not answer")
                return 0
        if not self.checked:
            self.checked = True
            kafka_sink_take_over(group_id=self.group_id)
            kafka_bridge_running(model=KafkaSink, pk=self.sink_id)
        lookup = {"pk": self.group_id}
        poll = consumer_group_poll_once(
            lookup=lookup,
            max_records=self.batch_size,
            # Long enough for the reports, in within the delivery timeout (over steps), then a commit.
            lease_seconds=self.delivery_timeout * 2 + 30,
        )
        if poll.lease is None:
            if self.failures:
                self._recovered()
            return 0
        records = orjson.loads(poll.records_json)
        out = Batch(
            lease_id=poll.lease.id,
            start=poll.committed_offset,
            end=poll.lease.end_offset,
            count=len(records),
            # The producer reports on every message within its delivery timeout (message.timeout.ms); a margin.
            deadline=time.monotonic() + self.delivery_timeout + 5,
        )
        if not self._publish(records):
            self._give_back(out)
            self._fail(self._failure())
            return 0
        self._out = out
        return self._settle(FLUSH_SLICE_SECONDS)

    def _settle(self, wait: float) -> int:
        """Take the batch's delivery reports, waiting ``wait`` at most; commit it once they are all in and good.

        Returns how many events were published: 0 while reports are still to come (a later step takes them).
        """
        out = self._out
        assert out is not None
        producer = self.producer
        if wait > 0:
            left = producer.flush(wait)
        else:
            producer.poll(0)
            left = len(producer)
        if left and time.monotonic() < out.deadline:
            return 0
        self._out = None
        if left:
            self._failed.append(f"{left} messages not acknowledged in time")
        if self._failed:
            self._give_back(out)
            self._fail(self._failure())
            return 0
        return self._commit(out)

    def _commit(self, out: Batch) -> int:
        try:
            consumer_group_commit(lookup={"pk": self.group_id}, lease_id=out.lease_id, offset=out.end)
        except Conflict as exc:
            # The lease lapsed while the batch was out (the loop held up longer than the lease): it is sent again.
            logger.warning(
                "kafka sink %s: batch published but not committed (%s); it will be sent again", self.sink_id, exc
            )
            return 0
        self.failures = 0
        kafka_sink_published(sink_id=self.sink_id, count=out.count, now=timezone.now())
        return out.count

    def _give_back(self, out: Batch) -> None:
        """End the batch's lease without moving the position: its range is handed out again by the next poll."""
        try:
            consumer_group_commit(lookup={"pk": self.group_id}, lease_id=out.lease_id, offset=out.start, release=True)
        except Conflict:
            pass  # the lease lapsed already: the range is handed out again either way

    def _failure(self) -> str:
        return "; ".join(sorted(set(self._failed)))[:1000] or "delivery failed"

    def _publish(self, records: list[dict[str, Any]]) -> bool:
        """Hand the records to the producer (the reports come later: _settle); False if it refused one."""
        self._failed = []
        producer = self.producer
        deadline = time.monotonic() + FLUSH_SLICE_SECONDS
        for record in records:
            key = record.get(self.key_field) if self.key_field else None
            headers = [
                ("event_id", record["event_id"].encode()),
                ("type", record["type"].encode()),
                ("offset", str(record["offset"]).encode()),
            ]
            value = orjson.dumps(record)
            while True:
                try:
                    producer.produce(
                        self.topic,
                        value=value,
                        key=key.encode() if isinstance(key, str) else None,
                        headers=headers,
                        on_delivery=self._delivered,
                    )
                    break
                except BufferError:
                    # The producer's queue is full (it holds this batch only, so hardly ever): let it send a
                    # little, then go on; a broker that takes nothing meanwhile is treated as one that is away.
                    if time.monotonic() >= deadline:
                        self._failed.append("the producer's queue is full")
                        return False
                    producer.poll(0.1)
                except KafkaException as exc:
                    self._failed.append(str(exc))
                    return False
        return True

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failed.append(f"{error.name()}: {error.str()}")

    def _fail(self, error: str) -> None:
        self.failures += 1
        delay = backoff_seconds(self.failures)
        self.retry_at = time.monotonic() + delay
        # A producer whose messages failed may hold a broken idempotence state: the next attempt starts afresh.
        self._drop_producer()
        logger.warning("kafka sink %s paused (%s); retrying in %.1f s", self.sink_id, error, delay)
        kafka_bridge_failed(model=KafkaSink, pk=self.sink_id, error=error, now=timezone.now())

    def _recovered(self) -> None:
        self.failures = 0
        kafka_bridge_running(model=KafkaSink, pk=self.sink_id)

    def _drop_producer(self) -> None:
        if self._producer is not None:
            self._producer.purge()
            self._producer.flush(0)
            self._producer = None

    def close(self) -> None:
        """Stop without waiting for the broker (at most for an ask under way).

        A batch still out is committed if every report is in and good, else given back: sent again from the
        committed position by whichever runner runs the sink next.
        """
        self._probe.wait()
        out, self._out = self._out, None
        delivered = False
        if out is not None and self._producer is not None:
            self._producer.poll(0)
            delivered = not len(self._producer) and not self._failed
        self._drop_producer()
        if out is not None:
            if delivered:
                self._commit(out)
            else:
                self._give_back(out)
