"""GET /ready: 200 only once started, with PostgreSQL and Redis answering and every migration applied."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from eventflow import readiness
from launcher.devservices import free_port
from tests.intake import separate_connection
from tests.subprocesses import child_env, current_database_url, python

pytestmark = pytest.mark.django_db

READY_IN_CHILD = """
import django, json
django.setup()
from django.test import Client
from eventflow.readiness import process_started
process_started()
response = Client().get("/ready")
print(json.dumps({"status_code": response.status_code, "body": response.json(),
                  "retry_after": response.get("Retry-After")}))
"""


@pytest.fixture
def started() -> Iterator[None]:
    readiness.process_started()
    yield
    readiness.process_starting()


def _ready_in_child(**env: str) -> dict:
    result = python(READY_IN_CHILD, env=child_env(DJANGO_SETTINGS_MODULE="eventflow.settings", **env))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_ready_when_everything_answers(client, started):
    response = client.get("/ready")

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert "Retry-After" not in response
    assert response.json() == {
        "status": "ready",
        "checks": {"started": "ok", "postgres": "ok", "redis": "ok", "migrations": "ok"},
    }


def test_not_ready_until_the_process_has_started(client):
    readiness.process_starting()
    response = client.get("/ready")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["checks"]["started"] == "starting"
    # Liveness is another question: the process is alive.
    assert client.get("/health").status_code == 200


def test_not_ready_when_postgres_is_unreachable():
    answer = _ready_in_child(DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/eventflow")

    assert answer["status_code"] == 503
    assert answer["retry_after"] == "5"
    assert answer["body"]["checks"] == {
        "started": "ok",
        "postgres": "down",
        "redis": "ok",
        "migrations": "unknown",
    }


def test_not_ready_when_redis_is_unreachable():
    answer = _ready_in_child(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", REDIS_SOCKET_TIMEOUT="0.2")

    assert answer["status_code"] == 503
    assert answer["body"]["checks"]["redis"] == "down"
    assert answer["body"]["checks"]["postgres"] == "ok"


def test_not_ready_on_a_database_without_migrations_and_ready_on_the_migrated_one():
    name = f"ef_ready_{uuid.uuid4().hex[:10]}"
    with separate_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        parts = urlsplit(current_database_url())
        empty = urlunsplit(parts._replace(path=f"/{name}"))
        answer = _ready_in_child(DATABASE_URL=empty)
    finally:
        with separate_connection() as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

    assert answer["status_code"] == 503
    assert answer["body"]["checks"]["migrations"] == "pending"
    assert answer["body"]["checks"]["postgres"] == "ok"
    assert _ready_in_child()["status_code"] == 200
