"""A Kafka source on an idle topic through a short outage (Tansu behind a TCP proxy): paused while the broker
can't be reached, running again once it answers, with no message needed to show it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from consumers.kafka_bridge import Bridge
from consumers.kafka_services import kafka_source_create
from consumers.models import KafkaBridgeStatus, KafkaSource, KafkaSourceStart
from streams.models import Stream
from tests.fixtures import conf_override

from .kafka_broker import TansuBroker, kafka_settings, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# A consumer joining a group on Tansu waits a few seconds for it to settle; a rejoin up to about 10 s.
GROUP_SETTLE_SECONDS = 45
# Long enough for a source to ask the broker several times (kafka_settings: at most 1 s apart, each ask up to
# 2 s), and for the errors librdkafka queued during the outage to be handed over after it.
HOLD_SECONDS = 5.0


class Cable:
    """A TCP proxy the broker advertises in place of its own port. Cutting it is an outage the broker does not
    see: the source's group keeps its member, as a real broker's does through a short outage, so no new
    assignment comes when it ends. (Stopping Tansu would not do: it comes back empty, and the group is joined
    anew.)"""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.target = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._connected = threading.Event()

    def connect(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        # accept() wakes up this often to see whether the cable was cut.
        listener.settimeout(0.05)
        self._connected.set()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self._connected.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while self._connected.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                client.settimeout(None)
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target))
                except OSError:
                    client.close()
                    continue
                with self._lock:
                    self._sockets += [client, upstream]
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    _shut(source)
    _shut(sink)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


@pytest.fixture
def cable() -> Iterator[Cable]:
    one = Cable()
    one.connect()
    yield one
    one.cut()


@pytest.fixture
def broker(tmp_path: Path, cable: Cable) -> Iterator[TansuBroker]:
    one = TansuBroker(tmp_path, advertised_port=cable.port)
    cable.target = one.port
    one.start()
    yield one
    one.stop()


def run_bridge(stop: threading.Event) -> None:
    try:
        Bridge().run(stop)
    finally:
        connection.close()


def status_of(source: KafkaSource) -> str:
    return KafkaSource.objects.values_list("status", flat=True).get(pk=source.pk)


def kafka_health(client: Client) -> str:
    return str(client.get("/health").json()["checks"]["kafka"]["status"])


def source_up(client: Client, source: KafkaSource, stream: Stream) -> str:
    metrics = client.get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken").content.decode()
    prefix = f'eventflow_kafka_source_up{{source="{source.pk}",stream="{stream.slug}",topic="idle"}} '
    return next(line.removeprefix(prefix) for line in metrics.splitlines() if line.startswith(prefix))


def holds(source: KafkaSource, client: Client, status: str, health: str) -> None:
    """The source keeps ``status``, and /health says ``health``, for HOLD_SECONDS."""
    until = time.monotonic() + HOLD_SECONDS
    while time.monotonic() < until:
        assert status_of(source) == status
        assert kafka_health(client) == health
        time.sleep(0.1)


def test_an_idle_source_is_paused_through_an_outage_and_runs_again_after_it_without_a_message(
    stream: Stream, broker: TansuBroker, cable: Cable, client: Client, settings: Any
) -> None:
    conf_override(settings, metrics_token="t0ken", **kafka_settings())
    broker.create_topic("idle", partitions=1)
    source = kafka_source_create(
        stream_id=stream.pk,
        stream_slug=stream.slug,
        topic="idle",
        start=KafkaSourceStart.EARLIEST,
        bootstrap_servers=broker.bootstrap,
    )
    stop = threading.Event()
    thread = threading.Thread(target=run_bridge, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: status_of(source) == KafkaBridgeStatus.RUNNING,
            timeout=GROUP_SETTLE_SECONDS,
            what="the source to take its partitions",
        )

        cable.cut()
        wait_for(lambda: status_of(source) == KafkaBridgeStatus.PAUSED, timeout=30, what="the source to pause")
        # Paused for as long as the broker can't be reached, however often the source asks it.
        holds(source, client, KafkaBridgeStatus.PAUSED, "paused")
        assert source_up(client, source, stream) == "0.0"

        # The broker answers again; nothing is ever written to the topic.
        cable.connect()
        wait_for(
            lambda: status_of(source) == KafkaBridgeStatus.RUNNING,
            timeout=GROUP_SETTLE_SECONDS,
            what="the source to run again after the outage",
        )
        wait_for(
            lambda: source_up(client, source, stream) == "1.0" and kafka_health(client) == "ok",
            timeout=10,
            what="/metrics and /health to say it runs",
        )
        # The outage's errors, handed over late, do not pause it again.
        holds(source, client, KafkaBridgeStatus.RUNNING, "ok")
    finally:
        stop.set()
        thread.join(30)
    source.refresh_from_db()
    assert source.consumed == 0
    assert source.errors >= 1 and source.last_error
