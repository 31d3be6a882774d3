from __future__ import annotations

import time
from typing import Any

from celery import shared_task
from celery.signals import worker_ready

from eventflow.health import heartbeat_key
from eventflow.redis import get_redis, guarded


def heartbeat_record() -> None:
    guarded("heartbeat", lambda: get_redis().set(heartbeat_key(), f"{time.time():.3f}", ex=3600), None)


@shared_task(name="eventflow.heartbeat", ignore_result=True, expires=30)
def heartbeat() -> None:
    """Sent by beat, run by a worker: /health reports the worker stale when these stop."""
    heartbeat_record()


@worker_ready.connect
def _heartbeat_on_start(**_: Any) -> None:
    # /health shows the worker as up as soon as it can take tasks, not at beat's first tick.
    heartbeat_record()
