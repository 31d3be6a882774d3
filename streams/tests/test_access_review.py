"""People, teams, roles and keys: defects found in review, each kept as the test that showed it."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client

from streams import people
from streams.models import ApiKey, Stream, Team
from streams.services import api_key_create, api_key_revoke, team_create

from .people_fixtures import Api, bearer, make_person, security_events

pytestmark = pytest.mark.django_db

TEAMS = "/api/v1/teams"
PEOPLE = "/api/v1/people"


def _admin_client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def web(stream: Stream, other_stream: Stream) -> Team:
    """A team holding "other", which the Admin alice (team ops) does not reach."""
    return team_create(slug="web", streams=[other_stream])


# --- an Admin of one team reaching another team's stream -----------------------------------------


def test_an_admin_cannot_join_a_team_holding_a_stream_they_do_not_reach(admin_api, web):
    assert admin_api.get("/api/v1/streams/other").status_code == 404

    response = admin_api.post(f"{TEAMS}/web/members", {"usernames": ["alice"]})
    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "team_out_of_reach"
    assert not web.members.exists()
    assert security_events("team.member_add") == []
    assert admin_api.get("/api/v1/streams/other").status_code == 404


def test_an_admin_cannot_invite_someone_into_a_team_holding_a_stream_they_do_not_reach(
    admin_api, web, django_capture_on_commit_callbacks
):
    # The inviter gets the new account's set-password link, so this would hand them the stream too.
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post(PEOPLE, {"username": "dana", "email": "dana@example.com", "teams": ["web"]})
    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "team_out_of_reach"
    assert not User.objects.filter(username="dana").exists()
    assert mail.outbox == []


def test_an_admin_cannot_delete_or_empty_a_team_holding_a_stream_they_do_not_reach(admin_api, web):
    make_person("bob", "Analyst", web)
    # Taking the stream away is refused (404): deleting the team or its members must not do it either.
    assert admin_api.delete(f"{TEAMS}/web/streams/other").status_code == 404
    deleted = admin_api.delete(f"{TEAMS}/web")
    assert deleted.status_code == 403, deleted.content
    removed = admin_api.delete(f"{TEAMS}/web/members/bob")
    assert removed.status_code == 403, removed.content
    assert list(Team.objects.get(slug="web").members.values_list("username", flat=True)) == ["bob"]
    assert security_events("team.delete") == [] and security_events("team.member_remove") == []


def test_a_superuser_still_joins_and_deletes_any_team(root_api, web):
    assert root_api.post(f"{TEAMS}/web/members", {"usernames": ["root"]}).status_code == 200
    assert root_api.delete(f"{TEAMS}/web/members/root").status_code == 204
    assert root_api.delete(f"{TEAMS}/web").status_code == 204


def test_django_admin_asks_the_same_rule_for_a_team_holding_a_stream_they_do_not_reach(ops, web):
    alice = make_person("alice", "Admin", ops, is_staff=True)
    client = _admin_client(alice)
    response = client.post(
        f"/admin/streams/team/{web.pk}/change/", {"name": "web", "members": [alice.pk], "streams": [], "_save": "Save"}
    )
    assert response.status_code == 200  # the form again, with its error
    assert response.context["adminform"].form.errors
    assert not web.members.exists() and web.streams.filter(slug="other").exists()
    assert client.post(f"/admin/streams/team/{web.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Team.objects.filter(slug="web").exists()
    # Its own team is changed as before.
    bob = make_person("bob")
    response = client.post(
        f"/admin/streams/team/{ops.pk}/change/",
        {"name": "Ops", "members": [alice.pk, bob.pk], "streams": [ops.streams.get().pk], "_save": "Save"},
    )
    assert response.status_code == 302, response.content
    assert ops.members.filter(username="bob").exists()


# --- the last Admin demoting themselves ----------------------------------------------------------


def test_the_last_admin_cannot_take_away_their_own_admin_role(admin_api):
    response = admin_api.patch(f"{PEOPLE}/alice", {"roles": ["Analyst"]})
    assert response.status_code == 409, response.content
    assert response.json()["error"]["code"] == "last_administrator"
    assert list(User.objects.get(username="alice").groups.values_list("name", flat=True)) == ["Admin"]
    assert security_events("person.roles") == []
    assert admin_api.get(PEOPLE).status_code == 200

    # With another Admin, stepping down is fine.
    make_person("bob", "Admin")
    assert admin_api.patch(f"{PEOPLE}/alice", {"roles": ["Analyst"]}).status_code == 200
    assert admin_api.get(PEOPLE).status_code == 403


# --- inviting with an existing email -------------------------------------------------------------


def test_inviting_an_email_someone_already_has_is_409_and_sends_nothing(admin_api, django_capture_on_commit_callbacks):
    make_person("bob")  # bob@example.com
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post(PEOPLE, {"username": "bobby", "email": "Bob@Example.com"})
    assert response.status_code == 409, response.content
    assert response.json()["error"]["code"] == "person_exists"
    assert not User.objects.filter(username="bobby").exists()
    assert mail.outbox == [] and security_events("person.invite") == []


# --- bad input -----------------------------------------------------------------------------------


def test_a_nul_in_a_username_of_the_url_is_404_not_500(admin_api):
    assert admin_api.get(f"{PEOPLE}/a%00b").status_code == 404
    assert admin_api.patch(f"{PEOPLE}/a%00b", {"roles": []}).status_code == 404
    assert admin_api.delete(f"{TEAMS}/ops/members/a%00b").status_code == 404


# --- keys in Django admin ------------------------------------------------------------------------


def test_a_revoked_key_is_read_only_in_django_admin(stream, ops):
    alice = make_person("alice", "Admin", ops, is_staff=True)
    key = api_key_create(kind="ingest", streams=[stream], name="web").api_key
    api_key_revoke(api_key=key)
    client = _admin_client(alice)
    client.raise_request_exception = False
    response = client.post(
        f"/admin/streams/apikey/{key.pk}/change/",
        {"name": "renamed", "streams": [stream.pk], "expires_at_0": "", "expires_at_1": "", "_save": "Save"},
    )
    assert response.status_code == 403
    assert ApiKey.objects.get(pk=key.pk).name == "web"
    assert client.get(f"/admin/streams/apikey/{key.pk}/change/").status_code == 200  # still shown


def test_revoking_a_key_in_django_admin_names_who_did_it(stream, ops):
    alice = make_person("alice", "Admin", ops, is_staff=True)
    key = api_key_create(kind="ingest", streams=[stream], name="web").api_key
    response = _admin_client(alice).post("/admin/streams/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    [revoked] = security_events("key.revoke")
    assert revoked.caller == "alice" and revoked.user_id == alice.pk


# --- the audit log in Django admin ---------------------------------------------------------------


def test_django_admins_audit_log_leaves_out_the_rows_of_streams_the_admin_does_not_reach(ops, other_stream):
    alice = make_person("alice", "Admin", ops, is_staff=True)
    people.team_create(caller=None, slug="web", streams=[other_stream])
    [foreign] = security_events("team.stream_grant")
    [own] = security_events("team.create")  # of no stream: every Admin sees it
    client = _admin_client(alice)

    page = client.get("/admin/eventflow/auditentry/").content.decode()
    assert f"/admin/eventflow/auditentry/{own.pk}/change/" in page
    assert f"/admin/eventflow/auditentry/{foreign.pk}/change/" not in page
    # As the audit API answers: the row is not there for them.
    assert client.get(f"/admin/eventflow/auditentry/{foreign.pk}/change/").status_code == 302
    listed = Api(alice, **bearer(alice)).get("/api/v1/audit").json()["results"]
    assert foreign.pk not in [row["id"] for row in listed]
