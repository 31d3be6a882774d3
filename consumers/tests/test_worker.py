"""Webhook delivery by real Celery processes: beat's sweep queues runs, a thread-pool worker delivers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consumers.webhook_services import webhook_create
from tests.fixtures import conf_override
from tests.receiver import Answer, receiver
from tests.workers import Stack, running_stack, wait_until

from .conftest import append

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

ENV = {
    "EVENTFLOW_WEBHOOK_ALLOW_LOOPBACK": "1",
    "EVENTFLOW_WEBHOOK_SWEEP_SECONDS": "0.2",
    "EVENTFLOW_WEBHOOK_TOTAL_TIMEOUT_SECONDS": "8",
    "EVENTFLOW_WEBHOOK_BACKOFF_BASE_SECONDS": "0.2",
}


@pytest.fixture
def stack(transactional_db: Any, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, ENV) as stack:
        yield stack


def test_a_hanging_endpoint_never_slows_the_others(settings, stack, stream):
    conf_override(settings, webhook_allow_loopback=True)
    with receiver(lambda index, body: Answer(delay=30)) as hanging, receiver() as healthy:
        webhook_create(stream_id=stream.pk, url=hanging.url, batch_size=10)
        fast = webhook_create(stream_id=stream.pk, url=healthy.url, batch_size=10)
        stack.webhooks(concurrency=4)
        stack.beat()
        stack.wait_ready()

        append(stream, 40)
        wait_until(lambda: len(hanging.requests) >= 1, timeout=20, what="the hanging endpoint to be called")
        started = time.monotonic()
        wait_until(
            lambda: sum(len(r.offsets) for r in healthy.delivered) >= 40, timeout=10, what="the healthy endpoint"
        )
        # Delivered while the other endpoint held its attempt open (8 s before it times out).
        assert time.monotonic() - started < 6

        append(stream, 40)
        wait_until(lambda: sum(len(r.offsets) for r in healthy.delivered) >= 80, timeout=10, what="the next events")
        delivered = [offset for request in healthy.delivered for offset in request.offsets]
        assert delivered == list(range(80))
        for request in healthy.delivered:
            from eventflow_client import verify_webhook_request

            verify_webhook_request(secret=fast.secret, body=request.body, headers=request.headers)
        # Meanwhile the hanging endpoint still holds its first batch.
        assert [r.offsets for r in hanging.requests] == [list(range(10))]
