from __future__ import annotations

import time
from typing import Any

from celery import shared_task
from celery.signals import worker_ready

from eventflow import conf
from eventflow.audit import audit_retention_run
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


@shared_task(name="eventflow.audit_retention", acks_late=True, ignore_result=True, expires=3600)
def audit_retention() -> int:
    """Sent by beat hourly: delete audit rows older than EVENTFLOW_AUDIT_RETENTION_DAYS, a small chunk at a time.

    Safe to run twice (a second run finds nothing old); what one run leaves
    within its time budget, the next one takes.
    """
    return audit_retention_run(days=conf.get().audit_retention_days)
