"""Suite-wide fixtures: real PostgreSQL and Redis (the run's environment is set in tests/pytest_env.py)."""

pytest_plugins = ["tests.fixtures"]
