"""People over the API: invite (with a working one-time link), roles, deactivation, and the list."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group, User
from django.core import mail
from django.test import Client
from rest_framework_simplejwt.tokens import RefreshToken

from eventflow.errors import Invalid, NotAllowed
from streams import people
from streams.access import caller_for_user
from tests.fixtures import conf_override

from .people_fixtures import (
    PASSWORD,
    Api,
    make_person,
    security_events,
    signed_in,
)

pytestmark = pytest.mark.django_db

PEOPLE = "/api/v1/people"
NEW_PASSWORD = "Tangerine-Harbour-42"


def _invite(api: Api, capture, **fields):
    body = {"username": "dana", "email": "dana@example.com", "roles": ["Analyst"], "teams": ["ops"], **fields}
    with capture(execute=True):
        return api.post(PEOPLE, body)


def test_invite_creates_an_active_person_without_a_password_and_mails_the_link(
    admin_api, django_capture_on_commit_callbacks
):
    response = _invite(admin_api, django_capture_on_commit_callbacks)
    assert response.status_code == 201, response.content
    body = response.json()
    url = body.pop("set_password_url")
    assert url.startswith("http://testserver/accounts/reset/")
    assert body == {
        **body,
        "username": "dana",
        "email": "dana@example.com",
        "is_active": True,
        "is_superuser": False,
        "roles": ["Analyst"],
        "teams": ["ops"],
        "last_login": None,
    }
    dana = User.objects.get(username="dana")
    assert dana.is_active and not dana.has_usable_password()

    [message] = mail.outbox
    assert message.to == ["dana@example.com"]
    assert url in message.body and "dana" in message.body

    [invited] = security_events("person.invite")
    assert invited.caller == "alice" and invited.target == "dana"
    assert invited.details == {"email": "dana@example.com", "roles": ["Analyst"], "teams": ["ops"]}
    # The link is shown once: reading the person later never gives it again.
    assert "set_password_url" not in admin_api.get(f"{PEOPLE}/dana").json()


def test_the_link_sets_a_password_once_and_then_the_person_gets_a_token(admin_api, django_capture_on_commit_callbacks):
    url = _invite(admin_api, django_capture_on_commit_callbacks).json()["set_password_url"]
    path = url.removeprefix("http://testserver")
    browser = Client()

    # Django's confirm view swaps the token for a session and redirects to the form.
    opened = browser.get(path)
    assert opened.status_code == 302
    form_page = browser.get(opened["Location"])
    assert form_page.status_code == 200
    assert b"Choose your password" in form_page.content and b"dana" in form_page.content

    weak = browser.post(opened["Location"], {"new_password1": "123", "new_password2": "123"})
    assert weak.status_code == 200 and b"errorlist" in weak.content

    done = browser.post(opened["Location"], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/accounts/reset/done/"
    assert b"Your password is set" in browser.get(done["Location"]).content

    token = Api().post("/api/v1/auth/token", {"username": "dana", "password": NEW_PASSWORD})
    assert token.status_code == 200, token.content
    me = Api(HTTP_AUTHORIZATION=f"Bearer {token.json()['access']}").get("/api/v1/me").json()
    assert me["person"]["username"] == "dana" and me["person"]["roles"] == ["Analyst"]

    # One time only: the password it set changed the token's hash.
    again = Client().get(path, follow=True)
    assert b"This link no longer works" in again.content


def test_a_forged_link_does_not_work(admin_api, django_capture_on_commit_callbacks):
    url = _invite(admin_api, django_capture_on_commit_callbacks).json()["set_password_url"]
    forged = re.sub(r"/[^/]+/$", "/abc-0123456789abcdef/", url.removeprefix("http://testserver"))
    assert b"This link no longer works" in Client().get(forged, follow=True).content


def test_the_configured_base_url_wins_over_the_host_header(admin_api, settings, django_capture_on_commit_callbacks):
    conf_override(settings, base_url="https://events.example.com/")
    url = _invite(admin_api, django_capture_on_commit_callbacks, username="erin").json()["set_password_url"]
    assert url.startswith("https://events.example.com/accounts/reset/")


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"roles": ["Wizard"]}, 400, "unknown_role"),
        ({"teams": ["nope"]}, 400, "unknown_teams"),
        ({"email": "not-an-email"}, 400, "invalid_request"),
        ({"username": "has space"}, 400, "invalid_fields"),
        ({"username": "alice"}, 409, "person_exists"),
        ({"is_superuser": True}, 400, "unknown_field"),
        ({"password": "x"}, 400, "unknown_field"),
    ],
)
def test_bad_invitations_are_refused_and_send_nothing(
    admin_api, django_capture_on_commit_callbacks, fields, status, code
):
    response = _invite(admin_api, django_capture_on_commit_callbacks, **fields)
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert mail.outbox == []
    assert security_events("person.invite") == []
    assert not User.objects.filter(username="dana").exists()


def test_a_mail_server_failure_does_not_undo_the_invitation(admin_api, settings, django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 1
    response = _invite(admin_api, django_capture_on_commit_callbacks)
    assert response.status_code == 201
    assert response.json()["set_password_url"]
    assert User.objects.filter(username="dana").exists()


def test_set_roles(admin_api):
    bob = make_person("bob", "Analyst")
    custom = Group.objects.create(name="newsletter")
    bob.groups.add(custom)
    response = admin_api.patch(f"{PEOPLE}/bob", {"roles": ["Developer", "Operator"]})
    assert response.status_code == 200, response.content
    assert response.json()["roles"] == ["Developer", "Operator"]
    assert set(bob.groups.values_list("name", flat=True)) == {"Developer", "Operator", "newsletter"}
    [changed] = security_events("person.roles")
    assert changed.details == {"before": ["Analyst"], "after": ["Developer", "Operator"]}
    assert changed.target == "bob" and changed.caller == "alice"

    # The same roles again change nothing and record nothing.
    admin_api.patch(f"{PEOPLE}/bob", {"roles": ["Operator", "Developer"]})
    assert len(security_events("person.roles")) == 1

    refused = admin_api.patch(f"{PEOPLE}/bob", {"roles": ["Developer", "Owner"]})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "unknown_role"
    assert refused.json()["error"]["details"]["roles"] == ["Owner"]
    assert admin_api.patch(f"{PEOPLE}/bob", {"roles": ["newsletter"]}).status_code == 400
    assert admin_api.patch(f"{PEOPLE}/bob", {}).status_code == 400
    assert admin_api.patch(f"{PEOPLE}/bob", {"is_staff": True}).status_code == 400
    assert admin_api.patch(f"{PEOPLE}/ghost", {"roles": []}).status_code == 404


def test_a_new_role_takes_effect_on_the_next_request(admin_api, ops):
    bob = signed_in("bob", "Analyst", ops)
    assert bob.get("/api/v1/streams/shop/consumer-groups").status_code == 403
    admin_api.patch(f"{PEOPLE}/bob", {"roles": ["Consumer"]})
    assert bob.get("/api/v1/streams/shop/consumer-groups").status_code == 200


def test_a_deactivated_persons_tokens_stop_working_at_once(admin_api, ops):
    bob = make_person("bob", "Developer", ops)
    refresh = RefreshToken.for_user(bob)
    api = Api(HTTP_AUTHORIZATION=f"Bearer {refresh.access_token}")
    assert api.get("/api/v1/me").status_code == 200

    response = admin_api.patch(f"{PEOPLE}/bob", {"is_active": False})
    assert response.status_code == 200 and response.json()["is_active"] is False
    assert [e.target for e in security_events("person.deactivate")] == ["bob"]

    assert api.get("/api/v1/me").status_code == 401
    assert api.get("/api/v1/streams/shop/consumer-groups").status_code == 401
    assert Api().post("/api/v1/auth/token/refresh", {"refresh": str(refresh)}).status_code == 401
    assert Api().post("/api/v1/auth/token", {"username": "bob", "password": PASSWORD}).status_code == 401

    assert admin_api.patch(f"{PEOPLE}/bob", {"is_active": True}).json()["is_active"] is True
    assert [e.target for e in security_events("person.reactivate")] == ["bob"]
    assert api.get("/api/v1/me").status_code == 200


def test_nobody_deactivates_themselves(admin_api):
    response = admin_api.patch(f"{PEOPLE}/alice", {"is_active": False})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "cannot_deactivate_self"
    assert User.objects.get(username="alice").is_active


def test_roles_and_deactivation_in_one_patch_happen_together_or_not_at_all(admin_api):
    make_person("bob", "Analyst")
    root = make_person("root", is_superuser=True)
    assert admin_api.patch(f"{PEOPLE}/bob", {"roles": ["Operator"], "is_active": False}).status_code == 200
    bob = User.objects.get(username="bob")
    assert not bob.is_active and list(bob.groups.values_list("name", flat=True)) == ["Operator"]

    # Only a superuser changes a superuser.
    refused = admin_api.patch(f"{PEOPLE}/root", {"roles": ["Analyst"]})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "superuser_protected"
    assert admin_api.patch(f"{PEOPLE}/root", {"is_active": False}).status_code == 403
    assert root.groups.count() == 0 and User.objects.get(username="root").is_active


def test_show_and_list_people(admin_api, ops, django_assert_num_queries):
    make_person("bob", "Developer", ops)
    response = admin_api.get(f"{PEOPLE}/bob")
    assert response.status_code == 200
    assert response.json() == {
        **response.json(),
        "username": "bob",
        "roles": ["Developer"],
        "teams": ["ops"],
        "is_active": True,
    }
    assert admin_api.get(f"{PEOPLE}/ghost").status_code == 404

    def names(query: str = "") -> list[str]:
        result = admin_api.get(f"{PEOPLE}{query}")
        assert result.status_code == 200, result.content
        return [p["username"] for p in result.json()["results"]]

    # user (JWT), its permissions (2), people page, their roles, their teams.
    with django_assert_num_queries(6):
        assert names() == ["alice", "bob"]
    for n in range(8):
        make_person(f"u{n}", "Analyst", ops)
    with django_assert_num_queries(6):
        assert len(names()) == 10

    assert names("?role=Developer") == ["bob"]
    assert names("?team=ops&limit=3") == ["alice", "bob", "u0"]
    User.objects.filter(username="u0").update(is_active=False)
    assert names("?is_active=false") == ["u0"]
    assert admin_api.get(f"{PEOPLE}?is_active=maybe").status_code == 400


def test_services_refuse_what_the_api_refuses(db):
    admin = caller_for_user(make_person("alice", "Admin"))
    root = make_person("root", is_superuser=True)
    with pytest.raises(Invalid):
        people.person_set_roles(caller=admin, user=make_person("bob"), roles=["Root"])
    with pytest.raises(NotAllowed):
        people.person_deactivate(caller=admin, user=root)
    # A superuser may.
    people.person_deactivate(caller=caller_for_user(make_person("root2", is_superuser=True)), user=root)
    assert not User.objects.get(username="root").is_active


def test_an_admin_by_session_also_works(ops):
    alice = make_person("alice", "Admin", ops)
    client = Client()
    client.force_login(alice)
    response = client.get(PEOPLE)
    assert response.status_code == 200
    assert [p["username"] for p in response.json()["results"]] == ["alice"]
