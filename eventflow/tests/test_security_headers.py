"""Security headers on every kind of answer, the cookies of production settings, and where CORS is allowed.

Every answer carries the Content-Security-Policy and the other headers a browser acts on (pages, admin, the
API's documentation and JSON, the intake, the tracker script, error pages). Production settings, read by a
child process started with EVENTFLOW_ENV=production, make the session and CSRF cookies Secure, HttpOnly and
SameSite. CORS is answered by the intake, the compatible intake and the tracker script only: no other route
grants a browser of another origin anything, whatever key or token the request carries.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework_simplejwt.tokens import RefreshToken

from streams.models import ApiKeyKind, Stream
from streams.services import api_key_create, stream_create, team_create
from tests.subprocesses import child_env, python

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashes")]

PASSWORD = "a-long-password-1"
ORIGIN = "https://shop.example"


@pytest.fixture
def shop(db: Any) -> Stream:
    return stream_create(slug="shop", name="Shop", with_starter_schemas=True)


@pytest.fixture
def root(shop: Stream) -> User:
    return User.objects.create_superuser("root", "root@example.com", PASSWORD)


@pytest.fixture
def browser(root: User) -> Client:
    client = Client()
    client.force_login(root)
    return client


@pytest.fixture
def developer(shop: Stream) -> Client:
    """Signed in, in the stream's team, but not allowed to manage people (their page answers 403)."""
    user = User.objects.create_user("dev", "dev@example.com", PASSWORD)
    user.groups.add(Group.objects.get(name="Developer"))
    team_create(slug="growth", members=[user], streams=[shop])
    client = Client()
    client.force_login(user)
    return client


def bearer(user: User) -> str:
    return f"Bearer {RefreshToken.for_user(user).access_token}"


def assert_security_headers(response: Any) -> None:
    policy = response.headers.get("Content-Security-Policy", "")
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    assert directives.get("default-src") == ["'self'"], policy
    assert directives.get("script-src") == ["'self'"], policy
    assert directives.get("style-src") == ["'self'"], policy
    assert directives.get("object-src") == ["'none'"], policy
    assert directives.get("frame-ancestors") == ["'none'"], policy
    assert directives.get("base-uri") == ["'self'"], policy
    assert not any("unsafe" in value for values in directives.values() for value in values), policy
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert response.headers.get("Referrer-Policy") == "same-origin"
    assert response.headers.get("X-Frame-Options") == "DENY"
    assert response.headers.get("Cross-Origin-Opener-Policy") == "same-origin"


def test_dashboard_page(browser: Client) -> None:
    response = browser.get("/streams/shop/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert_security_headers(response)


def test_login_page() -> None:
    response = Client().get("/login/")
    assert response.status_code == 200
    assert b'name="password"' in response.content
    assert_security_headers(response)


def test_admin(browser: Client) -> None:
    response = browser.get("/admin/")
    assert response.status_code == 200
    assert_security_headers(response)
    assert_security_headers(Client().get("/admin/login/"))


def test_swagger_ui_and_schema(browser: Client) -> None:
    response = browser.get("/api/docs/")
    assert response.status_code == 200
    # The split view: its start-up script is a file of the site, which 'self' allows; nothing inline.
    assert b"<script>" not in response.content
    assert_security_headers(response)
    schema = browser.get("/api/schema/")
    assert schema.status_code == 200
    assert_security_headers(schema)


def test_api_json(root: User) -> None:
    response = Client().get("/api/v1/streams", HTTP_AUTHORIZATION=bearer(root))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert_security_headers(response)


def test_intake(shop: Stream) -> None:
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[shop]).raw_key
    response = Client().post(
        "/api/v1/streams/shop/events",
        data=b'{"type": "page_view", "event_id": "h1"}',
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )
    assert response.status_code == 202, response.content
    assert_security_headers(response)


def test_tracker_script() -> None:
    response = Client().get("/t.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert_security_headers(response)


def test_error_pages(developer: Client) -> None:
    not_found = developer.get("/no-such-page/")
    assert not_found.status_code == 404
    assert not_found["Content-Type"].startswith("text/html")
    assert_security_headers(not_found)
    refused = developer.get("/people/")
    assert refused.status_code == 403
    assert refused["Content-Type"].startswith("text/html")
    assert_security_headers(refused)
    api_refused = Client().get("/api/v1/streams")
    assert api_refused.status_code == 401
    assert_security_headers(api_refused)


# --- cookies of production settings -----------------------------------------------------------------

COOKIE_SETTINGS = [
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE",
    "CSRF_COOKIE_SECURE",
    "CSRF_COOKIE_HTTPONLY",
    "CSRF_COOKIE_SAMESITE",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
]


def production_settings() -> dict[str, Any]:
    """The settings above as EventFlow's settings module makes them with EVENTFLOW_ENV=production."""
    env = child_env(
        EVENTFLOW_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="events.example.com",
        DEBUG=None,
        DJANGO_SETTINGS_MODULE="eventflow.settings",
    )
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name) for name in {COOKIE_SETTINGS!r}}}))"
    )
    result = python(code, env)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_production_settings_make_cookies_secure_httponly_and_samesite(settings: Any, root: User) -> None:
    production = production_settings()
    assert production["SESSION_COOKIE_SECURE"] is True
    assert production["CSRF_COOKIE_SECURE"] is True
    assert production["SECURE_SSL_REDIRECT"] is True
    assert production["SECURE_HSTS_SECONDS"] >= 31536000
    for name, value in production.items():
        setattr(settings, name, value)
    settings.ALLOWED_HOSTS = ["events.example.com"]
    client = Client(HTTP_HOST="events.example.com")

    # Plain HTTP is sent to HTTPS before any cookie is set.
    redirected = client.get("/login/")
    assert redirected.status_code == 301
    assert redirected["Location"] == "https://events.example.com/login/"
    assert not redirected.cookies

    form = client.get("/login/", secure=True)
    assert form.status_code == 200
    assert form.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    csrf = form.cookies["csrftoken"]
    signed_in = client.post(
        "/login/",
        {"username": "root", "password": PASSWORD, "csrfmiddlewaretoken": form.context["csrf_token"]},
        secure=True,
        HTTP_REFERER="https://events.example.com/login/",
    )
    assert signed_in.status_code == 302, signed_in.content
    session = signed_in.cookies["sessionid"]
    for cookie in (session, csrf):
        assert cookie["secure"] is True, cookie.output()
        assert cookie["httponly"] is True, cookie.output()
        assert cookie["samesite"] == "Lax", cookie.output()


# --- CORS -----------------------------------------------------------------------------------------


def test_intake_answers_cors_for_browsers_with_an_ingest_key(shop: Stream) -> None:
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[shop]).raw_key
    client = Client()
    preflight = client.options(
        "/api/v1/streams/shop/events/batch",
        HTTP_ORIGIN=ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type, x-api-key",
    )
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "*"
    assert preflight["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    # "*" never lets a browser send cookies: the intake authenticates by key alone.
    assert "Access-Control-Allow-Credentials" not in preflight
    sent = client.post(
        "/api/v1/streams/shop/events",
        data=b'{"type": "page_view", "event_id": "c1"}',
        content_type="application/json",
        HTTP_X_API_KEY=key,
        HTTP_ORIGIN=ORIGIN,
    )
    assert sent.status_code == 202
    assert sent["Access-Control-Allow-Origin"] == "*"
    compat = client.options("/v1/batch", HTTP_ORIGIN=ORIGIN, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert compat["Access-Control-Allow-Origin"] == ORIGIN
    assert Client().get("/t.js", HTTP_ORIGIN=ORIGIN)["Access-Control-Allow-Origin"] == "*"


def _api_routes() -> list[str]:
    """Every /api/ route of the URL configuration, its path arguments filled in."""
    fills = {"slug": "shop", "pk": "1", "group": "g", "name": "n", "key_id": "1", "id": "1", "version": "1"}

    def walk(patterns: list[URLPattern | URLResolver], prefix: str) -> list[str]:
        found: list[str] = []
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                found += walk(pattern.url_patterns, route)
            elif route.startswith("api/"):
                for name, value in fills.items():
                    for converter in ("slug", "int", "str", "uuid", "path"):
                        route = route.replace(f"<{converter}:{name}>", value)
                route = route.replace("<int:", "<").replace("<slug:", "<").replace("<str:", "<")
                while "<" in route:
                    start = route.index("<")
                    route = route[:start] + "1" + route[route.index(">", start) + 1 :]
                found.append("/" + route.lstrip("^").rstrip("$"))
        return found

    return walk(get_resolver().url_patterns, "")


INTAKE = {"/api/v1/streams/shop/events", "/api/v1/streams/shop/events/batch"}


def test_no_other_api_route_answers_cors(shop: Stream, root: User) -> None:
    secret = api_key_create(kind=ApiKeyKind.SECRET, streams=[shop]).raw_key
    routes = _api_routes()
    assert len(routes) > 40, routes
    assert INTAKE <= set(routes)
    jwt = Client(HTTP_AUTHORIZATION=bearer(root))
    with_key = Client(HTTP_X_API_KEY=secret)
    granted = []
    for route in routes:
        for client in (jwt, with_key):
            preflight = client.options(
                route,
                HTTP_ORIGIN=ORIGIN,
                HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
                HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
            )
            read = client.get(route, HTTP_ORIGIN=ORIGIN)
            for response in (preflight, read):
                if "Access-Control-Allow-Origin" in response:
                    granted.append(route)
    assert set(granted) == INTAKE, sorted(set(granted))


def test_management_api_with_an_origin_gets_no_cors(root: User, shop: Stream) -> None:
    secret = api_key_create(kind=ApiKeyKind.SECRET, streams=[shop]).raw_key
    listed = Client().get("/api/v1/streams", HTTP_ORIGIN=ORIGIN, HTTP_AUTHORIZATION=bearer(root))
    assert listed.status_code == 200
    assert "Access-Control-Allow-Origin" not in listed
    read = Client().get("/api/v1/streams/shop/events", HTTP_ORIGIN=ORIGIN, HTTP_X_API_KEY=secret)
    assert read.status_code == 200, read.content
    assert "Access-Control-Allow-Origin" not in read
