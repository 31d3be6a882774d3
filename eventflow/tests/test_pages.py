"""The dashboard's pages through the test client: what they show, what their forms do, their errors and lists.

Who may open which page is walked in test_pages_access.py; here each page does its job.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client, RequestFactory
from django.utils import timezone

from consumers.kafka_services import Rejection, kafka_source_rejected
from eventflow.models import AuditEntry
from eventflow.views import server_error
from streams.dead_letters import DeadLetterIn, dead_letters_record
from streams.log import LogRecord, log_append_now
from streams.models import ApiKey, DeadLetter, DeadLetterStage, DeadLetterStatus, Stream
from streams.services import api_key_create, stream_create, team_create
from tests.fixtures import conf_override

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashes", "fresh_rate_counters")]

PASSWORD = "a-long-password-1"


def person(username: str, role: str | None = None, **fields: Any) -> User:
    user = User.objects.create_user(username, email=f"{username}@example.com", password=PASSWORD, **fields)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def shop(db: Any) -> Stream:
    return stream_create(slug="shop", name="Shop", with_starter_schemas=True)


@pytest.fixture
def admin(shop: Stream) -> User:
    user = person("maria", "Admin")
    team_create(slug="growth", members=[user], streams=[shop])
    return user


@pytest.fixture
def browser(admin: User) -> Client:
    client = Client()
    client.force_login(admin)
    return client


def events(stream: Stream, count: int, start: int = 0) -> None:
    now = timezone.now()
    log_append_now(
        stream_id=stream.pk,
        records=[
            LogRecord(event_id=f"e{i}", type="page_view", event_time=now, received_at=now, payload={"page": f"/p{i}"})
            for i in range(start, start + count)
        ],
    )


def letters(stream: Stream, count: int) -> list[int]:
    dead_letters_record(
        letters=[
            DeadLetterIn(
                stream_id=stream.pk,
                event_id=f"bad-{i}",
                event={
                    "event_id": f"bad-{i}",
                    "type": "login",
                    "event_time": "2026-11-21T09:00:00+00:00",
                    "payload": {"method": None, "n": i},
                },
                stage=DeadLetterStage.VALIDATE,
                error_class="SchemaViolation",
                error_message="payload.method: None is not a string",
                traceback="Traceback (most recent call last):\n  boom",
            )
            for i in range(count)
        ]
    )
    return list(DeadLetter.objects.filter(stream=stream).order_by("pk").values_list("pk", flat=True))


# --- shell, security headers, error pages ----------------------------------------------------------


def test_signed_out_people_are_sent_to_sign_in(client: Client) -> None:
    response = client.get("/streams/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/streams/"


def test_sign_in_leads_to_the_overview(client: Client, admin: User) -> None:
    response = client.post("/login/", {"username": "maria", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200 and b"Overview" in page.content


def test_a_wrong_password_is_an_inline_error(client: Client, admin: User) -> None:
    response = client.post("/login/", {"username": "maria", "password": "nope"})
    assert response.status_code == 200
    assert b"form-errors" in response.content and b"correct username and password" in response.content


def test_too_many_sign_ins_answer_the_429_page_with_the_wait(client: Client, admin: User, settings: Any) -> None:
    conf_override(settings, login_limit_per_username=2, login_limit_per_ip=1000, login_free_failures=1000)
    for _ in range(2):
        client.post("/login/", {"username": "maria", "password": "nope"})
    response = client.post("/login/", {"username": "maria", "password": PASSWORD})
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    html = response.content.decode()
    assert "Too many attempts" in html and f"Try again in {response['Retry-After']} second" in html
    assert '<link rel="stylesheet"' in html  # the dashboard's look, not a bare page


def test_pages_carry_a_self_only_content_security_policy_and_no_inline_code(browser: Client, shop: Stream) -> None:
    for path in ["/", "/streams/", "/streams/shop/", "/keys/new/", "/dead-letters/", "/people/", "/audit/", "/login/"]:
        response = (Client() if path == "/login/" else browser).get(path)
        assert response.status_code == 200, path
        policy = response["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy and "style-src 'self'" in policy
        assert "unsafe" not in policy and "http" not in policy
        html = response.content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), f"inline script on {path}"
        assert not re.search(r"<style|\sstyle=", html), f"inline style on {path}"
        assert not re.search(r"(src|href)=\"(https?:)?//", html), f"outside asset on {path}"


def test_htmx_is_vendored_with_its_licence(browser: Client) -> None:
    html = browser.get("/").content.decode()
    script = re.search(r'src="(/static/vendor/htmx/htmx-[\d.]+\.min\.js)"', html)
    assert script is not None
    from django.contrib.staticfiles import finders

    assert finders.find(script.group(1).removeprefix("/static/"))
    assert finders.find("vendor/htmx/LICENSE")


def test_unknown_pages_answer_the_404_page_and_the_api_keeps_json(browser: Client) -> None:
    page = browser.get("/no/such/page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
    assert b"Page not found" in page.content and b'class="sidebar"' in page.content
    api = browser.get("/api/v1/no-such-endpoint")
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"


def test_the_500_handler_answers_a_page_to_browsers_and_json_to_the_api() -> None:
    page = server_error(RequestFactory().get("/streams/"))
    assert page.status_code == 500 and b"Something went wrong on our side" in page.content
    assert b"<html" in page.content
    api = server_error(RequestFactory().get("/api/v1/streams"))
    assert api.status_code == 500 and api["Content-Type"] == "application/json"


def test_navigation_shows_only_what_the_role_may_open(shop: Stream) -> None:
    analyst = person("ana", "Analyst")
    team_create(slug="t", members=[analyst], streams=[shop])
    client = Client()
    client.force_login(analyst)
    html = client.get("/").content.decode()
    nav = re.search(r'<nav class="nav".*?</nav>', html, re.S)
    assert nav is not None
    labels = re.findall(r"</svg>\s*([^<]+?)\s*</a>", nav.group(0))
    assert labels == ["Overview", "Streams"]
    assert client.get("/keys/").status_code == 403


def test_a_foreign_stream_is_the_same_404_page_as_a_missing_one(browser: Client) -> None:
    stream_create(slug="elsewhere", name="Elsewhere")
    foreign, missing = browser.get("/streams/elsewhere/"), browser.get("/streams/nope/")
    assert foreign.status_code == missing.status_code == 404
    assert b"Elsewhere" not in foreign.content


# --- overview --------------------------------------------------------------------------------------


def test_the_overview_tells_a_new_user_how_to_send_the_first_event(browser: Client, shop: Stream) -> None:
    html = browser.get("/").content.decode()
    assert "Send your first event" in html
    assert "http://testserver/api/v1/streams/shop/events" in html
    assert "curl -X POST" in html and "X-API-Key" in html


def test_the_overview_counts_logged_waiting_and_dead(browser: Client, shop: Stream) -> None:
    events(shop, 3)
    letters(shop, 2)
    html = browser.get("/").content.decode()
    assert "Send your first event" not in html
    row = re.search(
        r"<tr>\s*<td data-label=\"Stream\"><a class=\"strong\" href=\"/streams/shop/\">.*?</tr>", html, re.S
    )
    assert row is not None
    cells = re.findall(r'<td class="num" data-label="[^"]*">(.*?)</td>', row.group(0), re.S)
    # accepted 1 h · 24 h, logged 1 h · 24 h (and in all), inbox, open dead letters, lag
    assert "3 in all" in cells[1] and ">2<" in cells[3]


def test_a_person_without_a_role_is_told_so() -> None:
    client = Client()
    client.force_login(person("newbie"))
    assert b"You have no role yet" in client.get("/").content


# --- streams ---------------------------------------------------------------------------------------


def test_create_a_stream_from_the_form(browser: Client) -> None:
    response = browser.post(
        "/streams/new/",
        {"slug": "web", "name": "Web", "schema_mode": "warn", "retention_days": 30, "anonymize_ip": "on"},
    )
    assert response.status_code == 302 and response["Location"] == "/streams/web/"
    stream = Stream.objects.get(slug="web")
    assert stream.teams.filter(slug="growth").exists()  # the creator's only team
    assert "created" in browser.get("/streams/web/").content.decode()


def test_stream_form_errors_are_inline(browser: Client, shop: Stream) -> None:
    bad = browser.post("/streams/new/", {"slug": "Not A Slug", "name": "", "schema_mode": "warn", "retention_days": 0})
    html = bad.content.decode()
    assert bad.status_code == 200 and html.count('class="errorlist"') >= 3
    taken = browser.post("/streams/new/", {"slug": "shop", "name": "Again", "schema_mode": "warn", "retention_days": 5})
    assert taken.status_code == 200 and "A stream with this slug exists already." in taken.content.decode()


def test_edit_and_archive_a_stream_after_confirming(browser: Client, shop: Stream) -> None:
    edited = browser.post(
        "/streams/shop/edit/", {"name": "Shop 2", "description": "", "schema_mode": "enforce", "retention_days": 7}
    )
    assert edited.status_code == 302
    shop.refresh_from_db()
    assert (shop.name, shop.schema_mode, shop.retention_days, shop.anonymize_ip) == ("Shop 2", "enforce", 7, False)
    confirm = browser.get("/streams/shop/archive/")
    assert b"refuse new events" in confirm.content
    shop.refresh_from_db()
    assert shop.archived_at is None  # asking is not doing
    browser.post("/streams/shop/archive/")
    shop.refresh_from_db()
    assert shop.archived_at is not None
    browser.post("/streams/shop/archive/")
    shop.refresh_from_db()
    assert shop.archived_at is None


def test_the_live_tail_lists_the_newest_twenty_entries(browser: Client, shop: Stream) -> None:
    empty = browser.get("/streams/shop/tail/")
    assert b"Waiting for the first event" in empty.content and empty["Cache-Control"] == "no-store"
    events(shop, 25)
    html = browser.get("/streams/shop/tail/", HTTP_HX_REQUEST="true").content.decode()
    offsets = [int(o) for o in re.findall(r'data-offset="(\d+)"', html)]
    assert offsets == list(range(24, 4, -1))
    assert "&quot;page&quot;:&quot;/p24&quot;" in html  # the payload as JSON
    assert "<html" not in html  # a partial


def test_the_stream_page_polls_the_tail_every_two_seconds(browser: Client, shop: Stream) -> None:
    html = browser.get("/streams/shop/").content.decode()
    assert 'hx-get="/streams/shop/tail/"' in html and 'hx-trigger="load, every 2s"' in html
    assert "data-tail-toggle" in html


# --- keys ------------------------------------------------------------------------------------------


def test_a_new_key_is_shown_once_then_only_its_prefix(browser: Client, shop: Stream) -> None:
    created = browser.post("/keys/new/", {"name": "web", "kind": "ingest", "streams": [shop.pk]})
    assert created.status_code == 200 and created["Cache-Control"] == "no-store"
    raw = re.search(r'id="new-key"[^>]*>(ef_ingest_[^<]+)<', created.content.decode())
    assert raw is not None
    assert "will not be shown again" in created.content.decode()
    key = ApiKey.objects.get(name="web")
    listing = browser.get("/keys/").content.decode()
    assert key.prefix in listing and raw.group(1) not in listing


def test_a_key_can_only_be_granted_streams_the_person_manages(browser: Client, shop: Stream) -> None:
    foreign = stream_create(slug="foreign", name="Foreign")
    response = browser.post("/keys/new/", {"name": "x", "kind": "ingest", "streams": [foreign.pk]})
    assert response.status_code == 200 and "not one of the available choices" in response.content.decode()
    assert not ApiKey.objects.filter(name="x").exists()
    assert b"foreign" not in browser.get("/keys/new/").content


def test_revoke_a_key_after_confirming(browser: Client, shop: Stream) -> None:
    key = api_key_create(kind="ingest", streams=[shop], name="old").api_key
    assert b"Revoke key" in browser.get(f"/keys/{key.pk}/revoke/").content
    key.refresh_from_db()
    assert key.revoked_at is None
    assert browser.post(f"/keys/{key.pk}/revoke/").status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None


# --- dead letters ------------------------------------------------------------------------------


def test_dead_letters_filter_show_and_replay(browser: Client, shop: Stream) -> None:
    ids = letters(shop, 3)
    listing = browser.get("/dead-letters/?q=bad-1").content.decode()
    assert "bad-1" in listing and "bad-2" not in listing
    detail = browser.get(f"/dead-letters/{ids[0]}/").content.decode()
    assert "&quot;method&quot;: null" in detail and "Traceback (most recent call last)" in detail
    assert browser.post(f"/dead-letters/{ids[0]}/discard/").status_code == 302
    assert DeadLetter.objects.get(pk=ids[0]).status == DeadLetterStatus.DISCARDED
    again = browser.post(f"/dead-letters/{ids[0]}/discard/", follow=True)
    assert "Already replayed or discarded." in again.content.decode()


def test_a_kafka_letter_shows_its_message_and_a_refused_replay_says_why(browser: Client, shop: Stream) -> None:
    kafka_source_rejected(
        source_id=1,
        stream_id=shop.pk,
        rejections=[
            Rejection(
                topic="orders.in",
                partition=2,
                offset=41,
                event_id=None,
                errors=[{"field": "", "code": "invalid_json", "message": "The message is not JSON: unexpected end"}],
                value='{"type": "order"',
                raw=b'{"type": "order"',
            )
        ],
        now=timezone.now(),
    )
    letter = DeadLetter.objects.get(stage=DeadLetterStage.SOURCE)
    detail = browser.get(f"/dead-letters/{letter.pk}/").content.decode()
    assert "The Kafka message" in detail and "orders.in · partition 2 · offset 41" in detail
    assert "{&quot;type&quot;: &quot;order&quot;" in detail and "Payload" not in detail
    refused = browser.post(f"/dead-letters/{letter.pk}/replay/", follow=True).content.decode()
    assert "The intake still refuses its message" in refused
    letter.refresh_from_db()
    assert (letter.status, letter.attempts) == (DeadLetterStatus.OPEN, 2)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("caf\xe9".encode("latin-1"), "shown in base64"),
        # Nested deeper than Python's recursion limit: shown as sent, not indented.
        (b"[" * 5000 + b"]" * 5000, "[[[[[[[["),
    ],
    ids=["not-utf8", "deep-json"],
)
def test_a_kafka_letter_of_any_value_is_shown(browser: Client, shop: Stream, raw: bytes, shown: str) -> None:
    error = [{"field": "", "code": "invalid_json", "message": "too deep"}]
    kafka_source_rejected(
        source_id=1,
        stream_id=shop.pk,
        rejections=[Rejection("in", 0, 1, None, error, raw.decode("latin-1")[:2000], raw)],
        now=timezone.now(),
    )
    letter = DeadLetter.objects.get(stage=DeadLetterStage.SOURCE)
    detail = browser.get(f"/dead-letters/{letter.pk}/")
    assert detail.status_code == 200
    assert shown in detail.content.decode()


def test_many_dead_letters_are_replayed_after_confirming(browser: Client, shop: Stream) -> None:
    ids = letters(shop, 3)
    confirm = browser.post("/dead-letters/selected/", {"ids": ids[:2], "action": "replay"})
    assert confirm.status_code == 200 and b"Replay 2 dead letters?" in confirm.content
    assert DeadLetter.objects.filter(status=DeadLetterStatus.OPEN).count() == 3
    done = browser.post(
        "/dead-letters/selected/", {"ids": ids[:2], "action": "replay", "confirmed": "yes"}, follow=True
    )
    assert "2 dead letters replayed." in done.content.decode()
    assert DeadLetter.objects.filter(status=DeadLetterStatus.REPLAYED).count() == 2


# --- people and teams ------------------------------------------------------------------------------


def test_invite_shows_the_link_once(browser: Client, mailoutbox: list[Any]) -> None:
    response = browser.post(
        "/people/invite/", {"username": "dana", "email": "dana@example.com", "roles": ["Analyst"], "teams": []}
    )
    html = response.content.decode()
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    link = re.search(r'id="invite-link">(http://testserver/accounts/reset/[^<]+)<', html)
    assert link is not None and "shown only now" in html
    assert b"dana" in browser.get("/people/").content
    assert link.group(1).encode() not in browser.get("/people/dana/").content


def test_roles_and_deactivation(browser: Client, admin: User) -> None:
    dana = person("dana", "Analyst")
    browser.post("/people/dana/", {"roles": ["Operator", "Developer"]})
    assert sorted(dana.groups.values_list("name", flat=True)) == ["Developer", "Operator"]
    browser.post("/people/dana/active/")
    dana.refresh_from_db()
    assert not dana.is_active
    self_off = browser.post("/people/maria/active/", follow=True)
    assert "You cannot deactivate yourself." in self_off.content.decode()


def test_teams_members_and_grants(browser: Client, shop: Stream) -> None:
    person("dana")
    assert browser.post("/teams/new/", {"slug": "data", "name": "Data"}).status_code == 302
    browser.post("/teams/data/", {"what": "member", "member-username": "dana"})
    browser.post("/teams/data/", {"what": "grant", "grant-stream": "shop"})
    html = browser.get("/teams/data/").content.decode()
    assert "dana" in html and "/streams/shop/" in html
    browser.post("/teams/data/streams/shop/revoke/")
    browser.post("/teams/data/members/dana/remove/")
    html = browser.get("/teams/data/").content.decode()
    assert "/people/dana/" not in html and '/streams/shop/"' not in html


def test_audit_log_lists_page_actions_and_security_events(browser: Client, shop: Stream) -> None:
    api_key_create(kind="ingest", streams=[shop], name="k")
    AuditEntry.objects.create(kind="request", method="POST", path="/streams/new/", status=302, caller="maria")
    html = browser.get("/audit/?kind=security").content.decode()
    assert "key.create" in html and "/streams/new/" not in html
    assert "/streams/new/" in browser.get("/audit/").content.decode()


# --- lists cost the same few queries however long ---------------------------------------------------


def _queries(client: Client, path: str, django_assert_num_queries: Any, n: int) -> None:
    with django_assert_num_queries(n):
        assert client.get(path).status_code == 200


LISTS = [
    # path, queries: the session, the user and their permissions (3), the page's own reads
    ("/", 13),
    ("/streams/", 8),  # the page's log counts: one query (streams.log_selectors.log_counts)
    ("/keys/", 7),
    ("/dead-letters/", 7),
    ("/people/", 7),
    ("/teams/", 8),
    ("/audit/", 6),
]


@pytest.mark.parametrize(("path", "queries"), LISTS)
def test_list_pages_cost_the_same_queries_for_few_and_many_rows(
    browser: Client, shop: Stream, path: str, queries: int, django_assert_num_queries: Any
) -> None:
    def more(n: int) -> None:
        for i in range(n):
            stream = stream_create(slug=f"s{len(str(i))}-{i}-{Stream.objects.count()}", name="S")
            team_create(slug=f"t-{stream.slug}", members=[person(f"p-{stream.slug}", "Analyst")], streams=[stream])
            Stream.objects.get(pk=stream.pk).teams.add(*Stream.objects.get(pk=shop.pk).teams.all())
            api_key_create(kind="secret", streams=[stream, shop], name=f"k-{stream.slug}")
            letters(stream, 1)
            events(stream, 1)
            AuditEntry.objects.create(kind="request", method="POST", path=f"/x/{i}", status=200)

    more(2)
    _queries(browser, path, django_assert_num_queries, queries)
    more(4)
    _queries(browser, path, django_assert_num_queries, queries)
