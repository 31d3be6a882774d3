"""Every dashboard page with every kind of caller, on an own and a foreign stream (tests/page_matrix.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from streams.selectors import stream_cache_clear
from tests.access_matrix import ALLOWED, CALLER, CALLERS, FOREIGN, OWN, Route, World, world_build
from tests.fixtures import conf_override
from tests.page_matrix import (
    LOGIN,
    PAGE_ALLOWED_STATUSES,
    PAGES,
    PUBLIC_PAGES,
    page_access,
    page_expected,
    page_routes,
)

pytestmark = pytest.mark.django_db

ROUTES = page_routes()
TABLE = {(page.route, page.method): page for page in PAGES}


@pytest.fixture
def world(settings: Any) -> World:
    conf_override(settings, webhook_allow_loopback=True)
    return world_build()


def _client(world: World, caller: str) -> tuple[Client, dict[str, Any]]:
    client = Client()
    spec = CALLER[caller]
    if spec.is_person:
        client.force_login(world.users[caller])
        return client, {}
    # Keys: the header a program would send; pages must not take it.
    return client, world.headers[caller]


def call(world: World, caller: str, page: Route, variant: str) -> Any:
    """One request, undone afterwards, so that every caller meets the same world."""
    client, headers = _client(world, caller)
    with transaction.atomic():
        if page.method == "GET":
            response = client.get(world.path(page, variant), **headers)
        else:
            response = client.post(world.path(page, variant), {}, **headers)
        transaction.set_rollback(True)
    stream_cache_clear()
    return response


def _page(response: Any) -> str:
    """The page as a person sees it: each answer carries a token of its own in its forms."""
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", response.content.decode())


def check(world: World, caller: str, page: Route, variant: str, want: int | str) -> str | None:
    response = call(world, caller, page, variant)
    status = response.status_code
    where = f"{caller} {page.method} {world.path(page, variant)} ({variant})"
    location = response.get("Location", "")
    to_login = status == 302 and location.startswith("/login/")
    if want == LOGIN:
        return None if to_login else f"{where}: expected a redirect to sign in, got {status} {location}"
    if want == ALLOWED:
        if status not in PAGE_ALLOWED_STATUSES or to_login:
            return f"{where}: expected the page, got {status} {location}"
        return None
    if status != want:
        return f"{where}: expected {want}, got {status}"
    if not response["Content-Type"].startswith("text/html"):
        return f"{where}: {status} is not a page"
    if want == 404:
        missing = call(world, caller, page, "missing")
        if missing.status_code != 404 or _page(missing) != _page(response):
            return f"{where}: the 404 differs from a missing thing's ({missing.status_code})"
    return None


def test_the_table_names_every_page_and_method():
    declared: set[tuple[str, str]] = set()
    undeclared = []
    for route, pattern in ROUTES.items():
        access = getattr(pattern.callback, "access", None)
        if access is None:
            if pattern.name not in PUBLIC_PAGES:
                undeclared.append(route)
            continue
        declared |= {(route, method) for method in access}
    assert not undeclared, f"pages that ask no access rule (use @page, or list them in PUBLIC_PAGES): {undeclared}"
    tabled = set(TABLE)
    assert len(TABLE) == len(PAGES), "a page is in the table twice"
    assert not declared - tabled, f"pages missing from tests/page_matrix.py PAGES: {sorted(declared - tabled)}"
    assert not tabled - declared, f"PAGES names pages that no longer exist: {sorted(tabled - declared)}"


@pytest.mark.parametrize("page", PAGES, ids=[f"{page.method} /{page.route}" for page in PAGES])
def test_page_access_matrix(page: Route, world: World):
    pattern = ROUTES.get(page.route)
    assert pattern is not None, f"/{page.route} is not a route"
    access = page_access(pattern, page.method)
    assert access is not None, f"/{page.route} declares no access for {page.method}"
    problems = []
    for caller in CALLERS:
        for variant in (OWN, FOREIGN) if page.has_foreign else (OWN,):
            problem = check(world, caller.name, page, variant, page_expected(access, caller, page, variant))
            if problem:
                problems.append(problem)
    assert not problems, "\n".join(problems)


# Cells written by hand: (caller, method, route, variant, answer).
SPOT_CHECKS: list[tuple[str, str, str, str, int | str]] = [
    ("Analyst", "GET", "keys/", OWN, 403),
    ("Analyst", "GET", "streams/<slug:slug>/", OWN, ALLOWED),
    ("Analyst", "GET", "streams/<slug:slug>/", FOREIGN, 404),
    ("Analyst", "GET", "streams/<slug:slug>/tail/", OWN, ALLOWED),
    ("Operator", "GET", "streams/<slug:slug>/tail/", OWN, 403),
    ("Operator", "GET", "streams/<slug:slug>/analytics/processing/", OWN, ALLOWED),
    ("Operator", "GET", "streams/<slug:slug>/analytics/", OWN, 403),
    ("Consumer", "GET", "streams/<slug:slug>/analytics/processing/", OWN, 403),
    ("Developer", "GET", "keys/<int:key_id>/revoke/", FOREIGN, 404),
    ("Developer", "GET", "dead-letters/", OWN, 403),
    ("Operator", "GET", "dead-letters/<int:letter_id>/", FOREIGN, 404),
    ("Admin", "GET", "audit/", OWN, ALLOWED),
    ("Developer", "GET", "people/", OWN, 403),
    ("Admin", "GET", "streams/<slug:slug>/", FOREIGN, 404),
    ("superuser", "GET", "streams/<slug:slug>/", FOREIGN, ALLOWED),
    ("nobody", "GET", "", OWN, LOGIN),
    ("secret key", "GET", "streams/<slug:slug>/tail/", OWN, LOGIN),
]


def test_spot_checks(world: World):
    problems = []
    for caller, method, route, variant, want in SPOT_CHECKS:
        page = TABLE[(route, method)]
        derived = page_expected(page_access(ROUTES[route], method), CALLER[caller], page, variant)
        if derived != want:
            problems.append(f"{caller} {method} /{route} ({variant}): derived {derived}, written {want}")
        problem = check(world, caller, page, variant, want)
        if problem:
            problems.append(problem)
    assert not problems, "\n".join(problems)
