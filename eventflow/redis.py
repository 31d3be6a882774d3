"""The shared Redis client, with a circuit breaker.

Redis is a cache, a rate-limit store and the broker; it is never the only copy
of an event. When it is down, callers skip it for a short while instead of
paying a connect timeout on every request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from eventflow import conf
from eventflow.metrics import REDIS_BREAKER_OPEN_UNTIL, REDIS_BREAKER_TRIPS

logger = logging.getLogger(__name__)

T = TypeVar("T")

BREAKER_SECONDS = 5.0

_client: redis.Redis | None = None
_client_lock = threading.Lock()
_open_until = 0.0
# Counts the times this process failed to reach Redis or opened a connection to it. A cache that must not
# trail PostgreSQL (API keys: a revoke while Redis was unreachable) catches up when it changes; a new
# connection counts because it may follow an outage this process never saw fail (a restart, a network break).
_generation = 0


def _connected(connection: redis.connection.AbstractConnection) -> None:
    global _generation
    connection.on_connect()  # redis-py's own handshake, which a redis_connect_func replaces
    _generation += 1


def redis_generation() -> int:
    """Changes whenever Redis may have missed writes this process or another meant for it."""
    return _generation


def get_redis() -> redis.Redis:
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                settings = conf.get()
                _client = redis.Redis.from_url(
                    settings.redis_url,
                    socket_timeout=settings.redis_socket_timeout,
                    socket_connect_timeout=settings.redis_socket_timeout,
                    health_check_interval=30,
                    redis_connect_func=_connected,
                )
    return _client


def redis_available() -> bool:
    return time.monotonic() >= _open_until


def redis_failed(exc: BaseException, what: str) -> None:
    global _generation, _open_until
    _generation += 1
    if redis_available():
        logger.warning("redis unavailable during %s (%s); skipping it for %.0fs", what, exc, BREAKER_SECONDS)
        REDIS_BREAKER_TRIPS.inc()
    _open_until = time.monotonic() + BREAKER_SECONDS
    REDIS_BREAKER_OPEN_UNTIL.set(time.time() + BREAKER_SECONDS)


def reset_breaker() -> None:
    global _open_until
    _open_until = 0.0


def guarded(what: str, fn: Callable[[], T], default: T) -> T:
    """Run ``fn`` against Redis; on failure (or while the breaker is open) return ``default``."""
    if not redis_available():
        return default
    try:
        return fn()
    except (redis.RedisError, OSError) as exc:
        redis_failed(exc, what)
        return default
