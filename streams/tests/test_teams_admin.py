"""Teams and people in Django admin: saved through streams.people, so the same checks and audit rows."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from streams.models import Team

from .people_fixtures import make_person, security_events

pytestmark = pytest.mark.django_db


def _admin_client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice(ops):
    return make_person("alice", "Admin", ops, is_staff=True)


def test_the_team_admin_is_for_people_who_administer_people(alice, ops):
    assert _admin_client(alice).get("/admin/streams/team/").status_code == 200
    assert _admin_client(alice).get(f"/admin/streams/team/{ops.pk}/change/").status_code == 200
    developer = make_person("dev", "Developer", ops, is_staff=True)
    assert _admin_client(developer).get("/admin/streams/team/").status_code == 403
    assert b"/admin/streams/team/" not in _admin_client(developer).get("/admin/").content


def test_adding_a_team_in_admin_goes_through_the_service(alice, stream):
    bob = make_person("bob")
    response = _admin_client(alice).post(
        "/admin/streams/team/add/",
        {"slug": "web", "name": "Web", "members": [bob.pk], "streams": [stream.pk], "_save": "Save"},
    )
    assert response.status_code == 302, response.content
    team = Team.objects.get(slug="web")
    assert list(team.members.all()) == [bob] and list(team.streams.all()) == [stream]
    assert [e.caller for e in security_events("team.create")] == ["alice"]
    assert [e.details for e in security_events("team.member_add")] == [{"members": ["bob"]}]
    assert [e.stream_id for e in security_events("team.stream_grant")] == [stream.pk]


def test_the_admin_form_validates_like_the_api(alice):
    response = _admin_client(alice).post("/admin/streams/team/add/", {"slug": "not a slug", "name": "X"})
    assert response.status_code == 200  # the form again, with its error
    assert not Team.objects.filter(name="X").exists()
    assert security_events("team.create") == []


def test_changing_a_team_in_admin_records_each_change(alice, ops, stream):
    make_person("bob", None, ops)
    response = _admin_client(alice).post(
        f"/admin/streams/team/{ops.pk}/change/",
        {"name": "Operations", "members": [alice.pk], "streams": [], "_save": "Save"},
    )
    assert response.status_code == 302, response.content
    ops.refresh_from_db()
    assert ops.name == "Operations"
    assert list(ops.members.all()) == [alice] and ops.streams.count() == 0
    assert [e.details for e in security_events("team.rename")] == [{"before": "Ops", "after": "Operations"}]
    assert [e.details for e in security_events("team.member_remove")] == [{"members": ["bob"]}]
    assert [e.stream_id for e in security_events("team.stream_revoke")] == [stream.pk]


def test_admin_leaves_alone_the_streams_the_admin_does_not_reach(alice, other_stream):
    web = Team.objects.create(slug="web", name="Web")
    web.streams.add(other_stream)
    client = _admin_client(alice)
    page = client.get(f"/admin/streams/team/{web.pk}/change/")
    assert b">other<" not in page.content  # not even offered
    response = client.post(f"/admin/streams/team/{web.pk}/change/", {"name": "Web", "streams": [], "_save": "Save"})
    assert response.status_code == 302
    assert list(web.streams.all()) == [other_stream]
    assert security_events("team.stream_revoke") == []


def test_deleting_a_team_in_admin_is_recorded(alice, ops):
    web = Team.objects.create(slug="web", name="Web")
    client = _admin_client(alice)
    response = client.post(f"/admin/streams/team/{web.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Team.objects.filter(slug="web").exists()
    assert [e.target for e in security_events("team.delete")] == ["team:web"]


def _user_form(user: User, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": user.email,
        "is_active": "on" if user.is_active else "",
        "groups": [g.pk for g in user.groups.all()],
        "user_permissions": [],
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "_save": "Save",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v != ""}


def test_the_user_admin_sets_roles_and_deactivates_through_the_services(db):
    root = make_person("root", None, is_superuser=True, is_staff=True)
    bob = make_person("bob", "Analyst")
    newsletter = Group.objects.create(name="newsletter")
    developer = Group.objects.get(name="Developer")
    response = _admin_client(root).post(
        f"/admin/auth/user/{bob.pk}/change/",
        _user_form(bob, groups=[developer.pk, newsletter.pk], is_active=""),
    )
    assert response.status_code == 302, response.content
    bob.refresh_from_db()
    assert set(bob.groups.values_list("name", flat=True)) == {"Developer", "newsletter"}
    assert not bob.is_active
    [roles] = security_events("person.roles")
    assert roles.caller == "root" and roles.details == {"before": ["Analyst"], "after": ["Developer"]}
    assert [e.target for e in security_events("person.deactivate")] == ["bob"]


def test_the_user_admin_cannot_deactivate_oneself(db):
    root = make_person("root", None, is_superuser=True, is_staff=True)
    response = _admin_client(root).post(f"/admin/auth/user/{root.pk}/change/", _user_form(root, is_active=""))
    assert response.status_code == 302
    root.refresh_from_db()
    assert root.is_active
    assert security_events("person.deactivate") == []
