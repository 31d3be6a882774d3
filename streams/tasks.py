"""Celery's door onto the stream services: erasures."""

from __future__ import annotations

import logging

from celery import shared_task

from eventflow.celery_helpers import retried_on_database_error

from .auth import api_key_cache_sync
from .erasure import erasure_queue, erasure_run, erasures_stale
from .models import ErasureStatus
from .retention import RetentionFailed, retention_run

logger = logging.getLogger(__name__)

MAX_TASK_RETRIES = 8


@shared_task(
    bind=True,
    name="streams.erasure_run",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=MAX_TASK_RETRIES,
)
def erasure_run_task(self, erasure_id: int) -> None:  # type: ignore[no-untyped-def]
    """Run an erasure for a while; queue it again while unfinished. Safe to run twice."""
    # Each chunk is its own transaction: a retry goes on from the last committed one.
    with retried_on_database_error(self, f"erasure {erasure_id}"):
        erasure = erasure_run(erasure_id=erasure_id)
    if erasure is not None and erasure.status != ErasureStatus.DONE:
        erasure_queue(erasure_id)


@shared_task(name="streams.erasures_sweep", acks_late=True, ignore_result=True, expires=60)
def erasures_sweep() -> int:
    """Safety net: queue again every unfinished erasure that nothing has moved for a while."""
    stale = erasures_stale()
    for erasure_id in stale:
        erasure_queue(erasure_id)
    return len(stale)


@shared_task(name="streams.api_key_cache_sync", ignore_result=True, expires=10, soft_time_limit=20, time_limit=30)
def api_key_cache_sync_task() -> int:
    """Sent by beat: API key changes Redis missed while unreachable reach it within seconds of its return,
    even when no web process that saw the outage handles a request. Safe to run twice; no retry (beat sends
    the next run)."""
    return api_key_cache_sync()


# A hard limit of its own: the app's (90 s) would kill the process long before the run's budget
# (300 s) or its soft limit end it cleanly.
@shared_task(
    name="streams.retention", acks_late=True, ignore_result=True, expires=3600, soft_time_limit=900, time_limit=960
)
def retention() -> None:
    """Sent by beat (EVENTFLOW_RETENTION_INTERVAL_SECONDS): the log's partitions ahead, then expiry (streams/retention.py).

    Safe to run twice (one run at a time holds an advisory lock; a second finds
    it taken and returns); what a run leaves within its budget, the next takes.
    A part that failed did not stop the others; the task then fails, so that
    eventflow_celery_tasks_total{outcome="failure"} and the worker's log show it.
    No retry: beat sends the next run.
    """
    outcome = retention_run()
    if outcome.failed:
        raise RetentionFailed(outcome.failed)
