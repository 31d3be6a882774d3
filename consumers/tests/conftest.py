"""Fixtures of the consumer tests: streams with log entries, keys, users, and JSON calls."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from rest_framework_simplejwt.tokens import RefreshToken

from consumers.notify import log_notifier
from eventflow.celery import app as celery_app
from streams.log import LogRecord, log_append_now
from streams.models import ApiKeyKind, Stream
from streams.services import api_key_create, stream_create, team_create

BASE_TIME = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="package", autouse=True)
def _log_listener_stops(django_db_setup: Any) -> Iterator[None]:
    """The listener's connection goes when these tests end: other tests count the database's
    connections, and the test database can only be dropped once it is gone."""
    yield
    log_notifier().stop()


@pytest.fixture(autouse=True)
def _tasks_run_in_process() -> Iterator[None]:
    # Deliveries kicked after a commit run here, against the test database, instead
    # of going to the shared broker.
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


def records(n: int, *, start: int = 0, types: list[str] | None = None, step_seconds: int = 60) -> list[LogRecord]:
    kinds = types or ["page_view"]
    return [
        LogRecord(
            event_id=f"e{i}",
            type=kinds[i % len(kinds)],
            event_time=BASE_TIME + timedelta(seconds=i * step_seconds),
            received_at=BASE_TIME + timedelta(seconds=i * step_seconds),
            user_id=f"u{i % 7}",
            payload={"page": f"/p/{i}", "n": i},
        )
        for i in range(start, start + n)
    ]


def append(stream: Stream, n: int, **kwargs: Any) -> None:
    from streams.log import log_head

    log_append_now(stream_id=stream.pk, records=records(n, start=log_head(stream.pk), **kwargs))


@pytest.fixture
def other_stream(db: Any) -> Stream:
    return stream_create(slug="other", name="Other")


@pytest.fixture
def secret_key(stream: Stream) -> str:
    return api_key_create(kind=ApiKeyKind.SECRET, streams=[stream]).raw_key


@pytest.fixture
def other_key(other_stream: Stream) -> str:
    return api_key_create(kind=ApiKeyKind.SECRET, streams=[other_stream]).raw_key


class JsonClient:
    """Django's test client speaking JSON with a fixed set of headers."""

    def __init__(self, client: Client, **headers: Any) -> None:
        self.client = client
        self.headers: dict[str, Any] = headers

    def _call(self, method: str, path: str, body: Any = None, raw: bytes | None = None, **headers: Any) -> Any:
        data = raw if raw is not None else (b"" if body is None else orjson.dumps(body))
        return getattr(self.client, method)(
            path, data=data, content_type="application/json", **{**self.headers, **headers}
        )

    def get(self, path: str, **headers: Any) -> Any:
        return self.client.get(path, **{**self.headers, **headers})

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self._call("post", path, body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self._call("patch", path, body, **kwargs)

    def delete(self, path: str, **headers: Any) -> Any:
        return self.client.delete(path, **{**self.headers, **headers})


@pytest.fixture
def consumer(client: Client, secret_key: str) -> JsonClient:
    return JsonClient(client, HTTP_X_API_KEY=secret_key)


@pytest.fixture
def consumer_user(stream: Stream) -> User:
    """A person's program with the Consumer role, in the team of the stream."""
    user = User.objects.create_user("reader", password="a-long-password-1")
    user.groups.add(Group.objects.get(name="Consumer"))
    team_create(slug="readers", members=[user], streams=[stream])
    return user


@pytest.fixture
def manager(client: Client, stream: Stream) -> JsonClient:
    """A Developer of the stream's team, signed in by JWT: manages webhooks and uses consumer groups."""
    user = User.objects.create_user("developer", password="a-long-password-1")
    user.groups.add(Group.objects.get(name="Developer"))
    team_create(slug="shop-team", members=[user], streams=[stream])
    token = str(RefreshToken.for_user(user).access_token)
    return JsonClient(Client(), HTTP_AUTHORIZATION=f"Bearer {token}")


GROUPS = "/api/v1/streams/shop/consumer-groups"
