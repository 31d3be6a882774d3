"""The Python client against a live server: crashes, competing members, handler failures."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from consumers.models import ConsumerGroup
from consumers.selectors import Position
from consumers.services import consumer_group_create
from eventflow_client import Consumer, EventFlowError
from launcher.devservices import BASE_DIR

from .conftest import append

pytestmark = pytest.mark.django_db(transaction=True)

CRASHING_CONSUMER = """
import sys, time
from eventflow_client import Consumer

def handle(records):
    print("GOT", ",".join(str(r["offset"]) for r in records), flush=True)
    time.sleep(60)  # killed here, between poll and commit

Consumer(sys.argv[1], stream="shop", group="billing", api_key=sys.argv[2], max_records=4, lease_seconds=1).run(handle)
"""


def test_a_crash_between_poll_and_commit_redelivers_after_the_lease(live_server, stream, secret_key):
    consumer_group_create(stream_id=stream.pk, name="billing", start=Position("earliest"))
    append(stream, 6)
    process = subprocess.Popen(
        [sys.executable, "-c", CRASHING_CONSUMER, live_server.url, secret_key],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == "GOT 0,1,2,3", line
        process.kill()
        process.wait(5)
        killed_at = time.monotonic()
    finally:
        if process.poll() is None:
            process.kill()
    batches: list[tuple[float, list[tuple[int, int]]]] = []
    stop = threading.Event()

    def handle(records: list[dict[str, Any]]) -> None:
        batches.append((time.monotonic() - killed_at, [(r["offset"], r["delivery_count"]) for r in records]))
        if sum(len(b) for _, b in batches) >= 6:
            stop.set()

    with Consumer(
        live_server.url, stream="shop", group="billing", api_key=secret_key, max_records=4, wait_ms=3000
    ) as survivor:
        survivor.run(handle, stop=stop)
    # The crashed member's records come again, counted twice, once its 1 s lease is over.
    first_after, first_records = batches[0]
    assert first_records == [(0, 2), (1, 2), (2, 2), (3, 2)]
    assert 0.5 < first_after < 6.0
    assert batches[1][1] == [(4, 1), (5, 1)]
    group = ConsumerGroup.objects.get(name="billing")
    assert group.committed_offset == 6


def test_members_never_hold_the_same_records(live_server, stream, secret_key):
    consumer_group_create(stream_id=stream.pk, name="billing", start=Position("earliest"))
    total = 60
    append(stream, total)
    handled: list[tuple[int, str]] = []
    holding: list[str] = []
    overlaps: list[tuple[str, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def member(name: str) -> None:
        def handle(records: list[dict[str, Any]]) -> None:
            with lock:
                if holding:
                    overlaps.append((holding[0], name))
                holding.append(name)
            time.sleep(0.005)
            with lock:
                holding.remove(name)
                handled.extend((r["offset"], name) for r in records)
                if len(handled) >= total:
                    stop.set()

        with Consumer(
            live_server.url, stream="shop", group="billing", api_key=secret_key, max_records=5, wait_ms=2000
        ) as consumer:
            consumer.run(handle, stop=stop)

    members = [threading.Thread(target=member, args=(f"m{i}",)) for i in range(4)]
    for thread in members:
        thread.start()
    for thread in members:
        thread.join(30)
    offsets = [offset for offset, _ in handled]
    assert sorted(offsets) == list(range(total)), "every record exactly once"
    assert offsets == list(range(total)), "and in log order"
    assert overlaps == []
    assert len({name for _, name in handled}) > 1, "the work was shared"


def test_handler_failures_are_retried_with_a_higher_delivery_count(live_server, stream, secret_key):
    consumer_group_create(stream_id=stream.pk, name="billing", start=Position("earliest"))
    append(stream, 3)
    seen: list[list[tuple[int, int]]] = []
    stop = threading.Event()

    def flaky(records: list[dict[str, Any]]) -> None:
        seen.append([(r["offset"], r["delivery_count"]) for r in records])
        if len(seen) < 3:
            raise RuntimeError("downstream unavailable")
        stop.set()

    started = time.monotonic()
    with Consumer(
        live_server.url,
        stream="shop",
        group="billing",
        api_key=secret_key,
        lease_seconds=60,
        wait_ms=1000,
        backoff_initial=0.05,
    ) as consumer:
        consumer.run(flaky, stop=stop)
    # The lease is given back on failure: no wait for its 60 s.
    assert time.monotonic() - started < 15
    assert seen == [[(0, 1), (1, 1), (2, 1)], [(0, 2), (1, 2), (2, 2)], [(0, 3), (1, 3), (2, 3)]]
    assert ConsumerGroup.objects.get(name="billing").committed_offset == 3


def test_client_errors_are_raised(live_server, stream, secret_key):
    with Consumer(live_server.url, stream="shop", group="nope", api_key=secret_key) as consumer:
        with pytest.raises(EventFlowError) as missing:
            consumer.run(lambda records: None)
    assert missing.value.status == 404 and missing.value.code == "consumer_group_not_found"
    with Consumer(live_server.url, stream="shop", group="nope", api_key="ef_secret_wrong") as consumer:
        with pytest.raises(EventFlowError) as bad_key:
            consumer.poll()
    assert bad_key.value.status == 401
