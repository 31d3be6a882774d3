"""Follow-ups of a review of Django admin, dead letters and schemas: each test names what a person hit.

- a NUL in the query string of any page (admin or dashboard) is the 400 page, never a 500;
- a dead letter of an archived stream is not replayed, on any surface, and stays as it was;
- the dead-letters page says when too many letters are selected, and keeps the valid filters;
- publishing the newest schema again adds no version.
"""

from __future__ import annotations

import html
import json
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from consumers.kafka_services import Rejection, kafka_source_rejected
from eventflow.errors import Conflict
from eventflow.models import AuditEntry
from eventflow.tests.test_pages import letters, person
from ingestion.models import InboxEvent
from streams.dead_letters import (
    MAX_BULK_IDS,
    DeadLetterIn,
    dead_letter_replay,
    dead_letters_record,
    dead_letters_replay,
)
from streams.models import DeadLetter, DeadLetterStage, DeadLetterStatus, LogEntry, Stream
from streams.schemas import starter_schemas
from streams.services import schema_register, stream_archive, stream_create, stream_unarchive, team_create
from streams.tests.people_fixtures import Api, bearer
from streams.tests.test_letters_schemas_review import _versions
from tests.intake import assert_api_error

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashes", "fresh_rate_counters")]

ROOT_PASSWORD = "a-long-password-1"


@pytest.fixture
def shop(db: Any) -> Stream:
    return stream_create(slug="shop", name="Shop", with_starter_schemas=True)


@pytest.fixture
def root(shop: Stream) -> Client:
    """A superuser signed in to Django admin (and the dashboard)."""
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", ROOT_PASSWORD))
    return client


@pytest.fixture
def browser(shop: Stream) -> Client:
    """An Admin of the shop stream, signed in to the dashboard."""
    maria = person("maria", "Admin")
    team_create(slug="growth", members=[maria], streams=[shop])
    client = Client()
    client.force_login(maria)
    return client


# --- 1. a NUL in the query string -----------------------------------------------------------------


def _changelists() -> list[str]:
    return sorted(f"/admin/{model._meta.app_label}/{model._meta.model_name}/" for model in admin.site._registry)


def _assert_nul_page(response: Any) -> None:
    assert response.status_code == 400, response.content[:300]
    assert b"NUL" in response.content and b'class="sidebar"' in response.content


@pytest.mark.parametrize(
    "query", ["?error_class=%00", "?q=%00", "?status__exact=%00", "?stage__exact=open&q=a%00b", "?%00=1"]
)
def test_a_nul_in_the_dead_letter_changelists_query_is_the_400_page(root: Client, query: str) -> None:
    _assert_nul_page(root.get(f"/admin/streams/deadletter/{query}"))


def test_a_nul_searched_for_in_any_admin_changelist_is_the_400_page(root: Client) -> None:
    changelists = _changelists()
    assert "/admin/streams/deadletter/" in changelists and len(changelists) > 5
    for changelist in changelists:
        assert root.get(changelist).status_code == 200, changelist
        _assert_nul_page(root.get(f"{changelist}?q=%00"))


@pytest.mark.parametrize(
    "path",
    ["/dead-letters/?q=%00", "/dead-letters/?stream=%00", "/streams/shop/schemas/?event_type=%00", "/audit/?q=%00"],
)
def test_a_nul_in_a_dashboard_pages_query_is_still_the_400_page(browser: Client, path: str) -> None:
    _assert_nul_page(browser.get(path))


def test_the_api_still_answers_a_nul_in_its_parameters_itself(root: Client) -> None:
    response = root.get("/api/v1/dead-letters?q=%00")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"
    assert response.json()["error"]["details"] == {"q": ["NUL characters are not allowed."]}


# --- 2. replaying a dead letter of an archived stream ----------------------------------------------


@pytest.fixture
def archived_letters(shop: Stream) -> dict[str, DeadLetter]:
    """An archived stream's letters: two that failed validation, a Kafka message, a dead group's record."""
    ids = letters(shop, 2)
    kafka_source_rejected(
        source_id=1,
        stream_id=shop.pk,
        rejections=[Rejection("orders.in", 0, 7, None, [{"field": "", "code": "x", "message": "x"}], "{}", b"{}")],
        now=timezone.now(),
    )
    dead_letters_record(
        letters=[
            DeadLetterIn(
                stream_id=shop.pk,
                event_id="consumed",
                event={"event_id": "consumed", "type": "login", "payload": {}},
                stage=DeadLetterStage.CONSUME,
                subscriber="billing",
                log_offset=0,
                error_class="MaxDeliverExceeded",
            )
        ]
    )
    stream_archive(stream=shop)
    found = {
        "kafka" if letter.stage == DeadLetterStage.SOURCE else letter.event_id: letter
        for letter in DeadLetter.objects.filter(stream=shop)
    }
    assert [found["bad-0"].pk, found["bad-1"].pk] == ids
    return found


def _unchanged(letters_before: dict[str, DeadLetter]) -> None:
    for before in letters_before.values():
        after = DeadLetter.objects.get(pk=before.pk)
        assert (after.status, after.attempts, after.acted_by, after.acted_at, after.error_class) == (
            DeadLetterStatus.OPEN,
            before.attempts,
            None,
            None,
            before.error_class,
        )
    assert not InboxEvent.objects.exists() and not LogEntry.objects.exists()
    assert not AuditEntry.objects.filter(kind="security", action="dead_letter.replay").exists()


def test_the_service_refuses_to_replay_a_letter_of_an_archived_stream(archived_letters: dict[str, DeadLetter]):
    for event_id in ("bad-0", "kafka"):
        with pytest.raises(Conflict) as refused:
            dead_letter_replay(letter_id=archived_letters[event_id].pk)
        assert refused.value.code == "dead_letter_stream_archived"
        assert "archived" in refused.value.message
    outcome = dead_letters_replay(ids=[letter.pk for letter in archived_letters.values()])
    assert outcome.acted == []
    assert {(archived_letters[e].pk, "stream_archived") for e in ("bad-0", "bad-1", "kafka")} <= {
        (s.id, s.reason) for s in outcome.skipped
    }
    # A consumer group's record is in the log already: the archive is not why it stays (its group is gone).
    assert (archived_letters["consumed"].pk, "group_gone") in {(s.id, s.reason) for s in outcome.skipped}
    _unchanged(archived_letters)


def test_once_unarchived_the_letter_is_replayed(archived_letters: dict[str, DeadLetter]):
    stream_unarchive(stream=archived_letters["bad-0"].stream)
    dead_letter_replay(letter_id=archived_letters["bad-0"].pk)
    assert DeadLetter.objects.get(pk=archived_letters["bad-0"].pk).status == DeadLetterStatus.REPLAYED
    assert list(InboxEvent.objects.values_list("event_id", flat=True)) == ["bad-0"]


def test_the_api_answers_409_and_skips_letters_of_an_archived_stream(
    root: Client, archived_letters: dict[str, DeadLetter]
):
    api = Api(User.objects.get(username="root"), **bearer(User.objects.get(username="root")))
    letter = archived_letters["bad-0"]
    details = assert_api_error(api.post(f"/api/v1/dead-letters/{letter.pk}/replay"), 409, "dead_letter_stream_archived")
    assert details == {"id": letter.pk, "reason": "stream_archived"}
    bulk = api.post("/api/v1/dead-letters/replay", {"ids": [letter.pk, archived_letters["kafka"].pk]})
    assert bulk.status_code == 200, bulk.content
    assert bulk.json()["count"] == 0
    assert [(s["id"], s["reason"]) for s in bulk.json()["skipped"]] == [
        (letter.pk, "stream_archived"),
        (archived_letters["kafka"].pk, "stream_archived"),
    ]
    assert "archived" in bulk.json()["skipped"][0]["message"]
    _unchanged(archived_letters)


def test_the_page_says_the_stream_is_archived(browser: Client, archived_letters: dict[str, DeadLetter]):
    letter = archived_letters["bad-0"]
    page = browser.post(f"/dead-letters/{letter.pk}/replay/", follow=True)
    assert page.status_code == 200
    assert "Its stream is archived and takes no new events" in page.content.decode()
    selected = [letter.pk, archived_letters["bad-1"].pk]
    bulk = browser.post(
        "/dead-letters/selected/", {"ids": selected, "action": "replay", "confirmed": "yes"}, follow=True
    )
    shown = bulk.content.decode()
    assert f"Letter {letter.pk} left alone: Its stream is archived" in shown and "replayed." not in shown
    _unchanged(archived_letters)


def test_the_admin_action_skips_letters_of_an_archived_stream(root: Client, archived_letters: dict[str, DeadLetter]):
    response = root.post(
        "/admin/streams/deadletter/",
        {"action": "replay", "index": "0", "_selected_action": [archived_letters["bad-0"].pk]},
        follow=True,
    )
    shown = [str(message) for message in response.context["messages"]]
    # Nothing replayed is a warning, not a success of none.
    assert shown == [
        "No dead letter replayed. Skipped 1: its stream is archived and takes no new events; unarchive it to replay (1)."
    ]
    _unchanged(archived_letters)


# --- 3. the dead-letters page: too many selected, an invalid filter --------------------------------


def _messages(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_selecting_more_letters_than_one_action_takes_says_so(browser: Client, shop: Stream):
    ids = letters(shop, 3)
    selected = [*ids, *range(10**6, 10**6 + MAX_BULK_IDS - 2)]
    for confirmed in ("", "yes"):
        response = browser.post(
            "/dead-letters/selected/", {"ids": selected, "action": "replay", "confirmed": confirmed}, follow=True
        )
        assert response.redirect_chain == [("/dead-letters/", 302)]
        assert _messages(response) == [
            "At most 1,000 dead letters can be replayed or discarded at once; 1,001 were selected."
        ]
    assert set(DeadLetter.objects.values_list("status", flat=True)) == {DeadLetterStatus.OPEN}


def test_a_selection_of_the_most_one_action_takes_is_confirmed_and_replayed(browser: Client, shop: Stream):
    ids = letters(shop, 3)
    selected = [*ids, *range(10**6, 10**6 + MAX_BULK_IDS - 3)]
    confirm = browser.post("/dead-letters/selected/", {"ids": selected, "action": "replay"})
    assert confirm.status_code == 200 and b"Replay 3 dead letters?" in confirm.content
    done = browser.post(
        "/dead-letters/selected/", {"ids": selected, "action": "replay", "confirmed": "yes"}, follow=True
    )
    shown = _messages(done)
    assert shown[0] == "3 dead letters replayed." and shown[-1] == f"…and {MAX_BULK_IDS - 13} more left alone."
    assert set(DeadLetter.objects.values_list("status", flat=True)) == {DeadLetterStatus.REPLAYED}


def test_a_form_with_more_fields_than_any_takes_is_a_400_page_saying_so(browser: Client, shop: Stream):
    response = browser.post("/dead-letters/selected/", {"ids": list(range(1, 5002)), "action": "replay"})
    assert response.status_code == 400
    assert b"The form sent more than 5,000 fields" in response.content and b'class="sidebar"' in response.content


@pytest.mark.parametrize(
    ("selection", "shown"),
    [
        ({"action": "replay"}, "Select at least one dead letter first."),
        ({"ids": ["7", "x"], "action": "replay"}, "x is not a dead letter."),
        ({"ids": ["7"], "action": "explode"}, "Select a valid choice. explode is not one of the available choices."),
    ],
)
def test_a_selection_that_is_not_right_says_what_is_wrong(browser: Client, shop: Stream, selection, shown):
    response = browser.post("/dead-letters/selected/", selection, follow=True)
    assert _messages(response) == [shown]


@pytest.fixture
def mixed_letters(shop: Stream) -> dict[str, DeadLetter]:
    """Open letters of two stages, and one of them already discarded."""
    letters(shop, 2)
    dead_letters_record(
        letters=[
            DeadLetterIn(
                stream_id=shop.pk,
                event_id="consumed",
                event={"event_id": "consumed", "type": "login", "payload": {}},
                stage=DeadLetterStage.CONSUME,
                subscriber="billing",
                log_offset=0,
                error_class="MaxDeliverExceeded",
            )
        ]
    )
    found = {letter.event_id: letter for letter in DeadLetter.objects.filter(stream=shop)}
    DeadLetter.objects.filter(pk=found["bad-1"].pk).update(status=DeadLetterStatus.DISCARDED)
    return found


def _listed(response: Any) -> set[str]:
    assert response.status_code == 200
    return {letter.event_id for letter in response.context["page"].items}


@pytest.mark.parametrize(
    ("query", "expected", "error"),
    [
        ("stage=consume&since=yesterday", {"consumed"}, "Enter a valid date/time."),
        ("stage=consume&until=2026-13-01T00:00", {"consumed"}, "Enter a valid date/time."),
        ("q=maxdeliver&since=nope", {"consumed"}, "Enter a valid date/time."),
        # Open letters, as with no status asked for, of the stage asked for.
        ("stage=validate&status=lost", {"bad-0"}, "Select a valid choice. lost is not one of the available choices."),
        ("stream=elsewhere&stage=consume", {"consumed"}, "elsewhere is not one of the available choices."),
    ],
)
def test_an_invalid_filter_is_an_inline_error_and_the_others_still_apply(
    browser: Client, mixed_letters: dict[str, DeadLetter], query: str, expected: set[str], error: str
):
    response = browser.get(f"/dead-letters/?{query}")
    assert _listed(response) == expected
    page = response.content.decode()
    assert 'class="field has-error"' in page and html.escape(error) in page


def test_valid_filters_list_as_before(browser: Client, mixed_letters: dict[str, DeadLetter]):
    assert _listed(browser.get("/dead-letters/")) == {"bad-0", "consumed"}
    assert _listed(browser.get("/dead-letters/?status=")) == {"bad-0", "bad-1", "consumed"}
    assert _listed(browser.get("/dead-letters/?status=discarded")) == {"bad-1"}
    assert "has-error" not in browser.get("/dead-letters/?stage=validate").content.decode()


# --- 4. publishing the newest schema again ---------------------------------------------------------

SCHEMAS = "/api/v1/streams/shop/schemas"


def _login_schema() -> dict[str, Any]:
    return starter_schemas()["login"]


def _registered() -> int:
    return AuditEntry.objects.filter(kind="security", action="schema.register").count()


@pytest.fixture
def developer(shop: Stream) -> Api:
    user = person("dev", "Admin")
    team_create(slug="devs", members=[user], streams=[shop])
    return Api(user, **bearer(user))


def test_publishing_the_newest_schema_again_answers_it_and_adds_no_version(developer: Api, shop: Stream):
    before = _registered()
    reordered = dict(reversed(list(_login_schema().items())))
    for schema in (_login_schema(), reordered):
        response = developer.post(f"{SCHEMAS}/login", {"schema": schema})
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["saved"], body["unchanged"], body["version"]["version"]) == (False, True, 1)
        assert body["version"]["schema"] == _login_schema()
    assert _versions(shop, "login") == [1] and _registered() == before


def test_a_changed_schema_is_a_new_version_and_then_the_newest(developer: Api, shop: Stream):
    changed = {**_login_schema(), "description": "Someone signed in."}
    created = developer.post(f"{SCHEMAS}/login", {"schema": changed})
    assert created.status_code == 201 and (created.json()["saved"], created.json()["unchanged"]) == (True, False)
    assert created.json()["version"]["version"] == 2
    again = developer.post(f"{SCHEMAS}/login", {"schema": changed})
    assert again.status_code == 200 and again.json()["version"]["version"] == 2 and again.json()["unchanged"]
    # The first version's schema again is a change from the newest: going back is a new version.
    back = developer.post(f"{SCHEMAS}/login", {"schema": _login_schema()})
    assert back.status_code == 201 and back.json()["version"]["version"] == 3
    assert sorted(_versions(shop, "login")) == [1, 2, 3]


def test_schemas_that_python_calls_equal_but_json_does_not_are_different_versions(shop: Stream):
    first = schema_register(stream=shop, event_type="flag", schema={"const": 1})
    assert schema_register(stream=shop, event_type="flag", schema={"const": 1}) == first
    assert schema_register(stream=shop, event_type="flag", schema={"const": True}).version == 2
    assert sorted(_versions(shop, "flag")) == [1, 2]


def test_a_dry_run_of_the_newest_schema_says_it_is_unchanged(developer: Api, shop: Stream):
    response = developer.post(f"{SCHEMAS}/login", {"schema": _login_schema(), "dry_run": True})
    assert response.status_code == 200
    body = response.json()
    assert (body["saved"], body["unchanged"], body["version"]["version"]) == (False, True, 1)
    other = developer.post(f"{SCHEMAS}/login", {"schema": {"type": "object"}, "dry_run": True}).json()
    assert (other["saved"], other["unchanged"], other["version"]) == (False, False, None)


def test_the_openapi_description_tells_what_an_unchanged_schema_answers(developer: Api):
    schema = developer.client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/v1/streams/{slug}/schemas/{event_type}"]["post"]
    assert "`unchanged: true`" in operation["description"] and "200" in operation["description"]


def test_the_page_says_the_schema_is_the_same_and_saves_nothing(browser: Client, shop: Stream):
    typed = json.dumps(_login_schema(), indent=2)
    checked = browser.post("/streams/shop/schemas/login/new/", {"schema": typed, "action": "check"})
    assert checked.status_code == 200 and "The same as v1." in checked.content.decode()
    saved = browser.post("/streams/shop/schemas/login/new/", {"schema": typed, "action": "save"}, follow=True)
    assert saved.redirect_chain == [("/streams/shop/schemas/login/", 302)]
    assert _messages(saved) == ["Not saved: this schema is the same as login v1."]
    assert _versions(shop, "login") == [1]


def test_the_admin_form_says_the_schema_is_the_same_and_saves_nothing(root: Client, shop: Stream):
    response = root.post(
        "/admin/streams/eventschema/add/",
        {"stream": shop.pk, "event_type": "login", "schema": json.dumps(_login_schema())},
    )
    assert response.status_code == 200
    assert "This schema is the same as login v1: saving it adds no version." in response.content.decode()
    assert _versions(shop, "login") == [1]
