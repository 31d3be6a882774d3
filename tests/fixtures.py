from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from eventflow.redis import reset_breaker
from streams.models import ApiKeyKind, SchemaMode, Stream
from streams.selectors import stream_cache_clear
from streams.services import api_key_create, stream_create


@pytest.fixture(autouse=True)
def _fresh_process_caches() -> Iterator[None]:
    stream_cache_clear()
    reset_breaker()
    yield
    stream_cache_clear()


@pytest.fixture
def stream(db: Any) -> Stream:
    return stream_create(slug="shop", name="Shop", with_starter_schemas=True)


@pytest.fixture
def enforcing_stream(db: Any) -> Stream:
    return stream_create(slug="strict", name="Strict", schema_mode=SchemaMode.ENFORCE, with_starter_schemas=True)


@pytest.fixture
def ingest_key(stream: Stream) -> str:
    return api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key


@pytest.fixture
def api(client: Client) -> Client:
    return client
