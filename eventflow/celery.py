"""The one Celery app. Every Celery setting lives here."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery, signals

from eventflow import conf
from eventflow.metrics import CELERY_TASK_DURATION, CELERY_TASKS, mark_process_dead
from eventflow.request_context import celery_request_id_connect
from eventflow.tracing import celery_tracing_connect

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "eventflow.settings")

app = Celery("eventflow")
app.config_from_object("django.conf:settings", namespace="CELERY")

# The longest task may run for TASK_TIME_LIMIT seconds and the longest retry is
# scheduled RETRY_BACKOFF_MAX seconds ahead; Redis redelivers an unacked message
# after the visibility timeout, so it must be longer than both together.
TASK_SOFT_TIME_LIMIT = 60
TASK_TIME_LIMIT = 90
RETRY_BACKOFF_MAX = 600

app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    result_backend=None,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_soft_time_limit=TASK_SOFT_TIME_LIMIT,
    task_time_limit=TASK_TIME_LIMIT,
    broker_connection_retry_on_startup=True,
    broker_transport_options={
        "visibility_timeout": TASK_TIME_LIMIT + RETRY_BACKOFF_MAX + 300,
        "socket_timeout": 2,
        "socket_connect_timeout": 2,
        # A web request must never hang on a down broker: give up quickly and let
        # the periodic sweep pick the work up instead.
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.2,
    },
    task_publish_retry=True,
    task_publish_retry_policy={
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.2,
    },
    broker_pool_limit=10,
    worker_send_task_events=False,
    worker_hijack_root_logger=False,
    timezone="UTC",
    enable_utc=True,
    beat_schedule={
        "sweep-inbox": {
            "task": "ingestion.sweep_inbox",
            "schedule": conf.at_start().sweep_seconds,
        },
        "heartbeat": {"task": "eventflow.heartbeat", "schedule": 10.0},
        # API key changes made while Redis was unreachable, for processes that saw nothing of it.
        "api-key-cache-sync": {"task": "streams.api_key_cache_sync", "schedule": 5.0},
        "audit-retention": {"task": "eventflow.audit_retention", "schedule": 3600.0},
        # Hourly, so a past day's salt is gone within the hour after yesterday ends.
        "visitor-salts-prune": {"task": "ingestion.visitor_salts_prune", "schedule": 3600.0},
        # Unfinished erasures whose task message was lost or whose worker died.
        "erasures-sweep": {"task": "streams.erasures_sweep", "schedule": 60.0},
        # The log's partitions ahead, and retention of the log, dead letters, delivery attempts, rollups.
        "retention": {"task": "streams.retention", "schedule": conf.at_start().retention_interval_seconds},
        "sweep-webhooks": {
            "task": "consumers.webhooks_sweep",
            "schedule": conf.at_start().webhook_sweep_seconds,
        },
        "alerts-check": {
            "task": "analytics.alerts_check",
            "schedule": conf.at_start().alert_check_seconds,
        },
    },
)


# The id of the request that queued a task, in the task's logs and audit rows; and, when
# OTEL_EXPORTER_OTLP_ENDPOINT is set, tracing in each worker process.
celery_request_id_connect()
celery_tracing_connect()

app.autodiscover_tasks()


# --- metrics: each task's outcome and duration (eventflow/metrics.py) ---------------------------

_task_started: dict[str, float] = {}


@signals.task_prerun.connect
def _task_timer_start(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _task_started[task_id] = time.perf_counter()


@signals.task_postrun.connect
def _task_counted(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    started = _task_started.pop(task_id or "", None)
    name = getattr(task, "name", None) or "unknown"
    outcome = {"SUCCESS": "success", "RETRY": "retry", "FAILURE": "failure"}.get(state or "", "other")
    CELERY_TASKS.labels(name, outcome).inc()
    if started is not None:
        CELERY_TASK_DURATION.labels(name).observe(time.perf_counter() - started)


@signals.worker_process_shutdown.connect
def _task_process_gone(pid: int | None = None, **_: Any) -> None:
    mark_process_dead(pid or os.getpid())


@signals.worker_ready.connect
def _worker_metrics_start(**_: Any) -> None:
    """With METRICS_WORKER_PORT, the worker's main process serves its processes' metrics (a pod of its own)."""
    port = conf.get().metrics_worker_port
    if port:
        # Imported once Django's apps are loaded: the module reads models for the web's collectors.
        from eventflow.metrics_http import worker_metrics_serve

        worker_metrics_serve(port=port)
