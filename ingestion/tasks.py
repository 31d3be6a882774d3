"""Celery entry points for processing. Thin: they take ids and call services."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_process_init
from django.utils import timezone

from eventflow.celery_helpers import retried_on_database_error

from .enrichment import user_agent_details
from .pipeline import stream_drain, streams_with_due_events
from .processing import PROCESS_TASK, processing_request, processing_request_clear
from .visitors import visitor_salts_prune as visitor_salts_prune_before

logger = logging.getLogger(__name__)

DRAIN_BUDGET_SECONDS = 20.0
MAX_TASK_RETRIES = 8


@worker_process_init.connect
def _warm_enrichment(**_: object) -> None:
    # The user-agent parser compiles its rules on first use (about 0.1 s): pay
    # that when the worker process starts rather than in its first batch.
    user_agent_details(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
    )


@shared_task(
    bind=True,
    name=PROCESS_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=MAX_TASK_RETRIES,
)
def process_stream(self, stream_id: int) -> None:  # type: ignore[no-untyped-def]
    # The request marker stays while the stream is being drained, so events
    # committed meanwhile queue no task (one that would only find the stream
    # busy). The drain clears it before each look for more due rows: what
    # commits earlier is seen by that look, what commits later queues a task.
    # A task that finds the stream busy leaves it: the drain holding the
    # stream clears it.
    # A database error rolls the batch back whole; the sweep also covers us if retries run out.
    with retried_on_database_error(self, f"processing stream {stream_id}"):
        outcome = stream_drain(
            stream_id=stream_id,
            budget_seconds=DRAIN_BUDGET_SECONDS,
            before_recheck=lambda: processing_request_clear(stream_id),
        )
    if outcome.fetched:
        logger.info(
            "stream %s: %s fetched, %s logged, %s duplicate, %s retrying, %s dead-lettered",
            stream_id,
            outcome.fetched,
            outcome.appended,
            outcome.duplicates,
            outcome.retried,
            outcome.dead_lettered,
        )
    if outcome.full:
        processing_request(stream_id)


@shared_task(name="ingestion.sweep_inbox", acks_late=True, ignore_result=True, expires=30)
def sweep_inbox() -> int:
    """Safety net: queue processing for every stream with due inbox rows no task has taken."""
    stream_ids = streams_with_due_events()
    for stream_id in stream_ids:
        processing_request(stream_id)
    return len(stream_ids)


@shared_task(name="ingestion.visitor_salts_prune", acks_late=True, ignore_result=True, expires=600)
def visitor_salts_prune() -> int:
    """Delete the tracker's visitor salts older than yesterday (UTC): a past day's visitors can't be followed."""
    return visitor_salts_prune_before(today=timezone.now().date())
