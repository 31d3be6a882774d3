from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client, override_settings

from analytics.alerts import alert_rules_cache_clear
from eventflow import conf
from eventflow import redis as ef_redis
from eventflow.audit import audit_buffer
from eventflow.redis import reset_breaker
from launcher.devservices import free_port
from streams.models import ApiKeyKind, SchemaMode, Stream
from streams.selectors import stream_cache_clear
from streams.services import api_key_create, stream_create


@pytest.fixture(autouse=True)
def _fresh_process_caches() -> Iterator[None]:
    stream_cache_clear()
    alert_rules_cache_clear()
    reset_breaker()
    yield
    stream_cache_clear()
    alert_rules_cache_clear()


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


@pytest.fixture
def fast_password_hashes(settings: Any) -> None:
    """Signing people in costs a full password hash each time; MD5 keeps page and login tests fast."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def redis_down(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The shared client points at a closed port for the test; the real one comes back after it."""
    conf_override(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_socket_timeout=0.2)
    monkeypatch.setattr(ef_redis, "_client", None)
    ef_redis.reset_breaker()
    yield
    ef_redis.reset_breaker()


@pytest.fixture
def fresh_rate_counters() -> None:
    """Counters outlive a test in Redis; each test starts from none (the run's prefix is its own).

    Asked for by a module's ``usefixtures``, which runs it before the fixtures a test names
    (``redis_down`` must come after it).
    """
    client = ef_redis.get_redis()
    keys = list(client.scan_iter(match=f"{conf.get().redis_key_prefix}:rl:*", count=1000))
    if keys:
        client.delete(*keys)


def conf_override(settings: Any, **changes: Any) -> None:
    """Change EventFlow settings (eventflow/conf.py, checked as at start-up) for one test.

    ``settings`` is pytest-django's fixture, which puts them back after the test.
    """
    settings.EVENTFLOW_CONF = dataclasses.replace(settings.EVENTFLOW_CONF, **changes)


def conf_overridden(**changes: Any) -> override_settings:
    """``conf_override`` as a decorator (``@conf_overridden(trusted_proxies=("10.0.0.0/8",))``)."""
    return override_settings(EVENTFLOW_CONF=dataclasses.replace(conf.at_start(), **changes))


@pytest.fixture
def empty_audit_buffer() -> Iterator[None]:
    # The buffer is the process's: rows of earlier tests' requests may wait in it.
    audit_buffer().clear()
    yield
    audit_buffer().clear()


@pytest.fixture
def webhook_settings(settings: Any) -> Any:
    """Deliveries to a local receiver, retried at once and given up on after two seconds."""
    conf_override(
        settings, webhook_allow_loopback=True, webhook_backoff_base_seconds=0.0, webhook_total_timeout_seconds=2.0
    )
    return settings
