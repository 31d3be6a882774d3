"""Fixtures of the streams tests: people with roles, signed in by JWT, and keys (see people_fixtures)."""

from .people_fixtures import (  # noqa: F401
    admin_api,
    ingest_api,
    ops,
    other_stream,
    root_api,
    secret_api,
)
