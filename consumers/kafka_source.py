"""A source's loop step: take a batch of a topic's messages into the stream through the intake.

Each message's value is one event envelope, as the native API takes it. The
batch goes through ``events_ingest`` (envelope check, schema where the stream
enforces it, idempotency, one INSERT committed to the inbox) and only then are
the Kafka offsets committed: a crash in between reads the messages again, and
idempotency makes the second reading a duplicate, never a second event.

A message without an ``event_id`` gets one from where it sits in Kafka
(``kafka:<topic>:<partition>:<offset>``, kafka_services.source_event_id), so
the same message is always the same event. A message the intake refuses (not
JSON, not an envelope, too large, against the schema) becomes a dead letter
(stage ``source``, written with the batch's events, before the offsets are
committed), is counted and shown on the source's ``recent_rejections``, and
the source moves past it: one bad message never holds its partition, and none
is lost. Replaying its letter takes it through the intake again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from django.db import transaction
from django.utils import timezone

from ingestion.services import REJECTED, events_ingest
from streams.selectors import stream_info

from .kafka_services import (
    Rejection,
    kafka_bridge_failed,
    kafka_bridge_running,
    kafka_client_config,
    kafka_source_consumed,
    kafka_source_rejected,
    message_event,
    source_event_id,
)
from .kafka_sink import LIBRDKAFKA_LOGGER, BrokerProbe, backoff_seconds
from .models import KafkaSource

logger = logging.getLogger(__name__)

# How much of a rejected message's value is kept for people to look at.
REJECTED_VALUE_CHARS = 2000
# Broker errors that mean "cannot reach it" (the consumer retries by itself; the source shows it is paused).
_UNREACHABLE = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE, KafkaError._AUTHENTICATION}


class SourceRunner:
    """One source, run by one bridge process: a Kafka consumer in the source's group."""

    def __init__(self, source: KafkaSource) -> None:
        self.source_id = source.pk
        self.stream_slug = source.stream.slug
        self.topic = source.topic
        self.batch_size = source.batch_size
        self.settings_version = source.updated_at
        self.failures = 0
        self.retry_at = 0.0
        self._broker_down: str | None = None
        # A fatal error leaves the consumer unusable: a broker that answers again does not make the source run.
        self._fatal = False
        self._paused_reported = False
        # The broker is asked whether it answers (_report_state): failed asks in a row, and when to ask next.
        self._probe = BrokerProbe(f"kafka-source-{self.source_id}-probe")
        self._probes = 0
        self._probe_at = 0.0
        # Set when the broker hands the consumer its partitions: the source is then "running".
        self._assigned = False
        self._consumer = Consumer(
            {
                **kafka_client_config(source),
                "group.id": source.consumer_group,
                "auto.offset.reset": source.start,
                # Offsets are committed by hand, after the intake committed the batch.
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                # A bridge that dies gives its partitions to another within seconds, not the default 45.
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 1_000,
                "error_cb": self._broker_error,
                # librdkafka's own lines go through logging, not straight to stderr.
                "logger": LIBRDKAFKA_LOGGER,
            }
        )
        self._consumer.subscribe([self.topic], on_assign=self._on_assign)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned = True

    def _broker_error(self, error: KafkaError) -> None:
        if error.code() in _UNREACHABLE or error.fatal():
            self._down(error)

    def _down(self, error: KafkaError) -> None:
        self._broker_down = f"{error.name()}: {error.str()}"
        self._fatal = self._fatal or error.fatal()

    def due(self) -> bool:
        return time.monotonic() >= self.retry_at

    def step(self) -> int:
        """Take what the consumer has ready (never waits); returns how many messages were handled."""
        messages = self._consumer.consume(num_messages=self.batch_size, timeout=0)
        if not messages:
            self._report_state()
            return 0
        handled = [message for message in messages if not self._is_error(message)]
        if not handled:
            return 0
        info = stream_info(self.stream_slug)
        if info is None or info.archived:
            # Nothing is committed: the messages wait in Kafka until the stream takes events again.
            self._fail("the stream is archived or gone", rewind=handled)
            return 0
        events: list[Any] = []
        origins: list[Message] = []
        rejections: list[Rejection] = []
        for message in handled:
            event, rejection = self._envelope(message)
            if rejection is not None:
                rejections.append(rejection)
            else:
                events.append(event)
                origins.append(message)
        with transaction.atomic():
            result = events_ingest(stream=info, raw_events=events, received_at=timezone.now()) if events else None
            if result is not None:
                for entry, message in zip(result.results, origins, strict=True):
                    if entry["status"] == REJECTED:
                        rejections.append(
                            Rejection(
                                topic=message.topic() or self.topic,
                                partition=message.partition() or 0,
                                offset=message.offset() or 0,
                                event_id=entry.get("event_id"),
                                errors=entry.get("errors", []),
                                value=_shown(message.value()),
                                raw=message.value(),
                            )
                        )
            if rejections:
                kafka_source_rejected(
                    source_id=self.source_id, stream_id=info.id, rejections=rejections, now=timezone.now()
                )
        # The events are in the inbox and the refused messages dead letters: now the broker may forget them.
        if not self._commit(handled):
            return 0
        accepted = result.accepted if result is not None else 0
        duplicates = result.duplicates if result is not None else 0
        kafka_source_consumed(
            source_id=self.source_id,
            consumed=len(handled),
            accepted=accepted,
            duplicates=duplicates,
            rejections=rejections,
            now=timezone.now(),
        )
        if rejections:
            logger.warning(
                "kafka source %s: %s messages rejected and skipped (first: %s:%s@%s %s)",
                self.source_id,
                len(rejections),
                rejections[0].topic,
                rejections[0].partition,
                rejections[0].offset,
                rejections[0].errors[:1],
            )
        self.failures = 0
        self._settled()
        return len(handled)

    def _envelope(self, message: Message) -> tuple[Any, Rejection | None]:
        topic, partition, offset = message.topic() or self.topic, message.partition() or 0, message.offset() or 0
        raw = message.value()
        event, errors = message_event(raw, event_id=source_event_id(topic=topic, partition=partition, offset=offset))
        if errors:
            return None, Rejection(
                topic=topic,
                partition=partition,
                offset=offset,
                event_id=None,
                errors=errors,
                value=_shown(raw),
                raw=raw,
            )
        return event, None

    def _is_error(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        if error.code() != KafkaError._PARTITION_EOF:
            logger.warning("kafka source %s: %s", self.source_id, error)
            if error.fatal() or error.code() in _UNREACHABLE:
                self._down(error)
        return True

    def _commit(self, messages: list[Message]) -> bool:
        ends: dict[tuple[str, int], int] = {}
        for message in messages:
            where = (message.topic() or self.topic, message.partition() or 0)
            ends[where] = max(ends.get(where, 0), (message.offset() or 0) + 1)
        try:
            self._consumer.commit(
                offsets=[TopicPartition(topic, partition, end) for (topic, partition), end in ends.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            # A rebalance took the partitions (or the broker went away): whoever reads them next reads the
            # batch again, and idempotency makes it duplicates.
            logger.warning(
                "kafka source %s: offsets not committed (%s); the batch will be read again", self.source_id, exc
            )
            self._fail(f"offsets not committed: {exc}")
            # The source is shown paused now; as after a connection error, it runs again once the broker answers
            # (or hands out the partitions): a source on an idle topic gets no message that would say so.
            self._paused_reported = True
            return False
        return True

    def _report_state(self) -> None:
        """Paused while the broker does not answer; running again once it hands out the partitions or answers.

        A connection error only says the broker may be away, and librdkafka hands errors over when the consumer
        is next polled, so some come after the broker is back: the broker is asked (off the bridge's loop, see
        BrokerProbe), and asked again while the source is paused. Nothing else would say it is back: a group
        outlives a short outage with its members, so no new assignment comes, and an idle topic brings no message.
        A failed offsets commit pauses the source too, and is asked about the same way.
        """
        if self._assigned:
            self._assigned = False
            self._running()
            return
        if (self._broker_down is None and not self._paused_reported) or time.monotonic() < self._probe_at:
            return
        if self._paused_reported and self._fatal:
            return
        answers = False if self._fatal else self._probe.answer(self._consumer, self.topic)
        if answers is None:
            return  # the broker is being asked: a later call takes its answer
        self._probes = 0 if answers else self._probes + 1
        self._probe_at = time.monotonic() + backoff_seconds(self._probes)
        if answers:
            self._broker_down = None
            if self._paused_reported:
                self._running()
        elif not self._paused_reported:
            self._paused_reported = True
            error = self._broker_down or "the broker does not answer"
            kafka_bridge_failed(model=KafkaSource, pk=self.source_id, error=error, now=timezone.now())

    def _running(self) -> None:
        self._settled()
        kafka_bridge_running(model=KafkaSource, pk=self.source_id)

    def _settled(self) -> None:
        """Nothing is wrong any more: an answer from the broker still to come is about what was."""
        self._broker_down = None
        self._paused_reported = False
        self._probe.forget()

    def _fail(self, error: str, rewind: list[Message] | None = None) -> None:
        self.failures += 1
        self.retry_at = time.monotonic() + backoff_seconds(self.failures)
        if rewind:
            firsts: dict[tuple[str, int], int] = {}
            for message in rewind:
                where = (message.topic() or self.topic, message.partition() or 0)
                firsts[where] = min(firsts.get(where, message.offset() or 0), message.offset() or 0)
            for (topic, partition), offset in firsts.items():
                self._consumer.seek(TopicPartition(topic, partition, offset))
        kafka_bridge_failed(model=KafkaSource, pk=self.source_id, error=error, now=timezone.now())

    def close(self) -> None:
        self._probe.wait()
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            logger.debug("kafka source %s: close: %s", self.source_id, exc)


def _shown(raw: bytes | str | None) -> str:
    if raw is None:
        return ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text[:REJECTED_VALUE_CHARS]
