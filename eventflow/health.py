"""GET /health: the state of PostgreSQL, Redis, the worker, the Kafka bridge and the log's partitions ahead."""

from __future__ import annotations

import time

from django.db import connection
from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, authentication_classes, permission_classes

from consumers.kafka_selectors import HEALTH_PAUSED, HEALTH_UNHELD, kafka_bridge_health
from eventflow import conf
from eventflow.errors import json_response
from eventflow.redis import get_redis, reset_breaker
from streams.retention import PARTITIONS_AHEAD_MIN, log_partitions_ahead


def heartbeat_key() -> str:
    return f"{conf.get().redis_key_prefix}:worker:heartbeat"


# Beat sends a heartbeat task every HEARTBEAT_SECONDS; a worker that has not
# answered for three of them is reported stale.
HEARTBEAT_SECONDS = 10
STALE_AFTER_SECONDS = 3 * HEARTBEAT_SECONDS


RETRY_AFTER_SECONDS = 5


def _failure(exc: Exception) -> dict[str, object]:
    # The error's class only: /health is public, and messages name hosts and ports.
    return {"status": "down", "error": type(exc).__name__}


def _check_postgres() -> dict[str, object]:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means "down"
        return _failure(exc)
    return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _check_redis_and_worker() -> tuple[dict[str, object], dict[str, object]]:
    started = time.perf_counter()
    try:
        client = get_redis()
        client.ping()
        heartbeat = client.get(heartbeat_key())
    except Exception as exc:  # noqa: BLE001
        return (
            _failure(exc),
            {"status": "unknown", "last_heartbeat": None},
        )
    reset_breaker()
    redis_state: dict[str, object] = {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    if heartbeat is None:
        return redis_state, {"status": "unknown", "last_heartbeat": None}
    beat_at = float(heartbeat)
    age = time.time() - beat_at
    worker: dict[str, object] = {
        "status": "ok" if age <= STALE_AFTER_SECONDS else "stale",
        "last_heartbeat": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(beat_at)),
        "age_seconds": round(age, 1),
    }
    return redis_state, worker


def _check_kafka() -> dict[str, object]:
    """The Kafka bridge: none configured, ok, paused (a broker does not answer) or unheld (no bridge runs one)."""
    try:
        return kafka_bridge_health()
    except Exception as exc:  # noqa: BLE001
        return _failure(exc)


def _check_log_partitions() -> dict[str, object]:
    """Days of log partitions ahead: "low" under two days (appends fail once they run out, and
    retention, which makes them, has not run for a while)."""
    try:
        ahead = log_partitions_ahead()
    except Exception as exc:  # noqa: BLE001
        return _failure(exc)
    days = round(ahead.total_seconds() / 86400, 2)
    return {"status": "ok" if ahead >= PARTITIONS_AHEAD_MIN else "low", "days_ahead": days}


def worker_state() -> dict[str, object]:
    """The worker's heartbeat as /health reports it: status ok, stale or unknown, and its age."""
    return _check_redis_and_worker()[1]


@extend_schema(
    operation_id="health",
    summary="Service health",
    tags=["operations"],
    responses={
        200: inline_serializer("Health", {"status": serializers.CharField(), "checks": serializers.DictField()}),
        503: inline_serializer("HealthDown", {"status": serializers.CharField(), "checks": serializers.DictField()}),
    },
)
@api_view(["GET"])
@authentication_classes([])
@permission_classes([])
def health(request: HttpRequest) -> HttpResponse:
    postgres = _check_postgres()
    redis_state, worker = _check_redis_and_worker()
    healthy = postgres["status"] == "ok"
    kafka = _check_kafka() if healthy else {"status": "unknown"}
    partitions = _check_log_partitions() if healthy else {"status": "unknown"}
    degraded = (
        redis_state["status"] != "ok"
        or worker["status"] != "ok"
        or kafka["status"] in (HEALTH_PAUSED, HEALTH_UNHELD)
        or partitions["status"] != "ok"
    )
    body = {
        "status": "ok" if healthy and not degraded else ("degraded" if healthy else "down"),
        "checks": {
            "postgres": postgres,
            "redis": redis_state,
            "worker": worker,
            "kafka": kafka,
            "log_partitions": partitions,
        },
    }
    headers = {"Cache-Control": "no-store"}
    if not healthy:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return json_response(body, 200 if healthy else 503, headers)
