"""Two things stored before their rule existed, or while Redis was away, no longer stay in force.

1. A schema version saved before the complexity limit (streams/schemas.py, MAX_SCHEMA_EVALUATIONS) is
   checked again where schemas are loaded for validation; one the registry would refuse now is not
   applied (its type validates as one without a schema), says so to admins, and a new version fixes it.
2. A key revoked while Redis is unreachable is refused on the first request once Redis is back, though
   Redis kept the entry it had cached before (streams/auth.py: the forget waits in PostgreSQL).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.test import Client

from eventflow import conf
from eventflow import redis as ef_redis
from ingestion.pipeline import stream_drain
from launcher.devservices import RedisProcess, free_port
from streams import auth
from streams.auth import api_key_hash
from streams.models import ApiKey, ApiKeyKind, DeadLetter, EventSchema, LogEntry, SchemaMode, Stream
from streams.schemas import MAX_SCHEMA_EVALUATIONS, schema_check, schema_cost
from streams.selectors import latest_schemas, stream_info
from streams.services import api_key_create, api_key_revoke, stream_create
from streams.tasks import api_key_cache_sync_task
from tests.fixtures import conf_override
from tests.intake import assert_api_error, post_event

SCHEMAS = "/api/v1/streams/shop/schemas"
REFUSED = f"more than {MAX_SCHEMA_EVALUATIONS} subschemas to one value"


def legacy_schema() -> dict[str, Any]:
    """allOf of two $refs to the level below, 8 levels: 1,022 evaluations at the payload, over the limit
    (yet quick to run: the test needs it to be applied before the fix). It requires "sku"."""
    defs: dict[str, Any] = {"a0": {"type": "object", "required": ["sku"]}}
    for i in range(1, 9):
        defs[f"a{i}"] = {"allOf": [{"$ref": f"#/$defs/a{i - 1}"}, {"$ref": f"#/$defs/a{i - 1}"}]}
    return {"$defs": defs, "$ref": "#/$defs/a8"}


def stored_before_the_limit(stream: Stream, event_type: str = "order") -> EventSchema:
    """A version as an earlier release saved it: straight into the table, never through schema_check."""
    schema = legacy_schema()
    assert schema_cost(schema, max_depth=conf.get().max_json_depth) > MAX_SCHEMA_EVALUATIONS
    with pytest.raises(ValueError, match=REFUSED):
        schema_check(schema)
    return EventSchema.objects.create(stream=stream, event_type=event_type, version=1, schema=schema)


def refusal_warnings(caplog: pytest.LogCaptureFixture, schema: EventSchema) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "streams.schemas" and r.getMessage().startswith(f"schema {schema.pk} ")
    ]


# --- 1. schemas saved before the complexity limit ----------------------------------------------------


@pytest.mark.django_db
def test_the_intake_accepts_events_of_a_type_whose_schema_is_refused_and_logs_it_once(
    api: Client, caplog: pytest.LogCaptureFixture
):
    strict = stream_create(slug="strict", schema_mode=SchemaMode.ENFORCE)
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[strict]).raw_key
    legacy = stored_before_the_limit(strict)

    with caplog.at_level(logging.WARNING, logger="streams.schemas"):
        answers = [post_event(api, "strict", {"type": "order", "payload": {}}, key=key) for _ in range(3)]
        latest_schemas(strict.pk)  # as processing loads them

    # Before: 400, the schema applied; a bad event of a schema made to stall could take minutes.
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert stream_info("strict") is not None and stream_info("strict").validator_for("order") is None  # type: ignore[union-attr]
    [warning] = refusal_warnings(caplog, legacy)
    assert warning.levelno == logging.WARNING
    assert "refused and not applied" in warning.getMessage() and REFUSED in warning.getMessage()


@pytest.mark.django_db(transaction=True)
def test_processing_logs_events_of_a_type_whose_schema_is_refused_instead_of_dead_lettering_them(api: Client):
    quarantined = stream_create(slug="q", schema_mode=SchemaMode.QUARANTINE)
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[quarantined]).raw_key
    stored_before_the_limit(quarantined)
    assert post_event(api, "q", {"type": "order", "payload": {}}, key=key).status_code == 202

    stream_drain(stream_id=quarantined.pk)

    # Before: a schema violation, retried, then a dead letter, for every event of the type.
    logged = LogEntry.objects.get(stream=quarantined, type="order")
    assert "schema_violations" not in logged.flags
    assert not DeadLetter.objects.filter(stream=quarantined).exists()


@pytest.mark.django_db
def test_admins_see_the_version_is_refused_and_a_new_version_fixes_it(admin_api: Any, stream: Stream):
    legacy = stored_before_the_limit(stream)

    shown = admin_api.get(f"{SCHEMAS}/order").json()
    assert REFUSED in shown["versions"][0]["refused"]
    login = admin_api.get(f"{SCHEMAS}/login").json()
    assert login["versions"][0]["refused"] is None
    assert admin_api.get(f"{SCHEMAS}/order/1").json()["refused"] == shown["versions"][0]["refused"]
    # Trying a payload would run the schema: refused too, and not a 200 that reads as "it validates".
    details = assert_api_error(admin_api.post(f"{SCHEMAS}/order/validate", {"payload": {}}), 409, "schema_refused")
    assert details == {"event_type": "order", "version": 1}

    browser = Client()
    browser.force_login(admin_api.user)
    for page in ("/streams/shop/schemas/", "/streams/shop/schemas/order/"):
        text = browser.get(page).content.decode()
        assert "order v1 is refused and not applied" in text, page
    tried = browser.post("/streams/shop/schemas/order/try/", {"payload": "{}", "version": "1"})
    assert tried.status_code == 200 and "is not applied to events" in tried.content.decode()

    saved = admin_api.post(f"{SCHEMAS}/order", {"schema": {"type": "object", "required": ["sku"]}})

    assert saved.status_code == 201, saved.content
    assert saved.json()["version"]["refused"] is None
    assert latest_schemas(stream.pk)["order"][0] == saved_pk(stream, 2) != legacy.pk
    checked = admin_api.post(f"{SCHEMAS}/order/validate", {"payload": {}}).json()
    assert checked["valid"] is False and checked["version"] == 2
    assert "order v1" not in browser.get("/streams/shop/schemas/").content.decode()


def saved_pk(stream: Stream, version: int) -> int:
    return EventSchema.objects.get(stream=stream, event_type="order", version=version).pk


# --- 2. a key revoked while Redis is unreachable -------------------------------------------------------


class OwnRedis:
    """A redis-server of the test's own that it stops and starts again with what it held, as one that
    persists to disk does (RedisProcess keeps nothing): the entry cached before the revoke survives."""

    def __init__(self, workdir: Path) -> None:
        self.server = RedisProcess(workdir).start()
        self.url = self.server.url
        self.kept: list[tuple[bytes, bytes, int]] = []

    def admin(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2)

    def stop_keeping_data(self) -> None:
        with self.admin() as client:
            self.kept = [(k, client.dump(k), max(client.pttl(k), 0)) for k in client.scan_iter(count=1000)]  # type: ignore[misc]
        self.server.stop()

    def start_with_kept_data(self) -> None:
        self.server.start()
        with self.admin() as client:
            for name, value, ttl in self.kept:
                client.restore(name, ttl, value, replace=True)

    def cached(self, raw_key: str) -> bytes | None:
        with self.admin() as client:
            return client.get(f"{conf.get().redis_key_prefix}:apikey:{api_key_hash(raw_key)}")  # type: ignore[return-value]


@pytest.fixture
def own_redis(tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[OwnRedis]:
    """The shared client points at a Redis of this test's own; the shared one (127.0.0.1:6379) is never stopped."""
    own = OwnRedis(tmp_path / "redis")
    conf_override(settings, redis_url=own.url, redis_socket_timeout=0.3)
    monkeypatch.setattr(ef_redis, "_client", None)
    ef_redis.reset_breaker()
    yield own
    if ef_redis._client is not None:
        ef_redis._client.close()
    own.server.stop()
    ef_redis.reset_breaker()


def warm(api: Client, key: str) -> None:
    # The first request's read opens a connection, so PostgreSQL answers it (Redis may have missed a
    # forget before it); the second request syncs, then caches the key.
    for _ in range(2):
        assert post_event(api, "shop", {"type": "page_view", "payload": {"page": "/"}}, key=key).status_code == 202


def pending(raw_key: str) -> bool:
    return ApiKey.objects.get(hashed_key=api_key_hash(raw_key)).cache_forget_pending_since is not None


def revoke_while_redis_is_down(own: OwnRedis, raw_key: str) -> None:
    own.stop_keeping_data()
    api_key_revoke(api_key=ApiKey.objects.get(hashed_key=api_key_hash(raw_key)))
    assert pending(raw_key)  # Redis missed the forget: it waits in PostgreSQL
    own.start_with_kept_data()
    assert own.cached(raw_key) is not None and own.cached(raw_key).startswith(b"{")  # type: ignore[union-attr]
    # The breaker skips Redis for 5 s after a failure; the test skips the wait.
    ef_redis.reset_breaker()


@pytest.mark.django_db
def test_a_key_revoked_while_redis_is_down_is_refused_on_the_first_request_once_it_is_back(
    api: Client, stream: Stream, ingest_key: str, own_redis: OwnRedis
):
    warm(api, ingest_key)
    assert own_redis.cached(ingest_key) is not None

    revoke_while_redis_is_down(own_redis, ingest_key)

    # Before: 202 for up to EVENTFLOW_AUTH_CACHE_SECONDS, from the entry cached before the revoke.
    assert_api_error(post_event(api, "shop", {"type": "page_view"}, key=ingest_key), 401, "revoked_api_key")
    assert own_redis.cached(ingest_key) == b"changed"
    assert not pending(ingest_key)
    assert_api_error(post_event(api, "shop", {"type": "page_view"}, key=ingest_key), 401, "revoked_api_key")


@pytest.mark.django_db
def test_a_process_that_saw_nothing_of_the_outage_checks_postgresql_when_it_reconnects(
    api: Client, stream: Stream, ingest_key: str, own_redis: OwnRedis
):
    warm(api, ingest_key)
    revoke_while_redis_is_down(own_redis, ingest_key)
    # As in an intake process that had no request during the outage: synced, and no failure seen since.
    auth._synced_generation = ef_redis.redis_generation()

    assert_api_error(post_event(api, "shop", {"type": "page_view"}, key=ingest_key), 401, "revoked_api_key")
    # That request's connection was new; the next request syncs first and lands the forget.
    assert_api_error(post_event(api, "shop", {"type": "page_view"}, key=ingest_key), 401, "revoked_api_key")
    assert own_redis.cached(ingest_key) == b"changed" and not pending(ingest_key)


@pytest.mark.django_db
def test_beat_lands_a_forget_missed_by_a_process_cut_off_from_redis(
    api: Client, stream: Stream, ingest_key: str, own_redis: OwnRedis, monkeypatch: pytest.MonkeyPatch
):
    warm(api, ingest_key)
    intake_client = ef_redis.get_redis()
    # The revoking process alone can't reach Redis (a closed port); the intake's connection stays up.
    cut_off = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.3)
    monkeypatch.setattr(ef_redis, "_client", cut_off)
    api_key_revoke(api_key=ApiKey.objects.get(hashed_key=api_key_hash(ingest_key)))
    monkeypatch.setattr(ef_redis, "_client", intake_client)
    ef_redis.reset_breaker()
    auth._synced_generation = ef_redis.redis_generation()
    assert pending(ingest_key)

    assert api_key_cache_sync_task() == 1

    assert_api_error(post_event(api, "shop", {"type": "page_view"}, key=ingest_key), 401, "revoked_api_key")
    assert not pending(ingest_key)
    assert api_key_cache_sync_task() == 0


@pytest.mark.django_db
def test_a_forget_that_reaches_redis_leaves_nothing_in_postgresql(
    api: Client, stream: Stream, ingest_key: str, own_redis: OwnRedis
):
    warm(api, ingest_key)
    api_key_revoke(api_key=ApiKey.objects.get(hashed_key=api_key_hash(ingest_key)))

    assert own_redis.cached(ingest_key) == b"changed"
    assert not pending(ingest_key)
    assert_api_error(post_event(api, "shop", {"type": "page_view"}, key=ingest_key), 401, "revoked_api_key")
