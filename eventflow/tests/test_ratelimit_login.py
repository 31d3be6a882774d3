"""Every way to log in is limited per client address and per username, slows down after failures,
never tells known usernames from unknown ones, and fails closed while Redis is down."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory

from eventflow.errors import RateLimited
from eventflow.ratelimit import login_attempt_guard, login_rate_limited
from tests.fixtures import conf_override
from tests.intake import assert_api_error

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashes", "fresh_rate_counters")]

TOKEN = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/token/refresh"
ADMIN_LOGIN = "/admin/login/"
PASSWORD = "a-long-password-1"


@pytest.fixture
def ann(db: Any) -> User:
    return User.objects.create_user("ann", password=PASSWORD, is_staff=True)


def token(username: str, password: str = "wrong", ip: str = "10.0.0.1") -> Any:
    return Client().post(
        TOKEN, orjson.dumps({"username": username, "password": password}), "application/json", REMOTE_ADDR=ip
    )


def admin_login(username: str, password: str = "wrong", ip: str = "10.0.0.1") -> Any:
    return Client().post(ADMIN_LOGIN, {"username": username, "password": password}, REMOTE_ADDR=ip)


def limits(settings: Any, **changes: int) -> None:
    defaults = {"login_limit_per_ip": 1000, "login_limit_per_username": 1000, "login_free_failures": 1000}
    conf_override(settings, **{**defaults, **changes})


# --- the token endpoint -----------------------------------------------------------------------


def test_token_is_limited_per_username_whatever_the_address(settings: Any, ann: User) -> None:
    limits(settings, login_limit_per_username=3)
    answers = [token("ann", ip=f"10.0.0.{i}") for i in range(4)]

    assert [r.status_code for r in answers] == [401, 401, 401, 429]
    assert_api_error(answers[3], 429, "too_many_login_attempts")
    assert 1 <= int(answers[3]["Retry-After"]) <= 600  # sliding: up to two windows
    # The right password is refused too while the limit holds; another name from the same address is not.
    assert token("ann", PASSWORD, ip="10.0.0.9").status_code == 429
    assert token("bob", ip="10.0.0.1").status_code == 401


def test_token_is_limited_per_address_whatever_the_username(settings: Any, ann: User) -> None:
    limits(settings, login_limit_per_ip=3)
    answers = [token(f"user{i}", ip="10.0.0.1") for i in range(4)]

    assert [r.status_code for r in answers] == [401, 401, 401, 429]
    assert 1 <= int(answers[3]["Retry-After"]) <= 600  # sliding: up to two windows
    assert token("ann", PASSWORD, ip="10.0.0.2").status_code == 200


def test_failures_slow_a_username_down_and_a_success_clears_them(settings: Any, ann: User) -> None:
    limits(settings, login_free_failures=2)
    assert [token("ann").status_code for _ in range(2)] == [401, 401]

    waiting = token("ann", PASSWORD)
    assert waiting.status_code == 429
    assert int(waiting["Retry-After"]) == 2
    time.sleep(2.1)
    assert token("ann", PASSWORD).status_code == 200
    # Cleared: the next failure is the first again, with no wait after it.
    assert token("ann").status_code == 401
    assert token("ann").status_code == 401


def test_each_further_failure_doubles_the_wait(settings: Any, ann: User) -> None:
    limits(settings, login_free_failures=1)
    assert token("ann").status_code == 401
    assert int(token("ann")["Retry-After"]) == 2
    time.sleep(2.1)
    assert token("ann").status_code == 401
    assert int(token("ann")["Retry-After"]) == 4


def test_an_unknown_username_answers_exactly_like_a_wrong_password(settings: Any, ann: User) -> None:
    limits(settings, login_free_failures=3)
    known = [token("ann", ip="10.0.0.1") for _ in range(4)]
    unknown = [token("nobody", ip="10.0.0.2") for _ in range(4)]

    for a, b in zip(known, unknown, strict=True):
        assert (a.status_code, a.content) == (b.status_code, b.content)
        assert a.get("Retry-After") == b.get("Retry-After")
    assert [r.status_code for r in known] == [401, 401, 401, 429]


def test_an_unknown_username_takes_about_as_long_as_a_wrong_password(settings: Any, ann: User) -> None:
    # With the real hasher: Django hashes a dummy password for unknown users, and the limiter
    # does the same Redis work for every name.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    ann.set_password(PASSWORD)
    ann.save()

    def took(username: str, ip: str) -> float:
        started = time.perf_counter()
        assert token(username, ip=ip).status_code == 401
        return time.perf_counter() - started

    # Alternated, and the fastest of each kept: other work on the machine slows single calls,
    # not the least a call costs (medians of three failed under a load of 7 on 2 cores).
    known: list[float] = []
    unknown: list[float] = []
    for i in range(5):
        known.append(took("ann", "10.0.1.1"))
        unknown.append(took(f"nobody{i}", "10.0.1.2"))
    assert 0.5 < min(unknown) / min(known) < 2.0, (known, unknown)


def test_token_refresh_is_limited_per_address(settings: Any) -> None:
    conf_override(settings, token_refresh_limit_per_ip=2)
    answers = [
        Client().post(REFRESH, orjson.dumps({"refresh": "nope"}), "application/json", REMOTE_ADDR="10.0.0.1")
        for _ in range(3)
    ]
    assert [r.status_code for r in answers] == [401, 401, 429]
    assert 1 <= int(answers[2]["Retry-After"]) <= 600  # sliding: up to two windows


def test_token_endpoints_fail_closed_while_redis_is_down(ann: User, redis_down: None) -> None:
    for response in (
        token("ann", PASSWORD),
        Client().post(REFRESH, orjson.dumps({"refresh": "nope"}), "application/json"),
    ):
        assert_api_error(response, 503, "rate_limiter_unavailable")
        assert int(response["Retry-After"]) >= 1


def test_the_client_address_is_the_one_the_trusted_proxy_saw(settings: Any, ann: User) -> None:
    limits(settings, login_limit_per_ip=1)
    conf_override(settings, trusted_proxies=("10.9.9.0/24",))

    def via_proxy(forwarded: str) -> int:
        return (
            Client()
            .post(
                TOKEN,
                orjson.dumps({"username": "x", "password": "y"}),
                "application/json",
                REMOTE_ADDR="10.9.9.9",
                HTTP_X_FORWARDED_FOR=forwarded,
            )
            .status_code
        )

    assert via_proxy("1.1.1.1, 203.0.113.5") == 401
    # The client may put anything left of what the proxy appended: it is not the address.
    assert via_proxy("2.2.2.2, 203.0.113.5") == 429
    assert via_proxy("203.0.113.6") == 401


# --- Django admin's login page ----------------------------------------------------------------


def test_admin_login_is_limited_per_username_with_retry_after(settings: Any, ann: User) -> None:
    limits(settings, login_limit_per_username=2)
    answers = [admin_login("ann", ip=f"10.0.0.{i}") for i in range(3)]

    assert [r.status_code for r in answers] == [200, 200, 429]  # 200: the form again, with its error
    assert 1 <= int(answers[2]["Retry-After"]) <= 600  # sliding: up to two windows
    assert Client().get(ADMIN_LOGIN).status_code == 200  # showing the form is no attempt


def test_admin_login_is_limited_per_address(settings: Any, ann: User) -> None:
    limits(settings, login_limit_per_ip=2)
    assert [admin_login(f"u{i}").status_code for i in range(3)] == [200, 200, 429]


def test_admin_login_slows_down_after_failures_and_a_success_clears_them(settings: Any, ann: User) -> None:
    limits(settings, login_free_failures=1)
    assert admin_login("ann").status_code == 200
    assert admin_login("ann", PASSWORD).status_code == 429
    time.sleep(2.1)
    signed_in = admin_login("ann", PASSWORD)
    assert signed_in.status_code == 302
    assert admin_login("ann").status_code == 200  # cleared: no wait after this first failure
    assert admin_login("nobody").status_code == 200
    assert admin_login("nobody").status_code == 429  # an unknown name slows down like a known one


def test_admin_login_fails_closed_while_redis_is_down(ann: User, redis_down: None) -> None:
    response = admin_login("ann", PASSWORD)
    assert response.status_code == 503
    assert int(response["Retry-After"]) >= 1
    assert Client().get(ADMIN_LOGIN).status_code == 200


# --- the guard any login page can use ---------------------------------------------------------


def test_the_guard_counts_any_login_form(settings: Any, ann: User) -> None:
    limits(settings, login_limit_per_username=1)
    calls = []

    @login_rate_limited(username_field="email")
    def page(request: HttpRequest) -> HttpResponse:
        calls.append(request.POST["email"])
        return HttpResponse("form again")

    factory = RequestFactory()
    assert page(factory.post("/login", {"email": "a@example.com"})).status_code == 200
    refused = page(factory.post("/login", {"email": "A@example.com "}))
    assert refused.status_code == 429
    assert calls == ["a@example.com"]
    with pytest.raises(RateLimited):
        login_attempt_guard(factory.post("/login"), "a@example.com")
