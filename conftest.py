"""Suite-wide fixtures: real PostgreSQL and Redis, isolated per test run."""

from __future__ import annotations

import os
import uuid

# Each run gets its own cache prefix and Redis database numbers are left alone:
# the suite shares the machine's Redis with other work and never flushes it.
os.environ.setdefault("CACHE_KEY_PREFIX", f"eftest-{uuid.uuid4().hex[:8]}")
os.environ.setdefault("EVENTFLOW_RATE_LIMIT_PER_MINUTE", "0")

pytest_plugins = ["tests.fixtures"]
