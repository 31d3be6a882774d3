"""eventflow/celery_helpers.py: the backoff, the "queue once" marker and the retry on a database error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import OperationalError

from eventflow.celery import RETRY_BACKOFF_MAX
from eventflow.celery import app as celery_app
from eventflow.celery_helpers import (
    backoff_seconds,
    queue_once,
    queue_once_clear,
    retried_on_database_error,
    retry_countdown,
)
from eventflow.redis import get_redis
from tests.fixtures import redis_down  # noqa: F401 (a fixture)

TASK = "eventflow.heartbeat"  # any task that takes no argument


def test_retry_countdown_doubles_with_jitter_and_is_capped():
    for retries in range(15):
        ceiling = min(RETRY_BACKOFF_MAX, 2.0 ** (retries + 1))
        values = [retry_countdown(retries) for _ in range(200)]
        assert all(ceiling / 2 <= v <= ceiling for v in values)
        assert len(set(values)) > 1  # jittered, so retries of many tasks spread out
    assert max(retry_countdown(40) for _ in range(50)) <= RETRY_BACKOFF_MAX


def test_backoff_doubles_from_its_base_up_to_its_cap():
    for attempt, ceiling in [(0, 3.0), (1, 3.0), (2, 6.0), (3, 12.0), (4, 20.0), (30, 20.0)]:
        values = [backoff_seconds(attempt, base=3.0, cap=20.0) for _ in range(100)]
        assert all(ceiling / 2 <= v <= ceiling for v in values), attempt
    assert backoff_seconds(5, base=0.0, cap=10.0) == 0.0


@pytest.fixture
def marker() -> Iterator[str]:
    key = "eftest:queue-once:marker"
    get_redis().delete(key)
    yield key
    get_redis().delete(key)


def test_a_task_is_queued_once_while_its_marker_lives(marker):
    assert queue_once(marker=marker, seconds=30, task_name=TASK, args=[], if_redis_down=False)
    assert not queue_once(marker=marker, seconds=30, task_name=TASK, args=[], if_redis_down=False)
    assert 0 < get_redis().ttl(marker) <= 30
    queue_once_clear(marker)
    assert queue_once(marker=marker, seconds=30, task_name=TASK, args=[], if_redis_down=False)


def test_a_refused_message_leaves_no_marker(marker, monkeypatch):
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("the broker is down")

    monkeypatch.setattr(celery_app.tasks[TASK], "apply_async", refuse)
    assert not queue_once(marker=marker, seconds=30, task_name=TASK, args=[], if_redis_down=True)
    assert get_redis().exists(marker) == 0


@pytest.mark.parametrize("if_redis_down", [True, False])
def test_without_redis_the_caller_decides(redis_down, if_redis_down):  # noqa: F811
    assert queue_once(marker="eftest:x", seconds=30, task_name=TASK, args=[], if_redis_down=if_redis_down) is (
        if_redis_down
    )


runs: list[int] = []


@celery_app.task(bind=True, name="eftest.flaky", max_retries=3)
def flaky(self, failures: int) -> str:  # type: ignore[no-untyped-def]
    runs.append(self.request.retries)
    with retried_on_database_error(self, "the flaky task"):
        if len(runs) <= failures:
            raise OperationalError("server closed the connection unexpectedly")
    return "done"


@pytest.fixture
def eager() -> Iterator[None]:
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    runs.clear()
    yield
    celery_app.conf.task_always_eager = previous


def test_a_dropped_database_connection_retries_the_task(eager):
    assert flaky.apply(args=[2]).get() == "done"
    assert runs == [0, 1, 2]


def test_retries_end_at_the_tasks_limit(eager):
    with pytest.raises(OperationalError):
        flaky.apply(args=[10]).get()
    assert runs == [0, 1, 2, 3]
