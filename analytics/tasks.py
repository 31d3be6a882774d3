"""Celery entry points for alert rules. Thin: they take ids and call analytics/alerts.py."""

from __future__ import annotations

import logging

from celery import shared_task

from consumers.tasks import WEBHOOK_QUEUE
from eventflow.celery_helpers import retried_on_database_error

from .alerts import DELIVER_TASK, alert_deliver, alerts_check

logger = logging.getLogger(__name__)

MAX_TASK_RETRIES = 8


# On the webhooks' queue, served by the thread-pool delivery worker: a slow URL holds one
# thread there, never a processing worker.
@shared_task(
    bind=True,
    name=DELIVER_TASK,
    queue=WEBHOOK_QUEUE,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=MAX_TASK_RETRIES,
    soft_time_limit=60,
    time_limit=90,
)
def alert_deliver_task(self, alert_id: int) -> None:  # type: ignore[no-untyped-def]
    with retried_on_database_error(self, f"delivery of alert {alert_id}"):
        delay = alert_deliver(alert_id=alert_id)
    if delay is not None:
        # The attempt count lives on the alert (bounded by WEBHOOK_MAX_ATTEMPTS); this only schedules.
        raise self.retry(countdown=delay, max_retries=None)


@shared_task(
    name="analytics.alerts_check",
    acks_late=True,
    ignore_result=True,
    expires=30,
    soft_time_limit=60,
    time_limit=90,
)
def alerts_check_task() -> None:
    outcome = alerts_check()
    if outcome.absence_fired or outcome.deliveries_requeued:
        logger.info(
            "alerts: %s absence alerts fired, %s deliveries queued again",
            outcome.absence_fired,
            outcome.deliveries_requeued,
        )
