"""GET /health: the state of PostgreSQL, Redis and the worker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from eventflow.health import heartbeat_key
from eventflow.redis import get_redis
from launcher.devservices import free_port
from tests.subprocesses import child_env, python

pytestmark = pytest.mark.django_db

HEALTH_IN_CHILD = """
import django, json
django.setup()
from django.test import Client
response = Client().get("/health")
print(json.dumps({"status_code": response.status_code, "body": response.json(),
                  "retry_after": response.get("Retry-After")}))
"""


@pytest.fixture
def heartbeat() -> Iterator[None]:
    """This run's worker heartbeat (its Redis keys carry the run's prefix), absent to begin with."""
    get_redis().delete(heartbeat_key())
    yield
    get_redis().delete(heartbeat_key())


def test_health_reports_every_dependency(client, heartbeat):
    response = client.get("/health")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body["checks"]) == {"postgres", "redis", "worker", "kafka", "log_partitions"}
    # No Kafka sink or source configured: nothing to report, nothing degraded by it.
    assert body["checks"]["kafka"] == {"status": "none", "sinks": 0, "sources": 0, "paused": 0, "unheld": 0}
    assert body["checks"]["postgres"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "ok"
    assert body["checks"]["worker"] == {"status": "unknown", "last_heartbeat": None}
    assert body["status"] == "degraded"


def test_health_reports_a_live_and_a_stale_worker(client, heartbeat):
    get_redis().set(heartbeat_key(), time.time())
    fresh = client.get("/health").json()
    get_redis().set(heartbeat_key(), time.time() - 120)
    stale = client.get("/health").json()

    assert fresh["status"] == "ok"
    assert fresh["checks"]["worker"]["status"] == "ok"
    assert fresh["checks"]["worker"]["last_heartbeat"].endswith("Z")
    assert stale["checks"]["worker"]["status"] == "stale"
    assert stale["status"] == "degraded"


def _health_in_child(**env: str) -> dict:
    result = python(HEALTH_IN_CHILD, env=child_env(DJANGO_SETTINGS_MODULE="eventflow.settings", **env))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_health_is_503_when_postgres_is_unreachable():
    answer = _health_in_child(DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/eventflow")

    assert answer["status_code"] == 503
    assert answer["retry_after"] == "5"
    assert answer["body"]["status"] == "down"
    assert answer["body"]["checks"]["postgres"]["status"] == "down"
    # Public endpoint: the error's class, not a message naming the host and port.
    assert answer["body"]["checks"]["postgres"]["error"] == "OperationalError"
    assert answer["body"]["checks"]["redis"]["status"] == "ok"


def test_health_is_200_but_degraded_when_redis_is_unreachable():
    answer = _health_in_child(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", REDIS_SOCKET_TIMEOUT="0.2")

    assert answer["status_code"] == 200
    assert answer["body"]["status"] == "degraded"
    assert answer["body"]["checks"]["postgres"]["status"] == "ok"
    assert answer["body"]["checks"]["redis"]["status"] == "down"
