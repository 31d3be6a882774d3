"""Teams over the API: create, rename, delete, members and stream grants, each a security event."""

from __future__ import annotations

import pytest
from django.db import transaction

from eventflow.errors import Conflict, Invalid, NotFound
from eventflow.models import AuditEntry
from streams import people
from streams.access import caller_for_user
from streams.models import Team
from streams.services import stream_create, team_create

from .people_fixtures import (
    make_person,
    security_events,
)

pytestmark = pytest.mark.django_db

TEAMS = "/api/v1/teams"


def test_admin_creates_a_team_with_members_and_streams(admin_api, stream):
    make_person("bob")
    response = admin_api.post(TEAMS, {"slug": "web", "name": "Web", "members": ["bob"], "streams": ["shop"]})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "web" and body["name"] == "Web"
    assert body["members"] == ["bob"] and body["streams"] == ["shop"]
    team = Team.objects.get(slug="web")
    assert list(team.members.values_list("username", flat=True)) == ["bob"]

    [created] = security_events("team.create")
    assert created.caller == "alice" and created.target == "team:web"
    assert created.details["members"] == ["bob"]
    [grant] = security_events("team.stream_grant")
    assert grant.stream_id == stream.pk and grant.details == {"stream": "shop"}


def test_a_name_defaults_to_the_slug(admin_api):
    assert admin_api.post(TEAMS, {"slug": "web"}).json()["name"] == "web"


def test_a_taken_slug_is_409_and_leaves_no_audit_row(admin_api, ops):
    response = admin_api.post(TEAMS, {"slug": "ops"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "team_exists"
    assert security_events("team.create") == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"slug": "no spaces"}, "invalid_fields"),
        ({"slug": ""}, "invalid_request"),
        ({"slug": "web", "owner": "me"}, "unknown_field"),
        ({"slug": "web", "members": ["nobody"]}, "unknown_people"),
        ({"slug": "web", "streams": ["nope"]}, "unknown_streams"),
        ({"slug": "web", "members": "bob"}, "invalid_request"),
        ({"slug": 5}, "invalid_request"),
    ],
)
def test_bad_input_is_400_and_creates_nothing(admin_api, body, code):
    response = admin_api.post(TEAMS, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == code
    assert not Team.objects.filter(slug="web").exists()


def test_an_admin_cannot_grant_a_stream_they_do_not_reach(admin_api, other_stream):
    response = admin_api.post(TEAMS, {"slug": "web", "streams": ["other"]})
    assert response.status_code == 400
    # Told exactly as for a stream that does not exist.
    assert response.json()["error"] == {
        "code": "unknown_streams",
        "message": "No such stream(s).",
        "details": {"streams": ["other"]},
    }


def test_a_superuser_grants_any_stream(root_api, other_stream):
    response = root_api.post(TEAMS, {"slug": "web", "streams": ["other"]})
    assert response.status_code == 201
    assert response.json()["streams"] == ["other"]


def test_show_rename_and_delete(admin_api, ops, stream):
    assert admin_api.get(f"{TEAMS}/ops").json()["streams"] == ["shop"]
    assert admin_api.get(f"{TEAMS}/nope").status_code == 404

    response = admin_api.patch(f"{TEAMS}/ops", {"name": "Operations"})
    assert response.status_code == 200 and response.json()["name"] == "Operations"
    [renamed] = security_events("team.rename")
    assert renamed.details == {"before": "Ops", "after": "Operations"}
    assert admin_api.patch(f"{TEAMS}/ops", {"slug": "x"}).status_code == 400
    assert admin_api.patch(f"{TEAMS}/ops", {"name": ""}).status_code == 400

    assert admin_api.delete(f"{TEAMS}/ops").status_code == 204
    assert not Team.objects.filter(slug="ops").exists()
    [deleted] = security_events("team.delete")
    assert deleted.details == {"members": ["alice"], "streams": ["shop"]}
    assert admin_api.delete(f"{TEAMS}/ops").status_code == 404


def test_members_add_list_and_remove(admin_api, ops):
    make_person("bob", "Developer")
    make_person("carol")
    response = admin_api.post(f"{TEAMS}/ops/members", {"usernames": ["bob", "carol", "alice"]})
    assert response.status_code == 200, response.content
    assert response.json()["members"] == ["alice", "bob", "carol"]
    [added] = security_events("team.member_add")
    assert added.details == {"members": ["bob", "carol"]}  # alice was a member already

    listed = admin_api.get(f"{TEAMS}/ops/members?limit=2").json()
    assert [m["username"] for m in listed["results"]] == ["alice", "bob"]
    assert listed["results"][1] == {
        "username": "bob",
        "email": "bob@example.com",
        "is_active": True,
        "roles": ["Developer"],
    }
    rest = admin_api.get(listed["next"].replace("http://testserver", "")).json()
    assert [m["username"] for m in rest["results"]] == ["carol"]

    assert admin_api.delete(f"{TEAMS}/ops/members/carol").status_code == 204
    assert admin_api.delete(f"{TEAMS}/ops/members/carol").status_code == 404
    assert admin_api.delete(f"{TEAMS}/ops/members/nobody").status_code == 404
    [removed] = security_events("team.member_remove")
    assert removed.details == {"members": ["carol"]}


def test_adding_an_unknown_person_adds_nobody(admin_api, ops):
    make_person("bob")
    response = admin_api.post(f"{TEAMS}/ops/members", {"usernames": ["bob", "ghost"]})
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"usernames": ["ghost"]}
    assert list(ops.members.values_list("username", flat=True)) == ["alice"]
    assert admin_api.post(f"{TEAMS}/ops/members", {"usernames": []}).status_code == 400


def test_streams_grant_list_and_revoke(root_api, ops, stream, other_stream):
    response = root_api.post(f"{TEAMS}/ops/streams", {"streams": ["other", "shop"]})
    assert response.status_code == 200
    assert response.json()["streams"] == ["other", "shop"]
    assert [e.details["stream"] for e in security_events("team.stream_grant")] == ["other"]

    listed = root_api.get(f"{TEAMS}/ops/streams").json()["results"]
    assert listed == [{"slug": "other", "name": "Other"}, {"slug": "shop", "name": "Shop"}]

    assert root_api.delete(f"{TEAMS}/ops/streams/other").status_code == 204
    assert root_api.delete(f"{TEAMS}/ops/streams/other").status_code == 404
    [revoked] = security_events("team.stream_revoke")
    assert revoked.stream_id == other_stream.pk and revoked.caller == "root"


def test_an_admin_neither_sees_nor_revokes_a_stream_they_do_not_reach(admin_api, stream, other_stream):
    team_create(slug="web", streams=[stream, other_stream])  # alice is not in it: she reaches shop only
    assert admin_api.get(f"{TEAMS}/web").json()["streams"] == ["shop"]
    assert [s["slug"] for s in admin_api.get(f"{TEAMS}/web/streams").json()["results"]] == ["shop"]
    assert admin_api.delete(f"{TEAMS}/web/streams/other").status_code == 404
    assert Team.objects.get(slug="web").streams.filter(slug="other").exists()


def test_the_team_list_costs_the_same_queries_for_one_team_or_many(admin_api, ops, django_assert_num_queries):
    def page() -> list[dict]:
        response = admin_api.get(TEAMS)
        assert response.status_code == 200
        return response.json()["results"]

    # user (JWT), its permissions (2), reached streams, teams page, members, streams.
    with django_assert_num_queries(7):
        assert [t["slug"] for t in page()] == ["ops"]
    for n in range(6):
        stream = stream_create(slug=f"s{n}")
        team_create(slug=f"t{n}", members=[make_person(f"u{n}")], streams=[stream])
        ops.streams.add(stream)
    with django_assert_num_queries(7):
        teams = page()
    assert len(teams) == 7
    assert teams[1] == {**teams[1], "slug": "t0", "members": ["u0"], "streams": ["s0"]}


def test_the_members_list_costs_the_same_queries_for_one_member_or_many(admin_api, ops, django_assert_num_queries):
    with django_assert_num_queries(6):
        assert len(admin_api.get(f"{TEAMS}/ops/members").json()["results"]) == 1
    for n in range(5):
        make_person(f"u{n}", "Analyst", ops)
    with django_assert_num_queries(6):
        assert len(admin_api.get(f"{TEAMS}/ops/members").json()["results"]) == 6


def test_the_audit_row_rolls_back_with_the_change(ops):
    admin = caller_for_user(make_person("root", is_superuser=True))
    with pytest.raises(RuntimeError), transaction.atomic():
        people.team_rename(caller=admin, team=ops, name="Renamed")
        raise RuntimeError
    assert security_events("team.rename") == []
    assert Team.objects.get(slug="ops").name == "Ops"


def test_services_raise_domain_errors(ops, stream):
    with pytest.raises(Conflict):
        people.team_create(caller=None, slug="ops")
    with pytest.raises(Invalid):
        people.team_create(caller=None, slug="bad slug!")
    with pytest.raises(NotFound):
        people.team_member_remove(caller=None, team=ops, user=make_person("stranger"))
    assert not AuditEntry.objects.filter(action="team.member_remove").exists()
