from __future__ import annotations

import time

from celery import shared_task

from eventflow.health import heartbeat_key
from eventflow.redis import get_redis, guarded


@shared_task(name="eventflow.heartbeat", ignore_result=True, expires=30)
def heartbeat() -> None:
    """Sent by beat, run by a worker: /health reports the worker stale when these stop."""
    guarded("heartbeat", lambda: get_redis().set(heartbeat_key(), f"{time.time():.3f}", ex=3600), None)
