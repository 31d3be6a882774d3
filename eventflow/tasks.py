from __future__ import annotations

import time

from celery import shared_task

from eventflow.health import WORKER_HEARTBEAT_KEY
from eventflow.redis import get_redis, guarded


@shared_task(name="eventflow.heartbeat", ignore_result=True, expires=30)
def heartbeat() -> None:
    """Sent by beat, run by a worker: /health reports the worker stale when these stop."""
    guarded("heartbeat", lambda: get_redis().set(WORKER_HEARTBEAT_KEY, f"{time.time():.3f}", ex=3600), None)
