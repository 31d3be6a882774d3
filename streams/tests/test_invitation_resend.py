"""Resending an invitation: a new one-time link for a person who never chose a password.

An invitation's link expires after PASSWORD_RESET_TIMEOUT; Django's "forgot
password" skips accounts without a usable password, and inviting the same
email again is a 409. Resending is the way back in. What was decided: the
resend draws the person's no-password marker again, so every link sent before
stops working (Django's tokens hash the password field) and only the newest one
opens the account.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import jsonschema_rs
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from drf_spectacular.generators import SchemaGenerator

from eventflow.errors import Conflict, NotAllowed
from streams import people
from streams.access import caller_for_user
from streams.models import Stream, Team
from streams.services import team_create
from tests.fixtures import conf_override
from tests.test_openapi_contract import Contract, json_schema

from .people_fixtures import PASSWORD, Api, make_person, security_events, signed_in
from .test_people import NEW_PASSWORD, PEOPLE

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashes", "fresh_rate_counters")]

TESTSERVER = "http://testserver"


def _resend_path(username: str) -> str:
    return f"{PEOPLE}/{username}/invitation"


@pytest.fixture
def dana(ops: Team, django_capture_on_commit_callbacks: Any) -> User:
    """Invited into ops by a superuser; her mail is sent, then cleared."""
    with django_capture_on_commit_callbacks(execute=True):
        invitation = people.person_invite(
            caller=None,
            username="dana",
            email="dana@example.com",
            roles=["Analyst"],
            teams=[ops],
            base_url=TESTSERVER,
        )
    mail.outbox.clear()
    user: User = invitation.user
    return user


def _resend(api: Api, capture: Any, username: str = "dana") -> Any:
    with capture(execute=True):
        return api.post(_resend_path(username))


def _expired_link(user: User) -> str:
    """A link as the invitation made it, a day past PASSWORD_RESET_TIMEOUT ago."""

    class Back(PasswordResetTokenGenerator):
        def _now(self) -> datetime:
            return datetime.now() - timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + 24 * 3600)

    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse("password_reset_confirm", kwargs={"uidb64": uidb64, "token": Back().make_token(user)})


def _dead(path: str) -> bool:
    return b"This link no longer works" in Client().get(path, follow=True).content


def _choose_password(path: str) -> None:
    """Follow the link as the person would and choose NEW_PASSWORD."""
    browser = Client()
    opened = browser.get(path)
    assert opened.status_code == 302, opened.content
    done = browser.post(opened["Location"], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/accounts/reset/done/"


def _token_for(username: str, password: str) -> Any:
    return Api().post("/api/v1/auth/token", {"username": username, "password": password})


# --- the way back in -------------------------------------------------------------------------------


def test_an_expired_invitation_is_a_dead_end_without_a_resend(dana, admin_api, django_capture_on_commit_callbacks):
    """What the resend mends: the old link is dead, "forgot password" sends nothing, inviting again is 409."""
    assert _dead(_expired_link(dana))
    Client().post("/accounts/password-reset/", {"email": "dana@example.com"})
    assert mail.outbox == []
    with django_capture_on_commit_callbacks(execute=True):
        again = admin_api.post(PEOPLE, {"username": "dana2", "email": "dana@example.com"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "person_exists"


def test_the_resent_link_sets_the_password_and_the_person_signs_in(dana, admin_api, django_capture_on_commit_callbacks):
    response = _resend(admin_api, django_capture_on_commit_callbacks)
    assert response.status_code == 201, response.content
    body = response.json()
    url = body.pop("set_password_url")
    assert url.startswith(f"{TESTSERVER}/accounts/reset/")
    assert body == {
        **body,
        "username": "dana",
        "email": "dana@example.com",
        "is_active": True,
        "roles": ["Analyst"],
        "teams": ["ops"],
        "last_login": None,
    }
    # The same mail as the invitation, with the new link.
    [message] = mail.outbox
    assert message.to == ["dana@example.com"] and message.subject == "Your EventFlow account"
    assert url in message.body and "Username: dana" in message.body
    # Shown once: reading the person never gives it again.
    assert "set_password_url" not in admin_api.get(f"{PEOPLE}/dana").json()

    _choose_password(url.removeprefix(TESTSERVER))
    token = _token_for("dana", NEW_PASSWORD)
    assert token.status_code == 200, token.content
    me = Api(HTTP_AUTHORIZATION=f"Bearer {token.json()['access']}").get("/api/v1/me").json()
    assert me["person"]["username"] == "dana" and me["person"]["roles"] == ["Analyst"]
    # Used once, it is spent; and now dana has a password, a second resend is refused.
    assert _dead(url.removeprefix(TESTSERVER))
    assert _resend(admin_api, django_capture_on_commit_callbacks).status_code == 409


def test_links_sent_before_stop_working_and_only_the_newest_opens_the_account(
    dana, admin_api, django_capture_on_commit_callbacks
):
    # A link of the first invitation, still within its time, and a second resend's predecessor.
    first = people.set_password_path(dana)
    assert not _dead(first)
    second = _resend(admin_api, django_capture_on_commit_callbacks).json()["set_password_url"]
    third = _resend(admin_api, django_capture_on_commit_callbacks).json()["set_password_url"]
    assert len({first, second, third}) == 3

    assert _dead(first)
    assert _dead(second.removeprefix(TESTSERVER))
    _choose_password(third.removeprefix(TESTSERVER))
    assert _token_for("dana", NEW_PASSWORD).status_code == 200
    assert len(mail.outbox) == 2


def test_the_configured_base_url_wins_over_the_host_header(
    dana, admin_api, settings, django_capture_on_commit_callbacks
):
    conf_override(settings, base_url="https://events.example.com/")
    url = _resend(admin_api, django_capture_on_commit_callbacks).json()["set_password_url"]
    assert url.startswith("https://events.example.com/accounts/reset/")


def test_the_resend_is_audited(dana, admin_api, django_capture_on_commit_callbacks):
    _resend(admin_api, django_capture_on_commit_callbacks)
    [resent] = security_events("person.invite_resend")
    assert resent.caller == "alice" and resent.target == "dana"
    assert resent.details == {"email": "dana@example.com"}
    # The link itself is a secret: never in the audit log.
    assert "reset" not in str(resent.details)


# --- refused ---------------------------------------------------------------------------------------


def _refused_with_nothing_sent(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert mail.outbox == []
    assert security_events("person.invite_resend") == []


def test_a_person_who_chose_a_password_is_told_to_use_forgot_password(
    ops, admin_api, django_capture_on_commit_callbacks
):
    make_person("bob", "Developer", ops)
    response = _resend(admin_api, django_capture_on_commit_callbacks, "bob")
    _refused_with_nothing_sent(response, 409, "password_set")
    assert "Forgot password" in response.json()["error"]["message"]
    # Their password is untouched.
    assert _token_for("bob", PASSWORD).status_code == 200


def test_a_deactivated_person_is_reactivated_first(dana, admin_api, django_capture_on_commit_callbacks):
    people.person_deactivate(caller=None, user=dana)
    response = _resend(admin_api, django_capture_on_commit_callbacks)
    _refused_with_nothing_sent(response, 409, "person_deactivated")

    people.person_reactivate(caller=None, user=dana)
    assert _resend(admin_api, django_capture_on_commit_callbacks).status_code == 201


def test_a_person_without_an_email_cannot_be_mailed(ops, admin_api, django_capture_on_commit_callbacks):
    User.objects.create_user("quiet")  # as Django admin can make one: no email, no usable password
    response = _resend(admin_api, django_capture_on_commit_callbacks, "quiet")
    _refused_with_nothing_sent(response, 409, "person_without_email")


def test_an_unknown_person_is_404(admin_api, django_capture_on_commit_callbacks):
    response = _resend(admin_api, django_capture_on_commit_callbacks, "nobody-here")
    _refused_with_nothing_sent(response, 404, "person_not_found")


@pytest.mark.parametrize("role", ["Developer", "Analyst", "Operator", "Consumer", None])
def test_only_people_who_administer_people_may_resend(dana, ops, role, django_capture_on_commit_callbacks):
    before = User.objects.get(pk=dana.pk).password
    response = _resend(signed_in("mallory", role, ops), django_capture_on_commit_callbacks)
    _refused_with_nothing_sent(response, 403, "permission_denied")
    # Nothing changed: the link dana holds still works.
    assert User.objects.get(pk=dana.pk).password == before


def test_keys_and_nobody_are_refused(dana, ingest_api, secret_api, django_capture_on_commit_callbacks):
    for api in (ingest_api, secret_api):
        _refused_with_nothing_sent(_resend(api, django_capture_on_commit_callbacks), 403, "key_kind_not_allowed")
    _refused_with_nothing_sent(_resend(Api(), django_capture_on_commit_callbacks), 401, "not_authenticated")


def test_an_admin_cannot_resend_to_a_member_of_a_team_holding_a_stream_they_do_not_reach(
    admin_api, root_api, other_stream: Stream, django_capture_on_commit_callbacks
):
    # The link takes the account, and with it the team's streams: the same rule as inviting into that team.
    web = team_create(slug="web", streams=[other_stream])
    people.person_invite(caller=None, username="erin", email="erin@example.com", teams=[web], base_url=TESTSERVER)
    response = _resend(admin_api, django_capture_on_commit_callbacks, "erin")
    _refused_with_nothing_sent(response, 403, "team_out_of_reach")

    assert _resend(root_api, django_capture_on_commit_callbacks, "erin").status_code == 201


def test_only_a_superuser_resends_to_a_superuser(db, ops):
    root = User.objects.create_superuser("root2", email="root2@example.com", password=None)
    admin = caller_for_user(make_person("alice", "Admin", ops))
    with pytest.raises(NotAllowed):
        people.person_invitation_resend(caller=admin, user=root, base_url=TESTSERVER)
    boss = caller_for_user(make_person("boss", is_superuser=True))
    assert people.person_invitation_resend(caller=boss, user=root, base_url=TESTSERVER).set_password_url


def test_the_service_checks_the_state_it_changes(dana):
    # The caller's instance is stale (dana set a password since it was read): the service reads afresh.
    stale = User.objects.get(pk=dana.pk)
    dana.set_password(NEW_PASSWORD)
    dana.save()
    with pytest.raises(Conflict):
        people.person_invitation_resend(caller=None, user=stale, base_url=TESTSERVER)
    assert User.objects.get(pk=dana.pk).check_password(NEW_PASSWORD)


# --- documented ------------------------------------------------------------------------------------


def test_the_answers_match_the_openapi_document(dana, ops, admin_api, django_capture_on_commit_callbacks):
    contract = Contract(SchemaGenerator().get_schema(request=None, public=True))
    contract.check(_resend(admin_api, django_capture_on_commit_callbacks))
    make_person("bob", "Developer", ops)
    contract.check(_resend(admin_api, django_capture_on_commit_callbacks, "bob"))
    contract.check(_resend(admin_api, django_capture_on_commit_callbacks, "nobody-here"))
    contract.check(_resend(signed_in("mallory", "Analyst", ops), django_capture_on_commit_callbacks))
    assert contract.checked == {
        "people_invitation_resend 201",
        "people_invitation_resend 409",
        "people_invitation_resend 404",
        "people_invitation_resend 403",
    }

    _, operation = contract.operation("POST", _resend_path("dana"))
    media = operation["responses"]["201"]["content"]["application/json"]
    validator = jsonschema_rs.Draft202012Validator(
        {**json_schema(media["schema"]), "components": {"schemas": contract.components}}, validate_formats=True
    )
    [example] = media["examples"].values()
    assert validator.is_valid(example["value"])


# --- the dashboard ---------------------------------------------------------------------------------


@pytest.fixture
def browser(ops: Team) -> Client:
    client = Client()
    client.force_login(make_person("alice", "Admin", ops))
    return client


def test_the_page_resends_with_a_confirmation_and_shows_the_link_once(
    dana, browser, django_capture_on_commit_callbacks
):
    person_page = browser.get("/people/dana/").content.decode()
    assert 'href="/people/dana/invitation/"' in person_page and "Resend invitation" in person_page

    confirm = browser.get("/people/dana/invitation/")
    assert confirm.status_code == 200
    assert "Send dana a new invitation?" in confirm.content.decode()
    assert mail.outbox == [] and security_events("person.invite_resend") == []

    with django_capture_on_commit_callbacks(execute=True):
        sent = browser.post("/people/dana/invitation/")
    html = sent.content.decode()
    assert sent.status_code == 200 and sent["Cache-Control"] == "no-store"
    assert "A new invitation went to dana" in html and "shown only now" in html
    link = re.search(r'id="invite-link">(http://testserver/accounts/reset/[^<]+)<', html)
    assert link is not None
    [message] = mail.outbox
    assert link.group(1) in message.body
    assert link.group(1) not in browser.get("/people/dana/").content.decode()

    _choose_password(link.group(1).removeprefix(TESTSERVER))
    assert _token_for("dana", NEW_PASSWORD).status_code == 200
    # With a password chosen, the page no longer offers a resend.
    assert "Resend invitation" not in browser.get("/people/dana/").content.decode()


def test_the_page_says_why_a_resend_is_refused(ops, browser, django_capture_on_commit_callbacks):
    make_person("bob", "Developer", ops)
    assert "Resend invitation" not in browser.get("/people/bob/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        refused = browser.post("/people/bob/invitation/", follow=True)
    assert refused.redirect_chain == [("/people/bob/", 302)]
    assert "has chosen a password already" in refused.content.decode()
    assert mail.outbox == []


def test_the_page_is_for_admins_only(dana, ops):
    client = Client()
    client.force_login(make_person("mallory", "Developer", ops))
    assert client.get("/people/dana/invitation/").status_code == 403
    assert client.post("/people/dana/invitation/").status_code == 403
    assert mail.outbox == []
    assert Client().get("/people/dana/invitation/")["Location"].startswith("/login/")
