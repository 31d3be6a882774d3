"""API keys: format, hashed storage, cached authentication, revocation, expiry, last use."""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from eventflow.errors import Invalid
from ingestion.models import InboxEvent
from streams.auth import KeyPrincipal, api_key_principal
from streams.models import ApiKey, ApiKeyKind
from streams.services import api_key_create, api_key_revoke, api_key_set_streams, stream_create
from tests.factories import IssuedKeyFactory, StreamFactory
from tests.intake import assert_api_error, post_event, separate_connection

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(r"ef_(ingest|secret)_([A-Za-z0-9_-]+)\Z")


def _key_queries(ctx: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if "streams_apikey" in q["sql"]]


def _send(api: Client, slug: str, key: str, event_id: str = "e"):
    return post_event(api, slug, {"event_id": event_id, "type": "logout"}, key=key)


# --- format and storage ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [ApiKeyKind.INGEST, ApiKeyKind.SECRET])
def test_keys_are_prefixed_by_kind_and_carry_at_least_32_random_bytes(stream, kind):
    raw_keys = {api_key_create(kind=kind, streams=[stream]).raw_key for _ in range(20)}

    assert len(raw_keys) == 20
    for raw in raw_keys:
        match = KEY_RE.match(raw)
        assert match and match.group(1) == kind, raw
        secret = match.group(2)
        assert len(base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))) >= 32


def test_unknown_kind_is_refused(stream):
    with pytest.raises(Invalid):
        api_key_create(kind="admin", streams=[stream])
    assert ApiKey.objects.count() == 0


def test_only_the_sha256_and_a_display_prefix_are_stored(stream):
    issued = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream], name="web")
    raw = issued.raw_key
    secret = raw.removeprefix("ef_ingest_")

    row = ApiKey.objects.get(pk=issued.api_key.pk)
    assert row.hashed_key == hashlib.sha256(raw.encode()).hexdigest()
    assert raw.startswith(row.prefix) and row.prefix.startswith("ef_ingest_")
    assert len(row.prefix) - len("ef_ingest_") <= 8
    # Nothing in the stored row holds the key or its secret part.
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(k)::text FROM streams_apikey k WHERE id = %s", [row.pk])
        (stored,) = cursor.fetchone()
    assert raw not in stored
    assert secret not in stored
    assert secret[8:20] not in stored


def test_factories_build_keys_through_the_service(api):
    issued = IssuedKeyFactory.create(kind=ApiKeyKind.SECRET, streams=[StreamFactory.create(slug="f1")])
    assert issued.raw_key.startswith("ef_secret_")
    assert _send(api, "f1", issued.raw_key).status_code == 202


# --- authentication and its cache -------------------------------------------------------------------------


def test_a_second_request_costs_no_key_query(api, stream, ingest_key):
    with CaptureQueriesContext(connection) as first:
        assert _send(api, stream.slug, ingest_key, "1").status_code == 202
    with CaptureQueriesContext(connection) as second:
        assert _send(api, stream.slug, ingest_key, "2").status_code == 202

    assert _key_queries(first), "the first request reads the key from PostgreSQL"
    assert _key_queries(second) == []


def test_an_unknown_key_is_remembered_too(api, stream):
    unknown = "ef_ingest_" + "B" * 43
    assert_api_error(_send(api, stream.slug, unknown), 401, "invalid_api_key")
    with CaptureQueriesContext(connection) as again:
        assert_api_error(_send(api, stream.slug, unknown), 401, "invalid_api_key")
    assert _key_queries(again) == []


def test_revocation_takes_effect_on_the_very_next_request(api, stream):
    issued = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream])
    assert _send(api, stream.slug, issued.raw_key, "before").status_code == 202
    assert isinstance(api_key_principal(issued.raw_key), KeyPrincipal)
    with CaptureQueriesContext(connection) as cached:
        assert _send(api, stream.slug, issued.raw_key, "cached").status_code == 202
    assert _key_queries(cached) == []

    api_key_revoke(api_key=issued.api_key)

    assert_api_error(_send(api, stream.slug, issued.raw_key, "after"), 401, "revoked_api_key")
    assert sorted(InboxEvent.objects.values_list("event_id", flat=True)) == ["before", "cached"]


def test_last_used_at_is_set_without_a_write_on_every_request(api, stream):
    issued = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream])
    assert issued.api_key.last_used_at is None
    started = timezone.now()

    assert _send(api, stream.slug, issued.raw_key, "1").status_code == 202
    issued.api_key.refresh_from_db()
    first_use = issued.api_key.last_used_at
    assert first_use is not None and started <= first_use <= timezone.now()

    with CaptureQueriesContext(connection) as later:
        for n in range(5):
            assert _send(api, stream.slug, issued.raw_key, f"later-{n}").status_code == 202
    assert not [sql for sql in later.captured_queries if sql["sql"].startswith("UPDATE")]
    assert len(later.captured_queries) == 5


def test_expired_key_is_401(api, stream):
    issued = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream], expires_at=timezone.now() - timedelta(seconds=1))
    assert_api_error(_send(api, stream.slug, issued.raw_key), 401, "expired_api_key")
    assert InboxEvent.objects.count() == 0


def test_a_cached_key_stops_working_when_it_expires(api, stream):
    issued = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream], expires_at=timezone.now() + timedelta(seconds=1))
    assert _send(api, stream.slug, issued.raw_key, "in-time").status_code == 202
    time.sleep(1.1)
    assert_api_error(_send(api, stream.slug, issued.raw_key, "late"), 401, "expired_api_key")
    assert list(InboxEvent.objects.values_list("event_id", flat=True)) == ["in-time"]


def test_secret_keys_may_ingest(api, stream):
    issued = api_key_create(kind=ApiKeyKind.SECRET, streams=[stream])
    assert _send(api, stream.slug, issued.raw_key).status_code == 202


def test_a_key_granted_to_two_streams_works_on_both_and_nowhere_else(api):
    a, b = stream_create(slug="a"), stream_create(slug="b")
    stream_create(slug="c")
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[a, b]).raw_key

    assert _send(api, "a", key).status_code == 202
    assert _send(api, "b", key).status_code == 202
    assert_api_error(_send(api, "c", key), 404, "stream_not_found")


def test_new_grants_take_effect_on_the_next_request(api, django_capture_on_commit_callbacks):
    a, b = stream_create(slug="a"), stream_create(slug="b")
    issued = api_key_create(kind=ApiKeyKind.INGEST, streams=[a])
    assert_api_error(_send(api, "b", issued.raw_key), 404, "stream_not_found")

    with django_capture_on_commit_callbacks(execute=True):
        api_key_set_streams(api_key=issued.api_key, streams=[b])

    assert _send(api, "b", issued.raw_key).status_code == 202
    assert_api_error(_send(api, "a", issued.raw_key), 404, "stream_not_found")


def test_revoking_inside_a_larger_transaction_takes_effect_once_it_commits(api, stream):
    issued = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream])
    assert _send(api, stream.slug, issued.raw_key, "1").status_code == 202
    with transaction.atomic():
        api_key_revoke(api_key=issued.api_key)
    assert_api_error(_send(api, stream.slug, issued.raw_key, "2"), 401, "revoked_api_key")


def _waiting_on(table: str) -> bool:
    with separate_connection() as probe:
        row = probe.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE NOT l.granted AND c.relname = %s",
            [table],
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.django_db(transaction=True)
def test_a_request_that_read_the_key_before_a_revoke_cannot_cache_it_afterwards(stream):
    """A request reads the key, the key is revoked, then the request fills the cache: the revoke must win."""
    issued = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream])
    outcome: list[int] = []

    def in_flight_request() -> None:
        try:
            outcome.append(_send(Client(), stream.slug, issued.raw_key, "in-flight").status_code)
        finally:
            connections.close_all()

    # Reading a key takes two queries: the key row, then its streams. Holding the grants
    # table stops the request between the two, after it has seen the key unrevoked.
    with separate_connection() as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE streams_apikey_streams IN ACCESS EXCLUSIVE MODE")
        request = threading.Thread(target=in_flight_request)
        request.start()
        deadline = time.monotonic() + 10
        while not _waiting_on("streams_apikey_streams"):
            assert time.monotonic() < deadline, "the request never reached the grants query"
            time.sleep(0.02)
        api_key_revoke(api_key=issued.api_key)
        locker.execute("ROLLBACK")
    request.join(10)

    assert outcome == [202]
    assert_api_error(_send(Client(), stream.slug, issued.raw_key, "next"), 401, "revoked_api_key")
