"""Review findings on webhook delivery and the Kafka bridge, as a customer depending on them would meet them:
interim (1xx) answers before the real one, receivers' answers holding NUL characters, a connect that hangs
longer than the whole delivery may take, and topic names Kafka refuses."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from consumers.models import ConsumerGroup, DeliveryAttempt, KafkaSink, KafkaSource, WebhookSubscription
from consumers.outbound import post_json
from consumers.webhook_services import webhook_create, webhook_deliver
from eventflow_client import verify_webhook_request
from streams.models import DeadLetter, Stream
from tests.fixtures import conf_override

from .conftest import append

WEBHOOKS = "/api/v1/streams/shop/webhooks"
SINKS = "/api/v1/streams/shop/kafka/sinks"
SOURCES = "/api/v1/streams/shop/kafka/sources"
# Nothing listens here: no runner is started in these tests.
NOWHERE = "127.0.0.1:9"


class RawReceiver:
    """A receiver that writes its answer byte for byte: what http.server can't send (interim answers, NULs)."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hook"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")[1:]
                headers = dict(line.split(": ", 1) for line in lines if ": " in line)
                length = int(headers.get("Content-Length", "0"))
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                self.bodies.append(body)
                self.headers.append(headers)
                conn.sendall(self.answer)

    def close(self) -> None:
        self.server.close()


@contextmanager
def raw_receiver(answer: bytes) -> Iterator[RawReceiver]:
    instance = RawReceiver(answer)
    try:
        yield instance
    finally:
        instance.close()


# --- interim answers -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "interim", [b"HTTP/1.1 102 Processing\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"]
)
def test_an_interim_answer_before_the_2xx_is_not_taken_for_the_answer(webhook_settings, stream: Stream, interim: bytes):
    # A receiver (or a proxy in front of it) may send 1xx answers before the final one; only 100 was skipped,
    # so a 102/103 ended the delivery as a refusal and the batch the receiver took became dead letters.
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    with raw_receiver(interim + interim + final) as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url)
        append(stream, 3)
        outcome = webhook_deliver(webhook_id=created.webhook.pk)
    assert outcome.delivered == 3 and outcome.dead_lettered == 0
    attempt = DeliveryAttempt.objects.get()
    assert (attempt.outcome, attempt.status_code) == ("success", 200)
    assert DeadLetter.objects.count() == 0
    assert ConsumerGroup.objects.get(pk=created.webhook.group_id).committed_offset == 3
    verify_webhook_request(secret=created.secret, body=hook.bodies[0], headers=hook.headers[0])


@pytest.mark.django_db
def test_an_unasked_protocol_switch_is_a_failure_not_a_success(webhook_settings, stream: Stream):
    with raw_receiver(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n") as hook:
        result = post_json(hook.url, b"{}", {})
    assert not result.ok and result.status_code == 101


@pytest.mark.django_db
def test_endless_interim_answers_end_as_a_retryable_failure(webhook_settings, stream: Stream):
    with raw_receiver(b"HTTP/1.1 102 Processing\r\n\r\n" * 5000) as hook:
        result = post_json(hook.url, b"{}", {})
    assert not result.ok and result.retryable and result.status_code is None


# --- what a receiver's answer may hold -------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "answer",
    [
        # A body with a NUL (a binary error page, say).
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 7\r\nConnection: close\r\n\r\nbad\x00one",
        # A status line with a NUL: http.client's error quotes it.
        b"HTTP/1.1 2\x0000 OK\r\nContent-Length: 0\r\n\r\n",
        # A redirect whose Location holds one.
        b"HTTP/1.1 302 Found\r\nLocation: http://x/\x00y\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ],
)
def test_a_nul_in_the_receivers_answer_is_recorded_not_a_crash(webhook_settings, stream: Stream, answer: bytes):
    # PostgreSQL refuses NUL in text: the attempt could not be written, the run crashed with the batch
    # leased, and no failure was ever counted (nor the subscription disabled, nor the batch dead-lettered).
    conf_override(webhook_settings, webhook_disable_after_failures=1)
    with raw_receiver(answer) as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url)
        append(stream, 2)
        outcome = webhook_deliver(webhook_id=created.webhook.pk)
    assert outcome.failed_attempts == 1 and outcome.stopped_because == "disabled"
    attempt = DeliveryAttempt.objects.get()
    assert attempt.outcome == "failure" and "\x00" not in attempt.error and attempt.error
    webhook = WebhookSubscription.objects.get()
    assert not webhook.is_active and "\x00" not in webhook.disabled_reason


# --- time bounds ------------------------------------------------------------------------------------


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A port whose connects hang: its listener's accept queue is full, so the kernel drops new SYNs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    time.sleep(0.2)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


@pytest.mark.django_db
def test_a_connect_that_hangs_ends_within_the_total_timeout(webhook_settings):
    # The total timeout is what bounds a delivery within its lease; it did not cover connecting, which
    # took connect_timeout per address (each of a host's addresses in turn, up to 60 s each).
    conf_override(webhook_settings, webhook_connect_timeout_seconds=5.0, webhook_total_timeout_seconds=0.5)
    with unanswered_port() as port:
        started = time.monotonic()
        result = post_json(f"http://127.0.0.1:{port}/hook", b"{}", {})
        took = time.monotonic() - started
    assert not result.ok and result.retryable and result.error == "timed out"
    assert took < 2.0


# --- Kafka topic names -------------------------------------------------------------------------------


@pytest.fixture
def shop(db: Any) -> Stream:
    from streams.services import stream_create

    return stream_create(slug="shop", name="Shop")


@pytest.fixture
def admin_api(client: Any, django_user_model: Any) -> Any:
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("topic", [".", ".."])
@pytest.mark.parametrize("url", [SINKS, SOURCES])
def test_topic_names_kafka_refuses_are_a_400_when_saved(shop: Stream, admin_api: Any, url: str, topic: str):
    # Kafka's rule: letters, digits, ".", "_" and "-", but never "." or ".." alone.
    answer = admin_api.post(url, {"topic": topic, "bootstrap_servers": NOWHERE}, content_type="application/json")
    assert answer.status_code == 400, answer.content
    assert "topic" in str(answer.json()["error"])
    assert not KafkaSink.objects.exists() and not KafkaSource.objects.exists()
    assert not ConsumerGroup.objects.exists()


@pytest.mark.django_db
def test_topic_names_with_dots_stay_allowed(shop: Stream, admin_api: Any):
    answer = admin_api.post(SINKS, {"topic": "...a", "bootstrap_servers": NOWHERE}, content_type="application/json")
    assert answer.status_code == 201, answer.content
