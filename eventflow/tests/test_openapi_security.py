"""The security each OpenAPI operation lists is what the view's access rule lets in.

Which credentials an operation takes is decided by the view's ``access``
(``streams.access``); these tests read the served description and check it
against the views the URLs resolve to, so a description that lists X-API-Key
where a key is refused (or leaves it out where one works) fails.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from django.test import Client
from django.urls import resolve

from streams.access import AnyOf, declared_access
from streams.models import ApiKeyKind, Stream
from streams.services import api_key_create

pytestmark = pytest.mark.django_db

KEY: dict[str, list[str]] = {"ApiKeyAuth": []}
BEARER: dict[str, list[str]] = {"jwtAuth": []}
# What a key may do, as the README's key kinds say: ingest keys send; secret keys send,
# read and consume; either reaches its streams (``reach``) and is somebody (``authenticated``).
KEY_DECLARATIONS = {"send", "read", "consume", "reach", "authenticated"}
METHODS = {"get", "post", "put", "patch", "delete"}
# The intake is a plain Django view outside the REST framework's door: it declares no
# ``access`` and checks the key's SEND itself (as tests/access_matrix.py states too).
INTAKE = {("post", "/api/v1/streams/{slug}/events"), ("post", "/api/v1/streams/{slug}/events/batch")}


def _operations(client: Client) -> list[tuple[str, str, dict[str, Any], Any]]:
    """(path, method, operation, declared access) for every /api/v1/ operation of the served schema."""
    schema = yaml.safe_load(client.get("/api/schema/").content)
    found = []
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        view = resolve(re.sub(r"\{[^}]+\}", "1", path)).func.cls  # type: ignore[attr-defined]
        for method, operation in operations.items():
            if method in METHODS:
                declared = "send" if (method, path) in INTAKE else declared_access(view, method)
                found.append((path, method, operation, declared))
    return found


@pytest.fixture(scope="module")
def operations(django_db_setup: Any, django_db_blocker: Any) -> list[tuple[str, str, dict[str, Any], Any]]:
    with django_db_blocker.unblock():
        return _operations(Client())


def _key_declared(declared: Any) -> bool:
    """Whether a key may pass ``declared``: one of KEY_DECLARATIONS, or an ``AnyOf`` holding one."""
    if isinstance(declared, AnyOf):
        return any(action in KEY_DECLARATIONS for action in declared.actions)
    return declared in KEY_DECLARATIONS


def test_the_api_key_scheme_is_the_x_api_key_header(client: Client) -> None:
    schema = yaml.safe_load(client.get("/api/schema/").content)
    scheme = schema["components"]["securitySchemes"]["ApiKeyAuth"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")


def test_every_operation_declares_its_access(operations: list[tuple[str, str, dict[str, Any], Any]]) -> None:
    assert len(operations) > 60
    assert [(path, method) for path, method, _, declared in operations if declared is None] == []


def test_x_api_key_is_listed_exactly_where_the_access_rule_lets_a_key_in(
    operations: list[tuple[str, str, dict[str, Any], Any]],
) -> None:
    wrong = [
        (method, path, declared)
        for path, method, operation, declared in operations
        if (KEY in operation.get("security", [])) != _key_declared(declared)
    ]
    assert wrong == []


def test_people_credentials_are_listed_everywhere_but_the_public_and_key_only_operations(
    operations: list[tuple[str, str, dict[str, Any], Any]],
) -> None:
    wrong = [
        (method, path, declared)
        for path, method, operation, declared in operations
        if (BEARER in operation.get("security", [])) != (declared not in ("public", "send"))
    ]
    assert wrong == []


def test_the_documented_security_of_some_operations(operations: list[tuple[str, str, dict[str, Any], Any]]) -> None:
    security = {(method, path): operation.get("security", []) for path, method, operation, _ in operations}
    # The intake takes keys only.
    assert security["post", "/api/v1/streams/{slug}/events"] == [KEY]
    assert security["post", "/api/v1/streams/{slug}/events/batch"] == [KEY]
    # Reading and consuming take a key or a person.
    for operation in [
        ("get", "/api/v1/streams/{slug}/events"),
        ("post", "/api/v1/streams/{slug}/consumer-groups/{group}/poll"),
        ("get", "/api/v1/streams/{slug}/analytics/timeseries"),
        ("get", "/api/v1/me"),
    ]:
        assert KEY in security[operation] and BEARER in security[operation], operation
    # Managing, operating and administering are for people only, on a stream or not.
    for operation in [
        ("post", "/api/v1/streams"),
        ("post", "/api/v1/streams/{slug}/webhooks"),
        ("post", "/api/v1/streams/{slug}/schemas/{event_type}"),
        ("get", "/api/v1/keys"),
        ("get", "/api/v1/people"),
        ("get", "/api/v1/teams"),
        ("get", "/api/v1/dead-letters"),
        ("get", "/api/v1/audit"),
    ]:
        assert KEY not in security[operation] and BEARER in security[operation], operation
    assert security["post", "/api/v1/auth/token"] == []


def test_a_secret_key_gets_in_where_the_description_says_and_not_elsewhere(client: Client, stream: Stream) -> None:
    key = api_key_create(kind=ApiKeyKind.SECRET, streams=[stream]).raw_key
    listed = client.get("/api/v1/streams/shop/events", HTTP_X_API_KEY=key)
    unlisted = client.get("/api/v1/streams/shop/webhooks", HTTP_X_API_KEY=key)
    assert listed.status_code == 200
    assert unlisted.status_code == 403
