"""Security events: logins, token issues, keys, schemas, archives, each in the transaction of its change."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client

from eventflow.models import AuditEntry, AuditKind
from streams.models import ApiKeyKind, Stream
from streams.services import api_key_create, api_key_revoke, api_key_set_streams, schema_register, stream_archive

PASSWORD = "a-long-password-1"


def _events(after: int = 0) -> list[tuple[str, str, str]]:
    rows = AuditEntry.objects.filter(kind=AuditKind.SECURITY, id__gt=after).order_by("id")
    return list(rows.values_list("action", "caller", "target"))


@pytest.fixture
def carol(db: Any) -> User:
    return User.objects.create_user("carol", password=PASSWORD, is_staff=True, is_superuser=True)


def test_token_issue_and_failure_never_record_the_password(client: Client, carol: User) -> None:
    ok = client.post("/api/v1/auth/token", {"username": "carol", "password": PASSWORD}, content_type="application/json")
    assert ok.status_code == 200
    bad = client.post(
        "/api/v1/auth/token", {"username": "carol", "password": "wrong-guess-77"}, content_type="application/json"
    )
    assert bad.status_code == 401
    assert _events() == [("token.issue", "carol", "carol"), ("login.failure", "", "carol")]
    failure = AuditEntry.objects.get(action="login.failure")
    assert (failure.path, failure.method, len(failure.request_id)) == ("/api/v1/auth/token", "POST", 32)
    dumped = orjson.dumps(list(AuditEntry.objects.values())).decode()
    assert "wrong-guess" not in dumped and PASSWORD not in dumped


def test_admin_login_success_and_failure(client: Client, carol: User) -> None:
    client.post("/admin/login/", {"username": "nobody", "password": "nope-nope-1"})
    client.post("/admin/login/", {"username": "carol", "password": PASSWORD})
    assert _events() == [("login.failure", "", "nobody"), ("login.success", "carol", "carol")]


def test_key_create_revoke_and_streams(stream: Stream, carol: User) -> None:
    other = Stream.objects.create(slug="other", name="Other")
    after = AuditEntry.objects.order_by("id").values_list("id", flat=True).last() or 0
    issued = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream], name="web", created_by=carol)
    key = issued.api_key
    api_key_set_streams(api_key=key, streams=[stream, other])
    api_key_revoke(api_key=key)
    api_key_revoke(api_key=key)  # already revoked: nothing changes, nothing recorded
    target = f"key:{key.pk}"
    assert _events(after) == [("key.create", "carol", target), ("key.streams", "", target), ("key.revoke", "", target)]
    created = AuditEntry.objects.get(action="key.create")
    assert created.details == {"prefix": key.prefix, "kind": "ingest", "streams": ["shop"]}
    assert issued.raw_key not in orjson.dumps(list(AuditEntry.objects.values())).decode()


def test_schema_and_archive(stream: Stream) -> None:
    before = AuditEntry.objects.count()  # the stream's starter schemas were registered too
    schema_register(stream=stream, event_type="signup", schema={"type": "object"})
    stream_archive(stream=stream)
    stream_archive(stream=stream)
    rows = list(AuditEntry.objects.order_by("id").values_list("action", "stream_id", "target")[before:])
    assert rows == [("schema.register", stream.pk, "schema:shop/signup"), ("stream.archive", stream.pk, "stream:shop")]


def test_a_rolled_back_change_leaves_no_event(stream: Stream) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        api_key_create(kind=ApiKeyKind.INGEST, streams=[stream], name="doomed")
        raise RuntimeError
    assert not AuditEntry.objects.filter(action="key.create").exists()
