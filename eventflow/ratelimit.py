"""Rate limits: counters in Redis, and the policies built on them.

A ``Window`` allows ``limit`` hits in ``seconds``, counted in fixed windows
(one counter per calendar window: cheapest, but a client may spend two
windows' worth around a boundary) or sliding ones (the current and the
previous counter, the previous weighted by how much of it still overlaps the
last ``seconds``: smooth, constant memory, two keys per client).

When Redis is down a counter fails one of two ways:

- ``Fail.OPEN``: allow and log. The intake does this (DESIGN.md, invariant 9);
  its counter is read in the API key's own round trip (``streams/auth.py``) and
  only turned into a ``Quota`` here.
- ``Fail.CLOSED``: refuse with ``Unavailable`` (503 and Retry-After). People's
  endpoints do this: whoever can take Redis down must not get unlimited
  password guesses with it.

Policies built on the counters: every way to log in (``login_attempt_guard``,
``login_rate_limited`` and, for the REST framework, ``eventflow.auth_views``)
and the management API per person (``PersonThrottle``).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import html
import ipaddress
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from django.http import HttpRequest, HttpResponse
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from eventflow import conf
from eventflow.errors import RateLimited, Unavailable
from eventflow.middleware import IpNetwork
from eventflow.middleware import client_ip as client_address
from eventflow.redis import BREAKER_SECONDS, get_redis, redis_available, redis_failed
from streams.access import caller_of

T = TypeVar("T")


class Fail(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


def _rkey(*parts: object) -> str:
    return ":".join([conf.get().redis_key_prefix, "rl", *(str(part) for part in parts)])


def unavailable() -> Unavailable:
    return Unavailable(
        "rate_limiter_unavailable",
        "The rate limiter is unavailable; try again shortly.",
        retry_after=math.ceil(BREAKER_SECONDS),
    )


def run(what: str, fn: Callable[[], T], *, fail: Fail) -> T | None:
    """Run ``fn`` against Redis. On failure, or while the breaker is open: None (OPEN) or ``Unavailable`` (CLOSED)."""
    if not redis_available():
        if fail is Fail.CLOSED:
            raise unavailable()
        return None
    try:
        return fn()
    except (redis.RedisError, OSError) as exc:
        redis_failed(exc, what)
        if fail is Fail.CLOSED:
            raise unavailable() from exc
        return None


# --- counters ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """At most ``limit`` hits in ``seconds``; ``name`` is the policy's name and the counters' namespace."""

    name: str
    limit: int
    seconds: int
    sliding: bool = False


# Not frozen: one is built on every intake request, and a frozen dataclass's __init__ costs twice as much.
@dataclass(slots=True)
class Quota:
    """Where one client's counter stands after a hit (the hit included)."""

    policy: str
    limit: int
    window: int
    used: int
    # Seconds until the window's quota is whole again (fixed windows).
    reset: int
    # Seconds until one more hit would be allowed; 0 when it is now.
    retry_after: int

    @property
    def exceeded(self) -> bool:
        return self.used > self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def headers(self) -> dict[str, str]:
        """``RateLimit-Policy`` and ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers): quota, window, remaining, reset."""
        return {
            "RateLimit-Policy": f'"{self.policy}";q={self.limit};w={self.window}',
            "RateLimit": f'"{self.policy}";r={self.remaining};t={self.reset}',
        }


def fixed_window(*, policy: str, limit: int, seconds: int, used: int, now: float | None = None) -> Quota:
    """The quota of a fixed window whose counter reads ``used`` (the current hit included)."""
    now = time.time() if now is None else now
    reset = max(1, math.ceil(seconds - now % seconds))
    return Quota(policy, limit, seconds, used, reset, reset if used > limit else 0)


def _sliding_wait(*, limit: int, seconds: int, previous: int, current: int, elapsed: float) -> float:
    """Seconds until a hit would fit: ``previous·(1 - t/seconds) + current + 1 ≤ limit`` (``current`` without it)."""
    if current + 1 <= limit:
        if previous == 0:
            return 0.0
        at = seconds * (1 - (limit - current - 1) / previous)
        return max(0.0, at - elapsed)
    # Not in this window: in the next, this window's count becomes the previous one.
    at = seconds * (1 - (limit - 1) / current)
    return seconds - elapsed + max(0.0, at)


class _Counter:
    """One window's counter for one client at one moment: queued on a pipeline, then read from its results."""

    def __init__(self, window: Window, client: str, now: float) -> None:
        self.window = window
        index, offset = divmod(now, window.seconds)
        self.elapsed = offset
        self.now = now
        self.current = _rkey(window.name, client, int(index))
        self.previous = _rkey(window.name, client, int(index) - 1)

    def queue(self, pipe: Any) -> None:
        pipe.incr(self.current)
        # Sliding windows read this counter as the previous one during the next window.
        pipe.expire(self.current, self.window.seconds * (2 if self.window.sliding else 1) + 5)
        if self.window.sliding:
            pipe.get(self.previous)

    def size(self) -> int:
        return 3 if self.window.sliding else 2

    def quota(self, results: Sequence[Any]) -> Quota:
        w = self.window
        current = int(results[0])
        if not w.sliding:
            return fixed_window(policy=w.name, limit=w.limit, seconds=w.seconds, used=current, now=self.now)
        previous = int(results[2] or 0)
        weight = 1 - self.elapsed / w.seconds
        # The estimate rounded up: over an integer limit exactly when the estimate is.
        used = math.ceil(previous * weight + current - 1e-9)
        wait = _sliding_wait(
            limit=w.limit, seconds=w.seconds, previous=previous, current=current - 1, elapsed=self.elapsed
        )
        reset = max(1, math.ceil(w.seconds - self.elapsed))
        return Quota(w.name, w.limit, w.seconds, used, reset, max(1, math.ceil(wait)) if used > w.limit else 0)


@dataclass
class Hit:
    """The quotas after one hit on each counter, what was read with them, and a way to take the hit back."""

    quotas: list[Quota]
    reads: list[Any]
    counters: list[_Counter]

    def take_back(self) -> None:
        """Undo the hit (a refused request does not spend the quota). Best effort: a lost undo only errs strict."""

        def go() -> None:
            pipe = get_redis().pipeline(transaction=False)
            for counter in self.counters:
                pipe.decr(counter.current)
            pipe.execute()

        run("rate limit take back", go, fail=Fail.OPEN)


def hit(
    checks: Sequence[tuple[Window, str]],
    *,
    fail: Fail,
    reads: Sequence[str] = (),
    what: str = "rate limit",
) -> Hit | None:
    """Count one hit on each ``(window, client)`` in one round trip; ``reads`` are hashes read in the same trip.

    None when Redis is down and ``fail`` is OPEN; ``Unavailable`` when it is CLOSED.
    """
    now = time.time()
    counters = [_Counter(window, client, now) for window, client in checks]

    def go() -> Hit:
        pipe = get_redis().pipeline(transaction=False)
        for counter in counters:
            counter.queue(pipe)
        for key in reads:
            pipe.hgetall(key)
        results = pipe.execute()
        quotas, at = [], 0
        for counter in counters:
            quotas.append(counter.quota(results[at : at + counter.size()]))
            at += counter.size()
        return Hit(quotas, results[at:], counters)

    return run(what, go, fail=fail)


def enforce(outcome: Hit, code: str, message: str) -> None:
    """Raise ``RateLimited`` with the longest wait among the exceeded quotas, taking the hit back first."""
    waits = [q.retry_after for q in outcome.quotas if q.exceeded]
    if waits:
        outcome.take_back()
        raise RateLimited(code, message, retry_after=max(waits))


# --- client identity --------------------------------------------------------------------------


def client_ip(request: HttpRequest | Request) -> str:
    """The client's address as the audit log records it: the peer, or behind ``EVENTFLOW_TRUSTED_PROXIES``
    the address they forwarded."""
    django_request: HttpRequest = getattr(request, "_request", request)
    return client_address(django_request, _trusted_proxies(conf.get().trusted_proxies)) or ""


@functools.lru_cache(maxsize=4)
def _trusted_proxies(entries: tuple[str, ...]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _username_key(username: str) -> str:
    # Hashed: usernames (and what people type by mistake, often a password) stay out of Redis.
    # Case-folded: one budget however the name is typed.
    return hashlib.sha256(username.strip().casefold().encode()).hexdigest()[:32]


# --- logins -----------------------------------------------------------------------------------

LOGIN_REFUSED = "too_many_login_attempts"
LOGIN_MESSAGE = "Too many sign-in attempts. Try again later."


@dataclass(frozen=True)
class LoginAttempt:
    """An attempt that passed the guard; report its outcome with ``login_failed`` / ``login_succeeded``."""

    user_key: str

    @property
    def failures_key(self) -> str:
        return _rkey("login-failures", self.user_key)


def login_delay(failures: int) -> int:
    """Seconds an attempt must wait after the last failure, given the failures so far (0: none)."""
    free = conf.get().login_free_failures
    if failures < free:
        return 0
    return int(min(conf.get().login_delay_max_seconds, 2 ** (failures - free + 1)))


def login_attempt_guard(request: HttpRequest | Request, username: str) -> LoginAttempt:
    """Call before checking a password. Refuses (``RateLimited``, 429) when the client's address or the
    username has made too many attempts lately, or when the username's recent failures ask for a wait;
    ``Unavailable`` (503) when Redis is down.

    Every username gets the same treatment, whether or not such a person exists:
    its counters and failures live under a hash of the name, never a user id.
    """
    limits = conf.get()
    attempt = LoginAttempt(_username_key(username))
    checks = [(Window("login-ip", limits.login_limit_per_ip, limits.login_window_seconds, True), client_ip(request))]
    if username:
        checks.append(
            (Window("login-user", limits.login_limit_per_username, limits.login_window_seconds, True), attempt.user_key)
        )
    outcome = hit(checks, fail=Fail.CLOSED, reads=[attempt.failures_key], what="login rate limit")
    assert outcome is not None  # Fail.CLOSED raises instead
    enforce(outcome, LOGIN_REFUSED, LOGIN_MESSAGE)
    failures = outcome.reads[0]
    if username and failures:
        count, last = int(failures.get(b"n", 0)), float(failures.get(b"at", 0))
        wait = last + login_delay(count) - time.time()
        if wait > 0:
            outcome.take_back()
            raise RateLimited(LOGIN_REFUSED, LOGIN_MESSAGE, retry_after=max(1, math.ceil(wait)))
    return attempt


def login_failed(attempt: LoginAttempt) -> None:
    """Count a failed attempt for its username (any username, existing or not)."""
    key, kept = attempt.failures_key, conf.get().login_failures_kept_seconds

    def go() -> None:
        pipe = get_redis().pipeline(transaction=False)
        pipe.hincrby(key, "n", 1)
        pipe.hset(key, "at", repr(time.time()))
        pipe.expire(key, kept)
        pipe.execute()

    run("login failure", go, fail=Fail.OPEN)


def login_succeeded(attempt: LoginAttempt) -> None:
    """A successful login clears its username's failures."""
    run("login success", lambda: get_redis().delete(attempt.failures_key), fail=Fail.OPEN)


def _refusal_page(exc: RateLimited | Unavailable) -> HttpResponse:
    status = 429 if isinstance(exc, RateLimited) else 503
    body = f"<!doctype html><title>{status}</title><h1>{html.escape(exc.message)}</h1>"
    response = HttpResponse(body, status=status, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(exc.retry_after)
    return response


def login_rate_limited(
    view: Callable[..., HttpResponse] | None = None,
    *,
    username_field: str = "username",
    refused: Callable[[RateLimited | Unavailable], HttpResponse] = _refusal_page,
) -> Any:
    """Decorate a form login view (Django admin's, the dashboard's): its POSTs pass ``login_attempt_guard``.

    An attempt succeeded when the view signed someone in (``django.contrib.auth.login``
    replaces ``request.user``); otherwise it failed. Refusals are answered by ``refused``
    (by default a short page with status 429 or 503 and Retry-After).
    """

    def decorate(inner: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(inner)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method != "POST":
                return inner(request, *args, **kwargs)
            try:
                attempt = login_attempt_guard(request, str(request.POST.get(username_field, "")))
            except (RateLimited, Unavailable) as exc:
                return refused(exc)
            before = getattr(request, "user", None)
            response = inner(request, *args, **kwargs)
            after = getattr(request, "user", None)
            if after is not before and after is not None and after.is_authenticated:
                login_succeeded(attempt)
            else:
                login_failed(attempt)
            return response

        return wrapper

    return decorate(view) if view is not None else decorate


# --- the management API -------------------------------------------------------------------------


class PersonThrottle(BaseThrottle):
    """The management API per person (session or JWT): ``EVENTFLOW_API_RATE_LIMIT_PER_USER`` requests a minute.

    API keys have their own limit and the intake its own counter, so key callers
    and anonymous requests (refused by the access check anyway) pass. Fails closed.
    """

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        limit = conf.get().api_rate_limit_per_user
        if not limit:
            return True
        caller = caller_of(request)
        if caller.key is not None or caller.user is None:
            return True
        outcome = hit([(Window("api-user", limit, 60), str(caller.user.pk))], fail=Fail.CLOSED, what="api rate limit")
        assert outcome is not None
        quota = outcome.quotas[0]
        if quota.exceeded:
            outcome.take_back()
            self._wait = quota.retry_after
            return False
        return True

    def wait(self) -> float | None:
        return self._wait
