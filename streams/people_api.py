"""Teams, people and ``/me`` over HTTP.

Views are thin: ``DeclaredAccess`` checks the caller (Admins administer people
and teams; anyone signed in may ask who they are), ``parse_input`` refuses
unknown fields, one service or selector does the work, and an output
serializer renders the answer. URL kwargs are ``team``, ``username`` and
``stream``, never ``slug``: these URLs are not about one stream, and
``DeclaredAccess`` would take a ``slug`` for one.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from eventflow.api import ApiView, TextField, cursor_pagination, paginated_response, parse_input, parse_query
from eventflow.openapi import error_responses, paginated

from . import people
from .access import AUTHENTICATED, Action, Caller
from .people_selectors import (
    INVITATION_STATES,
    me,
    people_list,
    person_get,
    role_names,
    stream_of_team,
    streams_by_slug,
    team_detail,
    team_get,
    team_members,
    team_streams,
    teams_by_slug,
    teams_list,
    users_by_username,
)

MAX_NAMES = 1000


class PeopleApiView(ApiView):
    access: Any = Action.ADMINISTER
    caller: Caller


# --- shapes ----------------------------------------------------------------------------------


def _names(help_text: str, *, required: bool = True) -> serializers.ListField:
    return serializers.ListField(
        child=TextField(max_length=150), max_length=MAX_NAMES, required=required, help_text=help_text
    )


class TeamOut(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    members = serializers.SerializerMethodField(help_text="Usernames of the members.")
    streams = serializers.SerializerMethodField(help_text="Slugs of the granted streams you reach.")
    created_at = serializers.DateTimeField()

    def get_members(self, team: Any) -> list[str]:
        return [user.username for user in team.members.all()]

    def get_streams(self, team: Any) -> list[str]:
        return [stream.slug for stream in team.streams.all()]


class TeamCreateIn(serializers.Serializer):
    slug = TextField(max_length=64, help_text="Letters, digits, _ and -; unique.")
    name = TextField(max_length=200, required=False, allow_blank=True, help_text="Defaults to the slug.")
    members = _names("Usernames to add.", required=False)
    streams = _names("Slugs of streams to grant (streams you reach).", required=False)


class TeamPatchIn(serializers.Serializer):
    name = TextField(max_length=200)


class MembersIn(serializers.Serializer):
    usernames = serializers.ListField(child=TextField(max_length=150), min_length=1, max_length=MAX_NAMES)


class GrantsIn(serializers.Serializer):
    streams = serializers.ListField(child=TextField(max_length=64), min_length=1, max_length=MAX_NAMES)


class MemberOut(serializers.Serializer):
    username = serializers.CharField()
    email = serializers.CharField()
    is_active = serializers.BooleanField()
    roles = serializers.SerializerMethodField()

    def get_roles(self, user: Any) -> list[str]:
        return role_names(user)


class GrantOut(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()


class PersonOut(MemberOut):
    is_superuser = serializers.BooleanField()
    teams = serializers.SerializerMethodField(help_text="Slugs of the person's teams.")
    date_joined = serializers.DateTimeField()
    last_login = serializers.DateTimeField(allow_null=True)
    invitation = serializers.ChoiceField(
        choices=INVITATION_STATES,
        allow_null=True,
        read_only=True,
        help_text=(
            "Set while the person has not chosen a password since being invited: `pending` while the newest "
            "link still works, `expired` once PASSWORD_RESET_TIMEOUT has passed (resend it with "
            "`POST /api/v1/people/{username}/invitation`). Null otherwise."
        ),
    )

    def get_teams(self, user: Any) -> list[str]:
        return [team.slug for team in user.teams.all()]


class InvitedOut(PersonOut):
    set_password_url = serializers.CharField(
        help_text="One-time link for the person to choose a password; also mailed to them. Shown only now."
    )


class InviteIn(serializers.Serializer):
    username = TextField(max_length=150)
    email = serializers.EmailField(max_length=254)
    roles = _names("Role names: Admin, Developer, Analyst, Operator, Consumer.", required=False)
    teams = _names("Slugs of teams to join.", required=False)


class PersonPatchIn(serializers.Serializer):
    roles = _names("Exactly these roles (others are taken away).", required=False)
    is_active = serializers.BooleanField(
        required=False, help_text="false deactivates (sign-in and tokens stop working); true reactivates."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Give roles, is_active or both.")
        return attrs


class PeopleQuery(serializers.Serializer):
    team = serializers.CharField(required=False, help_text="Only members of this team (slug).")
    role = serializers.CharField(required=False, help_text="Only people with this role.")
    is_active = serializers.BooleanField(required=False, allow_null=True, default=None)


class StreamRightsOut(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    archived = serializers.BooleanField()
    actions = serializers.ListField(child=serializers.ChoiceField([a.value for a in Action]))


class MeOut(serializers.Serializer):
    via = serializers.ChoiceField(["api_key", "jwt", "session"], help_text="How you authenticated.")
    person = inline_serializer(
        name="MePerson",
        fields={
            "username": serializers.CharField(),
            "email": serializers.CharField(),
            "is_superuser": serializers.BooleanField(),
            "roles": serializers.ListField(child=serializers.CharField()),
            "teams": GrantOut(many=True),
        },
        allow_null=True,
        help_text="Set when a person is calling.",
    )
    key = inline_serializer(
        name="MeKey",
        fields={"prefix": serializers.CharField(), "kind": serializers.CharField()},
        allow_null=True,
        help_text="Set when an API key is calling.",
    )
    actions = serializers.ListField(
        child=serializers.ChoiceField([a.value for a in Action]), help_text="Everything your roles or key kind allow."
    )
    streams = StreamRightsOut(many=True, help_text="The streams you reach, with what you may do on each.")


TeamPagination = cursor_pagination("slug")
PersonPagination = cursor_pagination("username")
StreamPagination = cursor_pagination("slug")

_TEAM = OpenApiParameter("team", OpenApiTypes.STR, OpenApiParameter.PATH, description="The team's slug.")
_USERNAME = OpenApiParameter("username", OpenApiTypes.STR, OpenApiParameter.PATH, description="The username.")
_STREAM = OpenApiParameter("stream", OpenApiTypes.STR, OpenApiParameter.PATH, description="The stream's slug.")
_PAGE = [
    OpenApiParameter("cursor", OpenApiTypes.STR, OpenApiParameter.QUERY, description="From next or previous."),
    OpenApiParameter("limit", OpenApiTypes.INT, OpenApiParameter.QUERY, description="Page size, up to 500."),
]
_TEAMS = ["teams"]
_PEOPLE = ["people"]


def _team_response(view: PeopleApiView, slug: str, status: int = 200) -> Response:
    return Response(TeamOut(team_detail(caller=view.caller, slug=slug)).data, status=status)


# --- teams -----------------------------------------------------------------------------------


class TeamListView(PeopleApiView):
    @extend_schema(
        operation_id="teams_list",
        summary="List teams with their members and streams",
        tags=_TEAMS,
        parameters=_PAGE,
        responses={200: paginated(TeamOut), **error_responses(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        return paginated_response(self, request, TeamPagination, teams_list(caller=self.caller), TeamOut)

    @extend_schema(
        operation_id="teams_create",
        summary="Create a team",
        description="Members and streams may be given at once; a stream you do not reach is unknown (400).",
        tags=_TEAMS,
        request=TeamCreateIn,
        responses={201: TeamOut, **error_responses(400, 401, 403, 409, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        data = parse_input(request, TeamCreateIn)
        team = people.team_create(
            caller=self.caller,
            slug=data["slug"],
            name=data.get("name", ""),
            members=users_by_username(data.get("members", [])),
            streams=streams_by_slug(caller=self.caller, slugs=data.get("streams", [])),
        )
        return _team_response(self, team.slug, 201)


class TeamDetailView(PeopleApiView):
    @extend_schema(
        operation_id="teams_show",
        summary="Show a team",
        tags=_TEAMS,
        parameters=[_TEAM],
        responses={200: TeamOut, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, team: str) -> Response:
        return _team_response(self, team)

    @extend_schema(
        operation_id="teams_update",
        summary="Rename a team",
        tags=_TEAMS,
        parameters=[_TEAM],
        request=TeamPatchIn,
        responses={200: TeamOut, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def patch(self, request: Request, team: str) -> Response:
        data = parse_input(request, TeamPatchIn)
        people.team_rename(caller=self.caller, team=team_get(slug=team), name=data["name"])
        return _team_response(self, team)

    @extend_schema(
        operation_id="teams_delete",
        summary="Delete a team",
        description="Its members lose the streams they reached only through it; the people and streams stay.",
        tags=_TEAMS,
        parameters=[_TEAM],
        responses={204: None, **error_responses(401, 403, 404)},
    )
    def delete(self, request: Request, team: str) -> HttpResponse:
        people.team_delete(caller=self.caller, team=team_get(slug=team))
        return HttpResponse(status=204)


class TeamMembersView(PeopleApiView):
    @extend_schema(
        operation_id="teams_members_list",
        summary="List a team's members",
        tags=_TEAMS,
        parameters=[_TEAM, *_PAGE],
        responses={200: paginated(MemberOut), **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, team: str) -> Response:
        found = team_get(slug=team)
        return paginated_response(self, request, PersonPagination, team_members(team=found), MemberOut)

    @extend_schema(
        operation_id="teams_members_add",
        summary="Add people to a team",
        description="People already in the team are left as they are. Any unknown username: 400, nothing added.",
        tags=_TEAMS,
        parameters=[_TEAM],
        request=MembersIn,
        responses={200: TeamOut, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def post(self, request: Request, team: str) -> Response:
        data = parse_input(request, MembersIn)
        found = team_get(slug=team)
        people.team_members_add(caller=self.caller, team=found, users=users_by_username(data["usernames"]))
        return _team_response(self, team)


class TeamMemberView(PeopleApiView):
    @extend_schema(
        operation_id="teams_members_remove",
        summary="Take a person out of a team",
        tags=_TEAMS,
        parameters=[_TEAM, _USERNAME],
        responses={204: None, **error_responses(401, 403, 404)},
    )
    def delete(self, request: Request, team: str, username: str) -> HttpResponse:
        found = team_get(slug=team)
        people.team_member_remove(caller=self.caller, team=found, user=person_get(username=username))
        return HttpResponse(status=204)


class TeamStreamsView(PeopleApiView):
    @extend_schema(
        operation_id="teams_streams_list",
        summary="List the streams granted to a team (those you reach)",
        tags=_TEAMS,
        parameters=[_TEAM, *_PAGE],
        responses={200: paginated(GrantOut), **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, team: str) -> Response:
        found = team_get(slug=team)
        return paginated_response(
            self, request, StreamPagination, team_streams(caller=self.caller, team=found), GrantOut
        )

    @extend_schema(
        operation_id="teams_streams_grant",
        summary="Grant streams to a team",
        description="Its members reach these streams from their next request. Any unknown stream: 400, nothing granted.",
        tags=_TEAMS,
        parameters=[_TEAM],
        request=GrantsIn,
        responses={200: TeamOut, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def post(self, request: Request, team: str) -> Response:
        data = parse_input(request, GrantsIn)
        found = team_get(slug=team)
        streams = streams_by_slug(caller=self.caller, slugs=data["streams"])
        people.team_streams_grant(caller=self.caller, team=found, streams=streams)
        return _team_response(self, team)


class TeamStreamView(PeopleApiView):
    @extend_schema(
        operation_id="teams_streams_revoke",
        summary="Take a stream away from a team",
        tags=_TEAMS,
        parameters=[_TEAM, _STREAM],
        responses={204: None, **error_responses(401, 403, 404)},
    )
    def delete(self, request: Request, team: str, stream: str) -> HttpResponse:
        found = team_get(slug=team)
        granted = stream_of_team(caller=self.caller, team=found, slug=stream)
        people.team_stream_revoke(caller=self.caller, team=found, stream=granted)
        return HttpResponse(status=204)


# --- people ----------------------------------------------------------------------------------


class PeopleListView(PeopleApiView):
    @extend_schema(
        operation_id="people_list",
        summary="List people with their roles and teams",
        tags=_PEOPLE,
        parameters=[PeopleQuery, *_PAGE],
        responses={200: paginated(PersonOut), **error_responses(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        query = parse_query(request, PeopleQuery)
        found = people_list(team=query.get("team"), role=query.get("role"), is_active=query.get("is_active"))
        return paginated_response(self, request, PersonPagination, found, PersonOut)

    @extend_schema(
        operation_id="people_invite",
        summary="Invite a person",
        description=(
            "Creates an active account without a password and mails the person a one-time link to choose one "
            "(through the configured email backend). The link is also in the answer's `set_password_url`, "
            "shown only now. It expires after PASSWORD_RESET_TIMEOUT or once used."
        ),
        tags=_PEOPLE,
        request=InviteIn,
        responses={201: InvitedOut, **error_responses(400, 401, 403, 409, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        data = parse_input(request, InviteIn)
        invitation = people.person_invite(
            caller=self.caller,
            username=data["username"],
            email=data["email"],
            roles=data.get("roles", []),
            teams=teams_by_slug(data.get("teams", [])),
            base_url=request.build_absolute_uri("/"),
        )
        return _invited_response(invitation)


def _invited_response(invitation: people.Invitation) -> Response:
    body = PersonOut(person_get(username=invitation.user.username)).data
    response = Response({**body, "set_password_url": invitation.set_password_url}, status=201)
    # The one-time link is in the answer: no cache keeps it.
    response["Cache-Control"] = "no-store"
    return response


class PersonView(PeopleApiView):
    @extend_schema(
        operation_id="people_show",
        summary="Show a person",
        tags=_PEOPLE,
        parameters=[_USERNAME],
        responses={200: PersonOut, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, username: str) -> Response:
        return Response(PersonOut(person_get(username=username)).data)

    @extend_schema(
        operation_id="people_update",
        summary="Set a person's roles, deactivate or reactivate them",
        description=(
            "`roles` replaces the person's roles. `is_active: false` stops their sign-in and their tokens on the "
            "next request. A superuser can be changed only by a superuser; nobody can deactivate themselves."
        ),
        tags=_PEOPLE,
        parameters=[_USERNAME],
        request=PersonPatchIn,
        responses={200: PersonOut, **error_responses(400, 401, 403, 404, 409, 413, 415)},
    )
    def patch(self, request: Request, username: str) -> Response:
        data = parse_input(request, PersonPatchIn)
        user = person_get(username=username)
        people.person_update(caller=self.caller, user=user, roles=data.get("roles"), is_active=data.get("is_active"))
        return Response(PersonOut(person_get(username=username)).data)


class PersonInvitationView(PeopleApiView):
    @extend_schema(
        operation_id="people_invitation_resend",
        summary="Send a person a new invitation",
        description=(
            "For a person who has never chosen a password, whose invitation link expired or went astray: mails "
            "them a new one-time link, the same mail as the invitation, and answers it in `set_password_url`, "
            "shown only now. Links sent before stop working. A person who has chosen a password resets it "
            "themselves (409 `password_set`); a deactivated one is reactivated first (409 `person_deactivated`); "
            "one without an email cannot be mailed (409 `person_without_email`). As when inviting, a member of a "
            "team holding streams you don't reach, or a superuser, needs a superuser (403)."
        ),
        tags=_PEOPLE,
        parameters=[_USERNAME],
        request=None,
        responses={201: InvitedOut, **error_responses(401, 403, 404, 409)},
        examples=[
            OpenApiExample(
                "dana",
                response_only=True,
                status_codes=["201"],
                value={
                    "username": "dana",
                    "email": "dana@example.com",
                    "is_active": True,
                    "roles": ["Analyst"],
                    "is_superuser": False,
                    "teams": ["ops"],
                    "date_joined": "2026-11-18T09:00:00Z",
                    "last_login": None,
                    "invitation": "pending",
                    "set_password_url": "https://events.example.com/accounts/reset/Mg/<one-time-token>/",  # pragma: allowlist secret
                },
            )
        ],
    )
    def post(self, request: Request, username: str) -> Response:
        user = person_get(username=username)
        invitation = people.person_invitation_resend(
            caller=self.caller, user=user, base_url=request.build_absolute_uri("/")
        )
        return _invited_response(invitation)


# --- me --------------------------------------------------------------------------------------


class MeView(ApiView):
    access = AUTHENTICATED
    caller: Caller

    @extend_schema(
        operation_id="me",
        summary="Who I am, and what I may do on each stream I reach",
        description=(
            "A person: their username, roles and teams; a key: its prefix and kind. "
            "Then every stream the caller reaches, with the actions allowed there."
        ),
        tags=["me"],
        responses={200: MeOut, **error_responses(401)},
    )
    def get(self, request: Request) -> Response:
        return Response(MeOut(me(caller=self.caller)).data)
