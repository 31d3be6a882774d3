"""The lean intake path: ``POST`` of events reaches its view without the rest of Django's request cycle.

``eventflow/wsgi.py`` puts ``IntakeDispatcher`` in front of Django's WSGI
handler. A ``POST`` to ``/api/v1/streams/<slug>/events`` or ``…/events/batch``
is served by the very view Django would route it to (``ingestion.api``), with
the very middleware classes of ``settings.MIDDLEWARE`` that act on such a
request (security headers and the HTTPS redirect, metrics, the audit log and
request id, the host check, the frame and content-security headers, and any
added later, such as tracing's); everything else goes to Django unchanged.

What it leaves out, each measured (docs/HOT_PATHS.md):

- URL resolution: both routes are resolved once, at start, from the URLconf
  itself; if they no longer lead to the intake's views, the dispatcher sends
  everything to Django.
- The middleware that does nothing for a keyed, CSRF-exempt JSON ``POST``
  (``SKIPPED_MIDDLEWARE``: sessions, CSRF, authentication, messages, htmx,
  static files, the pages' NUL check); the intake never reads a session, a user or a message.
- Django's ``request_started`` / ``request_finished`` signals, whose only
  receivers are the database connection's upkeep and the query log: the upkeep
  is done here (``_connections_before`` / ``_connections_after``) with the same
  Django calls, except that a connection used within the last
  ``HEALTH_CHECK_IDLE_SECONDS`` is not pinged (``SELECT 1``) again before the
  request; one that failed is checked and closed after it, as Django does.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CheckableLazyObject, CSPMiddleware
from django.conf import settings
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIRequest
from django.db import connections
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import Resolver404, ResolverMatch, resolve
from django.utils.module_loading import import_string

# settings.MIDDLEWARE entries that do nothing for an intake POST (see the module's docstring).
SKIPPED_MIDDLEWARE = frozenset(
    {
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django_htmx.middleware.HtmxMiddleware",
        # Pages only: the intake's views are exempt from CSRF, which it passes by (eventflow/nul_query.py).
        "eventflow.nul_query.NulQueryMiddleware",
    }
)
# The intake's routes, as eventflow/urls.py spells them (``<slug:slug>``), and the view each must resolve to.
INTAKE_PATH = re.compile(r"/api/v1/streams/(?P<slug>[-a-zA-Z0-9_]+)/events(?P<batch>/batch)?")
ROUTES = {False: "ingestion.api.events_send", True: "ingestion.api.events_send_batch"}
PROBE_SLUG = "lean-intake-probe"
# A connection used this recently is not pinged before the next request (Django pings before every one).
HEALTH_CHECK_IDLE_SECONDS = 1.0

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _route(batch: bool) -> ResolverMatch | None:
    """The URLconf's match for the intake route, if it still leads to the intake's view."""
    path = f"/api/v1/streams/{PROBE_SLUG}/events" + ("/batch" if batch else "")
    try:
        match = resolve(path)
    except Resolver404:
        return None
    if match.func is not import_string(ROUTES[batch]) or match.kwargs != {"slug": PROBE_SLUG}:
        return None
    return match


def _middleware_chain(match: ResolverMatch) -> Callable[[HttpRequest], HttpResponse]:
    """The route's view inside settings.MIDDLEWARE less SKIPPED_MIDDLEWARE, as Django's handler builds it.

    The kept middleware's ``process_view`` and ``process_exception`` hooks run as
    Django runs them (tracing's middleware names its span in ``process_view``).
    """
    view_hooks: list[Callable[..., HttpResponse | None]] = []
    exception_hooks: list[Callable[..., HttpResponse | None]] = []
    func = match.func

    def view(request: HttpRequest) -> HttpResponse:
        kwargs = request.resolver_match.kwargs  # type: ignore[union-attr]
        for hook in view_hooks:
            answered = hook(request, func, (), kwargs)
            if answered is not None:
                return answered
        try:
            return func(request, **kwargs)  # type: ignore[no-any-return]
        except Exception as exc:
            for hook in exception_hooks:
                answered = hook(request, exc)
                if answered is not None:
                    return answered
            raise

    handler = convert_exception_to_response(view)
    for path in reversed(settings.MIDDLEWARE):
        if path in SKIPPED_MIDDLEWARE:
            continue
        middleware = REPLACED_MIDDLEWARE.get(path, import_string(path))(handler)
        if hasattr(middleware, "process_view"):
            view_hooks.insert(0, middleware.process_view)
        if hasattr(middleware, "process_exception"):
            exception_hooks.append(middleware.process_exception)
        handler = convert_exception_to_response(middleware)
    return handler  # type: ignore[return-value]


class _PolicyOnceCSPMiddleware(CSPMiddleware):
    """django-csp's middleware, building its policy once: an intake answer has no nonce and no policy of its own.

    Building the two policies (``dataclasses.asdict`` and ``build_policy``) was a sixth of a lean
    single-event request's CPU. An answer that did use a nonce or set a policy goes the library's way.
    """

    _PER_RESPONSE = (
        "_csp_config",
        "_csp_update",
        "_csp_replace",
        "_csp_config_ro",
        "_csp_update_ro",
        "_csp_replace_ro",
    )

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        super().__init__(get_response)
        self._headers: list[tuple[str, str]] | None = None

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if (
            self._headers is None
            or getattr(request, "_csp_nonce", None) is not None
            or any(hasattr(response, name) for name in self._PER_RESPONSE)
            or getattr(response, "_csp_exempt", False)
            or getattr(response, "_csp_exempt_ro", False)
            or (response.status_code in (500, 404) and settings.DEBUG)
        ):
            answered = super().process_response(request, response)
            if self._headers is None and getattr(request, "_csp_nonce", None) is None:
                self._headers = [(name, response[name]) for name in (HEADER, HEADER_REPORT_ONLY) if name in response]
            return answered
        for name, value in self._headers:
            if name not in response:
                response[name] = value
        # What the library does last: a nonce asked for from now on is an error.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)  # type: ignore[attr-defined]
        return response


# The middleware the lean path runs in place of settings.MIDDLEWARE's entry.
REPLACED_MIDDLEWARE = {"csp.middleware.CSPMiddleware": _PolicyOnceCSPMiddleware}

_used = threading.local()


def _connections_before() -> None:
    """Django's upkeep at a request's start (``close_old_connections``), for connections idle a while."""
    last = getattr(_used, "at", None)
    if last is not None and time.monotonic() - last < HEALTH_CHECK_IDLE_SECONDS:
        return
    for conn in connections.all(initialized_only=True):
        conn.close_if_unusable_or_obsolete()


def _connections_after() -> None:
    """Django's upkeep at a request's end, where it changes anything: a failed or expired connection closes."""
    now = time.monotonic()
    _used.at = now
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        if (
            conn.errors_occurred
            or (conn.close_at is not None and now >= conn.close_at)
            or conn.get_autocommit() != conn.settings_dict["AUTOCOMMIT"]
        ):
            conn.close_if_unusable_or_obsolete()
            _used.at = None


class IntakeDispatcher:
    """A WSGI application: intake ``POST`` requests on the lean path, the rest to ``app`` (Django's handler)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.routes: dict[bool, tuple[ResolverMatch, Callable[[HttpRequest], HttpResponse]]] = {}
        for batch in (False, True):
            match = _route(batch)
            if match is not None:
                self.routes[batch] = (match, _middleware_chain(match))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        response = self.respond(environ)
        if response is None:
            return self.app(environ, start_response)
        status = f"{response.status_code} {response.reason_phrase}"
        headers = [*response.items(), *(("Set-Cookie", c.output(header="")) for c in response.cookies.values())]
        start_response(status, headers)
        return [response.content]

    def respond(self, environ: dict[str, Any], *, upkeep: bool = True) -> HttpResponse | None:
        """The answer to an intake ``POST``; None for any other request.

        ``upkeep=False`` leaves the database connections alone, as Django's test client does.
        """
        if environ.get("REQUEST_METHOD") != "POST":
            return None
        found = INTAKE_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if found is None:
            return None
        route = self.routes.get(found["batch"] is not None)
        if route is None:
            return None
        match, chain = route
        if upkeep:
            _connections_before()
        try:
            request = WSGIRequest(environ)
            # What the URL resolver would have set: the route's name and pattern (metrics, audit) and the slug.
            request.resolver_match = ResolverMatch(
                match.func, (), {"slug": found["slug"]}, url_name=match.url_name, route=match.route
            )
            response = chain(request)
            response.wsgi_request = request  # type: ignore[attr-defined]
        finally:
            if upkeep:
                _connections_after()
        return response
