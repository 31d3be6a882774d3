"""Errors: the domain's, and the one shape the API answers them in.

Services and selectors raise ``DomainError`` subclasses (not found, not
allowed, conflict, invalid, …), which say what went wrong and nothing about
HTTP. Each edge answers them its own way: the REST API with a status code and
``{"error": {"code": "...", "message": "...", "details": {...}}}``
(``http_error``), the pages with a rendered page, the compatible intake in the
shape its SDKs expect. ``ApiError`` is the REST edge's own error, for what only
HTTP knows (media types, body sizes).
"""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpResponse


class DomainError(Exception):
    """A rule of the domain refused the operation. ``code`` is machine-readable and stable."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


class NotAuthenticated(DomainError):
    """No credentials, or credentials that do not identify anyone (unknown, revoked, expired)."""


class NotFound(DomainError):
    """No such thing, or not the caller's: the two are never told apart."""


class NotAllowed(DomainError):
    """The caller reaches the thing but their role or key kind lacks the right."""


class Conflict(DomainError):
    """The current state forbids it (exists already, lease lost, archived)."""


class Invalid(DomainError):
    """The input breaks a rule of the domain."""


class Unprocessable(DomainError):
    """Well-formed input that the current state can't take (beyond the head, schema violation)."""


class RateLimited(DomainError):
    def __init__(self, code: str, message: str, retry_after: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(code, message, details)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A dependency the operation can't do without is down."""

    def __init__(self, code: str, message: str, retry_after: int = 5, details: dict[str, Any] | None = None) -> None:
        super().__init__(code, message, details)
        self.retry_after = retry_after


_DOMAIN_STATUS: list[tuple[type[DomainError], int]] = [
    (NotAuthenticated, 401),
    (NotAllowed, 403),
    (NotFound, 404),
    (Conflict, 409),
    (Unprocessable, 422),
    (RateLimited, 429),
    (Unavailable, 503),
    (Invalid, 400),
]


class ApiError(Exception):
    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)


def http_error(exc: DomainError) -> ApiError:
    """The REST API's answer to a domain error: its status, the error body and any headers it needs."""
    status_code = next((code for cls, code in _DOMAIN_STATUS if isinstance(exc, cls)), 400)
    headers: dict[str, str] = {}
    if isinstance(exc, NotAuthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    if isinstance(exc, RateLimited | Unavailable):
        headers["Retry-After"] = str(exc.retry_after)
    return ApiError(status_code, exc.code, exc.message, exc.details, headers)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def json_response(data: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(orjson.dumps(data), status=status_code, content_type="application/json")
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def api_error_response(exc: ApiError) -> HttpResponse:
    return json_response(exc.body(), exc.status_code, exc.headers)
