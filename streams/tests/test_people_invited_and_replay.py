"""Three things a person hit: who was invited and never came, an admin replay that "succeeded" at nothing,
and tables that scroll sideways on a phone without saying so.

- the people list (API and page) marks a person invited but without a password: ``invitation`` is
  "pending" while the newest link works, "expired" after PASSWORD_RESET_TIMEOUT, null once they chose one;
  the page shows it as a badge with the resend action next to it;
- Django admin's replay and discard report a success only for letters acted on, and a warning with how
  many were skipped and why; when every letter was skipped there is no success at all;
- the shared stylesheet shades the edge of a table wrap that has more to scroll to, in both themes.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import User
from django.core import mail
from django.db import connection
from django.test import Client
from drf_spectacular.generators import SchemaGenerator

from eventflow.models import AuditEntry
from eventflow.tests.test_pages import letters
from streams import people
from streams.dead_letters import dead_letters_replay
from streams.models import DeadLetter, DeadLetterStatus, Stream, Team
from streams.services import stream_archive
from tests.test_openapi_contract import Contract

from .people_fixtures import Api, make_person
from .test_invitation_resend import _choose_password, _dead, _expired_link
from .test_people import PEOPLE

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashes", "fresh_rate_counters")]

TESTSERVER = "http://testserver"
CHANGELIST = "/admin/streams/deadletter/"
APP_CSS = Path(settings.BASE_DIR) / "static" / "eventflow" / "app.css"


# --- 1. invited people in the people list ---------------------------------------------------------


def _invite(username: str, *teams: Team, capture: Any) -> people.Invitation:
    with capture(execute=True):
        return people.person_invite(
            caller=None,
            username=username,
            email=f"{username}@example.com",
            roles=["Analyst"],
            teams=list(teams),
            base_url=TESTSERVER,
        )


def _age(username: str, by: timedelta) -> None:
    """As if ``username`` had been invited (and resent to) ``by`` earlier: their account and its events.

    Audit rows are append-only: the events are taken out as the retention job may and written again
    with the earlier time, as they would have been then.
    """
    user = User.objects.get(username=username)
    User.objects.filter(pk=user.pk).update(date_joined=user.date_joined - by)
    sent = AuditEntry.objects.filter(target=username, action__startswith="person.invite")
    rows = list(sent)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL eventflow.audit_retention = 'on'")
        sent.delete()
        cursor.execute("SET LOCAL eventflow.audit_retention = 'off'")
    for row in rows:
        row.pk, row.at = None, row.at - by
        row.save(force_insert=True)


def _past_timeout() -> timedelta:
    return timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + 3600)


def _states(api: Api, query: str = "") -> dict[str, Any]:
    response = api.get(f"{PEOPLE}{query}")
    assert response.status_code == 200, response.content
    return {person["username"]: person["invitation"] for person in response.json()["results"]}


@pytest.fixture
def invited(ops: Team, django_capture_on_commit_callbacks: Any) -> dict[str, people.Invitation]:
    """dana's invitation is fresh; erin's went out longer than PASSWORD_RESET_TIMEOUT ago; bob has a password."""
    sent = {name: _invite(name, ops, capture=django_capture_on_commit_callbacks) for name in ("dana", "erin")}
    _age("erin", _past_timeout())
    make_person("bob", "Developer", ops)
    mail.outbox.clear()
    return sent


def test_the_api_list_says_whose_invitation_is_pending_or_expired(invited, admin_api, django_assert_num_queries):
    # user (JWT), its permissions (2), people page, their roles, their teams: the state costs no query.
    with django_assert_num_queries(6):
        states = _states(admin_api)
    assert states == {"alice": None, "bob": None, "dana": "pending", "erin": "expired"}
    assert admin_api.get(f"{PEOPLE}/erin").json()["invitation"] == "expired"
    assert admin_api.get(f"{PEOPLE}/bob").json()["invitation"] is None
    # Filters keep it.
    assert _states(admin_api, "?role=Analyst") == {"dana": "pending", "erin": "expired"}


def test_the_state_agrees_with_the_links_themselves(invited, admin_api):
    dana, erin = User.objects.get(username="dana"), User.objects.get(username="erin")
    # dana's link works and reads pending; a link as old as erin's is dead and reads expired.
    assert not _dead(invited["dana"].set_password_url.removeprefix(TESTSERVER))
    assert _dead(_expired_link(erin))
    assert {k: v for k, v in _states(admin_api).items() if k in ("dana", "erin")} == {
        "dana": "pending",
        "erin": "expired",
    }
    # Once dana chose her password through it, she has no invitation any more.
    _choose_password(invited["dana"].set_password_url.removeprefix(TESTSERVER))
    assert User.objects.get(pk=dana.pk).has_usable_password()
    assert _states(admin_api)["dana"] is None


def test_a_resend_makes_an_expired_invitation_pending_again(invited, admin_api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        resent = admin_api.post(f"{PEOPLE}/erin/invitation")
    assert resent.status_code == 201, resent.content
    # The account is as old as before: the resend's own time decides.
    assert resent.json()["invitation"] == "pending"
    assert _states(admin_api)["erin"] == "pending"
    _age("erin", _past_timeout())
    assert _states(admin_api)["erin"] == "expired"


def test_the_invite_answer_and_the_timeout_setting(ops, admin_api, settings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        created = admin_api.post(PEOPLE, {"username": "fay", "email": "fay@example.com", "teams": ["ops"]})
    assert created.status_code == 201, created.content
    assert created.json()["invitation"] == "pending"
    # An hour-old invitation has expired when links last a minute, as Django's tokens then do.
    _age("fay", timedelta(hours=1))
    assert _states(admin_api)["fay"] == "pending"
    settings.PASSWORD_RESET_TIMEOUT = 60
    assert _states(admin_api)["fay"] == "expired"


def test_the_people_answers_match_the_openapi_document(invited, admin_api):
    document = SchemaGenerator().get_schema(request=None, public=True)
    field = document["components"]["schemas"]["PersonOut"]["properties"]["invitation"]
    assert field.get("nullable") is True or None in field.get("enum", [None])
    contract = Contract(document)
    contract.check(admin_api.get(PEOPLE))
    contract.check(admin_api.get(f"{PEOPLE}/erin"))
    assert contract.checked == {"people_list 200", "people_show 200"}


@pytest.fixture
def dashboard(admin_api: Api) -> Client:
    """alice, the Admin of ``admin_api``, signed in to the dashboard."""
    client = Client()
    client.force_login(User.objects.get(username="alice"))
    return client


def _row(page: str, username: str) -> str:
    match = re.search(rf'<tr>\s*<td[^>]*><a class="strong" href="/people/{username}/">.*?</tr>', page, re.S)
    assert match is not None, f"no row for {username}"
    return match.group(0)


def test_the_people_page_badges_invited_people_with_the_resend_action(invited, admin_api, dashboard):
    gil = make_person("gil", "Analyst")
    gil.set_unusable_password()  # as if invited, never come
    gil.save(update_fields=["password"])
    people.person_deactivate(caller=None, user=gil)
    page = dashboard.get("/people/")
    assert page.status_code == 200
    html = page.content.decode()

    dana, erin, bob, gil = (_row(html, name) for name in ("dana", "erin", "bob", "gil"))
    assert "Invitation pending" in dana and "Invitation expired" not in dana
    assert "Invitation expired" in erin and "Invitation pending" not in erin
    for row, name in ((dana, "dana"), (erin, "erin")):
        assert f'href="/people/{name}/invitation/"' in row and "Resend invitation" in row
    assert "Invitation" not in bob and "/invitation/" not in bob
    # A deactivated invitee shows the state, but the resend (refused for them) is not offered.
    assert "Invitation" in gil and "/invitation/" not in gil
    # The resend is reachable from there.
    assert "Send erin a new invitation?" in dashboard.get("/people/erin/invitation/").content.decode()
    # The person's own page shows it too.
    assert "Invitation expired" in dashboard.get("/people/erin/").content.decode()


# --- 2. an honest admin replay ---------------------------------------------------------------------


@pytest.fixture
def shop(stream: Stream) -> Stream:
    return stream


@pytest.fixture
def root(db: Any) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "a-long-password-1"))
    return client


def _action(client: Client, action: str, ids: list[int]) -> list[tuple[int, str]]:
    response = client.post(CHANGELIST, {"action": action, "index": "0", "_selected_action": ids}, follow=True)
    assert response.status_code == 200
    return [(message.level, str(message)) for message in response.context["messages"]]


def test_replaying_only_letters_already_replayed_is_a_warning_not_a_success(root: Client, shop: Stream):
    ids = letters(shop, 2)
    assert dead_letters_replay(ids=ids).count == 2
    shown = _action(root, "replay", ids)
    assert shown == [
        (messages.WARNING, "No dead letter replayed. Skipped 2: already replayed or discarded (2)."),
    ]
    assert not any("Replayed" in text for _, text in shown)


def test_replaying_some_is_a_success_for_those_and_a_warning_for_the_rest(root: Client, shop: Stream):
    ids = letters(shop, 3)
    dead_letters_replay(ids=ids[:1])
    shown = _action(root, "replay", ids)
    assert shown == [
        (messages.SUCCESS, "Replayed 2 dead letter(s)."),
        (messages.WARNING, "Skipped 1: already replayed or discarded (1)."),
    ]
    assert set(DeadLetter.objects.filter(pk__in=ids).values_list("status", flat=True)) == {DeadLetterStatus.REPLAYED}


def test_the_skip_reasons_are_counted_each(root: Client, shop: Stream):
    ids = letters(shop, 3)
    dead_letters_replay(ids=ids[:1])
    stream_archive(stream=shop)
    shown = _action(root, "replay", ids)
    [(level, text)] = shown
    assert level == messages.WARNING and text.startswith("No dead letter replayed. Skipped 3: ")
    assert "already replayed or discarded (1)" in text and "its stream is archived" in text and "(2)" in text
    assert DeadLetter.objects.filter(pk__in=ids[1:], status=DeadLetterStatus.OPEN).count() == 2


def test_discarding_only_closed_letters_is_a_warning_too(root: Client, shop: Stream):
    ids = letters(shop, 1)
    dead_letters_replay(ids=ids)
    assert _action(root, "discard", ids) == [
        (messages.WARNING, "No dead letter discarded. Skipped 1: already replayed or discarded (1)."),
    ]
    assert DeadLetter.objects.get(pk=ids[0]).status == DeadLetterStatus.REPLAYED


# --- 3. a wide table says it scrolls -------------------------------------------------------------------


def _rule(css: str, selector: str) -> str:
    match = re.search(rf"(?m)^{re.escape(selector)}\s*\{{(.*?)\}}", css, re.S)
    assert match is not None, f"no rule for {selector}"
    return match.group(1)


def _dark(css: str) -> str:
    match = re.search(r"@media \(prefers-color-scheme: dark\)\s*\{\s*:root\s*\{(.*?)\}", css, re.S)
    assert match is not None
    return match.group(1)


def test_the_table_wrap_shades_the_edge_with_more_to_scroll_to_in_both_themes():
    css = APP_CSS.read_text()
    wrap = _rule(css, ".table-wrap")
    assert "overflow-x: auto" in wrap
    layers = [
        layer.strip() for layer in re.split(r",\s*(?=(?:linear|radial)-gradient)", wrap.split("background:", 1)[1])
    ]
    # Two covers in the card's colour move with the content; two shades stay at the edges beneath them.
    covers = [layer for layer in layers if layer.rstrip(";").endswith(" local")]
    shades = [layer for layer in layers if layer.rstrip(";").endswith(" scroll")]
    assert len(covers) == 2 and all("var(--surface)" in layer for layer in covers)
    assert len(shades) == 2 and all("var(--scroll-shade)" in layer for layer in shades)
    assert layers.index(covers[-1]) < layers.index(shades[0]), "the covers must be painted over the shades"
    assert {"left", "right"} <= {word for layer in shades for word in layer.split()}
    # The shade has a colour of its own in each theme (the covers follow --surface, which has too).
    assert re.search(r"--scroll-shade:\s*rgba\(", _rule(css, ":root"))
    assert re.search(r"--scroll-shade:\s*rgba\(", _dark(css))
    assert "--surface:" in _dark(css)
    # Nothing fetched from elsewhere.
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", css) and "@import" not in css


def test_the_people_table_sits_in_the_shaded_wrap(invited, dashboard):
    html = dashboard.get("/people/").content.decode()
    assert re.search(r'<div class="table-wrap">\s*<table class="table table-stack">', html)
    assert re.search(r'<link rel="stylesheet" href="/static/eventflow/app\.[^"]*css"', html)
