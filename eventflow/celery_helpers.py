"""The rules every app's Celery work shares: backoff with jitter, "queue once", retry on a database error.

- ``backoff_seconds``: exponential, capped, with jitter (a half to the whole of the
  step), so that the retries of many failures do not arrive in step. Processing
  retries, webhook and alert deliveries, the Kafka bridge and task retries all use it.
- ``queue_once``: a task for a key (a stream, a webhook) is queued only if no other
  is queued or running for it, which a Redis marker (SET NX with an expiry) says.
  The run clears the marker (``queue_once_clear``) before its last look for work,
  so work that arrives after that look queues a fresh run; the expiry covers a
  run that was lost. The beat sweeps queue what a lost or refused message left.
- ``retried_on_database_error``: a task body that a database error (a dropped
  connection, a failover, a restart) interrupts is retried later with backoff,
  up to the task's ``max_retries``; the services it calls are safe to run twice.
"""

from __future__ import annotations

import importlib
import logging
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from celery import Task
from celery.exceptions import NotRegistered
from django.db import DatabaseError, InterfaceError

from eventflow.celery import RETRY_BACKOFF_MAX
from eventflow.celery import app as celery_app
from eventflow.redis import get_redis, guarded

logger = logging.getLogger(__name__)


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """Seconds before try ``attempt + 1`` (``attempt`` counts from 1): ``base`` doubled each time, at most ``cap``,
    times a random half to whole."""
    return random.uniform(0.5, 1.0) * min(cap, base * 2.0 ** max(0, attempt - 1))  # noqa: S311 (jitter)


def retry_countdown(retries: int) -> float:
    """Seconds before a task's next try (``self.retry(countdown=…)``): 2, 4, 8, … up to RETRY_BACKOFF_MAX."""
    return backoff_seconds(retries + 1, base=2.0, cap=RETRY_BACKOFF_MAX)


def queue_once(*, marker: str, seconds: int, task_name: str, args: Sequence[Any], if_redis_down: bool) -> bool:
    """Queue ``task_name(*args)`` unless ``marker`` says a run is already queued or running. True if queued.

    ``if_redis_down``: whether to queue anyway when Redis cannot say (the beat sweep
    queues it otherwise). A broker that refuses the message only delays the work: the
    marker is cleared (no run holds it), and the next request or sweep tries again.
    """
    claimed = guarded(
        f"queue once: {task_name}",
        lambda: bool(get_redis().set(marker, 1, nx=True, ex=seconds)),
        if_redis_down,
    )
    if not claimed:
        return False
    try:
        _task(task_name).apply_async(args=list(args))
    except Exception:
        logger.warning("could not queue %s%s; the sweep will", task_name, tuple(args), exc_info=True)
        queue_once_clear(marker)
        return False
    return True


def _task(name: str) -> Task:
    """The task by name: its module imports the services that queue it, so they cannot import it.

    A web process has not imported the apps' task modules: the one named by the task's
    name (``<app>.<task>`` lives in ``<app>/tasks.py``) is imported. Not Celery's
    ``import_default_modules()``: its Django fixup runs ``django.setup()`` again, which
    configures logging anew in the middle of a request (the handlers of the process
    and of the tests are replaced).
    """
    try:
        return celery_app.tasks[name]
    except NotRegistered:
        importlib.import_module(f"{name.partition('.')[0]}.tasks")
        return celery_app.tasks[name]


def queue_once_clear(marker: str) -> None:
    guarded("queue once: clear", lambda: get_redis().delete(marker), 0)


@contextmanager
def retried_on_database_error(task: Task, what: str) -> Iterator[None]:
    """Inside a bound task: a database error in the body retries the task later (``retry_countdown``)."""
    try:
        yield
    except (DatabaseError, InterfaceError) as exc:
        logger.warning("%s failed, retrying: %s", what, exc)
        raise task.retry(exc=exc, countdown=retry_countdown(task.request.retries)) from exc
