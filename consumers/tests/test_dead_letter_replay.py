"""Replay of consume and deliver dead letters, end to end: the group or the webhook gets the record once more."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from rest_framework_simplejwt.tokens import RefreshToken

from consumers.models import ConsumerGroup, DeliveryAttempt
from consumers.selectors import webhooks_due
from consumers.webhook_services import webhook_create, webhook_deliver
from streams.dead_letters import SKIP_GROUP_GONE, SKIP_NOT_OPEN, dead_letters_replay
from streams.models import DeadLetter, DeadLetterStage, DeadLetterStatus, LogEntry, Stream
from streams.services import team_create
from tests.receiver import Answer, receiver

from .conftest import GROUPS, JsonClient, append

pytestmark = pytest.mark.django_db


def poll(consumer: JsonClient, **body: Any) -> Any:
    response = consumer.post(f"{GROUPS}/billing/poll", body)
    assert response.status_code == 200, response.content
    return response.json()


def commit(consumer: JsonClient, **body: Any) -> Any:
    return consumer.post(f"{GROUPS}/billing/commit", body)


def give_back(consumer: JsonClient, batch: Any) -> None:
    """The consumer's handler failed: the lease goes back uncommitted."""
    lease = batch["lease"]
    assert commit(consumer, lease_id=lease["id"], offset=lease["start_offset"], release=True).status_code == 200


@pytest.fixture
def operator(stream: Stream) -> JsonClient:
    user = User.objects.create_user("olga", password="a-long-password-1")
    user.groups.add(Group.objects.get(name="Operator"))
    team_create(slug="ops", members=[user], streams=[stream])
    token = str(RefreshToken.for_user(user).access_token)
    return JsonClient(Client(), HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def consume_letter(consumer: JsonClient, stream: Stream) -> DeadLetter:
    """Offset 0 failed twice in group billing (max_deliver 2); offsets 1 and 2 were handled."""
    append(stream, 3)
    assert consumer.post(GROUPS, {"name": "billing", "max_deliver": 2}).status_code == 201
    give_back(consumer, poll(consumer))
    last = poll(consumer)
    assert [r["offset"] for r in last["records"]] == [0]
    give_back(consumer, last)
    # Offsets 1 and 2 are on their last attempt too, so each comes alone.
    for offset in (1, 2):
        batch = poll(consumer)
        assert [r["offset"] for r in batch["records"]] == [offset]
        assert commit(consumer, lease_id=batch["lease"]["id"], offset=offset + 1).status_code == 200
    letter = DeadLetter.objects.get()
    assert (letter.stage, letter.log_offset, letter.group) == (
        DeadLetterStage.CONSUME,
        0,
        ConsumerGroup.objects.get(name="billing"),
    )
    return letter


def test_a_replayed_consume_letter_is_delivered_to_its_group_once_before_new_records(
    consumer, operator, stream, consume_letter
):
    assert poll(consumer)["idle_reason"] == "caught_up"
    replayed = operator.post(f"/api/v1/dead-letters/{consume_letter.pk}/replay")
    assert replayed.status_code == 200, replayed.content
    assert (replayed.json()["status"], replayed.json()["acted_by"]) == ("replayed", "olga")
    # A second replay, one or many, changes nothing.
    again = operator.post(f"/api/v1/dead-letters/{consume_letter.pk}/replay")
    assert again.status_code == 409 and again.json()["error"]["code"] == "dead_letter_not_open"
    bulk = operator.post("/api/v1/dead-letters/replay", {"ids": [consume_letter.pk]}).json()
    assert bulk == {
        "count": 0,
        "ids": [],
        "skipped": [{"id": consume_letter.pk, "reason": "not_open", "message": "Already replayed or discarded."}],
    }

    append(stream, 1)
    # The replayed record comes first, alone, and the group's position does not move.
    batch = poll(consumer, max=10)
    assert [(r["offset"], r["event_id"], r["delivery_count"]) for r in batch["records"]] == [(0, "e0", 1)]
    assert (batch["lease"]["start_offset"], batch["lease"]["end_offset"], batch["next_offset"]) == (3, 3, 3)
    assert batch["committed_offset"] == 3
    done = commit(consumer, lease_id=batch["lease"]["id"], offset=batch["next_offset"])
    assert done.status_code == 200 and done.json()["committed_offset"] == 3
    # Then the new record, and nothing more: the replayed one is not handed out twice.
    after = poll(consumer, max=10)
    assert [r["offset"] for r in after["records"]] == [3]
    commit(consumer, lease_id=after["lease"]["id"], offset=4)
    assert poll(consumer)["idle_reason"] == "caught_up"
    assert LogEntry.objects.filter(stream=stream).count() == 4
    assert DeadLetter.objects.count() == 1


def test_a_replayed_record_that_fails_again_becomes_a_new_dead_letter(consumer, stream, consume_letter):
    assert dead_letters_replay(ids=[consume_letter.pk]).count == 1
    first = poll(consumer)
    assert [(r["offset"], r["delivery_count"]) for r in first["records"]] == [(0, 1)]
    give_back(consumer, first)
    second = poll(consumer)
    assert [(r["offset"], r["delivery_count"]) for r in second["records"]] == [(0, 2)]
    # This time the lease runs out instead.
    ConsumerGroup.objects.filter(name="billing").update(lease_expires_at="2000-01-01T00:00:00Z")
    assert poll(consumer)["idle_reason"] == "caught_up"
    letters = list(DeadLetter.objects.order_by("pk"))
    assert [(letter.status, letter.log_offset, letter.attempts) for letter in letters] == [
        (DeadLetterStatus.REPLAYED, 0, 2),
        (DeadLetterStatus.OPEN, 0, 2),
    ]
    assert f"redelivery of dead letter {consume_letter.pk}" in letters[1].error_message
    assert letters[1].group_id == consume_letter.group_id


def test_a_letter_whose_group_was_deleted_stays_open(consumer, consume_letter):
    assert consumer.delete(f"{GROUPS}/billing").status_code == 204
    consume_letter.refresh_from_db()
    assert consume_letter.group is None and consume_letter.subscriber == "billing"
    outcome = dead_letters_replay(ids=[consume_letter.pk])
    assert (outcome.count, [s.reason for s in outcome.skipped]) == (0, [SKIP_GROUP_GONE])
    consume_letter.refresh_from_db()
    assert consume_letter.status == DeadLetterStatus.OPEN


def test_a_replayed_deliver_letter_is_sent_to_its_webhook_once(webhook_settings, stream, operator):
    # The receiver refuses the first batch outright (a 400 is not retried), then takes everything.
    with receiver(lambda index, body: Answer(400) if index == 0 else Answer(200)) as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url)
        append(stream, 2)
        assert webhook_deliver(webhook_id=created.webhook.pk).dead_lettered == 2
        append(stream, 1)
        webhook_deliver(webhook_id=created.webhook.pk)
        assert [r.offsets for r in hook.requests] == [[0, 1], [2]]
        letters = list(DeadLetter.objects.order_by("log_offset"))
        assert {(letter.stage, letter.group_id) for letter in letters} == {
            (DeadLetterStage.DELIVER, created.webhook.group_id)
        }
        listed = operator.get("/api/v1/dead-letters?stage=deliver").json()["results"]
        assert {item["webhook_id"] for item in listed} == {created.webhook.pk}

        assert webhooks_due() == []
        ids = [letter.pk for letter in letters]
        replayed = operator.post("/api/v1/dead-letters/replay", {"ids": ids})
        assert replayed.json() == {"count": 2, "ids": ids, "skipped": []}
        # Waiting replays make the webhook due for the sweep even though it is caught up.
        assert webhooks_due() == [created.webhook.pk]
        webhook_deliver(webhook_id=created.webhook.pk)
        # Replaying again sends nothing more.
        again = dead_letters_replay(ids=ids)
        assert (again.count, {s.reason for s in again.skipped}) == (0, {SKIP_NOT_OPEN})
        assert webhook_deliver(webhook_id=created.webhook.pk).stopped_because == "caught_up"
        assert webhooks_due() == []
    assert [r.offsets for r in hook.requests] == [[0, 1], [2], [0, 1]]
    assert [r.status for r in hook.requests] == [400, 200, 200]
    assert DeliveryAttempt.objects.count() == 3
    assert DeadLetter.objects.filter(status=DeadLetterStatus.OPEN).count() == 0


def test_a_replayed_deliver_letter_that_fails_again_is_a_dead_letter_again(webhook_settings, stream):
    with receiver(lambda index, body: Answer(400)) as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url)
        append(stream, 1)
        webhook_deliver(webhook_id=created.webhook.pk)
        (letter,) = DeadLetter.objects.all()
        assert dead_letters_replay(ids=[letter.pk]).count == 1
        assert webhook_deliver(webhook_id=created.webhook.pk).dead_lettered == 1
    assert [r.offsets for r in hook.requests] == [[0], [0]]
    assert list(DeadLetter.objects.order_by("pk").values_list("status", "log_offset")) == [
        (DeadLetterStatus.REPLAYED, 0),
        (DeadLetterStatus.OPEN, 0),
    ]
    assert webhooks_due() == []
