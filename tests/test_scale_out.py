"""Every tier scales out: two web servers, two processing workers and two webhook workers as
separate processes against one database and one Redis, and the invariants still hold.

Traffic goes to both web servers at once: batches and single events, every event sent to
both (the same event_id arriving at two servers at about the same time). Afterwards:

- nothing lost, nothing twice: every event a server acknowledged (202, ``accepted`` or
  ``duplicate``) is in its stream's log exactly once, and the log holds nothing else;
- each stream's offsets are 0, 1, 2, … without a hole;
- webhooks: delivery is at least once, and a second delivery happens only after a failed or
  abandoned attempt (a timeout, a 5xx or 429, a worker killed mid-POST: README, Webhooks).
  Here every answer is a quick 200 and no process dies, so the promise is exactly once and
  in order: each logged event reaches its stream's receiver once, in offset order, handed
  out once (``delivery_count`` 1), however the two webhook workers share the runs.

Celery beat stays one process: it only sends the periodic sweeps, and two would send each
twice (harmless, every sweep is safe to run twice, but not a tier that serves traffic).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from django.db import connection

from consumers.models import WebhookSubscription
from consumers.webhook_services import webhook_create
from streams.models import ApiKeyKind, Stream
from streams.services import api_key_create, stream_create
from tests.receiver import Receiver, receiver
from tests.workers import Stack, running_stack, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

ENV = {
    "EVENTFLOW_WEBHOOK_ALLOW_LOOPBACK": "1",
    "EVENTFLOW_WEBHOOK_SWEEP_SECONDS": "0.2",
}
STREAMS = ("north", "south")
BATCHES = 12  # a stream's batches, each sent to both servers
BATCH_SIZE = 40
SINGLES = 60  # a stream's single events, each sent to both servers
SETTLE_SECONDS = 45.0
# A public address, as the service requires of a URL outside development; replaced by the receiver's.
PUBLIC_URL = "http://93.184.215.14/hook"


@pytest.fixture
def stack(transactional_db: Any, tmp_path: Path) -> Iterator[Stack]:
    # transactional_db first: the processes are gone before the test database is flushed.
    with running_stack(tmp_path, ENV) as stack:
        yield stack


def _event(stream: str, n: int) -> dict[str, Any]:
    return {
        "event_id": f"{stream}-{n}",
        "type": ("page_view", "button_click", "login")[n % 3],
        "user_id": f"u{n % 17}",
        "payload": {"page": f"/p/{n % 9}"},
    }


class Traffic:
    """What the servers acknowledged, by stream; any other answer fails the test."""

    def __init__(self) -> None:
        self.acknowledged: dict[str, set[str]] = {slug: set() for slug in STREAMS}
        self.answers: Counter[str] = Counter()
        self._lock = threading.Lock()

    def batch(self, client: httpx.Client, slug: str, key: str, events: list[dict[str, Any]]) -> None:
        response = client.post(
            f"/api/v1/streams/{slug}/events/batch",
            content=orjson.dumps({"events": events}),
            headers={"X-API-Key": key, "Content-Type": "application/json"},
        )
        assert response.status_code == 202, response.text
        results = response.json()["results"]
        assert {r["status"] for r in results} <= {"accepted", "duplicate"}, results
        with self._lock:
            self.acknowledged[slug].update(r["event_id"] for r in results)
            self.answers.update(r["status"] for r in results)

    def single(self, client: httpx.Client, slug: str, key: str, event: dict[str, Any]) -> None:
        response = client.post(
            f"/api/v1/streams/{slug}/events",
            content=orjson.dumps(event),
            headers={"X-API-Key": key, "Content-Type": "application/json"},
        )
        assert response.status_code == 202, response.text
        with self._lock:
            self.acknowledged[slug].add(event["event_id"])
            self.answers["single"] += 1


def _log(stream: Stream) -> list[tuple[int, str]]:
    with connection.cursor() as cursor:
        cursor.execute('SELECT "offset", event_id FROM streams_log WHERE stream_id = %s ORDER BY "offset"', [stream.pk])
        return [(int(offset), event_id) for offset, event_id in cursor.fetchall()]


def _delivered(hook: Receiver) -> list[dict[str, Any]]:
    return [event for request in hook.delivered for event in request.json["events"]]


def test_two_of_every_tier_keep_the_invariants(stack: Stack) -> None:
    streams = {slug: stream_create(slug=slug, name=slug.title()) for slug in STREAMS}
    keys = {slug: api_key_create(kind=ApiKeyKind.INGEST, streams=[s]).raw_key for slug, s in streams.items()}
    with receiver() as north_hook, receiver() as south_hook:
        hooks = {"north": north_hook, "south": south_hook}
        for slug, hook in hooks.items():
            webhook = webhook_create(stream_id=streams[slug].pk, url=PUBLIC_URL, batch_size=50).webhook
            # The receivers listen on loopback, which only the children allow (ENV).
            WebhookSubscription.objects.filter(pk=webhook.pk).update(url=hook.url)
        urls = []
        for _ in range(2):
            stack.web(workers=1, threads=4)
            urls.append(stack.web_url)
        stack.worker()
        stack.worker()
        stack.webhooks(concurrency=2)
        stack.webhooks(concurrency=2)
        stack.beat()
        stack.wait_ready()

        traffic = Traffic()
        clients = [httpx.Client(base_url=url, timeout=30, trust_env=False) for url in urls]
        jobs: list[tuple[Any, ...]] = []
        for slug in STREAMS:
            numbers = itertools.count()
            for _ in range(BATCHES):
                events = [_event(slug, next(numbers)) for _ in range(BATCH_SIZE)]
                # The same batch to both servers; the second copy overlaps the next batch by half.
                jobs += [(traffic.batch, clients[0], slug, keys[slug], events)]
                jobs += [(traffic.batch, clients[1], slug, keys[slug], events[BATCH_SIZE // 2 :])]
            singles = [_event(slug, next(numbers)) for _ in range(SINGLES)]
            jobs += [(traffic.single, client, slug, keys[slug], e) for e in singles for client in clients]
        # Interleave the streams and the servers' copies, several requests in flight.
        random.Random(12).shuffle(jobs)
        try:
            with ThreadPoolExecutor(max_workers=8) as pool:
                for future in [pool.submit(job[0], *job[1:]) for job in jobs]:
                    future.result()
        finally:
            for client in clients:
                client.close()

        sent = {slug: BATCHES * BATCH_SIZE + SINGLES for slug in STREAMS}
        assert {slug: len(ids) for slug, ids in traffic.acknowledged.items()} == sent
        # Both servers took part, and the second copies were told they were duplicates where
        # the first was already in.
        assert traffic.answers["accepted"] >= sum(sent.values()) - SINGLES * len(STREAMS)
        assert traffic.answers["duplicate"] > 0

        def settled() -> bool:
            return all(
                len(_log(stream)) >= sent[slug] and len(_delivered(hooks[slug])) >= sent[slug]
                for slug, stream in streams.items()
            )

        wait_until(settled, timeout=SETTLE_SECONDS, what="every event in the log and delivered")

        for slug, stream in streams.items():
            log = _log(stream)
            # Gapless offsets, each acknowledged event exactly once, nothing else.
            assert [offset for offset, _ in log] == list(range(len(log)))
            assert Counter(event_id for _, event_id in log) == Counter(traffic.acknowledged[slug])
            # Exactly once, in offset order, each record handed out once.
            delivered = _delivered(hooks[slug])
            assert [e["offset"] for e in delivered] == list(range(len(log))), slug
            assert [e["event_id"] for e in delivered] == [event_id for _, event_id in log]
            assert {e["delivery_count"] for e in delivered} == {1}
            assert all(r.json["stream"] == slug for r in hooks[slug].requests)

        # Every process of each doubled tier did some of the work.
        for name, marker in (("worker", "ingestion.process_stream"), ("webhooks", "consumers.webhook_deliver")):
            busy = [child.name for child in stack.children if child.name.startswith(name) and marker in child.log()]
            assert len(busy) == 2, (name, busy)
        # Nothing more arrives later: a duplicate delivery would come after the counts were met.
        # A quiet period is the only way to see that nothing happens: ten webhook sweeps long.
        before = {slug: len(hook.requests) for slug, hook in hooks.items()}
        time.sleep(2.0)
        assert {slug: len(hook.requests) for slug, hook in hooks.items()} == before
