"""Processing kicks from a serving process's background thread (ingestion/processing.py ``Kicker``)."""

from __future__ import annotations

import contextvars
import os
import threading
import time
from typing import Any

import pytest

from eventflow.redis import get_redis
from ingestion import processing
from ingestion.processing import Kicker, kick_marker
from tests.workers import wait_until

REQUEST = contextvars.ContextVar[str]("request", default="none")


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float, str]]:
    """Every processing request the kicker makes: (stream, when it began, the request in its context)."""
    made: list[tuple[int, float, str]] = []

    def request(stream_id: int) -> None:
        made.append((stream_id, time.monotonic(), REQUEST.get()))
        time.sleep(0.002)  # about a Redis round trip under load

    monkeypatch.setattr(processing, "processing_request", request)
    return made


@pytest.fixture
def kicker() -> Any:
    started = Kicker()
    started.start()
    yield started
    started.stop()


def test_before_it_is_started_a_kick_is_sent_in_the_callers_thread(sends: list[tuple[int, float, str]]) -> None:
    idle = Kicker()
    idle.kick(7)
    assert [stream for stream, _, _ in sends] == [7]
    assert idle.noted == 0


def test_kicks_noted_together_are_sent_once_and_each_after_it_was_noted(
    kicker: Kicker, sends: list[tuple[int, float, str]]
) -> None:
    noted: list[tuple[int, float]] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        for i in range(50):
            stream_id = 1 + (n + i) % 2
            at = time.monotonic()
            kicker.kick(stream_id)
            with lock:
                noted.append((stream_id, at))
            time.sleep(0.0002)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kicker.stop()

    assert kicker.noted == 400
    # Merged: far fewer Redis round trips than kicks.
    assert 2 <= len(sends) < 200, len(sends)
    # Nothing noted is left without a send that began after it (so after its COMMIT).
    for stream_id, at in noted:
        assert any(sent == stream_id and began >= at for sent, began, _ in sends), (stream_id, at)


def test_a_kick_runs_in_the_context_of_the_first_request_that_noted_it(
    kicker: Kicker, sends: list[tuple[int, float, str]]
) -> None:
    def request(name: str) -> None:
        REQUEST.set(name)
        kicker.kick(3)

    contextvars.copy_context().run(request, "req-1")
    wait_until(lambda: sends or None, timeout=5, what="the kick")
    assert sends[0][0] == 3 and sends[0][2] == "req-1"
    # The caller's own context is untouched.
    assert REQUEST.get() == "none"


def test_one_failing_kick_does_not_stop_the_others(kicker: Kicker, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[int] = []

    def request(stream_id: int) -> None:
        if stream_id == 1:
            raise RuntimeError("broker gone")
        sent.append(stream_id)

    monkeypatch.setattr(processing, "processing_request", request)
    kicker.kick(1)
    kicker.kick(2)
    wait_until(lambda: 2 in sent or None, timeout=5, what="the second stream's kick")
    kicker.kick(2)
    wait_until(lambda: sent.count(2) >= 2 or None, timeout=5, what="a later kick")


@pytest.mark.django_db
def test_a_started_kicker_sets_the_streams_marker_in_redis(kicker: Kicker) -> None:
    marker = kick_marker(424242)
    redis = get_redis()
    redis.delete(marker)
    try:
        kicker.kick(424242)
        wait_until(lambda: redis.exists(marker) or None, timeout=5, what="the kick marker")
        assert kicker.sent >= 1
    finally:
        redis.delete(marker)
        # The task it queued is for a stream that does not exist: take it off the queue.
        for message in redis.lrange("celery", 0, -1):
            raw = message if isinstance(message, bytes) else message.encode()
            if b"424242" in raw:
                redis.lrem("celery", 0, raw.decode())


def test_stop_sends_what_is_noted(sends: list[tuple[int, float, str]]) -> None:
    started = Kicker()
    started.start()
    for stream_id in (1, 2, 3):
        started.kick(stream_id)
    started.stop()
    assert sorted({stream for stream, _, _ in sends}) == [1, 2, 3]
    # Stopped, it sends in the caller's thread again.
    started.kick(9)
    assert sends[-1][0] == 9


def test_a_forked_child_gets_a_kicker_thread_of_its_own(kicker: Kicker, sends: list[tuple[int, float, str]]) -> None:
    pid = os.fork()
    if pid == 0:  # the child: one thread, none of the parent's
        ok = False
        try:
            kicker.after_fork()
            kicker.kick(11)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not any(stream == 11 for stream, _, _ in sends):
                time.sleep(0.01)
            ok = kicker.noted == 1 and any(stream == 11 for stream, _, _ in sends)
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_kicker_whose_thread_ended_sends_in_the_callers_thread(sends: list[tuple[int, float, str]]) -> None:
    ended = Kicker()
    ended.start()
    ended.stop()
    ended._thread = threading.Thread(target=lambda: None)  # a thread that is not alive
    ended.kick(4)
    assert [stream for stream, _, _ in sends] == [4] and ended.noted == 0
