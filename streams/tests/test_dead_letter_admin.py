"""Operators work the dead letter queue in Django admin: find, inspect, replay, discard (their streams only)."""

from __future__ import annotations

import html
import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from eventflow.models import AuditEntry
from eventflow.roles import roles_sync
from ingestion.models import InboxEvent
from ingestion.pipeline import stream_process_batch
from streams.dead_letters import DeadLetterIn, dead_letters_record
from streams.models import ApiKeyKind, DeadLetter, DeadLetterStage, DeadLetterStatus, SchemaMode, Stream
from streams.services import api_key_create, stream_create, team_create
from tests.fixtures import conf_override
from tests.intake import post_batch

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/streams/deadletter/"
PASSWORD = "a-long-enough-password"


def staff_user(username: str, *, role: str | None, is_staff: bool = True, streams: tuple[str, ...] = ()) -> User:
    roles_sync()
    user = User.objects.create_user(username=username, password=PASSWORD, is_staff=is_staff)
    if role is not None:
        user.groups.add(Group.objects.get(name=role))
    if streams:
        team_create(slug=f"{username}-team", members=[user], streams=list(Stream.objects.filter(slug__in=streams)))
    return user


def quarantined(client: Client, slug: str, event_ids: list[str]) -> Stream:
    """A quarantine stream whose events (button_id must be a string) all became dead letters."""
    stream = stream_create(slug=slug, name=slug.title(), schema_mode=SchemaMode.QUARANTINE, with_starter_schemas=True)
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key
    events = [{"event_id": event_id, "type": "button_click", "payload": {"button_id": 42}} for event_id in event_ids]
    assert post_batch(client, slug, events, key=key).status_code == 202
    assert stream_process_batch(stream_id=stream.pk).dead_lettered == len(event_ids)
    return stream


@pytest.fixture
def letters(client: Client, settings: Any) -> dict[str, DeadLetter]:
    conf_override(settings, max_attempts=1)
    quarantined(client, "shop", ["shop-1", "shop-2", "shop-3"])
    blog = quarantined(client, "blog", ["blog-1"])
    # A consumer group, since deleted, gave up on an event three days ago.
    long_ago = timezone.now() - timedelta(days=3)
    dead_letters_record(
        letters=[
            DeadLetterIn(
                stream_id=blog.pk,
                event_id="blog-consumed",
                event={"event_id": "blog-consumed", "type": "login", "payload": {"user_id": "u1"}},
                stage=DeadLetterStage.CONSUME,
                subscriber="billing",
                log_offset=0,
                error_class="MaxDeliverExceeded",
                error_message="delivered 5 times without a commit",
                attempts=5,
                first_failed_at=long_ago,
            )
        ],
        now=long_ago,
    )
    # Another team's stream: its letters are never shown to the operator.
    quarantined(client, "news", ["news-1"])
    return {letter.event_id: letter for letter in DeadLetter.objects.exclude(stream__slug="news")}


def listed(client: Client, query: str = "") -> set[str]:
    response = client.get(f"{CHANGELIST}{query}")
    assert response.status_code == 200, response.content
    return {letter.event_id for letter in response.context["cl"].result_list}


def run_action(client: Client, action: str, letters: list[DeadLetter]) -> list[str]:
    response = client.post(
        CHANGELIST,
        {"action": action, "index": "0", "_selected_action": [letter.pk for letter in letters]},
        follow=True,
    )
    assert response.status_code == 200
    assert response.redirect_chain == [(CHANGELIST, 302)]
    return [str(message) for message in response.context["messages"]]


def test_operator_finds_inspects_replays_and_discards_dead_letters(client: Client, letters: dict[str, DeadLetter]):
    operator = staff_user("olga", role="Operator", streams=("shop", "blog"))
    assert not operator.is_superuser
    client.force_login(operator)

    response = client.get(CHANGELIST)
    assert response.status_code == 200
    filters = {str(spec.title) for spec in response.context["cl"].filter_specs}
    assert filters == {"status", "stage", "stream", "error class", "last failed at"}
    (stream_spec,) = [spec for spec in response.context["cl"].filter_specs if str(spec.title) == "stream"]
    assert {str(label) for _, label in stream_spec.lookup_choices} == {"shop", "blog"}
    assert {value for value, _ in response.context["action_form"].fields["action"].choices if value} == {
        "replay",
        "discard",
    }
    assert {letter.event_id for letter in response.context["cl"].result_list} == set(letters)

    shop = Stream.objects.get(slug="shop")
    assert listed(client, f"?stream__id__exact={shop.pk}") == {"shop-1", "shop-2", "shop-3"}
    assert listed(client, "?stage__exact=consume") == {"blog-consumed"}
    assert listed(client, "?error_class=SchemaViolation") == {"shop-1", "shop-2", "shop-3", "blog-1"}
    assert listed(client, "?status__exact=open") == set(letters)
    assert listed(client, "?status__exact=replayed") == set()
    (date_spec,) = [spec for spec in response.context["cl"].filter_specs if str(spec.title) == "last failed at"]
    (today,) = [choice for choice in date_spec.choices(response.context["cl"]) if str(choice["display"]) == "Today"]
    assert listed(client, today["query_string"]) == set(letters) - {"blog-consumed"}
    assert listed(client, "?q=shop-2") == {"shop-2"}

    letter = letters["shop-2"]
    page = client.get(f"{CHANGELIST}{letter.pk}/change/").content.decode()
    assert html.escape(json.dumps(letter.event, indent=2, sort_keys=True)) in page
    assert "&quot;button_id&quot;: 42" in page
    assert "Traceback (most recent call last)" in page and "SchemaViolation" in page
    assert html.escape(letter.traceback.strip().splitlines()[-1]) in page

    # Bulk replay: the letter of a deleted consumer group has nowhere to go and is skipped.
    messages = run_action(client, "replay", [letters["shop-1"], letters["shop-2"], letters["blog-consumed"]])
    assert "Replayed 2 dead letter(s)." in messages
    assert "Skipped 1: its consumer group or webhook no longer exists (1)." in messages
    for event_id in ("shop-1", "shop-2"):
        replayed = DeadLetter.objects.get(event_id=event_id)
        assert (replayed.status, replayed.acted_by) == (DeadLetterStatus.REPLAYED, operator)
        back = InboxEvent.objects.get(stream=shop, event_id=event_id)
        assert back.flags["replayed_from"] == replayed.pk and back.attempts == 0
    assert DeadLetter.objects.get(event_id="blog-consumed").status == DeadLetterStatus.OPEN
    assert listed(client, "?status__exact=replayed") == {"shop-1", "shop-2"}

    # Bulk discard: only open letters change; a replayed one stays replayed.
    messages = run_action(client, "discard", [letters["shop-2"], letters["shop-3"], letters["blog-consumed"]])
    assert "Discarded 2 dead letter(s)." in messages
    assert "Skipped 1: already replayed or discarded (1)." in messages
    statuses = dict(DeadLetter.objects.values_list("event_id", "status"))
    assert statuses == {
        "shop-1": DeadLetterStatus.REPLAYED,
        "shop-2": DeadLetterStatus.REPLAYED,
        "shop-3": DeadLetterStatus.DISCARDED,
        "blog-1": DeadLetterStatus.OPEN,
        "blog-consumed": DeadLetterStatus.DISCARDED,
        "news-1": DeadLetterStatus.OPEN,
    }
    assert DeadLetter.objects.get(event_id="shop-3").acted_by == operator
    # Each action is a security event per stream, written with the change.
    audited = AuditEntry.objects.filter(action__startswith="dead_letter.").order_by("id")
    assert [(entry.action, entry.stream_id, entry.caller, entry.details["ids"]) for entry in audited] == [
        ("dead_letter.replay", shop.pk, "olga", [letters["shop-1"].pk, letters["shop-2"].pk]),
        ("dead_letter.discard", shop.pk, "olga", [letters["shop-3"].pk]),
        ("dead_letter.discard", Stream.objects.get(slug="blog").pk, "olga", [letters["blog-consumed"].pk]),
    ]


def test_operator_never_sees_or_acts_on_letters_of_other_teams_streams(client: Client, letters: dict[str, DeadLetter]):
    client.force_login(staff_user("olga", role="Operator", streams=("shop",)))
    assert listed(client) == {"shop-1", "shop-2", "shop-3"}
    news = DeadLetter.objects.get(event_id="news-1")
    assert client.get(f"{CHANGELIST}{news.pk}/change/", follow=True).redirect_chain[-1][0] == "/admin/"
    # Naming a foreign letter in an action does nothing to it.
    client.post(CHANGELIST, {"action": "discard", "index": "0", "_selected_action": [news.pk, letters["blog-1"].pk]})
    assert DeadLetter.objects.get(event_id="news-1").status == DeadLetterStatus.OPEN
    assert DeadLetter.objects.get(event_id="blog-1").status == DeadLetterStatus.OPEN


def test_superuser_sees_every_stream(client: Client, letters: dict[str, DeadLetter]):
    client.force_login(User.objects.create_superuser("root", password=PASSWORD))
    assert listed(client) == set(letters) | {"news-1"}


@pytest.mark.parametrize("role", [None, "Analyst"])
def test_staff_without_the_operator_role_is_refused(client: Client, letters: dict[str, DeadLetter], role: str | None):
    client.force_login(staff_user("sam", role=role, streams=("shop", "blog")))
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(f"{CHANGELIST}{letters['shop-1'].pk}/change/").status_code == 403
    response = client.post(CHANGELIST, {"action": "discard", "index": "0", "_selected_action": [letters["shop-1"].pk]})
    assert response.status_code == 403
    assert DeadLetter.objects.get(event_id="shop-1").status == DeadLetterStatus.OPEN


def test_non_staff_and_anonymous_users_are_sent_to_the_login_page(client: Client, letters: dict[str, DeadLetter]):
    response = client.get(CHANGELIST)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    # The Operator group alone does not open admin: the user must be staff.
    client.force_login(staff_user("nina", role="Operator", is_staff=False))
    response = client.post(CHANGELIST, {"action": "discard", "index": "0", "_selected_action": [letters["shop-1"].pk]})
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert DeadLetter.objects.get(event_id="shop-1").status == DeadLetterStatus.OPEN
