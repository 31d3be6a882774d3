"""The dashboard's shell: the door every page goes through, its navigation, its forms and its lists.

Pages are thin, as the REST views are: ``@page`` asks ``streams/access.py``
(the declaration reads like an API view's ``access``), hands the view the
caller (and the stream, when the URL names one), and turns the domain's errors
into pages: ``NotFound`` the 404 page, ``NotAllowed`` the 403 page, a rate
limit the 429 page, a conflict or invalid input outside a form a message on
the page the action came from. ``submit`` turns ``Invalid``/``Conflict`` raised
by a service into the errors of the form that fed it. Pages are for people
signed in with a session: an ``X-API-Key`` header is not a way in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from django import forms
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import render
from django.urls import resolve, reverse
from django.utils import timezone
from rest_framework.exceptions import NotFound as CursorNotFound
from rest_framework.request import Request

from eventflow.api import ApiCursorPagination
from eventflow.db import holds_nul
from eventflow.errors import (
    Conflict,
    DomainError,
    Invalid,
    NotAllowed,
    NotAuthenticated,
    NotFound,
    RateLimited,
    Unavailable,
    Unprocessable,
)
from streams.access import (
    AUTHENTICATED,
    REACH,
    Action,
    AnyOf,
    Caller,
    as_rule,
    caller_for_user,
    may,
    reaches_anything,
    require,
    stream_access,
    stream_reach,
)

T = TypeVar("T")
View = Callable[..., HttpResponse]

# Page size of the dashboard's lists.
PAGE_SIZE = 25


# --- the caller --------------------------------------------------------------------------------


def page_caller(request: HttpRequest) -> Caller:
    """The person behind the session, kept on the request for the audit log; keys are not page callers."""
    cached = getattr(request, "ef_caller", None)
    if cached is not None and cached.key is None:
        return cached  # type: ignore[no-any-return]
    caller = caller_for_user(getattr(request, "user", None), via="session")
    request.ef_caller = caller  # type: ignore[attr-defined]
    return caller


@dataclass(frozen=True)
class Can:
    """What the caller may do anywhere, as templates ask it: ``{% if can.manage %}``."""

    send: bool = False
    read: bool = False
    consume: bool = False
    manage: bool = False
    operate: bool = False
    administer: bool = False
    staff: bool = False

    @classmethod
    def of(cls, caller: Caller) -> Can:
        held = set(caller.actions())
        return cls(
            **{action.value: action in held for action in Action},
            staff=bool(caller.user is not None and caller.user.is_staff),
        )

    @property
    def anything(self) -> bool:
        return any((self.send, self.read, self.consume, self.manage, self.operate, self.administer))


def navigation(request: HttpRequest) -> dict[str, Any]:
    """Context processor: ``can`` (the caller's actions) and ``nav`` (the sections they may open)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"can": Can(), "nav": [], "now": timezone.now()}
    can = Can.of(page_caller(request))
    section = getattr(request, "ef_section", "")
    items = [
        ("overview", "Overview", "overview", True),
        ("streams", "Streams", "streams", can.anything),
        ("keys", "API keys", "keys", can.manage),
        ("dead-letters", "Dead letters", "dead-letters", can.operate),
        ("people", "People", "people", can.administer),
        ("teams", "Teams", "teams", can.administer),
        ("audit", "Audit log", "audit", can.administer),
    ]
    return {
        "can": can,
        "now": timezone.now(),
        "nav": [
            {"key": key, "label": label, "url": url, "active": key == section} for key, label, url, ok in items if ok
        ],
    }


# --- error pages -------------------------------------------------------------------------------

_TITLES = {
    400: ("That request could not be handled", "Something in it is not right. Go back and check what you entered."),
    403: ("You can't open this page", "Your role does not allow it. Ask an administrator if you need access."),
    404: ("Page not found", "There is nothing here, or it is not yours to see."),
    409: ("That can't be done right now", "The current state does not allow it."),
    429: ("Too many attempts", "Wait a moment before trying again."),
    500: ("Something went wrong on our side", "The error has been logged. Try again in a moment."),
    503: ("Temporarily unavailable", "A service EventFlow needs is down. Try again shortly."),
}


def error_page(
    request: HttpRequest | None, status: int, *, message: str = "", retry_after: int | None = None
) -> HttpResponse:
    title, hint = _TITLES.get(status, _TITLES[400])
    context = {"status": status, "title": title, "hint": hint, "message": message, "retry_after": retry_after}
    response = render(request, "errors/error.html", context, status=status)  # type: ignore[arg-type]
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def _domain_error_page(request: HttpRequest, exc: DomainError) -> HttpResponse:
    if isinstance(exc, NotAuthenticated):
        return redirect_to_login(request.get_full_path())
    if isinstance(exc, NotFound):
        return error_page(request, 404)
    if isinstance(exc, NotAllowed):
        return error_page(request, 403, message=exc.message)
    if isinstance(exc, RateLimited):
        return error_page(request, 429, message=exc.message, retry_after=exc.retry_after)
    if isinstance(exc, Unavailable):
        return error_page(request, 503, message=exc.message, retry_after=exc.retry_after)
    if request.method == "POST":
        # An action refused by the state or its input: say so on the page it came from.
        messages.error(request, exc.message)
        return HttpResponseRedirect(request.path)
    return error_page(request, 409 if isinstance(exc, Conflict | Unprocessable) else 400, message=exc.message)


# --- the door ----------------------------------------------------------------------------------


# Said by the 400 page of an address holding NUL: in its path (here) or its query string (eventflow/nul_query.py).
NUL_IN_ADDRESS = "The address holds a NUL character."


def _holds_nul(kwargs: dict[str, Any]) -> bool:
    """Whether the URL's parts hold a NUL character (the query string's are refused before any page).

    PostgreSQL refuses NUL in text: a page that looked one up (``/people/%00/``) was a 500.
    Forms' fields refuse it on their own.
    """
    return holds_nul(list(kwargs.values()))


Access = Action | AnyOf | str


def page(
    access: Access | dict[str, Access], *, methods: Iterable[str] = ("GET",), section: str = ""
) -> Callable[[View], View]:
    """Declare what a page needs, as API views do: an ``Action``, an ``AnyOf``, ``REACH`` or ``AUTHENTICATED``, or
    one per method.

    A URL with ``slug`` is about that stream: the stream is checked first (not
    reached: 404, whatever the role) and handed to the view as ``stream``
    (a ``StreamInfo``) in place of ``slug``. The view is called as
    ``view(request, caller, **kwargs)``. Anyone not signed in is sent to sign in.
    """
    allowed = [m.upper() for m in (access if isinstance(access, dict) else methods)]

    def needed(method: str) -> Access:
        return access.get(method, access.get("GET", "")) if isinstance(access, dict) else access

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            method = "GET" if request.method == "HEAD" else str(request.method)
            if method not in allowed:
                return HttpResponseNotAllowed(allowed)
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if _holds_nul(kwargs):
                return error_page(request, 400, message=NUL_IN_ADDRESS)
            request.ef_section = section  # type: ignore[attr-defined]
            caller = page_caller(request)
            try:
                rule = needed(method)
                slug = kwargs.pop("slug", None)
                if rule == REACH:
                    if slug is not None:
                        kwargs["stream"] = stream_reach(caller, slug)
                elif rule != AUTHENTICATED:
                    action = as_rule(rule)
                    if slug is not None:
                        kwargs["stream"] = stream_access(caller, slug, action)
                    else:
                        require(caller, action)
                return view(request, caller, **kwargs)
            except DomainError as exc:
                return _domain_error_page(request, exc)

        wrapper.access = access if isinstance(access, dict) else {m: access for m in allowed}  # type: ignore[attr-defined]
        return wrapper

    return decorate


# --- a stream's tab bar ------------------------------------------------------------------------

# The tabs of every page under a stream: (section, label, the URL names of the pages it opens, the first
# the caller may open). A page without the stream in its path (the dead letters) opens filtered to it.
Tabs = tuple[tuple[str, str, tuple[str, ...]], ...]
STREAM_TABS: Tabs = (
    ("overview", "Overview", ("stream",)),
    ("events", "Events", ("explorer",)),
    # An Operator reads no events but watches processing: the tab opens the analytics page they may.
    ("analytics", "Analytics", ("analytics", "processing")),
    ("schemas", "Schemas", ("schemas",)),
    ("groups", "Consumer groups", ("groups",)),
    ("webhooks", "Webhooks", ("webhooks",)),
    ("kafka", "Kafka", ("kafka",)),
    ("alerts", "Alerts", ("alerts",)),
    ("dead-letters", "Dead letters", ("dead-letters",)),
)
# The analytics pages' own row, below the stream's (alerts are a tab of the stream's row, with no second row).
ANALYTICS_TABS: Tabs = (
    ("trends", "Trends", ("analytics",)),
    ("funnel", "Funnel", ("funnel",)),
    ("retention", "Retention", ("retention",)),
    ("paths", "Paths", ("paths",)),
    ("processing", "Processing", ("processing",)),
)
_BY_QUERY = frozenset({"dead-letters"})


def _tab_url(url_name: str, slug: str) -> str:
    if url_name in _BY_QUERY:
        return f"{reverse(url_name)}?{urlencode({'stream': slug})}"
    return reverse(url_name, kwargs={"slug": slug})


@dataclass(frozen=True)
class StreamTab:
    section: str
    label: str
    url: str
    active: bool


@functools.cache
def _declared_rule(url_name: str) -> Access | None:
    """What the page behind ``url_name`` declares for GET in its ``@page`` (read through the URL resolver)."""
    view = resolve(_tab_url(url_name, "s").split("?")[0]).func
    declared = getattr(view, "access", None)
    return declared.get("GET") if isinstance(declared, dict) else None


def page_opens(caller: Caller, rule: Access | None, stream_id: int) -> bool:
    """Whether a page about stream ``stream_id`` declaring ``rule`` lets ``caller`` in, as ``@page`` decides.

    ``REACH`` is ``reaches_anything`` (the rule ``stream_reach`` applies); an ``Action`` is ``may``. No
    declaration: no (fails closed).
    """
    if rule is None or not caller.is_authenticated:
        return False
    if rule == AUTHENTICATED:
        return True
    if rule == REACH:
        return reaches_anything(caller, stream_id)
    return may(caller, as_rule(rule), stream_id)


def page_opens_named(caller: Caller, url_name: str, stream_id: int) -> bool:
    """Whether the stream's page behind ``url_name`` lets ``caller`` in (``page_opens`` with its own rule)."""
    return page_opens(caller, _declared_rule(url_name), stream_id)


def stream_tabs(
    caller: Caller, stream_id: int, slug: str, active: str = "", tabs: Tabs = STREAM_TABS
) -> list[StreamTab]:
    """The tabs of a stream's tab bar (or the analytics row) that ``caller`` may open, ``active`` marked: the
    one place that decides.

    A tab is shown exactly when one of its pages would let the caller in, and links to the first such: the
    rule is the page's own ``@page`` declaration, asked of ``streams/access.py``. No query of its own: the
    caller's streams and roles are read once per request (``Caller`` and Django's permission cache keep them).
    """
    out = []
    for section, label, url_names in tabs:
        opened = next((name for name in url_names if page_opens_named(caller, name, stream_id)), None)
        if opened is not None:
            out.append(StreamTab(section, label, _tab_url(opened, slug), section == active))
    return out


# --- forms -------------------------------------------------------------------------------------


def submit(form: forms.Form, call: Callable[[], T]) -> T | None:
    """Run a service for a valid form; its ``Invalid``/``Conflict`` become the form's errors (None then).

    Details that name a field of the form land on that field; the message goes
    on top of the form.
    """
    try:
        return call()
    except (Invalid, Conflict, Unprocessable) as exc:
        placed = False
        for name, problems in (exc.details or {}).items():
            if name in form.fields and isinstance(problems, list) and all(isinstance(p, str) for p in problems):
                for problem in problems:
                    form.add_error(name, problem)
                placed = True
        if not placed:
            form.add_error(None, exc.message)
        return None


# --- lists ---------------------------------------------------------------------------------------


@dataclass
class ListPage:
    items: list[Any]
    next_url: str | None
    previous_url: str | None


def _relative(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def cursor_page(
    request: HttpRequest, queryset: QuerySet[Any], ordering: str | tuple[str, ...], size: int = PAGE_SIZE
) -> ListPage:
    """One page of ``queryset`` by cursor (the REST framework's, as the API's lists), with its neighbours' links.

    One query per page whatever the table's size: no count, no offset.
    """
    # The API's paginator: it also refuses a forged position (not a date, NUL), which was a 500.
    paginator = ApiCursorPagination()
    paginator.ordering = ordering
    paginator.page_size = size
    paginator.page_size_query_param = None
    try:
        items = paginator.paginate_queryset(queryset, Request(request)) or []
    except (CursorNotFound, Invalid):
        raise Invalid("invalid_cursor", "That page link is not valid any more.") from None
    return ListPage(list(items), _relative(paginator.get_next_link()), _relative(paginator.get_previous_link()))
