"""The ways to log in, rate-limited: the JWT token endpoints and Django admin's login page.

Each login attempt passes ``eventflow.ratelimit.login_attempt_guard`` (per
client address and per username, with a growing wait after repeated failures;
503 while Redis is down) and reports its outcome, so that a success clears the
username's failures. Unknown usernames are treated exactly like known ones.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenRefreshSerializer
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from eventflow import conf
from eventflow.openapi import error_responses
from eventflow.ratelimit import (
    LOGIN_MESSAGE,
    LOGIN_REFUSED,
    Fail,
    LoginAttempt,
    Window,
    client_ip,
    enforce,
    hit,
    login_attempt_guard,
    login_failed,
    login_rate_limited,
    login_succeeded,
)
from streams.access import PUBLIC, DeclaredAccess

# Where the token view finds the attempt its throttle let through.
ATTEMPT_ATTR = "ef_login_attempt"


class LoginThrottle(BaseThrottle):
    """A token request is a login attempt: the guard refuses it (429 or 503) or lets it through."""

    def allow_request(self, request: Request, view: Any) -> bool:
        data = request.data
        username = data.get(view.username_field, "") if isinstance(data, dict) else ""
        setattr(request, ATTEMPT_ATTR, login_attempt_guard(request, username if isinstance(username, str) else ""))
        return True


class RefreshThrottle(BaseThrottle):
    """Refreshing a token takes no password, so it is limited per client address only."""

    def allow_request(self, request: Request, view: Any) -> bool:
        limits = conf.get()
        window = Window("token-refresh", limits.token_refresh_limit_per_ip, limits.login_window_seconds, sliding=True)
        outcome = hit([(window, client_ip(request))], fail=Fail.CLOSED, what="token refresh rate limit")
        assert outcome is not None  # Fail.CLOSED raises instead
        enforce(outcome, LOGIN_REFUSED, LOGIN_MESSAGE)
        return True


class TokenObtainView(TokenObtainPairView):
    permission_classes = [DeclaredAccess]  # type: ignore[assignment]  # simplejwt types it as ()
    access = PUBLIC
    throttle_classes = [LoginThrottle]

    @property
    def username_field(self) -> str:
        return str(getattr(self.get_serializer_class(), "username_field", "username"))

    @extend_schema(
        summary="Obtain a token pair",
        description=(
            "Limited per client address and per username; after repeated failures each attempt must wait "
            "longer (429 with Retry-After). An unknown username answers exactly like a wrong password. "
            "503 with Retry-After while the rate limiter is unavailable."
        ),
        tags=["auth"],
        responses={200: TokenObtainPairSerializer, **error_responses(400, 401, 429, 503)},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        attempt: LoginAttempt = getattr(request, ATTEMPT_ATTR)
        try:
            response = super().post(request, *args, **kwargs)
        except AuthenticationFailed:
            login_failed(attempt)
            raise
        login_succeeded(attempt)
        return response


class TokenRefreshLimitedView(TokenRefreshView):
    permission_classes = [DeclaredAccess]  # type: ignore[assignment]  # simplejwt types it as ()
    access = PUBLIC
    throttle_classes = [RefreshThrottle]

    @extend_schema(
        summary="Refresh an access token",
        description="Limited per client address (429 with Retry-After); 503 while the rate limiter is unavailable.",
        tags=["auth"],
        responses={200: TokenRefreshSerializer, **error_responses(400, 401, 429, 503)},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)


# Django admin's login page, behind the same guard: routed at /admin/login/ ahead of admin.site.urls.
admin_login = login_rate_limited(admin.site.login)
