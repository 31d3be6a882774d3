"""People for the tests of teams, people and ``/me``: each with a role, signed in by JWT."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from rest_framework_simplejwt.tokens import RefreshToken

from eventflow.models import AuditEntry
from streams.models import ApiKeyKind, Stream, Team
from streams.services import api_key_create, stream_create, team_create

PASSWORD = "a-long-password-1"


class Api:
    """A JSON client with fixed headers (a bearer token, an API key, or none)."""

    def __init__(self, user: Any = None, **headers: Any) -> None:
        self.client = Client()
        self.user = user
        self.headers = headers

    def _send(self, method: str, path: str, body: Any = None) -> Any:
        data = b"" if body is None else orjson.dumps(body)
        return getattr(self.client, method)(path, data=data, content_type="application/json", **self.headers)

    def get(self, path: str) -> Any:
        return self.client.get(path, **self.headers)

    def post(self, path: str, body: Any = None) -> Any:
        return self._send("post", path, body)

    def patch(self, path: str, body: Any = None) -> Any:
        return self._send("patch", path, body)

    def delete(self, path: str) -> Any:
        return self.client.delete(path, **self.headers)


def bearer(user: Any) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {RefreshToken.for_user(user).access_token}"}


def make_person(username: str, role: str | None = None, *teams: Team, **fields: Any) -> Any:
    user = User.objects.create_user(username, email=f"{username}@example.com", password=PASSWORD, **fields)
    if role:
        user.groups.add(Group.objects.get(name=role))
    for team in teams:
        team.members.add(user)
    return user


def signed_in(username: str, role: str | None = None, *teams: Team, **fields: Any) -> Api:
    user = make_person(username, role, *teams, **fields)
    return Api(user, **bearer(user))


def security_events(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(kind="security", action=action).order_by("id"))


@pytest.fixture
def other_stream(db: Any) -> Stream:
    return stream_create(slug="other", name="Other")


@pytest.fixture
def ops(stream: Stream) -> Team:
    """The team of the Admin: it reaches the stream "shop" (not "other")."""
    return team_create(slug="ops", name="Ops", streams=[stream])


@pytest.fixture
def admin_api(ops: Team) -> Api:
    return signed_in("alice", "Admin", ops)


@pytest.fixture
def root_api(db: Any) -> Api:
    return signed_in("root", None, is_superuser=True, is_staff=True)


@pytest.fixture
def ingest_api(stream: Stream) -> Api:
    return Api(HTTP_X_API_KEY=api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key)


@pytest.fixture
def secret_api(stream: Stream) -> Api:
    return Api(HTTP_X_API_KEY=api_key_create(kind=ApiKeyKind.SECRET, streams=[stream]).raw_key)
