"""The access matrix: every API route, every kind of caller, on an own and a foreign stream.

One table (``ROUTES``) names every API route and method; the expected answer of
each cell is derived from the rule itself, never written per cell:

- what the route needs is the view's own ``access`` declaration, read through
  the URL resolver (only the intake, a plain Django view, states its rule here);
- what a caller holds comes from ``KEY_ACTIONS`` (keys) and the permission
  codenames of the roles (``ROLE_PERMISSIONS`` and ``ACTION_PERMISSIONS``);
- a caller reaches the *own* stream (its team's, or its key's) and never the
  *foreign* one (another team's); a superuser reaches both.

``SPOT_CHECKS`` are a few cells written out by hand, so that a mistake in the
derivation cannot hide the same mistake in the rule. The dashboard's page tests
reuse ``CALLERS``, ``world_build`` and ``expected``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import Group, User
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework_simplejwt.tokens import RefreshToken

from analytics.alerts import alert_rule_create
from analytics.segments import segment_create
from consumers.kafka_services import kafka_sink_create, kafka_source_create
from consumers.selectors import Position
from consumers.services import consumer_group_create
from consumers.webhook_services import webhook_create
from eventflow.roles import ROLE_PERMISSIONS
from streams.access import ACTION_PERMISSIONS, AUTHENTICATED, KEY_ACTIONS, PUBLIC, REACH, Action, AnyOf, declared_access
from streams.dead_letters import DeadLetterIn, dead_letters_record
from streams.erasure import erasure_request
from streams.models import ApiKeyKind, DeadLetter, DeadLetterStage, Stream
from streams.services import api_key_create, schema_version_add, stream_create, team_create

API_PREFIX = "api/v1/"

# Answers a cell may expect. ALLOWED: the access rule let the request through, so the
# answer is the endpoint's own (a 2xx, or 400/409/422 for the deliberately empty body).
ALLOWED = "allowed"
ALLOWED_STATUSES = frozenset({200, 201, 202, 204, 400, 409, 422})

OWN = "own"
FOREIGN = "foreign"

# The intake is a plain Django view (no REST framework door): keys only, and SEND on the stream.
INTAKE = "intake"

# URL kwargs that name a stream, or a thing that belongs to one stream: a route with any
# of them is also walked on the foreign stream.
STREAM_KWARGS = frozenset({"slug", "stream", "key_id", "letter_id"})


@dataclass(frozen=True)
class Route:
    """One API route and method, as the URL resolver spells the route."""

    route: str
    method: str
    # The body sent with POST and PATCH: empty, so an allowed caller changes nothing
    # or gets the endpoint's own 400.
    body: Any = field(default_factory=dict)
    # Only for views outside the REST framework's door, which declare no ``access``.
    rule: str | None = None

    @property
    def id(self) -> str:
        return f"{self.method} /{self.route}"

    @property
    def kwargs(self) -> list[str]:
        return re.findall(r"<(?:\w+:)?(\w+)>", self.route)

    @property
    def has_foreign(self) -> bool:
        return bool(STREAM_KWARGS & set(self.kwargs))


_S = "api/v1/streams/<slug:slug>"
_T = f"{_S}/schemas/<str:event_type>"
_G = f"{_S}/consumer-groups/<slug:group>"
_W = f"{_S}/webhooks/<int:webhook_id>"
_TEAM = "api/v1/teams/<slug:team>"
_DL = "api/v1/dead-letters"

ROUTES: list[Route] = [
    # intake
    Route(f"{_S}/events", "POST", rule=INTAKE),
    Route(f"{_S}/events/batch", "POST", rule=INTAKE),
    # event query and export
    Route(f"{_S}/events", "GET", None),
    Route(f"{_S}/events/export", "GET", None),
    Route(f"{_S}/events/<path:event_id>", "GET", None),
    # counts, time series, breakdowns and active users
    Route(f"{_S}/analytics/count-by-type", "GET", None),
    Route(f"{_S}/analytics/group-by-key-and-type", "GET", None),
    Route(f"{_S}/analytics/timeseries", "GET", None),
    Route(f"{_S}/analytics/breakdown", "GET", None),
    Route(f"{_S}/analytics/active-users", "GET", None),
    # funnels, paths, retention, processing and saved segments
    Route(f"{_S}/analytics/funnel", "POST"),
    Route(f"{_S}/analytics/paths", "GET", None),
    Route(f"{_S}/analytics/retention", "GET", None),
    Route(f"{_S}/analytics/processing", "GET", None),
    Route(f"{_S}/analytics/page-performance", "GET", None),
    Route(f"{_S}/segments", "GET", None),
    Route(f"{_S}/segments", "POST"),
    Route(f"{_S}/segments/<slug:segment>", "GET", None),
    Route(f"{_S}/segments/<slug:segment>", "PATCH"),
    Route(f"{_S}/segments/<slug:segment>", "DELETE", None),
    # alert rules and alerts
    Route(f"{_S}/alert-rules", "GET", None),
    Route(f"{_S}/alert-rules", "POST"),
    Route(f"{_S}/alert-rules/<int:rule_id>", "GET", None),
    Route(f"{_S}/alert-rules/<int:rule_id>", "PATCH"),
    Route(f"{_S}/alert-rules/<int:rule_id>", "DELETE", None),
    Route(f"{_S}/alert-rules/<int:rule_id>/mute", "POST"),
    Route(f"{_S}/alert-rules/<int:rule_id>/unmute", "POST"),
    Route(f"{_S}/alerts", "GET", None),
    # tokens
    Route("api/v1/auth/token", "POST"),
    Route("api/v1/auth/token/refresh", "POST"),
    # streams
    Route("api/v1/streams", "GET", None),
    Route("api/v1/streams", "POST"),
    Route(_S, "GET", None),
    Route(_S, "PATCH"),
    Route(f"{_S}/archive", "POST"),
    Route(f"{_S}/unarchive", "POST"),
    # erasures (privacy requests)
    Route(f"{_S}/erasures", "GET", None),
    Route(f"{_S}/erasures", "POST"),
    Route(f"{_S}/erasures/<int:erasure_id>", "GET", None),
    # schemas
    Route(f"{_S}/schemas", "GET", None),
    Route(_T, "GET", None),
    Route(_T, "POST"),
    Route(f"{_T}/validate", "POST"),
    Route(f"{_T}/<int:version>", "GET", None),
    # keys
    Route("api/v1/keys", "GET", None),
    Route("api/v1/keys", "POST"),
    Route("api/v1/keys/<int:key_id>", "GET", None),
    Route("api/v1/keys/<int:key_id>", "PATCH"),
    Route("api/v1/keys/<int:key_id>", "DELETE", None),
    # consumer groups
    Route(f"{_S}/consumer-groups", "GET", None),
    Route(f"{_S}/consumer-groups", "POST"),
    Route(_G, "GET", None),
    Route(_G, "DELETE", None),
    Route(f"{_G}/poll", "POST"),
    Route(f"{_G}/commit", "POST"),
    Route(f"{_G}/seek", "POST"),
    Route(f"{_G}/pause", "POST"),
    Route(f"{_G}/resume", "POST"),
    # webhooks
    Route(f"{_S}/webhooks", "GET", None),
    Route(f"{_S}/webhooks", "POST"),
    Route(_W, "GET", None),
    Route(_W, "PATCH"),
    Route(_W, "DELETE", None),
    Route(f"{_W}/enable", "POST"),
    Route(f"{_W}/test", "POST"),
    Route(f"{_W}/deliveries", "GET", None),
    # the Kafka bridge
    Route(f"{_S}/kafka/sinks", "GET", None),
    Route(f"{_S}/kafka/sinks", "POST"),
    Route(f"{_S}/kafka/sinks/<int:sink_id>", "GET", None),
    Route(f"{_S}/kafka/sinks/<int:sink_id>", "PATCH"),
    Route(f"{_S}/kafka/sinks/<int:sink_id>", "DELETE", None),
    Route(f"{_S}/kafka/sources", "GET", None),
    Route(f"{_S}/kafka/sources", "POST"),
    Route(f"{_S}/kafka/sources/<int:source_id>", "GET", None),
    Route(f"{_S}/kafka/sources/<int:source_id>", "PATCH"),
    Route(f"{_S}/kafka/sources/<int:source_id>", "DELETE", None),
    # teams
    Route("api/v1/teams", "GET", None),
    Route("api/v1/teams", "POST"),
    Route(_TEAM, "GET", None),
    Route(_TEAM, "PATCH"),
    Route(_TEAM, "DELETE", None),
    Route(f"{_TEAM}/members", "GET", None),
    Route(f"{_TEAM}/members", "POST"),
    Route(f"{_TEAM}/members/<str:username>", "DELETE", None),
    Route(f"{_TEAM}/streams", "GET", None),
    Route(f"{_TEAM}/streams", "POST"),
    Route(f"{_TEAM}/streams/<slug:stream>", "DELETE", None),
    # people
    Route("api/v1/people", "GET", None),
    Route("api/v1/people", "POST"),
    Route("api/v1/people/<str:username>", "GET", None),
    Route("api/v1/people/<str:username>", "PATCH"),
    Route("api/v1/people/<str:username>/invitation", "POST"),
    Route("api/v1/me", "GET", None),
    # dead letters
    Route(_DL, "GET", None),
    Route(f"{_DL}/replay", "POST"),
    Route(f"{_DL}/discard", "POST"),
    Route(f"{_DL}/<int:letter_id>", "GET", None),
    Route(f"{_DL}/<int:letter_id>/replay", "POST"),
    Route(f"{_DL}/<int:letter_id>/discard", "POST"),
    # audit log
    Route("api/v1/audit", "GET", None),
]


# --- the routes the URL resolver knows -----------------------------------------------------


def _walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


def view_class(callback: Any) -> Any:
    """The REST framework view class behind a URL's callback (the intake's documenting class)."""
    return getattr(callback, "cls", None) or getattr(callback, "view_class", None)


def api_routes() -> dict[tuple[str, str], Any]:
    """Every (route, METHOD) under /api/v1/ with its view class, from the URL resolver."""
    found: dict[tuple[str, str], Any] = {}
    for route, callback in _walk(get_resolver().url_patterns):
        if not route.startswith(API_PREFIX):
            continue
        cls = view_class(callback)
        assert cls is not None, f"/{route} has no view class to read its access from"
        for method in cls.http_method_names:
            if method not in ("options", "head") and hasattr(cls, method):
                found[(route, method.upper())] = cls
    return found


def route_access(route: Route, cls: Any) -> Any:
    """What the route needs: the view's ``access`` declaration, or the table's rule for the intake."""
    if route.rule is not None:
        return route.rule
    return declared_access(cls, route.method)


# --- callers ----------------------------------------------------------------------------------

ROLES = ["Admin", "Developer", "Analyst", "Operator", "Consumer"]


@dataclass(frozen=True)
class CallerSpec:
    name: str
    key_kind: str | None = None
    role: str | None = None
    superuser: bool = False

    @property
    def is_nobody(self) -> bool:
        return self.key_kind is None and self.role is None and not self.superuser

    @property
    def is_person(self) -> bool:
        return self.role is not None or self.superuser

    def holds(self, action: Action) -> bool:
        if self.key_kind is not None:
            return action in KEY_ACTIONS[self.key_kind]
        if self.superuser:
            return True
        if self.role is None:
            return False
        return ACTION_PERMISSIONS[action] in ROLE_PERMISSIONS[self.role]

    def holds_any(self) -> bool:
        return any(self.holds(action) for action in Action)

    def reaches(self, variant: str) -> bool:
        return not self.is_nobody and (self.superuser or variant == OWN)


CALLERS: list[CallerSpec] = [
    CallerSpec("nobody"),
    CallerSpec("ingest key", key_kind=ApiKeyKind.INGEST),
    CallerSpec("secret key", key_kind=ApiKeyKind.SECRET),
    *(CallerSpec(role, role=role) for role in ROLES),
    CallerSpec("superuser", superuser=True),
]
CALLER = {caller.name: caller for caller in CALLERS}


def _held(caller: CallerSpec, access: Any) -> bool:
    """Whether the caller holds the action ``access`` names, or any of an ``AnyOf``'s."""
    if isinstance(access, AnyOf):
        return any(caller.holds(action) for action in access.actions)
    return caller.holds(Action(access))


def expected(access: Any, caller: CallerSpec, route: Route, variant: str) -> int | str:
    """The answer the access rule gives ``caller`` on ``route``: ALLOWED, 401, 403 or 404."""
    if access == PUBLIC:
        return ALLOWED
    if caller.is_nobody:
        return 401
    if access == INTAKE:
        if not caller.key_kind:
            return 401
        access = Action.SEND
    if access == AUTHENTICATED:
        return ALLOWED
    if "slug" in route.kwargs:
        # The door checks the stream first: one the caller does not reach is 404 whatever the role.
        if not caller.reaches(variant):
            return 404
        held = caller.holds_any() if access == REACH else _held(caller, access)
        return ALLOWED if held else 403
    if access == REACH:
        # A list (of streams): anyone signed in, shown only what they reach.
        return ALLOWED
    if not _held(caller, access):
        return 403
    # Past the door, a thing of a stream the caller does not reach is not found.
    return ALLOWED if caller.reaches(variant) else 404


# Cells written by hand: (caller, method, route, variant, answer).
SPOT_CHECKS: list[tuple[str, str, str, str, int | str]] = [
    ("Analyst", "POST", "api/v1/keys", OWN, 403),
    ("Developer", "POST", "api/v1/keys", OWN, ALLOWED),
    ("Developer", "GET", f"{_S}/consumer-groups", FOREIGN, 404),
    ("Developer", "GET", f"{_S}/consumer-groups", OWN, ALLOWED),
    ("Developer", "GET", "api/v1/keys/<int:key_id>", FOREIGN, 404),
    ("Developer", "GET", "api/v1/people", OWN, 403),
    ("Developer", "POST", "api/v1/streams", OWN, ALLOWED),
    ("secret key", "POST", f"{_S}/webhooks", OWN, 403),
    ("secret key", "POST", f"{_G}/poll", OWN, ALLOWED),
    ("secret key", "GET", "api/v1/keys", OWN, 403),
    ("secret key", "POST", f"{_S}/events", FOREIGN, 404),
    ("ingest key", "POST", f"{_S}/events", OWN, ALLOWED),
    ("ingest key", "POST", f"{_G}/poll", OWN, 403),
    ("ingest key", "GET", _S, OWN, ALLOWED),
    ("ingest key", "GET", "api/v1/me", OWN, ALLOWED),
    ("Consumer", "POST", f"{_G}/poll", OWN, ALLOWED),
    ("Consumer", "PATCH", _S, OWN, 403),
    ("Consumer", "POST", f"{_S}/events", OWN, 401),
    ("Analyst", "GET", f"{_S}/consumer-groups", OWN, 403),
    ("Analyst", "GET", _S, OWN, ALLOWED),
    ("Operator", "GET", f"{_S}/schemas", OWN, ALLOWED),
    ("Operator", "POST", f"{_S}/archive", OWN, 403),
    ("Operator", "POST", f"{_DL}/<int:letter_id>/replay", OWN, ALLOWED),
    ("Operator", "GET", f"{_DL}/<int:letter_id>", FOREIGN, 404),
    ("Developer", "GET", _DL, OWN, 403),
    ("secret key", "GET", _DL, OWN, 403),
    ("Admin", "GET", "api/v1/people", OWN, ALLOWED),
    ("Operator", "GET", "api/v1/audit", OWN, 403),
    ("Admin", "GET", f"{_S}/webhooks", FOREIGN, 404),
    ("Admin", "DELETE", f"{_TEAM}/streams/<slug:stream>", FOREIGN, 404),
    ("superuser", "GET", f"{_S}/webhooks", FOREIGN, ALLOWED),
    ("superuser", "POST", f"{_S}/events", OWN, 401),
    ("superuser", "GET", "api/v1/keys/<int:key_id>", FOREIGN, ALLOWED),
    ("nobody", "GET", "api/v1/me", OWN, 401),
    ("nobody", "GET", "api/v1/streams", OWN, 401),
    ("nobody", "POST", "api/v1/auth/token", OWN, ALLOWED),
    ("Analyst", "GET", f"{_S}/events", OWN, ALLOWED),
    ("Analyst", "GET", f"{_S}/events", FOREIGN, 404),
    ("Operator", "GET", f"{_S}/events/export", OWN, 403),
    ("secret key", "GET", f"{_S}/events/<path:event_id>", OWN, ALLOWED),
    ("ingest key", "GET", f"{_S}/events", OWN, 403),
    ("Analyst", "POST", f"{_S}/analytics/funnel", OWN, ALLOWED),
    ("Analyst", "POST", f"{_S}/segments", FOREIGN, 404),
    ("Analyst", "DELETE", f"{_S}/segments/<slug:segment>", OWN, ALLOWED),
    ("Consumer", "GET", f"{_S}/analytics/retention", OWN, 403),
    ("ingest key", "GET", f"{_S}/analytics/paths", OWN, 403),
    ("secret key", "GET", f"{_S}/analytics/processing", OWN, ALLOWED),
    # Processing health is read or operate: an Operator watches it, a Consumer does not.
    ("Operator", "GET", f"{_S}/analytics/processing", OWN, ALLOWED),
    ("Operator", "GET", f"{_S}/analytics/processing", FOREIGN, 404),
    ("Consumer", "GET", f"{_S}/analytics/processing", OWN, 403),
    ("ingest key", "GET", f"{_S}/analytics/processing", OWN, 403),
    ("Analyst", "GET", f"{_S}/alerts", OWN, ALLOWED),
    ("Analyst", "POST", f"{_S}/alert-rules", OWN, 403),
    ("Developer", "PATCH", f"{_S}/alert-rules/<int:rule_id>", OWN, ALLOWED),
    ("Developer", "POST", f"{_S}/alert-rules/<int:rule_id>/mute", FOREIGN, 404),
    ("secret key", "GET", f"{_S}/alert-rules/<int:rule_id>", OWN, ALLOWED),
    ("secret key", "DELETE", f"{_S}/alert-rules/<int:rule_id>", OWN, 403),
    ("Admin", "POST", f"{_S}/erasures", OWN, ALLOWED),
    ("Developer", "POST", f"{_S}/erasures", OWN, 403),
    ("secret key", "POST", f"{_S}/erasures", OWN, 403),
    ("Admin", "GET", f"{_S}/erasures/<int:erasure_id>", FOREIGN, 404),
]


# --- the world the table is walked in --------------------------------------------------------

WEBHOOK_URL = "http://127.0.0.1:9/hook"
MISSING_ID = 2**31 - 1
LOGIN_SCHEMA = {"type": "object", "properties": {"method": {"type": "string"}}}


@dataclass
class World:
    """Two streams with one of everything each, and a credential per caller."""

    streams: dict[str, Stream]
    users: dict[str, User]
    headers: dict[str, dict[str, str]]
    # The value of each URL kwarg on the own stream, the foreign one, and for a thing that does not exist.
    values: dict[str, dict[str, Any]]

    def path(self, route: Route | str, variant: str) -> str:
        template = route.route if isinstance(route, Route) else route
        names = re.findall(r"<(?:\w+:)?(\w+)>", template)
        values = dict(self.values[OWN])
        if variant == FOREIGN:
            values.update(self.values[FOREIGN])
        elif variant == "missing":
            # The stream itself when the route names one; else the stream's thing.
            swap = ["slug"] if "slug" in names else [n for n in names if n in STREAM_KWARGS]
            values.update({name: self.values["missing"][name] for name in swap})
        return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), template)


def _person(username: str, *, role: str | None = None, superuser: bool = False) -> User:
    user = User(username=username, email=f"{username}@example.com", is_superuser=superuser, is_staff=superuser)
    user.set_unusable_password()  # no hashing: tokens are issued directly
    user.save()
    if role is not None:
        user.groups.add(Group.objects.get(name=role))
    return user


def _bearer(user: User) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {RefreshToken.for_user(user).access_token}"}


def world_build() -> World:
    """Build the world through the services. Webhooks need EVENTFLOW_WEBHOOK_ALLOW_LOOPBACK."""
    own = stream_create(slug="own", name="Own")
    foreign = stream_create(slug="foreign", name="Foreign")
    users = {caller.name: _person(caller.name.lower(), role=caller.role) for caller in CALLERS if caller.role}
    users["superuser"] = _person("root", superuser=True)
    bystander = _person("bystander")
    team_create(slug="own-team", members=[*(users[role] for role in ROLES), bystander], streams=[own])
    team_create(slug="foreign-team", streams=[foreign])
    values: dict[str, dict[str, Any]] = {OWN: {}, FOREIGN: {}}
    headers: dict[str, dict[str, str]] = {"nobody": {}}
    for stream, variant in ((own, OWN), (foreign, FOREIGN)):
        schema_version_add(stream=stream, event_type="login", schema=LOGIN_SCHEMA, dry_run=False, force=False)
        consumer_group_create(stream_id=stream.pk, name="billing", start=Position("earliest"))
        webhook = webhook_create(stream_id=stream.pk, url=WEBHOOK_URL).webhook
        sink = kafka_sink_create(
            stream_id=stream.pk, topic="events", key="user_id", start=Position("latest"), bootstrap_servers="kafka:9092"
        )
        source = kafka_source_create(
            stream_id=stream.pk,
            stream_slug=stream.slug,
            topic="incoming",
            start="earliest",
            bootstrap_servers="kafka:9092",
        )
        ingest = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream], name=f"{variant} ingest")
        secret = api_key_create(kind=ApiKeyKind.SECRET, streams=[stream], name=f"{variant} secret")
        dead_letters_record(
            letters=[
                DeadLetterIn(
                    stream_id=stream.pk,
                    event_id=f"{variant}-1",
                    event={
                        "event_id": f"{variant}-1",
                        "type": "login",
                        "event_time": "2026-11-21T09:00:00+00:00",
                        "payload": {"method": "password"},
                    },
                    stage=DeadLetterStage.VALIDATE,
                    error_class="ValueError",
                    error_message="a processing failure",
                )
            ]
        )
        segment_create(
            stream_id=stream.pk, name="mobile", conditions=[{"property": "enrichment.device_type", "value": "mobile"}]
        )
        rule = alert_rule_create(
            stream_id=stream.pk, name="failed logins", event_types=["login"], threshold=5, window_seconds=300
        )
        erasure = erasure_request(caller=None, stream_id=stream.pk, by="user_id", subject="nobody-in-particular")
        values[variant] = {
            "erasure_id": erasure.pk,
            "rule_id": rule.pk,
            "slug": stream.slug,
            "stream": stream.slug,
            "team": f"{variant}-team",
            "key_id": ingest.api_key.pk,
            "webhook_id": webhook.pk,
            "sink_id": sink.pk,
            "source_id": source.pk,
            "letter_id": DeadLetter.objects.get(stream=stream).pk,
            # The dead letter's event: the event lookup finds it.
            "event_id": f"{variant}-1",
            "segment": "mobile",
        }
        if variant == OWN:
            headers["ingest key"] = {"HTTP_X_API_KEY": ingest.raw_key}
            headers["secret key"] = {"HTTP_X_API_KEY": secret.raw_key}
    values[OWN].update({"group": "billing", "event_type": "login", "version": 1, "username": "bystander"})
    values["missing"] = {
        "slug": "no-such-stream",
        "stream": "no-such-stream",
        "key_id": MISSING_ID,
        "letter_id": MISSING_ID,
    }
    for name, user in users.items():
        headers[name] = _bearer(user)
    return World(streams={OWN: own, FOREIGN: foreign}, users=users, headers=headers, values=values)
