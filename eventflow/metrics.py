"""Prometheus metrics: what the processes count, what /metrics reads at scrape time, and who may read it.

Counters and histograms are written by the process that sees the thing
happen (a gunicorn worker, a Celery worker process). With
PROMETHEUS_MULTIPROC_DIR set (``python -m eventflow up`` sets it), each
process writes its values to memory-mapped files there and /metrics adds
them up, so the answer does not depend on which gunicorn worker took the
scrape. Without it (tests, ``manage.py runserver``) values live in the
process.

What the database or Redis already knows (inbox depth and age, consumer lag,
disabled webhooks, the worker's heartbeat) is read when Prometheus scrapes,
by the collectors below, each under a short statement timeout, never counted
on the hot paths.

The hot paths pay one increment per request or per batch and metric, never
per event: a histogram of a batch's latencies is added bucket by bucket
(``observe_many``).
"""

from __future__ import annotations

import bisect
import logging
import os
import socket
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, values
from prometheus_client import multiprocess as _multiprocess

from eventflow import conf

logger = logging.getLogger(__name__)

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


_HOST = socket.gethostname()
_identity: tuple[int, str] = (0, "")


def process_identifier() -> str:
    """The name of this process's files: host and pid, since containers sharing the directory all have a pid 1.

    prometheus-client asks on every write (to notice a fork), so the answer is kept per pid.
    """
    global _identity
    pid = os.getpid()
    if _identity[0] != pid:
        _identity = (pid, f"{_HOST}-{pid}")
    return _identity[1]


if conf.at_start().prometheus_multiproc_dir:
    # Before any metric is made: each value is then a memory-mapped file named by process_identifier().
    values.ValueClass = values.MultiProcessValue(process_identifier)


def mark_process_dead(pid: int) -> None:
    """Drop a finished process's live gauges (gunicorn's child_exit, Celery's worker_process_shutdown)."""
    path = conf.at_start().prometheus_multiproc_dir
    if path:
        _multiprocess.mark_process_dead(f"{_HOST}-{pid}", path)


# --- HTTP --------------------------------------------------------------------------------------

# Seconds; the intake answers in a few milliseconds, long polls in up to 30 s.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter(
    "eventflow_http_requests_total",
    "HTTP requests answered, by route (the URL pattern's name), method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "eventflow_http_request_duration_seconds",
    "Time to answer an HTTP request, by route and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)

# --- intake and processing ---------------------------------------------------------------------

EVENTS_ACCEPTED = Counter("eventflow_events_accepted_total", "Events committed to the inbox.", ["stream"])
EVENTS_DUPLICATE = Counter(
    "eventflow_events_duplicate_total", "Events sent again with a known event_id (answered, not stored).", ["stream"]
)
EVENTS_REJECTED = Counter(
    "eventflow_events_rejected_total",
    "Events refused by the intake, by reason (invalid: the envelope; schema: the stream's schema).",
    ["stream", "reason"],
)
EVENTS_LOGGED = Counter("eventflow_events_logged_total", "Events appended to the stream's log.", ["stream"])
EVENTS_DEAD_LETTERED = Counter(
    "eventflow_events_dead_lettered_total",
    "Events that became dead letters, by stage (validate, enrich, append, deliver, consume).",
    ["stream", "stage"],
)
EVENTS_RETRIED = Counter(
    "eventflow_events_retried_total", "Events whose processing failed and was scheduled again.", ["stream"]
)
# Seconds from the intake's commit to the log's.
PIPELINE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
EVENT_LOGGED_LATENCY = Histogram(
    "eventflow_event_logged_latency_seconds",
    "Time from an event's acceptance to its append to the log.",
    ["stream"],
    buckets=PIPELINE_BUCKETS,
)

# --- consumer groups ---------------------------------------------------------------------------

CONSUMER_OFFSETS_EXPIRED = Counter(
    "eventflow_consumer_offsets_expired_total",
    "Offsets consumer groups moved past unread because retention had removed them (position below the oldest kept).",
    ["stream", "kind"],
)

# --- webhooks ----------------------------------------------------------------------------------

WEBHOOK_DELIVERIES = Counter(
    "eventflow_webhook_deliveries_total",
    "Webhook POSTs (batches of events), by outcome (delivered, failed).",
    ["stream", "outcome"],
)
WEBHOOK_EVENTS_DELIVERED = Counter(
    "eventflow_webhook_events_delivered_total", "Events delivered by webhooks.", ["stream"]
)
WEBHOOK_DISABLED = Counter(
    "eventflow_webhook_disabled_total", "Webhook subscriptions disabled after failing in a row.", ["stream"]
)

# --- Celery ------------------------------------------------------------------------------------

TASK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 90.0)
CELERY_TASKS = Counter(
    "eventflow_celery_tasks_total",
    "Celery tasks finished, by task name and outcome (success, failure, retry).",
    ["task", "outcome"],
)
CELERY_TASK_DURATION = Histogram(
    "eventflow_celery_task_duration_seconds", "Time a Celery task ran.", ["task"], buckets=TASK_BUCKETS
)

# --- retention (streams/retention.py) ----------------------------------------------------------

RETENTION_LAST_SUCCESS = Gauge(
    "eventflow_retention_last_success_timestamp_seconds",
    "Unix time of the last retention run in which no part failed (the latest over processes; 0: none yet).",
    multiprocess_mode="max",
)
RETENTION_PART_FAILURES = Counter(
    "eventflow_retention_part_failures_total",
    "Retention parts that failed (partitions_ahead, log, dead_letters, delivery_attempts, rollups, person_first,"
    " sessions); the run went on with the others.",
    ["part"],
)

# --- process state -----------------------------------------------------------------------------

AUDIT_BUFFER_DEPTH = Gauge(
    "eventflow_audit_buffer_rows",
    "Request rows waiting in the web processes' audit buffers (sampled once a second; sum over live processes).",
    multiprocess_mode="livesum",
)
REDIS_BREAKER_TRIPS = Counter(
    "eventflow_redis_breaker_trips_total", "Times a process found Redis down and opened its circuit breaker."
)
REDIS_BREAKER_OPEN_UNTIL = Gauge(
    "eventflow_redis_breaker_open_until_seconds",
    "Unix time until which a process skips Redis (the latest over processes; in the past: closed).",
    multiprocess_mode="max",
)


_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: Counter | Histogram | Gauge, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: ``labels()`` validates and locks on every call (about 1.3 µs),
    a dictionary lookup does not. The label values come from small sets (routes, streams, stages)."""
    key = (id(metric), labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


def observe_many(histogram: Histogram, labels: Sequence[str], amounts: Sequence[float]) -> None:
    """Observe a batch of amounts in one pass: the same result as ``observe`` for each, at the cost of one.

    prometheus-client has no bulk observe; this adds to its bucket and sum
    values directly (their layout is that of the pinned version, and a test
    compares the result with ``observe``).
    """
    if not amounts:
        return
    one = child(histogram, *labels)
    bounds: list[float] = one._upper_bounds
    counts = [0] * len(bounds)
    for amount in amounts:
        counts[bisect.bisect_left(bounds, amount)] += 1
    one._sum.inc(float(sum(amounts)))
    for index, count in enumerate(counts):
        if count:
            one._buckets[index].inc(count)


def intake_counted(stream: str, *, accepted: int, duplicates: int, rejected: int, schema_rejections: int) -> None:
    """Count one intake call's events (after their commit): at most a few increments, whatever the batch size."""
    if accepted:
        child(EVENTS_ACCEPTED, stream).inc(accepted)
    if duplicates:
        child(EVENTS_DUPLICATE, stream).inc(duplicates)
    if rejected:
        if schema_rejections:
            child(EVENTS_REJECTED, stream, "schema").inc(schema_rejections)
        if rejected > schema_rejections:
            child(EVENTS_REJECTED, stream, "invalid").inc(rejected - schema_rejections)


def processing_counted(
    stream: str, *, latencies_ms: Sequence[int], dead_by_stage: dict[str, int], retried: int
) -> None:
    """Count one processed batch (after its commit)."""
    if latencies_ms:
        child(EVENTS_LOGGED, stream).inc(len(latencies_ms))
        observe_many(EVENT_LOGGED_LATENCY, (stream,), [ms / 1000 for ms in latencies_ms])
    for stage, count in dead_by_stage.items():
        child(EVENTS_DEAD_LETTERED, stream, stage).inc(count)
    if retried:
        child(EVENTS_RETRIED, stream).inc(retried)
