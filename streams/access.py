"""Who may do what to which stream: the one rule, asked by REST views, pages and Django admin alike.

Callers are API keys (by kind) and people (by session or JWT). An *action* is
what they want to do: send events, read events, consume through consumer
groups, manage (streams, schemas, keys, groups, webhooks), operate (processing
health, dead letters), administer (people, teams, audit log).

- A key may do what its kind allows (ingest: send; secret: send, read,
  consume) on the streams it was granted.
- A person may do what the permissions of their roles allow (the codenames in
  ``ACTION_PERMISSIONS`` decide, never a group's name) on the streams of their
  teams; a superuser on every stream.
- A page or endpoint may need one action, or any one of several (``AnyOf``):
  processing health is for those who read a stream's events and for those who
  operate it (``HEALTH``).
- A stream the caller does not reach answers exactly like one that does not
  exist (``NotFound``); a reached stream with an action the caller lacks is
  ``NotAllowed``; no credentials at all is ``NotAuthenticated``.

It fails closed: ``DeclaredAccess`` (the REST framework's default permission)
refuses any API view that does not declare what it needs in ``access``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet
from rest_framework.permissions import BasePermission

from eventflow.errors import NotAllowed, NotAuthenticated, NotFound

from .auth import API_KEY_HEADER, KeyPrincipal, authenticate_key_counted
from .models import ApiKeyKind, Stream
from .selectors import StreamInfo, stream_info

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
    from django.http import HttpRequest

logger = logging.getLogger(__name__)


class Action(StrEnum):
    SEND = "send"
    READ = "read"
    CONSUME = "consume"
    MANAGE = "manage"
    OPERATE = "operate"
    ADMINISTER = "administer"


# The permission a person's roles must hold for each action.
ACTION_PERMISSIONS: dict[Action, str] = {
    Action.SEND: "streams.send_events",
    Action.READ: "streams.read_events",
    Action.CONSUME: "streams.consume_stream",
    Action.MANAGE: "streams.manage_stream",
    Action.OPERATE: "streams.operate_stream",
    Action.ADMINISTER: "streams.administer_people",
}

KEY_ACTIONS: dict[str, frozenset[Action]] = {
    ApiKeyKind.INGEST: frozenset({Action.SEND}),
    ApiKeyKind.SECRET: frozenset({Action.SEND, Action.READ, Action.CONSUME}),
}


@dataclass(frozen=True)
class AnyOf:
    """A declaration that any one of ``actions`` meets."""

    actions: tuple[Action, ...]

    @property
    def value(self) -> str:
        """As refusals name it: "read or operate"."""
        return " or ".join(action.value for action in self.actions)


# What a view needs: one action, or any of several.
Rule = Action | AnyOf

# Processing health (throughput, latency, dead letters by stage, lag): for those who read a stream's events
# and for those who operate it.
HEALTH = AnyOf((Action.READ, Action.OPERATE))

# Declarations a view may make instead of an action.
PUBLIC = "public"  # anyone, authenticated or not (token endpoints, health)
AUTHENTICATED = "authenticated"  # any signed-in person or valid key (``/me``)
REACH = "reach"  # any action at all on the stream (its settings, schemas); on a list: any caller

STREAM_NOT_FOUND = ("stream_not_found", "No such stream.")


@dataclass
class Caller:
    """Who is asking: a key, a person, or nobody. Kept on the request for the audit log."""

    key: KeyPrincipal | None = None
    user: Any = None
    # "api_key", "session", "jwt" or "" for nobody.
    via: str = ""
    # This request's number in the key's current minute, when it was counted (rate limits).
    key_uses: int | None = None
    _stream_ids: frozenset[int] | None = field(default=None, repr=False)

    @property
    def is_authenticated(self) -> bool:
        return self.key is not None or self.user is not None

    @property
    def is_superuser(self) -> bool:
        return self.user is not None and bool(self.user.is_superuser)

    @property
    def label(self) -> str:
        """The caller as the audit log names it: the key's prefix or the person's username."""
        if self.key is not None:
            return self.key.prefix
        if self.user is not None:
            return str(self.user.get_username())
        return ""

    def stream_ids(self) -> frozenset[int] | None:
        """The streams the caller reaches, or None for all of them (superusers)."""
        if self.key is not None:
            return self.key.stream_ids
        if self.user is None:
            return frozenset()
        if self.user.is_superuser:
            return None
        if self._stream_ids is None:
            self._stream_ids = frozenset(
                Stream.objects.filter(teams__members=self.user).values_list("pk", flat=True).distinct()
            )
        return self._stream_ids

    def reaches(self, stream_id: int) -> bool:
        ids = self.stream_ids()
        return ids is None or stream_id in ids

    def holds(self, action: Rule) -> bool:
        """Whether the caller's kind or roles allow ``action`` (any of them, for ``AnyOf``) at all (on some stream)."""
        if isinstance(action, AnyOf):
            return any(self.holds(one) for one in action.actions)
        if self.key is not None:
            return action in KEY_ACTIONS.get(self.key.kind, frozenset())
        if self.user is None or not self.user.is_active:
            return False
        return bool(self.user.has_perm(ACTION_PERMISSIONS[action]))

    def actions(self) -> list[Action]:
        return [action for action in Action if self.holds(action)]


ANONYMOUS = Caller()


def caller_for_user(user: AbstractBaseUser | AnonymousUser | None, *, via: str = "session") -> Caller:
    if user is None or not user.is_authenticated or not user.is_active:
        return Caller()
    return Caller(user=user, via=via)


def caller_of(request: HttpRequest | Any, *, count: bool = False) -> Caller:
    """The request's caller, authenticated once and kept on the request.

    An ``X-API-Key`` header wins over a session; a bad key is ``NotAuthenticated``
    (never quietly ignored). With ``count``, the key's request is counted for
    its rate limit in the same Redis round trip. ``request`` may be Django's or
    the REST framework's (whose ``user`` comes from JWT or the session).
    """
    django_request = getattr(request, "_request", request)
    cached = getattr(django_request, "ef_caller", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    if django_request.META.get(API_KEY_HEADER):
        principal, uses = authenticate_key_counted(django_request.META, count=count)
        caller = Caller(key=principal, via="api_key", key_uses=uses)
    else:
        user = getattr(request, "user", None)
        authenticator = getattr(request, "successful_authenticator", None)
        via = "jwt" if authenticator is not None and "JWT" in type(authenticator).__name__ else "session"
        caller = caller_for_user(user, via=via)
    django_request.ef_caller = caller  # type: ignore[union-attr]
    return caller


def key_caller(request: HttpRequest, *, count: bool = False) -> Caller:
    """The caller of an endpoint only keys may use (the intake): its key, or ``NotAuthenticated``."""
    principal, uses = authenticate_key_counted(request.META, count=count)
    caller = Caller(key=principal, via="api_key", key_uses=uses)
    request.ef_caller = caller  # type: ignore[attr-defined]
    return caller


def _denied(caller: Caller, action: Rule) -> NotAllowed:
    if caller.key is not None:
        return NotAllowed("key_kind_not_allowed", f"A {caller.key.kind} key cannot {action.value} on this stream.")
    return NotAllowed("permission_denied", f"Your role may not {action.value} on this stream.")


def _unauthenticated() -> NotAuthenticated:
    return NotAuthenticated(
        "not_authenticated", "Send an API key in X-API-Key, or a token in Authorization: Bearer, or sign in."
    )


def may(caller: Caller, action: Rule, stream_id: int) -> bool:
    return caller.reaches(stream_id) and caller.holds(action)


def reaches_anything(caller: Caller, stream_id: int) -> bool:
    """Whether ``caller`` may do anything at all on the stream (``REACH``): it reaches it and holds some action.

    The one rule behind ``stream_reach`` (the door of REST views and pages) and the dashboard's tab bar.
    """
    return caller.reaches(stream_id) and any(caller.holds(action) for action in Action)


def stream_reach(caller: Caller, slug: str) -> StreamInfo:
    """The stream behind ``slug`` if the caller may do anything at all to it (see its settings)."""
    if not caller.is_authenticated:
        raise _unauthenticated()
    info = stream_info(slug)
    if info is None or not caller.reaches(info.id):
        raise NotFound(*STREAM_NOT_FOUND)
    if not reaches_anything(caller, info.id):
        raise NotAllowed("permission_denied", "Your role may do nothing on this stream.")
    return info


def streams_reached(caller: Caller) -> QuerySet[Stream]:
    """Every stream the caller may do anything to: what the list of streams shows."""
    if not caller.is_authenticated or not caller.actions():
        return Stream.objects.none()
    ids = caller.stream_ids()
    return Stream.objects.all() if ids is None else Stream.objects.filter(pk__in=ids)


def stream_access(caller: Caller, slug: str, action: Rule) -> StreamInfo:
    """The stream behind ``slug`` if ``caller`` may do ``action`` to it.

    Raises ``NotAuthenticated`` (nobody), ``NotFound`` (no such stream, or one
    the caller does not reach: never told apart) or ``NotAllowed`` (reached,
    but the role or key kind lacks the action).
    """
    if not caller.is_authenticated:
        raise _unauthenticated()
    info = stream_info(slug)
    if info is None or not caller.reaches(info.id):
        raise NotFound(*STREAM_NOT_FOUND)
    if not caller.holds(action):
        raise _denied(caller, action)
    return info


def stream_object_access(caller: Caller, stream: Stream, action: Rule) -> Stream:
    """As ``stream_access``, for a stream already loaded (pages, admin)."""
    if not caller.is_authenticated:
        raise _unauthenticated()
    if not caller.reaches(stream.pk):
        raise NotFound(*STREAM_NOT_FOUND)
    if not caller.holds(action):
        raise _denied(caller, action)
    return stream


def require(caller: Caller, action: Rule) -> Caller:
    """For actions on no one stream (create a stream, list people): the caller must hold the action."""
    if not caller.is_authenticated:
        raise _unauthenticated()
    if not caller.holds(action):
        if caller.key is not None:
            raise NotAllowed("key_kind_not_allowed", f"A {caller.key.kind} key cannot do this.")
        raise NotAllowed("permission_denied", "Your role may not do this.")
    return caller


def streams_for(caller: Caller, action: Rule) -> QuerySet[Stream]:
    """The streams ``caller`` may do ``action`` to: what every list of streams starts from."""
    if not caller.is_authenticated or not caller.holds(action):
        return Stream.objects.none()
    ids = caller.stream_ids()
    return Stream.objects.all() if ids is None else Stream.objects.filter(pk__in=ids)


def stream_ids_for(caller: Caller, action: Rule) -> frozenset[int] | None:
    """Ids of the streams ``caller`` may do ``action`` to; None means all of them."""
    if not caller.is_authenticated or not caller.holds(action):
        return frozenset()
    return caller.stream_ids()


# --- the REST framework's door ---------------------------------------------------------------


def as_rule(declared: Action | AnyOf | str) -> Rule:
    """A declaration that is not ``PUBLIC``, ``AUTHENTICATED`` or ``REACH``, as the rule it states."""
    return declared if isinstance(declared, AnyOf) else Action(declared)


def declared_access(view: Any, method: str) -> Action | AnyOf | str | None:
    declared = getattr(view, "access", None)
    if isinstance(declared, dict):
        return declared.get(method.upper())  # type: ignore[no-any-return]
    return declared  # type: ignore[no-any-return]


def key_may_pass(declared: Action | AnyOf | str | None) -> bool:
    """Whether some API key can pass a view's declared access: what its OpenAPI operation lists.

    A key holds the actions of its kind (``KEY_ACTIONS``) and counts as a caller
    that reaches its streams (``REACH``, ``AUTHENTICATED``); never ``MANAGE``,
    ``OPERATE`` or ``ADMINISTER``.
    """
    if declared in (REACH, AUTHENTICATED):
        return True
    needed = declared.actions if isinstance(declared, AnyOf) else (declared,)
    return any(one in actions for one in needed for actions in KEY_ACTIONS.values())


class DeclaredAccess(BasePermission):
    """The default permission of every API view: it must declare ``access``, and the caller must have it.

    ``access`` is an ``Action``, an ``AnyOf``, ``PUBLIC``, ``AUTHENTICATED``, ``REACH``, or a dict of
    them per HTTP method. Views whose URL has a ``slug`` are about that stream:
    the stream is checked here and put on the view as ``view.stream`` (a
    ``StreamInfo``). Anything undeclared is refused.
    """

    def has_permission(self, request: Any, view: Any) -> bool:
        if request.method == "OPTIONS" or not hasattr(view, request.method.lower()):
            # No handler: the framework answers 405 without running anything.
            return True
        needed = declared_access(view, request.method)
        if needed is None:
            logger.error("%s declares no access for %s: refused", type(view).__name__, request.method)
            raise NotAllowed("access_not_declared", "This endpoint declares no access rule, so it is refused.")
        if needed == PUBLIC:
            return True
        caller = caller_of(request)
        view.caller = caller
        if needed == AUTHENTICATED:
            if not caller.is_authenticated:
                raise _unauthenticated()
            return True
        slug = view.kwargs.get("slug")
        if needed == REACH:
            # Without a stream in the URL it is a list, which shows only the streams reached.
            if slug is None and not caller.is_authenticated:
                raise _unauthenticated()
            if slug is not None:
                view.stream = stream_reach(caller, slug)
            return True
        action = as_rule(needed)
        if slug is not None:
            view.stream = stream_access(caller, slug, action)
        else:
            require(caller, action)
        return True
