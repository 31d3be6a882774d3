"""GET /api/v1/audit: Admins only, filters, newest first, cursor pages, a fixed number of queries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone
from rest_framework_simplejwt.tokens import RefreshToken

from eventflow.audit import audit_flush, audit_request_record, audit_security, request_row
from eventflow.models import AuditEntry
from streams.models import Stream
from streams.services import stream_create, team_create

pytestmark = pytest.mark.usefixtures("empty_audit_buffer")

URL = "/api/v1/audit"


def _bearer(user: User) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")


@pytest.fixture
def admin_user(stream: Stream) -> User:
    user = User.objects.create_user("admin", password="a-long-password-1")
    user.groups.add(Group.objects.get(name="Admin"))
    team_create(slug="shop-team", members=[user], streams=[stream])
    return user


@pytest.fixture
def admin(admin_user: User) -> Client:
    return _bearer(admin_user)


def _request(path: str, *, status: int = 200, caller: str = "", stream_id: int | None = None, ago: int = 0) -> None:
    audit_request_record(
        request_row(
            at=timezone.now() - timedelta(minutes=ago),
            request_id=f"r{ago}",
            method="POST",
            path=path,
            status=status,
            duration_ms=1.5,
            caller=caller,
            user_id=None,
            key_prefix="",
            stream_id=stream_id,
            client_ip="192.0.2.1",
        )
    )


def test_only_admins_read_the_audit_log(db: Any, stream: Stream, admin: Client) -> None:
    developer = User.objects.create_user("dev", password="a-long-password-1")
    developer.groups.add(Group.objects.get(name="Developer"))
    assert _bearer(developer).get(URL).status_code == 403
    assert Client().get(URL).status_code == 401
    assert admin.get(URL).status_code == 200


def test_filters(admin: Client, admin_user: User, stream: Stream) -> None:
    other = stream_create(slug="other", name="Other")
    _request("/api/v1/streams/shop/events", status=202, caller="ef_ingest_ab", stream_id=stream.pk, ago=30)
    _request("/api/v1/streams/shop/events", status=429, caller="ef_ingest_ab", stream_id=stream.pk, ago=20)
    _request("/api/v1/keys", status=201, caller="admin", ago=10)
    audit_flush()
    audit_security(action="key.create", user=admin_user, target="key:1")

    def paths(**query: Any) -> list[tuple[str, str]]:
        response = admin.get(URL, query)
        assert response.status_code == 200, response.content
        return [(row["action"], row["path"]) for row in response.json()["results"]]

    # Newest first; the stream's starter schemas were registered before.
    assert paths(kind="security")[0][0] == "key.create"
    assert {a for a, _ in paths(kind="security")} == {"key.create", "schema.register"}
    assert paths(action="key.create") == [("key.create", "")]
    assert paths(user="admin") == [("key.create", "")]
    assert len(paths(caller="ef_ingest_ab")) == 2
    assert len(paths(stream="shop", kind="request")) == 2
    assert paths(stream="other") == [] and other.pk
    assert paths(stream="nope") == []
    assert paths(status=429) == [("", "/api/v1/streams/shop/events")]
    assert [p for _, p in paths(path="/api/v1/k")] == ["/api/v1/keys"]
    since = (timezone.now() - timedelta(minutes=25)).isoformat()
    until = (timezone.now() - timedelta(minutes=5)).isoformat()
    assert [p for _, p in paths(**{"from": since, "to": until})] == ["/api/v1/streams/shop/events", "/api/v1/keys"][
        ::-1
    ]
    assert admin.get(URL, {"status": "abc"}).status_code == 400
    assert admin.get(URL, {"from": "yesterday"}).status_code == 400
    assert admin.get(URL, {"kind": "other"}).status_code == 400


def test_rows_of_streams_the_admin_does_not_reach_are_left_out(admin: Client, stream: Stream) -> None:
    foreign = stream_create(slug="foreign", name="Foreign")
    _request("/api/v1/streams/foreign/events", stream_id=foreign.pk)
    _request("/api/v1/streams/shop/events", stream_id=stream.pk)
    _request("/api/v1/keys")
    audit_flush()
    rows = admin.get(URL, {"kind": "request"}).json()["results"]
    assert sorted(row["path"] for row in rows) == ["/api/v1/keys", "/api/v1/streams/shop/events"]
    assert admin.get(URL, {"stream": "foreign"}).json()["results"] == []


def test_newest_first_in_cursor_pages_with_a_fixed_number_of_queries(
    admin: Client, stream: Stream, django_assert_num_queries: Any
) -> None:
    for minute in range(7):
        _request(f"/api/v1/p{minute}", ago=minute)
    audit_flush()
    admin.get(URL)  # warm: the caller's permissions and streams

    seen: list[str] = []
    url: str | None = URL + "?kind=request&limit=3"
    while url:
        # JWT user, permissions, team streams, the page.
        with django_assert_num_queries(5):
            page = admin.get(url).json()
        seen += [row["path"] for row in page["results"]]
        url = page["next"]
    assert seen == [f"/api/v1/p{minute}" for minute in range(7)]
    assert AuditEntry.objects.filter(kind="request").count() == 7
