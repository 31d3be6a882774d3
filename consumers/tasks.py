"""Celery entry points for webhook delivery. Thin: they take ids and call services."""

from __future__ import annotations

import logging

from celery import shared_task

from eventflow.celery_helpers import retried_on_database_error

from .selectors import webhooks_due
from .webhook_services import DELIVER_TASK, webhook_deliver, webhook_delivery_request, webhook_delivery_request_clear

logger = logging.getLogger(__name__)

DELIVER_BUDGET_SECONDS = 20.0
MAX_TASK_RETRIES = 5
# Deliveries (and the sweep that queues them) run on a queue of their own, served
# by a thread-pool worker: a slow endpoint holds one thread, never the processing
# workers or other endpoints.
WEBHOOK_QUEUE = "webhooks"


@shared_task(
    bind=True,
    name=DELIVER_TASK,
    queue=WEBHOOK_QUEUE,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=MAX_TASK_RETRIES,
)
def webhook_deliver_task(self, webhook_id: int) -> None:  # type: ignore[no-untyped-def]
    try:
        with retried_on_database_error(self, f"delivery for webhook {webhook_id}"):
            outcome = webhook_deliver(webhook_id=webhook_id, budget_seconds=DELIVER_BUDGET_SECONDS)
    finally:
        # Cleared when the run ends, so the next sweep can queue a fresh one.
        webhook_delivery_request_clear(webhook_id)
    if outcome.batches or outcome.dead_lettered:
        logger.info(
            "webhook %s: %s batches, %s events delivered, %s failed attempts, %s dead-lettered (%s)",
            webhook_id,
            outcome.batches,
            outcome.delivered,
            outcome.failed_attempts,
            outcome.dead_lettered,
            outcome.stopped_because,
        )
    if outcome.stopped_because == "budget":
        webhook_delivery_request(webhook_id)


@shared_task(name="consumers.webhooks_sweep", queue=WEBHOOK_QUEUE, acks_late=True, ignore_result=True, expires=10)
def webhooks_sweep() -> int:
    """Queue a delivery run for every active subscription with undelivered events and no backoff."""
    webhook_ids = webhooks_due()
    for webhook_id in webhook_ids:
        webhook_delivery_request(webhook_id)
    return len(webhook_ids)
