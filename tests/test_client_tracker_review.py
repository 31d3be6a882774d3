"""The Python consumer client against a live server, through a proxy that can fail like a network does.

The proxy (a real HTTP hop, like a load balancer) forwards to the live server; it can be "down" (it closes
every connection without an answer) or cut an answer short (it sends the headers and half the body, then
hangs up), as a restarting server or a dropped connection does.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from consumers.models import ConsumerGroup
from consumers.notify import log_notifier
from consumers.selectors import Position
from consumers.services import consumer_group_create
from consumers.tests.conftest import append
from eventflow.celery import app as celery_app
from eventflow_client import Consumer
from streams.models import ApiKeyKind, Stream
from streams.services import api_key_create

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module", autouse=True)
def _log_listener_stops(django_db_setup: Any) -> Iterator[None]:
    # Long polls start the process's LISTEN connection; it must be gone before the test database is dropped.
    yield
    log_notifier().stop()


@pytest.fixture(autouse=True)
def _tasks_run_in_process() -> Iterator[None]:
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def secret_key(stream: Stream) -> str:
    return api_key_create(kind=ApiKeyKind.SECRET, streams=[stream]).raw_key


class FaultyProxy:
    """Forwards HTTP to the live server; ``down`` answers nothing, ``cut`` names the actions
    (``poll``, ``commit``) whose next answer is cut short."""

    def __init__(self, upstream: str) -> None:
        self.down = False
        self.cut: set[str] = set()
        self.forwarded: list[str] = []
        target = urlsplit(upstream)
        host, port = target.hostname or "127.0.0.1", target.port
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.down:
                    self.close_connection = True
                    return
                action = self.path.rstrip("/").rsplit("/", 1)[-1]
                upstream_conn = http.client.HTTPConnection(host, port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in {"connection", "host"}}
                upstream_conn.request("POST", self.path, body=body, headers=headers)
                answer = upstream_conn.getresponse()
                content = answer.read()
                upstream_conn.close()
                proxy.forwarded.append(action)
                cut = action in proxy.cut
                proxy.cut.discard(action)
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in {"content-length", "connection", "transfer-encoding", "date", "server"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                if cut:
                    self.send_header("Connection", "close")
                self.end_headers()
                if cut:
                    self.wfile.write(content[: len(content) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(live_server: Any) -> Iterator[FaultyProxy]:
    served = FaultyProxy(live_server.url)
    yield served
    served.close()


def test_stop_ends_the_loop_while_the_server_is_down_at_commit(proxy, stream, secret_key):
    """Before: a commit was retried with time.sleep and never looked at ``stop``, so a consumer
    whose server went away after a poll could not be stopped (run() never returned)."""
    consumer_group_create(stream_id=stream.pk, name="billing", start=Position("earliest"))
    append(stream, 3)
    stop = threading.Event()
    handled: list[int] = []

    def handle(records: list[dict[str, Any]]) -> None:
        handled.extend(r["offset"] for r in records)
        proxy.down = True  # the server goes away before the commit
        stop.set()  # and the program is asked to stop (SIGTERM handler, shutdown)

    consumer = Consumer(
        proxy.url, stream="shop", group="billing", api_key=secret_key, wait_ms=500, backoff_initial=0.05
    )
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(consumer.run(handle, stop=stop)), daemon=True)
    runner.start()
    runner.join(8)
    stuck = runner.is_alive()
    proxy.down = False  # let a stuck loop finish, so the test leaves no thread behind
    runner.join(30)
    consumer.close()
    assert not stuck, "run() kept retrying the commit after stop was set"
    assert handled == [0, 1, 2]
    assert result == [0], "nothing was committed: the batch comes again once its lease ends"
    assert ConsumerGroup.objects.get(name="billing").committed_offset == 0


def test_a_poll_answer_cut_short_is_retried_not_raised(proxy, stream, secret_key):
    """Before: the body was read with urllib3 directly, so a connection dropped mid-answer raised
    urllib3's ProtocolError out of run(), which the loop neither retried nor documented."""
    consumer_group_create(stream_id=stream.pk, name="billing", start=Position("earliest"))
    append(stream, 4)
    proxy.cut.add("poll")
    stop = threading.Event()
    seen: list[tuple[int, int]] = []

    def handle(records: list[dict[str, Any]]) -> None:
        seen.extend((r["offset"], r["delivery_count"]) for r in records)
        if len(seen) >= 4:
            stop.set()

    started = time.monotonic()
    with Consumer(
        proxy.url,
        stream="shop",
        group="billing",
        api_key=secret_key,
        lease_seconds=1,
        wait_ms=3000,
        backoff_initial=0.05,
    ) as consumer:
        assert consumer.run(handle, stop=stop) == 1
    # The lost answer's lease expired on the server; its records came again, counted twice.
    assert seen == [(0, 2), (1, 2), (2, 2), (3, 2)]
    assert time.monotonic() - started < 15
    assert ConsumerGroup.objects.get(name="billing").committed_offset == 4


def test_a_commit_answer_cut_short_is_retried_and_commits_once(proxy, stream, secret_key):
    """A commit whose answer is lost is repeated with the same lease and offset: harmless, committed once."""
    consumer_group_create(stream_id=stream.pk, name="billing", start=Position("earliest"))
    append(stream, 2)
    proxy.cut.add("commit")
    stop = threading.Event()
    seen: list[int] = []

    def handle(records: list[dict[str, Any]]) -> None:
        seen.extend(r["offset"] for r in records)
        stop.set()

    with Consumer(
        proxy.url, stream="shop", group="billing", api_key=secret_key, wait_ms=500, backoff_initial=0.05
    ) as consumer:
        assert consumer.run(handle, stop=stop) == 1
    assert seen == [0, 1]
    assert proxy.forwarded.count("commit") == 2
    assert ConsumerGroup.objects.get(name="billing").committed_offset == 2


@pytest.mark.parametrize("credentials", [{"api_key": ""}, {"token": ""}, {"api_key": "", "token": ""}])
def test_an_empty_key_or_token_is_refused_at_once(credentials):
    """Before: ``api_key=os.environ.get("SECRET", "")`` with SECRET unset passed the check and sent
    ``Authorization: Bearer None``, so the first poll failed with a puzzling 401."""
    with pytest.raises(ValueError, match="api_key"):
        Consumer("http://127.0.0.1:1", stream="shop", group="billing", **credentials)
