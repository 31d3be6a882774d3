"""The access matrix of the dashboard's pages: every page, every kind of caller, on an own and a foreign stream.

``PAGES`` names every page route and method, as ``ROUTES`` does for the API
(tests/access_matrix.py), and the expected answer is derived the same way:
what a page needs is its own ``@page`` declaration (read through the URL
resolver), what a caller holds comes from the roles. Pages differ from the API
only in how they answer:

- nobody, and any API key (pages are for people with a session; a key header
  is not a way in), is sent to the sign-in page (302) instead of a 401;
- an allowed request answers the page (200), or the redirect after an action
  (302 elsewhere than the sign-in page).

``PUBLIC_PAGES`` are the few pages anyone may open (sign in, reset a password).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver

from .access_matrix import ALLOWED, CallerSpec, Route, expected

LOGIN = "login"
PAGE_ALLOWED_STATUSES = frozenset({200, 302})
# Route prefixes that are not the dashboard's pages.
NOT_PAGES = ("api/", "admin/", "health", "static/", "__debug__")
# Views that are not pages wherever they are routed: the intake (the compatible wire formats
# sit at the paths their SDKs post to) answers programs with an API key, in their own shapes.
NOT_PAGE_MODULES = ("ingestion.",)

_S = "streams/<slug:slug>/"
_DL = "dead-letters/<int:letter_id>/"
_TEAM = "teams/<slug:team>/"

PAGES: list[Route] = [
    Route("", "GET", None),
    # streams
    Route("streams/", "GET", None),
    Route("streams/new/", "GET", None),
    Route("streams/new/", "POST"),
    Route(_S, "GET", None),
    Route(f"{_S}edit/", "GET", None),
    Route(f"{_S}edit/", "POST"),
    Route(f"{_S}archive/", "GET", None),
    Route(f"{_S}archive/", "POST"),
    Route(f"{_S}tail/", "GET", None),
    Route(f"{_S}erasures/", "GET", None),
    Route(f"{_S}erasures/", "POST"),
    # a stream's events and analytics
    Route(f"{_S}events/", "GET", None),
    Route(f"{_S}events/<path:event_id>/", "GET", None),
    Route(f"{_S}analytics/", "GET", None),
    Route(f"{_S}analytics/breakdown/", "GET", None),
    Route(f"{_S}analytics/funnel/", "GET", None),
    Route(f"{_S}analytics/retention/", "GET", None),
    Route(f"{_S}analytics/paths/", "GET", None),
    Route(f"{_S}analytics/processing/", "GET", None),
    Route(f"{_S}alerts/", "GET", None),
    Route(f"{_S}alerts/new/", "GET", None),
    Route(f"{_S}alerts/new/", "POST"),
    Route(f"{_S}alerts/<int:rule_id>/edit/", "GET", None),
    Route(f"{_S}alerts/<int:rule_id>/edit/", "POST"),
    Route(f"{_S}alerts/<int:rule_id>/mute/", "GET", None),
    Route(f"{_S}alerts/<int:rule_id>/mute/", "POST"),
    Route(f"{_S}alerts/<int:rule_id>/unmute/", "POST"),
    Route(f"{_S}alerts/<int:rule_id>/delete/", "GET", None),
    Route(f"{_S}alerts/<int:rule_id>/delete/", "POST"),
    # schema registry
    Route(f"{_S}schemas/", "GET", None),
    Route(f"{_S}schemas/<str:event_type>/", "GET", None),
    Route(f"{_S}schemas/<str:event_type>/try/", "POST"),
    Route(f"{_S}schemas/<str:event_type>/new/", "GET", None),
    Route(f"{_S}schemas/<str:event_type>/new/", "POST"),
    # consumer groups and webhooks
    Route(f"{_S}groups/", "GET", None),
    Route(f"{_S}groups/<slug:group>/seek/", "GET", None),
    Route(f"{_S}groups/<slug:group>/seek/", "POST"),
    Route(f"{_S}groups/<slug:group>/pause/", "GET", None),
    Route(f"{_S}groups/<slug:group>/pause/", "POST"),
    Route(f"{_S}groups/<slug:group>/resume/", "GET", None),
    Route(f"{_S}groups/<slug:group>/resume/", "POST"),
    Route(f"{_S}webhooks/", "GET", None),
    Route(f"{_S}webhooks/new/", "GET", None),
    Route(f"{_S}webhooks/new/", "POST"),
    Route(f"{_S}webhooks/<int:webhook_id>/", "GET", None),
    Route(f"{_S}webhooks/<int:webhook_id>/edit/", "GET", None),
    Route(f"{_S}webhooks/<int:webhook_id>/edit/", "POST"),
    Route(f"{_S}webhooks/<int:webhook_id>/test/", "POST"),
    Route(f"{_S}webhooks/<int:webhook_id>/enable/", "GET", None),
    Route(f"{_S}webhooks/<int:webhook_id>/enable/", "POST"),
    # the Kafka bridge
    Route(f"{_S}kafka/", "GET", None),
    Route(f"{_S}kafka/sinks/new/", "GET", None),
    Route(f"{_S}kafka/sinks/new/", "POST"),
    Route(f"{_S}kafka/sources/new/", "GET", None),
    Route(f"{_S}kafka/sources/new/", "POST"),
    Route(f"{_S}kafka/sinks/<int:sink_id>/toggle/", "GET", None),
    Route(f"{_S}kafka/sinks/<int:sink_id>/toggle/", "POST"),
    Route(f"{_S}kafka/sinks/<int:sink_id>/delete/", "GET", None),
    Route(f"{_S}kafka/sinks/<int:sink_id>/delete/", "POST"),
    Route(f"{_S}kafka/sources/<int:source_id>/toggle/", "GET", None),
    Route(f"{_S}kafka/sources/<int:source_id>/toggle/", "POST"),
    Route(f"{_S}kafka/sources/<int:source_id>/delete/", "GET", None),
    Route(f"{_S}kafka/sources/<int:source_id>/delete/", "POST"),
    # keys
    Route("keys/", "GET", None),
    Route("keys/new/", "GET", None),
    Route("keys/new/", "POST"),
    Route("keys/<int:key_id>/revoke/", "GET", None),
    Route("keys/<int:key_id>/revoke/", "POST"),
    # dead letters
    Route("dead-letters/", "GET", None),
    Route("dead-letters/selected/", "POST"),
    Route(_DL, "GET", None),
    Route(f"{_DL}replay/", "GET", None),
    Route(f"{_DL}replay/", "POST"),
    Route(f"{_DL}discard/", "GET", None),
    Route(f"{_DL}discard/", "POST"),
    # people and teams
    Route("people/", "GET", None),
    Route("people/invite/", "GET", None),
    Route("people/invite/", "POST"),
    Route("people/<str:username>/", "GET", None),
    Route("people/<str:username>/", "POST"),
    Route("people/<str:username>/active/", "GET", None),
    Route("people/<str:username>/active/", "POST"),
    Route("people/<str:username>/invitation/", "GET", None),
    Route("people/<str:username>/invitation/", "POST"),
    Route("teams/", "GET", None),
    Route("teams/new/", "GET", None),
    Route("teams/new/", "POST"),
    Route(_TEAM, "GET", None),
    Route(_TEAM, "POST"),
    Route(f"{_TEAM}members/<str:username>/remove/", "GET", None),
    Route(f"{_TEAM}members/<str:username>/remove/", "POST"),
    Route(f"{_TEAM}streams/<slug:stream>/revoke/", "GET", None),
    Route(f"{_TEAM}streams/<slug:stream>/revoke/", "POST"),
    # audit log
    Route("audit/", "GET", None),
]

# Pages for anyone, signed in or not: they declare no access and are listed here by name.
PUBLIC_PAGES = frozenset(
    {
        "login",
        "logout",
        "password-reset",
        "password-reset-sent",
        "password_reset_confirm",
        "password_reset_complete",
        # Signed in, by Django's own view (login_required): a person changing their password.
        "password-change",
        "password-change-done",
        # Operations: readiness for probes; /metrics has its own rule (a token or a network, eventflow/metrics_http.py).
        "ready",
        "metrics",
    }
)


def _walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern


def page_routes() -> dict[str, URLPattern]:
    """Every route outside the API, admin, health and static files, with its URL pattern."""
    return {
        route: pattern
        for route, pattern in _walk(get_resolver().url_patterns)
        if not route.startswith(NOT_PAGES) and not pattern.callback.__module__.startswith(NOT_PAGE_MODULES)
    }


def page_access(pattern: URLPattern, method: str) -> Any:
    """What the page declares for ``method`` through ``@page`` (None: it declares nothing)."""
    declared = getattr(pattern.callback, "access", None)
    return None if declared is None else declared.get(method)


def page_expected(access: Any, caller: CallerSpec, route: Route, variant: str) -> int | str:
    """ALLOWED, 302 (to sign in), 403 or 404 for ``caller`` on the page."""
    if caller.key_kind is not None or caller.is_nobody:
        return LOGIN
    want = expected(access, caller, route, variant)
    return ALLOWED if want == ALLOWED else want
