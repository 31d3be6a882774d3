"""A query string holding NUL is a 400 on every page, the dashboard's and Django admin's alike.

PostgreSQL refuses NUL in text, so a page that filtered or searched on such a
value (the admin's ``?q=%00``, ``?error_class=%00``) was a 500. One check here,
ahead of every page, rather than one in each list and filter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from eventflow.dashboard import NUL_IN_ADDRESS
from eventflow.db import holds_nul
from eventflow.views import bad_request


class NulQueryMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        # The REST API and the intake take keys or tokens, not a session, so their views are
        # exempt from CSRF; they check their own parameters (TextField, analytics/filters.py)
        # and answer in their own shapes, which their clients and SDKs know.
        if getattr(view_func, "csrf_exempt", False):
            return None
        # The percent-encoded form is the cheap test; parsing decides (a raw NUL byte too).
        query = request.META.get("QUERY_STRING", "")
        if "%00" not in query and "\x00" not in query:
            return None
        if not holds_nul(dict(request.GET.lists())):
            return None
        return bad_request(request, message=NUL_IN_ADDRESS)
