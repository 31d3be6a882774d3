"""GET /ready: may this process take traffic? (GET /health stays the liveness answer.)

Ready means: the process has finished starting (eventflow/wsgi.py says so
once the application is loaded), PostgreSQL and Redis answer, and every
migration is applied. The migration check reads the migration graph, a few
milliseconds, so it runs until it first succeeds and is then remembered: a
process never goes back to running with a schema older than its code.
"""

from __future__ import annotations

import gc
import threading

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, authentication_classes, permission_classes

from eventflow.errors import json_response
from eventflow.health import RETRY_AFTER_SECONDS, _check_postgres
from eventflow.redis import get_redis

_started = threading.Event()
_migrated = False


def loaded_objects_freeze() -> None:
    """Keep what loading made (Django, the apps, their libraries) out of the garbage collector's full passes.

    Every so many allocations Python's collector walks all tracked objects; in a serving process
    that is mostly the code and settings loaded at start, which live as long as it does. Walking
    them took 110 ms in one request in 15 to 40 (an hourly series at 10 M events: 4 to 6 ms otherwise;
    docs/BENCHMARKS.md). Frozen, they are never walked or freed; what requests make still is.
    """
    gc.collect()
    gc.freeze()


def process_started() -> None:
    """Called once the process can serve (end of eventflow/wsgi.py)."""
    _started.set()


def process_starting() -> None:
    """Back to "not started" (tests)."""
    global _migrated
    _started.clear()
    _migrated = False


def _migrations_applied() -> bool:
    global _migrated
    if _migrated:
        return True
    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    _migrated = not executor.migration_plan(executor.loader.graph.leaf_nodes())
    return _migrated


def _check_redis() -> str:
    try:
        get_redis().ping()
    except Exception:  # noqa: BLE001 - any failure means "down"
        return "down"
    return "ok"


def readiness() -> dict[str, str]:
    """Each check's state: ok, down, pending (migrations not applied) or starting."""
    checks = {"started": "ok" if _started.is_set() else "starting"}
    postgres = _check_postgres()["status"]
    checks["postgres"] = str(postgres)
    checks["redis"] = _check_redis()
    if postgres == "ok":
        try:
            checks["migrations"] = "ok" if _migrations_applied() else "pending"
        except Exception:  # noqa: BLE001
            checks["migrations"] = "down"
    else:
        checks["migrations"] = "unknown"
    return checks


@extend_schema(
    operation_id="ready",
    summary="Readiness: may this process take traffic?",
    description=(
        "200 once the process has started, PostgreSQL and Redis answer and every migration is applied; "
        "503 with Retry-After otherwise. A load balancer's readiness probe; `/health` is the liveness probe."
    ),
    tags=["operations"],
    responses={
        200: inline_serializer("Ready", {"status": serializers.CharField(), "checks": serializers.DictField()}),
        503: inline_serializer("NotReady", {"status": serializers.CharField(), "checks": serializers.DictField()}),
    },
)
@api_view(["GET"])
@authentication_classes([])
@permission_classes([])
def ready(request: HttpRequest) -> HttpResponse:
    checks = readiness()
    ok = all(state == "ok" for state in checks.values())
    headers = {"Cache-Control": "no-store"}
    if not ok:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return json_response({"status": "ready" if ok else "not_ready", "checks": checks}, 200 if ok else 503, headers)
