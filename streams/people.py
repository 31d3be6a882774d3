"""Writes for people and teams: invitations, roles, deactivation, team members and stream grants.

A person reaches exactly the streams of their teams (``streams/access.py``),
and their roles decide what they may do there; so every change here is a
security event, recorded with ``audit_security`` in the transaction of the
change. The REST API and Django admin both write through these functions, so
they share one set of checks.

Non-superusers never touch what they could not reach themselves: an Admin
grants only streams they reach, and may not change a superuser.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from eventflow import conf
from eventflow.audit import audit_security
from eventflow.errors import Conflict, Invalid, NotAllowed, NotFound
from eventflow.roles import ROLE_PERMISSIONS

from .access import ACTION_PERMISSIONS, Action, Caller, stream_ids_for
from .models import Stream, Team

logger = logging.getLogger(__name__)

User = get_user_model()

ROLE_NAMES = frozenset(ROLE_PERMISSIONS)


def _invalid_fields(exc: ValidationError) -> Invalid:
    return Invalid("invalid_fields", "Some fields are invalid.", exc.message_dict)


def _clean(instance: Any, *, exclude: list[str] | None = None) -> None:
    """``full_clean`` as a domain error; uniqueness is left to the database (a ``Conflict``)."""
    try:
        instance.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise _invalid_fields(exc) from None


def _audit(
    action: str,
    caller: Caller | None,
    target: str,
    details: dict[str, Any] | None = None,
    *,
    stream_id: int | None = None,
) -> None:
    audit_security(action=action, caller=caller, target=target, details=details or {}, stream_id=stream_id)


# --- teams -----------------------------------------------------------------------------------


def _grantable(caller: Caller | None, streams: Iterable[Stream]) -> list[Stream]:
    """``streams``, if the caller reaches every one; a stream they don't reach is unknown to them."""
    wanted = list(streams)
    reach = stream_ids_for(caller, Action.ADMINISTER) if caller is not None else None
    if reach is not None:
        unknown = sorted(stream.slug for stream in wanted if stream.pk not in reach)
        if unknown:
            raise Invalid("unknown_streams", "No such stream(s).", {"streams": unknown})
    return wanted


def team_within_reach(caller: Caller | None, team: Team) -> bool:
    """Whether the caller reaches every stream of ``team``: joining a team grants its streams."""
    reach = stream_ids_for(caller, Action.ADMINISTER) if caller is not None else None
    return reach is None or not team.streams.exclude(pk__in=reach).exists()


def _require_within_reach(caller: Caller | None, team: Team) -> None:
    # Changing who is in a team changes who reaches its streams: a non-superuser may only do that
    # with streams they reach themselves, as for grants and revokes.
    if not team_within_reach(caller, team):
        raise NotAllowed(
            "team_out_of_reach",
            "This team holds streams you don't reach: only a superuser may change its members or delete it.",
        )


@transaction.atomic
def team_create(
    *,
    caller: Caller | None,
    slug: str,
    name: str = "",
    members: Iterable[Any] = (),
    streams: Iterable[Stream] = (),
) -> Team:
    team = Team(slug=slug, name=name or slug)
    _clean(team)
    granted = _grantable(caller, streams)
    try:
        with transaction.atomic():
            team.save()
    except IntegrityError:
        raise Conflict("team_exists", "A team with this slug exists already.", {"slug": slug}) from None
    people = list(members)
    if people:
        team.members.add(*people)
    _audit(
        "team.create",
        caller,
        f"team:{team.slug}",
        {
            "name": team.name,
            "members": sorted(p.get_username() for p in people),
        },
    )
    _grant(caller, team, granted)
    return team


@transaction.atomic
def team_rename(*, caller: Caller | None, team: Team, name: str) -> Team:
    before = team.name
    team.name = name
    _clean(team)
    if name != before:
        team.save(update_fields=["name"])
        _audit("team.rename", caller, f"team:{team.slug}", {"before": before, "after": name})
    return team


@transaction.atomic
def team_delete(*, caller: Caller | None, team: Team) -> None:
    _require_within_reach(caller, team)
    members = sorted(team.members.values_list("username", flat=True))
    streams = sorted(team.streams.values_list("slug", flat=True))
    slug = team.slug
    team.delete()
    _audit("team.delete", caller, f"team:{slug}", {"members": members, "streams": streams})


@transaction.atomic
def team_members_add(*, caller: Caller | None, team: Team, users: Iterable[Any]) -> list[str]:
    """Add ``users`` to ``team``; answers the usernames that were not members before."""
    people = list(users)
    present = set(team.members.filter(pk__in=[u.pk for u in people]).values_list("pk", flat=True))
    added = [u for u in people if u.pk not in present]
    if added:
        _require_within_reach(caller, team)
        team.members.add(*added)
        names = sorted(u.get_username() for u in added)
        _audit("team.member_add", caller, f"team:{team.slug}", {"members": names})
    return sorted(u.get_username() for u in added)


@transaction.atomic
def team_member_remove(*, caller: Caller | None, team: Team, user: Any) -> None:
    if not team.members.filter(pk=user.pk).exists():
        raise NotFound("member_not_found", "This person is not a member of the team.")
    _require_within_reach(caller, team)
    team.members.remove(user)
    _audit("team.member_remove", caller, f"team:{team.slug}", {"members": [user.get_username()]})


@transaction.atomic
def team_streams_grant(*, caller: Caller | None, team: Team, streams: Iterable[Stream]) -> list[str]:
    """Grant ``streams`` to ``team``; answers the slugs that were not granted before."""
    granted = _grantable(caller, streams)
    present = set(team.streams.filter(pk__in=[s.pk for s in granted]).values_list("pk", flat=True))
    added = [s for s in granted if s.pk not in present]
    _grant(caller, team, added)
    return sorted(s.slug for s in added)


def _grant(caller: Caller | None, team: Team, streams: list[Stream]) -> None:
    # One audit row per stream, so that the stream's own audit trail shows who granted it to whom.
    if streams:
        team.streams.add(*streams)
    for stream in streams:
        _audit("team.stream_grant", caller, f"team:{team.slug}", {"stream": stream.slug}, stream_id=stream.pk)


@transaction.atomic
def team_stream_revoke(*, caller: Caller | None, team: Team, stream: Stream) -> None:
    reach = stream_ids_for(caller, Action.ADMINISTER) if caller is not None else None
    if (reach is not None and stream.pk not in reach) or not team.streams.filter(pk=stream.pk).exists():
        raise NotFound("grant_not_found", "The team has no such stream.")
    team.streams.remove(stream)
    _audit("team.stream_revoke", caller, f"team:{team.slug}", {"stream": stream.slug}, stream_id=stream.pk)


@transaction.atomic
def team_set(*, caller: Caller | None, team: Team, members: Iterable[Any], streams: Iterable[Stream]) -> Team:
    """Make ``team`` have exactly these members and streams (Django admin's form), one audit row per change.

    Streams the caller does not reach are left as they are, since the caller never saw them.
    """
    people = {u.pk: u for u in members}
    held_people = {u.pk: u for u in team.members.all()}
    for pk in held_people.keys() - people.keys():
        team_member_remove(caller=caller, team=team, user=held_people[pk])
    team_members_add(caller=caller, team=team, users=[people[pk] for pk in people.keys() - held_people.keys()])

    reach = stream_ids_for(caller, Action.ADMINISTER) if caller is not None else None
    wanted = {s.pk: s for s in streams}
    held = {s.pk: s for s in team.streams.all() if reach is None or s.pk in reach}
    for pk in held.keys() - wanted.keys():
        team_stream_revoke(caller=caller, team=team, stream=held[pk])
    team_streams_grant(caller=caller, team=team, streams=[wanted[pk] for pk in wanted.keys() - held.keys()])
    return team


# --- people ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invitation:
    user: Any
    # Absolute link to set a first password; valid until used, PASSWORD_RESET_TIMEOUT passes or a newer one is sent.
    set_password_url: str


def _protect_superuser(caller: Caller | None, user: Any) -> None:
    if user.is_superuser and caller is not None and not caller.is_superuser:
        raise NotAllowed("superuser_protected", "Only a superuser may change a superuser.")


def _role_groups(roles: Iterable[str]) -> list[Group]:
    names = sorted(set(roles))
    unknown = [name for name in names if name not in ROLE_NAMES]
    if unknown:
        raise Invalid(
            "unknown_role",
            f"Unknown role(s): {', '.join(unknown)}.",
            {"roles": unknown, "known": sorted(ROLE_NAMES)},
        )
    groups = list(Group.objects.filter(name__in=names))
    missing = sorted(set(names) - {group.name for group in groups})
    if missing:
        # The roles are created by migrate; a missing one means migrate has not run.
        raise Conflict("role_missing", "Role(s) not set up yet: run migrate.", {"roles": missing})
    return groups


def set_password_path(user: Any) -> str:
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return reverse("password_reset_confirm", kwargs={"uidb64": uidb64, "token": token})


def _set_password_url(user: Any, base_url: str) -> str:
    return (conf.get().base_url or base_url).rstrip("/") + set_password_path(user)


def _send_invitation(*, username: str, email: str, url: str) -> None:
    hours = conf.get().password_reset_timeout // 3600
    body = (
        f"An EventFlow account was created for you.\n\n"
        f"Username: {username}\n\n"
        f"Choose your password here (the link works once, for {hours} hours):\n{url}\n"
    )
    try:
        send_mail("Your EventFlow account", body, None, [email], fail_silently=False)
    except Exception:
        # The person is committed and the inviter has the link in the API's answer: log, don't fail.
        logger.exception("Could not mail the invitation of %s to %s", username, email)


@transaction.atomic
def person_invite(
    *,
    caller: Caller | None,
    username: str,
    email: str,
    roles: Iterable[str] = (),
    teams: Iterable[Team] = (),
    base_url: str,
) -> Invitation:
    """Create an active person without a usable password, and mail them a one-time link to set one.

    ``base_url`` (``https://events.example.com``) prefixes the link unless
    ``EVENTFLOW_BASE_URL`` is set, which wins so that a forged Host header can't
    send people to another site. The mail goes after commit.
    """
    groups = _role_groups(roles)
    team_list = list(teams)
    user = User(username=username, email=email, is_active=True)
    user.set_unusable_password()
    if not email:
        raise Invalid("invalid_fields", "Some fields are invalid.", {"email": ["An invitation needs an email."]})
    _clean(user)
    for team in team_list:
        _require_within_reach(caller, team)
    if User.objects.filter(email__iexact=email).exists():
        # One person, one account: a second would share the first's password resets.
        raise Conflict("person_exists", "A person with this email exists already.", {"email": email})
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        raise Conflict("person_exists", "A person with this username exists already.", {"username": username}) from None
    if groups:
        user.groups.add(*groups)
    for team in team_list:
        team.members.add(user)
    url = _set_password_url(user, base_url)
    _audit(
        "person.invite",
        caller,
        user.get_username(),
        {"email": email, "roles": sorted(g.name for g in groups), "teams": sorted(t.slug for t in team_list)},
    )
    transaction.on_commit(lambda: _send_invitation(username=username, email=email, url=url))
    return Invitation(user=user, set_password_url=url)


@transaction.atomic
def person_invitation_resend(*, caller: Caller | None, user: Any, base_url: str) -> Invitation:
    """Mail a new one-time link to a person who never chose a password (the first link expired or went astray).

    Django's "forgot password" skips accounts without a usable password, so
    without this an invitation that expired unused leaves the person locked out.
    The person's no-password marker is drawn again, which ends every link sent
    before: only the newest link opens the account. Someone who has chosen a
    password uses "forgot password" instead, and a deactivated person is
    reactivated first (both a ``Conflict``). ``base_url`` as for ``person_invite``.
    """
    # Locked and read afresh: the password and active state checked are the ones changed.
    person = User.objects.select_for_update().get(pk=user.pk)
    # Whoever holds the link takes the account, and with it the streams of its teams: the same
    # checks as inviting someone into those teams.
    _protect_superuser(caller, person)
    for team in person.teams.all():
        _require_within_reach(caller, team)
    if not person.is_active:
        raise Conflict("person_deactivated", "This person is deactivated: reactivate them first.")
    if person.has_usable_password():
        raise Conflict(
            "password_set",
            "This person has chosen a password already: they can reset it with “Forgot password” on the sign-in page.",
        )
    if not person.email:
        raise Conflict("person_without_email", "This person has no email to send the invitation to.")
    person.set_unusable_password()
    person.save(update_fields=["password"])
    url = _set_password_url(person, base_url)
    username, email = person.get_username(), person.email
    _audit("person.invite_resend", caller, username, {"email": email})
    transaction.on_commit(lambda: _send_invitation(username=username, email=email, url=url))
    return Invitation(user=person, set_password_url=url)


def _administrators() -> Any:
    """Active people whose roles hold the permission to administer people (superusers aside)."""
    app_label, codename = ACTION_PERMISSIONS[Action.ADMINISTER].split(".")
    return User.objects.filter(
        is_active=True,
        groups__permissions__content_type__app_label=app_label,
        groups__permissions__codename=codename,
    )


@transaction.atomic
def person_set_roles(*, caller: Caller | None, user: Any, roles: Iterable[str]) -> list[str]:
    """Give ``user`` exactly these roles (groups that are not roles are left alone); answers the roles."""
    _protect_superuser(caller, user)
    groups = _role_groups(roles)
    held = list(user.groups.filter(name__in=ROLE_NAMES))
    before = sorted(g.name for g in held)
    after = sorted(g.name for g in groups)
    if before != after:
        wanted = {g.pk for g in groups}
        administered = _administrators().filter(pk=user.pk).exists()
        user.groups.remove(*[g for g in held if g.pk not in wanted])
        user.groups.add(*groups)
        if administered and not _administrators().exists():
            # Raised inside the transaction: the roles go back as they were.
            raise Conflict("last_administrator", "Nobody else administers people: make someone else Admin first.")
        _audit("person.roles", caller, user.get_username(), {"before": before, "after": after})
    # Django keeps a person's permissions on the instance; the next check must see the new roles.
    for cache in ("_perm_cache", "_group_perm_cache", "_user_perm_cache"):
        user.__dict__.pop(cache, None)
    return after


@transaction.atomic
def person_deactivate(*, caller: Caller | None, user: Any) -> Any:
    """The person can no longer sign in, and their tokens stop working on the next request."""
    _protect_superuser(caller, user)
    if caller is not None and caller.user is not None and caller.user.pk == user.pk:
        raise Conflict("cannot_deactivate_self", "You cannot deactivate yourself.")
    if user.is_active:
        user.is_active = False
        user.save(update_fields=["is_active"])
        _audit("person.deactivate", caller, user.get_username())
    return user


@transaction.atomic
def person_reactivate(*, caller: Caller | None, user: Any) -> Any:
    _protect_superuser(caller, user)
    if not user.is_active:
        user.is_active = True
        user.save(update_fields=["is_active"])
        _audit("person.reactivate", caller, user.get_username())
    return user


@transaction.atomic
def person_update(
    *, caller: Caller | None, user: Any, roles: Iterable[str] | None = None, is_active: bool | None = None
) -> Any:
    """Roles and active state in one transaction (the people API's PATCH): both happen or neither."""
    if roles is not None:
        person_set_roles(caller=caller, user=user, roles=roles)
    if is_active is False:
        person_deactivate(caller=caller, user=user)
    elif is_active is True:
        person_reactivate(caller=caller, user=user)
    return user
