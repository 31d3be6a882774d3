"""``REACH`` ("may the caller do anything at all on this stream") is one rule, ``reaches_anything``, and both
doors that ask it agree with it: ``stream_reach`` (REST views and pages) and the dashboard's ``page_opens``
(which decides the tabs of a stream's tab bar)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from eventflow.dashboard import page_opens
from eventflow.errors import DomainError, NotAllowed, NotFound
from streams.access import ANONYMOUS, REACH, Caller, caller_for_user, reaches_anything, stream_reach
from streams.auth import KeyPrincipal
from streams.models import ApiKeyKind, Stream
from streams.selectors import stream_cache_clear
from streams.services import stream_create, team_create

pytestmark = pytest.mark.django_db

ROLES = ("Admin", "Developer", "Analyst", "Operator", "Consumer")


def _person(username: str, role: str | None = None, *, superuser: bool = False) -> User:
    if superuser:
        return User.objects.create_superuser(username, email=f"{username}@example.com", password="x")
    user = User.objects.create_user(username, email=f"{username}@example.com", password="x")
    if role is not None:
        user.groups.add(Group.objects.get(name=role))
    return user


def _key(kind: str, streams: list[Stream]) -> Caller:
    principal = KeyPrincipal(
        key_id=1, kind=kind, stream_ids=frozenset(s.pk for s in streams), expires_at=None, revoked=False
    )
    return Caller(key=principal, via="api_key")


def _door(caller: Caller, stream: Stream) -> str:
    """What ``stream_reach`` answers: "in", "not found" or "not allowed"."""
    try:
        stream_reach(caller, stream.slug)
    except NotFound:
        return "not found"
    except NotAllowed:
        return "not allowed"
    except DomainError:
        return "not authenticated"
    return "in"


def test_stream_reach_and_the_tab_bar_ask_the_one_rule() -> None:
    stream_cache_clear()
    own: Stream = stream_create(slug="own", name="Own")
    foreign: Stream = stream_create(slug="foreign", name="Foreign")
    people = [_person(role.lower(), role) for role in ROLES]
    # In the team, but with no role: reaches the stream and may do nothing on it.
    roleless = _person("nobody")
    team_create(slug="team", members=[*people, roleless], streams=[own])
    callers: dict[str, Caller] = {user.username: caller_for_user(user) for user in [*people, roleless]}
    callers["superuser"] = caller_for_user(_person("boss", superuser=True))
    callers["ingest key"] = _key(ApiKeyKind.INGEST, [own])
    callers["secret key"] = _key(ApiKeyKind.SECRET, [own])
    callers["nobody signed in"] = ANONYMOUS

    seen = {}
    for name, caller in callers.items():
        for stream in (own, foreign):
            rule = reaches_anything(caller, stream.pk)
            assert page_opens(caller, REACH, stream.pk) is rule, (name, stream.slug)
            assert (_door(caller, stream) == "in") is rule, (name, stream.slug)
            seen[name, stream.slug] = rule

    # Not vacuous: who reaches what, as the roles and teams have it.
    assert {key for key, reached in seen.items() if reached} == {
        *((role.lower(), "own") for role in ROLES),
        ("superuser", "own"),
        ("superuser", "foreign"),
        ("ingest key", "own"),
        ("secret key", "own"),
    }
    # Outside the team: not found; in the team without a role: not allowed.
    assert _door(callers["admin"], foreign) == "not found"
    assert _door(callers["nobody"], own) == "not allowed"
