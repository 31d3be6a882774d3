"""Reads for people and teams, and what a caller may do (``/me``).

Lists prefetch everything they show, so a page costs the same few queries
whatever its length. A team's streams are shown only where the caller reaches
them: a stream of another's tenancy is never listed, even to an Admin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.contrib.auth.models import Group
from django.db.models import Case, CharField, DateTimeField, OuterRef, Prefetch, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone

from eventflow.errors import Invalid, NotFound
from eventflow.models import AuditEntry, AuditKind
from eventflow.roles import ROLE_PERMISSIONS

from .access import Action, Caller, stream_ids_for
from .models import Stream, Team

User = get_user_model()

# What one can do *to a stream*; administering people is not about any one stream.
STREAM_ACTIONS = [action for action in Action if action != Action.ADMINISTER]


def _reached_streams(caller: Caller) -> QuerySet[Stream]:
    ids = stream_ids_for(caller, Action.ADMINISTER)
    streams = Stream.objects.only("id", "slug", "name").order_by("slug")
    return streams if ids is None else streams.filter(pk__in=ids)


def _role_groups() -> QuerySet[Group]:
    return Group.objects.filter(name__in=ROLE_PERMISSIONS).only("id", "name").order_by("name")


# --- teams -----------------------------------------------------------------------------------


def team_get(*, slug: str) -> Team:
    team = Team.objects.filter(slug=slug).first()
    if team is None:
        raise NotFound("team_not_found", "No such team.")
    return team


def teams_list(*, caller: Caller) -> QuerySet[Team]:
    """Every team, with its members' usernames and the streams the caller reaches."""
    return Team.objects.prefetch_related(
        Prefetch("members", queryset=User.objects.only("id", "username").order_by("username")),
        Prefetch("streams", queryset=_reached_streams(caller)),
    )


def team_detail(*, caller: Caller, slug: str) -> Team:
    team = teams_list(caller=caller).filter(slug=slug).first()
    if team is None:
        raise NotFound("team_not_found", "No such team.")
    return team


def team_members(*, team: Team) -> QuerySet[Any]:
    return User.objects.filter(teams=team).prefetch_related(Prefetch("groups", queryset=_role_groups()))


def team_streams(*, caller: Caller, team: Team) -> QuerySet[Stream]:
    return _reached_streams(caller).filter(teams=team)


def users_by_username(usernames: list[str]) -> list[Any]:
    """The people named, in the order given; any unknown name is ``Invalid`` (and named)."""
    found = {u.username: u for u in User.objects.filter(username__in=usernames)}
    unknown = sorted(set(usernames) - found.keys())
    if unknown:
        raise Invalid("unknown_people", "No such person(s).", {"usernames": unknown})
    return [found[name] for name in dict.fromkeys(usernames)]


def streams_by_slug(*, caller: Caller, slugs: list[str]) -> list[Stream]:
    """The streams named that the caller reaches; any other is ``Invalid`` as if it did not exist."""
    found = {s.slug: s for s in _reached_streams(caller).filter(slug__in=slugs)}
    unknown = sorted(set(slugs) - found.keys())
    if unknown:
        raise Invalid("unknown_streams", "No such stream(s).", {"streams": unknown})
    return [found[slug] for slug in dict.fromkeys(slugs)]


def teams_by_slug(slugs: list[str]) -> list[Team]:
    found = {t.slug: t for t in Team.objects.filter(slug__in=slugs)}
    unknown = sorted(set(slugs) - found.keys())
    if unknown:
        raise Invalid("unknown_teams", "No such team(s).", {"teams": unknown})
    return [found[slug] for slug in dict.fromkeys(slugs)]


def stream_of_team(*, caller: Caller, team: Team, slug: str) -> Stream:
    stream = team_streams(caller=caller, team=team).filter(slug=slug).first()
    if stream is None:
        raise NotFound("grant_not_found", "The team has no such stream.")
    return stream


# --- people ----------------------------------------------------------------------------------


def person_get(*, username: str) -> Any:
    # PostgreSQL refuses a NUL in a query (it was a 500); no username holds one.
    user = None if "\x00" in username else people_list().filter(username=username).first()
    if user is None:
        raise NotFound("person_not_found", "No such person.")
    return user


# An invitation's state, as ``people_list`` annotates it in ``invitation`` (None: not waiting on one).
INVITATION_PENDING = "pending"
INVITATION_EXPIRED = "expired"
INVITATION_STATES = (INVITATION_PENDING, INVITATION_EXPIRED)
# The security events that mail a set-password link (``streams.people``); their target is the username.
INVITATION_SENT_ACTIONS = ("person.invite", "person.invite_resend")


def _with_invitation(people: QuerySet[Any]) -> QuerySet[Any]:
    """Annotate ``invitation``: "pending", "expired" or None, the one place that decides it.

    An invitation is an account without a usable password (``person_invite``);
    choosing a password through the link ends it. The link is Django's password
    reset token, which is stored nowhere: it works for ``PASSWORD_RESET_TIMEOUT``
    from when it was made, and a resend makes a new one. So the newest link is as
    old as the latest of the account's creation and its ``person.invite`` /
    ``person.invite_resend`` security events. Should audit retention have removed
    a resend's event, the creation time stands in: the invitation may then read
    "expired" while its link still works, never "pending" once it has expired.
    """
    sent = (
        AuditEntry.objects.filter(
            kind=AuditKind.SECURITY, action__in=INVITATION_SENT_ACTIONS, target=OuterRef("username")
        )
        .order_by("-at")
        .values("at")[:1]
    )
    # PostgreSQL's GREATEST skips NULLs: no event, the account's creation.
    last_sent = Greatest("date_joined", Subquery(sent, output_field=DateTimeField()), output_field=DateTimeField())
    valid_from = timezone.now() - timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT)
    return people.alias(invitation_sent_at=last_sent).annotate(
        invitation=Case(
            When(~Q(password__startswith=UNUSABLE_PASSWORD_PREFIX), then=Value(None)),
            When(invitation_sent_at__gte=valid_from, then=Value(INVITATION_PENDING)),
            default=Value(INVITATION_EXPIRED),
            output_field=CharField(null=True),
        )
    )


def people_list(*, team: str | None = None, role: str | None = None, is_active: bool | None = None) -> QuerySet[Any]:
    """People with their roles and teams prefetched, filtered by team slug, role name or state.

    Each carries ``invitation`` (``_with_invitation``): whether they still have to accept one.
    """
    people = _with_invitation(
        User.objects.prefetch_related(
            Prefetch("groups", queryset=_role_groups()),
            Prefetch("teams", queryset=Team.objects.only("id", "slug").order_by("slug")),
        )
    )
    if team is not None:
        people = people.filter(teams__slug=team)
    if role is not None:
        people = people.filter(groups__name=role)
    if is_active is not None:
        people = people.filter(is_active=is_active)
    return people


def role_names(user: Any) -> list[str]:
    """The person's roles; reads a prefetched ``groups`` (``people_list``) without a query."""
    return sorted(group.name for group in user.groups.all() if group.name in ROLE_PERMISSIONS)


# --- /me -------------------------------------------------------------------------------------


@dataclass
class StreamRights:
    slug: str
    name: str
    archived: bool
    actions: list[str]


@dataclass
class Me:
    via: str
    actions: list[str]
    streams: list[StreamRights]
    person: dict[str, Any] | None = None
    key: dict[str, Any] | None = None


def me(*, caller: Caller) -> Me:
    """Who the caller is, and each stream they reach with the actions they may take on it."""
    held = caller.actions()
    on_streams = [action.value for action in STREAM_ACTIONS if action in held]
    ids = caller.stream_ids()
    streams = Stream.objects.only("slug", "name", "archived_at").order_by("slug")
    if ids is not None:
        streams = streams.filter(pk__in=ids)
    rights = [
        StreamRights(slug=s.slug, name=s.name, archived=s.archived_at is not None, actions=on_streams) for s in streams
    ]
    answer = Me(via=caller.via, actions=[action.value for action in held], streams=rights)
    if caller.key is not None:
        answer.key = {"prefix": caller.key.prefix, "kind": caller.key.kind}
    else:
        user = caller.user
        teams = list(Team.objects.filter(members=user).only("slug", "name").order_by("slug"))
        answer.person = {
            "username": user.get_username(),
            "email": user.email,
            "is_superuser": bool(user.is_superuser),
            "roles": sorted(user.groups.filter(name__in=ROLE_PERMISSIONS).values_list("name", flat=True)),
            "teams": [{"slug": t.slug, "name": t.name} for t in teams],
        }
    return answer
