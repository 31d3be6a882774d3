"""The REST framework's exception handler: every error in the one body of ``eventflow.errors``.

Apart from ``eventflow.errors`` because it needs ``rest_framework.views``, whose
import reads the default permission class (``streams.access``), which imports
``eventflow.errors``.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from eventflow.errors import ApiError, DomainError, error_body, http_error

_DRF_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.ParseError: "invalid_json",
    exceptions.ValidationError: "invalid_request",
    exceptions.Throttled: "rate_limited",
    exceptions.NotAcceptable: "not_acceptable",
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        exc = http_error(exc)
    if isinstance(exc, ApiError):
        return Response(exc.body(), status=exc.status_code, headers=exc.headers)
    response = exception_handler(exc, context)
    if response is None:
        return None
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
    data = response.data
    if isinstance(exc, exceptions.ValidationError):
        message = "The request is invalid."
        details = data if isinstance(data, dict) else {"errors": data}
    else:
        message = str(data.get("detail", exc)) if isinstance(data, dict) else str(exc)
        details = {}
    if response.status_code == status.HTTP_401_UNAUTHORIZED and "WWW-Authenticate" not in response:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    response.data = error_body(code, message, details)
    return response
