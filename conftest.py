"""Suite-wide fixtures: real PostgreSQL and Redis, isolated per test run."""

from __future__ import annotations

import os
import uuid

# Each run gets its own cache prefix and Redis database numbers are left alone:
# the suite shares the machine's Redis with other work and never flushes it.
_RUN = uuid.uuid4().hex[:8]
os.environ.setdefault("CACHE_KEY_PREFIX", f"eftest-{_RUN}")
# A test database of this run's own: concurrent runs never flush each other's tables.
os.environ.setdefault("EVENTFLOW_TEST_DB_NAME", f"test_eventflow_{_RUN}")
os.environ.setdefault("EVENTFLOW_RATE_LIMIT_PER_MINUTE", "0")

pytest_plugins = ["tests.fixtures"]
