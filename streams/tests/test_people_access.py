"""Who may use the people and teams API: Admins (and superusers) only; ``/me`` anyone signed in."""

from __future__ import annotations

from typing import Any

import pytest

from .people_fixtures import (
    Api,
    make_person,
    signed_in,
)

pytestmark = pytest.mark.django_db

ROUTES = [
    ("get", "/api/v1/teams", None),
    ("post", "/api/v1/teams", {"slug": "web"}),
    ("get", "/api/v1/teams/ops", None),
    ("patch", "/api/v1/teams/ops", {"name": "Ops 2"}),
    ("get", "/api/v1/teams/ops/members", None),
    ("post", "/api/v1/teams/ops/members", {"usernames": ["bob"]}),
    ("delete", "/api/v1/teams/ops/members/bob", None),
    ("get", "/api/v1/teams/ops/streams", None),
    ("post", "/api/v1/teams/ops/streams", {"streams": ["shop"]}),
    ("delete", "/api/v1/teams/ops/streams/shop", None),
    ("get", "/api/v1/people", None),
    ("post", "/api/v1/people", {"username": "dana", "email": "dana@example.com"}),
    ("get", "/api/v1/people/bob", None),
    ("patch", "/api/v1/people/bob", {"roles": ["Analyst"]}),
    ("delete", "/api/v1/teams/ops", None),
]


def call(api: Api, method: str, path: str, body: object) -> Any:
    if method in ("post", "patch"):
        return getattr(api, method)(path, body)
    return getattr(api, method)(path)


@pytest.fixture
def bob(ops):
    return make_person("bob", "Developer", ops)


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_an_admin_may(admin_api, bob, stream, method, path, body, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = call(admin_api, method, path, body)
    assert response.status_code in (200, 201, 204), response.content


@pytest.mark.parametrize("role", ["Developer", "Analyst", "Operator", "Consumer", None])
def test_other_roles_are_refused_with_403(ops, bob, role):
    api = signed_in("mallory", role, ops)
    for method, path, body in ROUTES:
        response = call(api, method, path, body)
        assert response.status_code == 403, (method, path, response.content)
        assert response.json()["error"]["code"] == "permission_denied"


def test_keys_are_refused_with_403(ingest_api, secret_api, bob):
    for method, path, body in ROUTES:
        for api in (ingest_api, secret_api):
            response = call(api, method, path, body)
            assert response.status_code == 403, (method, path, response.content)
            assert response.json()["error"]["code"] == "key_kind_not_allowed"


@pytest.mark.parametrize(("method", "path", "body"), [*ROUTES, ("get", "/api/v1/me", None)])
def test_no_credentials_is_401(bob, method, path, body):
    response = call(Api(), method, path, body)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    # Bad credentials on the route's own method; a method the route lacks is 405 before anything runs.
    assert call(Api(HTTP_X_API_KEY="ef_secret_nope"), method, path, body).status_code == 401
    assert call(Api(HTTP_AUTHORIZATION="Bearer not-a-token"), method, path, body).status_code == 401
