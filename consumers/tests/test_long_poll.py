"""Long polls against a live server: woken by the log's notification, holding no database connection."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests
from django.db import connection

from consumers.notify import log_notifier
from consumers.selectors import Position
from consumers.services import consumer_group_create
from tests.workers import wait_until

from .conftest import append

pytestmark = pytest.mark.django_db(transaction=True)


def group_url(live_server: Any, name: str) -> str:
    return f"{live_server.url}/api/v1/streams/shop/consumer-groups/{name}"


def test_long_poll_returns_as_soon_as_an_append_commits(live_server, stream, secret_key):
    consumer_group_create(stream_id=stream.pk, name="billing", start=Position("latest"))
    result: dict[str, Any] = {}

    def long_poll() -> None:
        started = time.monotonic()
        response = requests.post(
            f"{group_url(live_server, 'billing')}/poll",
            json={"wait_ms": 20000, "max": 100},
            headers={"X-API-Key": secret_key},
            timeout=30,
        )
        result["elapsed"] = time.monotonic() - started
        result["body"] = response.json()

    thread = threading.Thread(target=long_poll)
    thread.start()
    wait_until(lambda: log_notifier().waiting() == 1, timeout=5, what="the poll to wait", interval=0.01)
    time.sleep(0.2)
    appended_at = time.monotonic()
    append(stream, 3)  # commits on this thread's connection
    thread.join(10)
    returned_after = time.monotonic() - appended_at
    assert [r["offset"] for r in result["body"]["records"]] == [0, 1, 2]
    # The poll may wait 20 s: an answer within seconds comes from the commit's notification.
    assert returned_after < 3.0, returned_after
    assert 0.2 < result["elapsed"] < 8


def test_long_poll_that_times_out_returns_empty(live_server, stream, secret_key):
    consumer_group_create(stream_id=stream.pk, name="billing", start=Position("latest"))
    started = time.monotonic()
    response = requests.post(
        f"{group_url(live_server, 'billing')}/poll",
        json={"wait_ms": 300},
        headers={"X-API-Key": secret_key},
        timeout=10,
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["records"] == [] and response.json()["idle_reason"] == "caught_up"
    assert 0.3 <= elapsed < 5


def _connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def test_waiting_polls_hold_no_database_connection(live_server, stream, secret_key):
    waiting = 60
    for i in range(waiting):
        consumer_group_create(stream_id=stream.pk, name=f"g{i}", start=Position("latest"))
    results: list[Any] = []

    def long_poll(name: str) -> None:
        response = requests.post(
            f"{group_url(live_server, name)}/poll",
            json={"wait_ms": 20000},
            headers={"X-API-Key": secret_key},
            timeout=30,
        )
        results.append(response.json())

    log_notifier().start()
    before = _connections()
    threads = [threading.Thread(target=long_poll, args=(f"g{i}",)) for i in range(waiting)]
    for thread in threads:
        thread.start()
    wait_until(lambda: log_notifier().waiting() == waiting, timeout=15, what="every poll to wait", interval=0.01)
    time.sleep(0.2)
    during = _connections()
    # One listener connection per process serves every waiting poll.
    assert during - before <= 3, (before, during)
    appended_at = time.monotonic()
    append(stream, 1)
    for thread in threads:
        thread.join(10)
    assert time.monotonic() - appended_at < 10
    assert len(results) == waiting
    assert all([r["offset"] for r in body["records"]] == [0] for body in results)


def test_a_waiting_member_is_woken_when_the_lease_holder_commits(live_server, stream, secret_key):
    consumer_group_create(stream_id=stream.pk, name="billing", start=Position("earliest"))
    append(stream, 10)
    headers = {"X-API-Key": secret_key}
    url = group_url(live_server, "billing")
    first = requests.post(f"{url}/poll", json={"max": 5, "lease_seconds": 60}, headers=headers, timeout=10).json()
    result: dict[str, Any] = {}

    def second_member() -> None:
        result["body"] = requests.post(
            f"{url}/poll", json={"max": 5, "wait_ms": 20000}, headers=headers, timeout=30
        ).json()

    thread = threading.Thread(target=second_member)
    thread.start()
    wait_until(lambda: log_notifier().waiting() == 1, timeout=5, what="the second member to wait", interval=0.01)
    time.sleep(0.2)
    committed_at = time.monotonic()
    done = requests.post(
        f"{url}/commit", json={"lease_id": first["lease"]["id"], "offset": 5}, headers=headers, timeout=10
    )
    assert done.status_code == 200
    thread.join(10)
    # Neither the 20 s wait nor the 60 s lease: the commit's notification woke it.
    assert time.monotonic() - committed_at < 3.0
    assert [r["offset"] for r in result["body"]["records"]] == [5, 6, 7, 8, 9]
