"""Loaded with ``-p`` before pytest-django reads the settings: the run's own environment.

Each run gets its own test database and Redis key prefix, so concurrent runs
on one server never flush each other's tables or read each other's keys, and
in-process code queues Celery messages in memory rather than on the shared
broker. Tests that start real workers give them a broker of their own.
"""

from __future__ import annotations

import os
import uuid

_RUN = uuid.uuid4().hex[:8]
os.environ.setdefault("CACHE_KEY_PREFIX", f"eftest-{_RUN}")
os.environ.setdefault("EVENTFLOW_TEST_DB_NAME", f"test_eventflow_{_RUN}")
os.environ.setdefault("EVENTFLOW_RATE_LIMIT_PER_MINUTE", "0")
# The whole run signs in from 127.0.0.1 with a few usernames: the limits of people's
# endpoints are off unless a test sets them (eventflow/tests/test_ratelimit*.py).
os.environ.setdefault("EVENTFLOW_API_RATE_LIMIT_PER_USER", "0")
for _name in ("LOGIN_LIMIT_PER_IP", "LOGIN_LIMIT_PER_USERNAME", "TOKEN_REFRESH_LIMIT_PER_IP", "LOGIN_FREE_FAILURES"):
    os.environ.setdefault(f"EVENTFLOW_{_name}", "1000000")
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
