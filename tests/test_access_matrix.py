"""Every API route with every kind of caller, on an own and a foreign stream (tests/access_matrix.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.tokens import RefreshToken

from streams.access import declared_access
from streams.selectors import stream_cache_clear
from tests.fixtures import conf_override

from .access_matrix import (
    ALLOWED,
    ALLOWED_STATUSES,
    CALLER,
    CALLERS,
    FOREIGN,
    OWN,
    ROUTES,
    SPOT_CHECKS,
    Route,
    World,
    api_routes,
    expected,
    route_access,
    world_build,
)

pytestmark = pytest.mark.django_db

ROUTE_CLASSES = api_routes()
TABLE = {(route.route, route.method): route for route in ROUTES}


@pytest.fixture
def world(settings: Any) -> World:
    conf_override(settings, webhook_allow_loopback=True)
    return world_build()


def call(client: Client, world: World, caller: str, route: Route, variant: str) -> Any:
    """One request, undone afterwards, so that every caller meets the same world."""
    body = b"" if route.body is None else orjson.dumps(route.body)
    headers: dict[str, Any] = world.headers[caller]
    with transaction.atomic():
        response = client.generic(
            route.method, world.path(route, variant), data=body, content_type="application/json", **headers
        )
        transaction.set_rollback(True)
    stream_cache_clear()
    return response


def _body(response: Any) -> Any:
    return response.json() if response.get("Content-Type", "").startswith("application/json") else None


def check(client: Client, world: World, caller: str, route: Route, variant: str, want: int | str) -> str | None:
    """What is wrong with the cell, or None."""
    response = call(client, world, caller, route, variant)
    status, body = response.status_code, _body(response)
    where = f"{caller} {route.method} {world.path(route, variant)} ({variant})"
    if want == ALLOWED:
        if status not in ALLOWED_STATUSES:
            return f"{where}: expected to be let through, got {status} {body}"
        return None
    if status != want:
        return f"{where}: expected {want}, got {status} {body}"
    if want == 404:
        # Not reached answers exactly like does not exist.
        missing = call(client, world, caller, route, "missing")
        if (missing.status_code, _body(missing)) != (status, body):
            return f"{where}: 404 {body} differs from a missing one's {missing.status_code} {_body(missing)}"
        if "slug" in route.kwargs and body["error"]["code"] != "stream_not_found":
            return f"{where}: 404 with {body['error']['code']}, not stream_not_found"
    if want in (401, 403) and not (isinstance(body, dict) and "error" in body):
        return f"{where}: {status} without the error body: {body}"
    return None


def test_the_table_names_every_api_route_and_method():
    resolved = set(ROUTE_CLASSES)
    tabled = set(TABLE)
    assert len(TABLE) == len(ROUTES), "a route is in the table twice"
    assert not resolved - tabled, f"API routes missing from tests/access_matrix.py ROUTES: {sorted(resolved - tabled)}"
    assert not tabled - resolved, f"ROUTES names routes that no longer exist: {sorted(tabled - resolved)}"


@pytest.mark.parametrize("route", ROUTES, ids=[route.id for route in ROUTES])
def test_access_matrix(route: Route, world: World, client: Client):
    cls = ROUTE_CLASSES.get((route.route, route.method))
    if cls is None:
        pytest.fail(f"{route.id} is not a route (see test_the_table_names_every_api_route_and_method)")
    access = route_access(route, cls)
    assert access is not None, f"{route.id}: {cls.__name__} declares no access for {route.method}"
    assert route.rule is None or declared_access(cls, route.method) is None, (
        f"{route.id}: the view declares its own access"
    )
    problems = []
    for caller in CALLERS:
        for variant in (OWN, FOREIGN) if route.has_foreign else (OWN,):
            problem = check(client, world, caller.name, route, variant, expected(access, caller, route, variant))
            if problem:
                problems.append(problem)
    assert not problems, "\n".join(problems)


def test_spot_checks(world: World, client: Client):
    """Cells written by hand agree with the derived table, and with the API."""
    problems = []
    for caller, method, route_name, variant, want in SPOT_CHECKS:
        route = TABLE[(route_name, method)]
        derived = expected(route_access(route, ROUTE_CLASSES[(route_name, method)]), CALLER[caller], route, variant)
        if derived != want:
            problems.append(f"{caller} {route.id} ({variant}): derived {derived}, written {want}")
        problem = check(client, world, caller, route, variant, want)
        if problem:
            problems.append(problem)
    assert not problems, "\n".join(problems)


def test_a_foreign_stream_answers_like_a_missing_one(world: World, client: Client):
    route = TABLE[("api/v1/streams/<slug:slug>", "GET")]
    foreign = call(client, world, "Developer", route, FOREIGN)
    missing = call(client, world, "Developer", route, "missing")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()
    assert foreign.json()["error"]["code"] == "stream_not_found"


# --- fails closed ------------------------------------------------------------------------------


class Undeclared(APIView):
    """An API view that forgot to say what it needs."""

    def get(self, request: Any) -> Response:
        return Response({"secret": "data"})


urlpatterns = [path("api/v1/undeclared", Undeclared.as_view())]


@pytest.mark.urls(__name__)
def test_a_view_without_access_is_refused_even_to_a_superuser(client: Client):
    root = User.objects.create_superuser("root", email="root@example.com", password=None)
    token = RefreshToken.for_user(root).access_token
    response = client.get("/api/v1/undeclared", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "access_not_declared"
    assert "secret" not in response.content.decode()
