"""Who may use consumer groups and webhooks: secret keys of the stream, and users whose role allows it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from consumers.selectors import Position
from consumers.services import consumer_group_create
from streams.models import ApiKeyKind
from streams.services import api_key_create, api_key_revoke, team_create

from .conftest import GROUPS, JsonClient

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    ("get", GROUPS),
    ("post", GROUPS),
    ("get", f"{GROUPS}/billing"),
    ("delete", f"{GROUPS}/billing"),
    ("post", f"{GROUPS}/billing/poll"),
    ("post", f"{GROUPS}/billing/commit"),
    ("post", f"{GROUPS}/billing/seek"),
    ("post", f"{GROUPS}/billing/pause"),
    ("post", f"{GROUPS}/billing/resume"),
    ("get", "/api/v1/streams/shop/webhooks"),
    ("post", "/api/v1/streams/shop/webhooks"),
    ("get", "/api/v1/streams/shop/webhooks/1"),
    ("patch", "/api/v1/streams/shop/webhooks/1"),
    ("delete", "/api/v1/streams/shop/webhooks/1"),
    ("post", "/api/v1/streams/shop/webhooks/1/enable"),
    ("post", "/api/v1/streams/shop/webhooks/1/test"),
    ("get", "/api/v1/streams/shop/webhooks/1/deliveries"),
]


@pytest.fixture
def billing(stream):
    return consumer_group_create(stream_id=stream.pk, name="billing", start=Position("earliest"))


def call(client: JsonClient, method: str, path: str):
    return getattr(client, method)(path)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_no_credentials_is_401(client, billing, method, path):
    response = call(JsonClient(client), method, path)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_another_streams_key_gets_404_and_nothing_else(client, billing, other_key, method, path):
    response = call(JsonClient(client, HTTP_X_API_KEY=other_key), method, path)
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "stream_not_found", "message": "No such stream.", "details": {}}


@pytest.mark.parametrize(("method", "path"), ENDPOINTS[:5])
def test_bad_keys(client, stream, billing, method, path):
    ingest = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key
    assert call(JsonClient(client, HTTP_X_API_KEY=ingest), method, path).status_code == 403
    assert call(JsonClient(client, HTTP_X_API_KEY="ef_secret_nope"), method, path).status_code == 401
    issued = api_key_create(kind=ApiKeyKind.SECRET, streams=[stream])
    api_key_revoke(api_key=issued.api_key)
    assert call(JsonClient(client, HTTP_X_API_KEY=issued.raw_key), method, path).status_code == 401


def test_unknown_stream_is_404_for_every_key(client, secret_key):
    response = JsonClient(client, HTTP_X_API_KEY=secret_key).get("/api/v1/streams/nope/consumer-groups")
    assert response.status_code == 404


def _token(client, username: str, password: str) -> str:
    response = JsonClient(client).post("/api/v1/auth/token", {"username": username, "password": password})
    assert response.status_code == 200, response.content
    return str(response.json()["access"])


def test_jwt_user_with_the_consumer_role(client, billing, consumer_user):
    access = _token(client, "reader", "a-long-password-1")
    as_user = JsonClient(client, HTTP_AUTHORIZATION=f"Bearer {access}")
    assert as_user.get(GROUPS).status_code == 200
    assert as_user.post(f"{GROUPS}/billing/poll").status_code == 200
    refresh = (
        JsonClient(client)
        .post("/api/v1/auth/token", {"username": "reader", "password": "a-long-password-1"})
        .json()["refresh"]
    )
    refreshed = JsonClient(client).post("/api/v1/auth/token/refresh", {"refresh": refresh})
    assert refreshed.status_code == 200 and refreshed.json()["access"]


def test_roles(client, stream, billing):
    team = team_create(slug="shop-team", streams=[stream])
    for username, role in (("analyst", "Analyst"), ("admin", "Admin"), ("outsider", "Admin")):
        user = User.objects.create_user(username, password="a-long-password-1")
        user.groups.add(Group.objects.get(name=role))
        if username != "outsider":
            team.members.add(user)
    # Staff status alone reaches no stream; a superuser reaches all.
    User.objects.create_user("staff", password="a-long-password-1", is_staff=True)
    User.objects.create_superuser("root", password="a-long-password-1")
    for username, status in (("analyst", 403), ("admin", 200), ("outsider", 404), ("staff", 404), ("root", 200)):
        access = _token(client, username, "a-long-password-1")
        response = JsonClient(client, HTTP_AUTHORIZATION=f"Bearer {access}").get(GROUPS)
        assert response.status_code == status, username
    denied = JsonClient(client, HTTP_AUTHORIZATION=f"Bearer {_token(client, 'analyst', 'a-long-password-1')}")
    assert denied.get(GROUPS).json()["error"]["code"] == "permission_denied"


def test_bad_tokens_and_credentials(client, billing, consumer_user):
    assert JsonClient(client, HTTP_AUTHORIZATION="Bearer not-a-token").get(GROUPS).status_code == 401
    wrong = JsonClient(client).post("/api/v1/auth/token", {"username": "reader", "password": "wrong"})
    assert wrong.status_code == 401 and "error" in wrong.json()


def test_session_user(client, billing, consumer_user):
    client.force_login(consumer_user)
    assert client.get(GROUPS).status_code == 200
