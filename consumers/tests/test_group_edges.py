"""Edge cases of consumer groups: what a consumer meets at the borders of leases, redeliveries and waits."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from consumers import services
from consumers.models import ConsumerGroup, GroupKind
from consumers.selectors import Position
from consumers.services import consumer_group_create
from streams.dead_letters import dead_letters_replay
from streams.models import DeadLetter, DeadLetterStatus, Stream

from .conftest import GROUPS, JsonClient, append
from .test_dead_letter_replay import commit, give_back, poll

pytestmark = pytest.mark.django_db


def test_a_redelivery_that_fails_again_is_one_dead_letter_while_new_records_flow(
    consumer: JsonClient, stream: Stream
) -> None:
    append(stream, 1)
    assert consumer.post(GROUPS, {"name": "billing", "max_deliver": 2}).status_code == 201
    give_back(consumer, poll(consumer))
    give_back(consumer, poll(consumer))
    # Offset 0 is now a dead letter; the group is caught up at 1.
    assert poll(consumer)["idle_reason"] == "caught_up"
    letter = DeadLetter.objects.get()
    assert dead_letters_replay(ids=[letter.pk]).count == 1
    # The replayed record fails twice more, while new events keep arriving.
    give_back(consumer, poll(consumer))
    give_back(consumer, poll(consumer))
    append(stream, 3)
    for _ in range(3):
        batch = poll(consumer, max=1)
        assert [r["offset"] for r in batch["records"]] == [batch["lease"]["start_offset"]]
        assert commit(consumer, lease_id=batch["lease"]["id"], offset=batch["next_offset"]).status_code == 200
    assert poll(consumer)["idle_reason"] == "caught_up"
    # One new dead letter for the failed redelivery, not one per poll that handed out new records.
    assert DeadLetter.objects.filter(status=DeadLetterStatus.OPEN).count() == 1
    assert ConsumerGroup.objects.get(name="billing").redeliveries == []


@pytest.mark.parametrize("app_clock_skew", [timedelta(minutes=-5), timedelta(minutes=5)])
def test_a_long_poll_waits_out_another_members_lease_by_the_database_clock(
    stream: Stream, monkeypatch: pytest.MonkeyPatch, app_clock_skew: timedelta
) -> None:
    """The web host's clock may differ from PostgreSQL's, which times the leases."""
    append(stream, 3)
    consumer_group_create(stream_id=stream.pk, name="billing", start=Position("earliest"))
    lookup = {"stream_id": stream.pk, "name": "billing", "kind": GroupKind.PULL}
    held = services.consumer_group_poll_once(lookup=lookup, max_records=10, lease_seconds=1)
    assert held.lease is not None
    polls = 0
    poll_once = services.consumer_group_poll_once

    def counted(**kwargs: Any) -> services.PollResult:
        nonlocal polls
        polls += 1
        return poll_once(**kwargs)

    monkeypatch.setattr(services, "consumer_group_poll_once", counted)
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + app_clock_skew)
    started = time.monotonic()
    result = services.consumer_group_poll(
        stream_id=stream.pk, name="billing", max_records=10, lease_seconds=30, wait_ms=4000
    )
    # The lapsed lease's records come as soon as it expires: no waiting out the whole poll, no busy loop meanwhile.
    assert result.lease is not None and result.record_count == 3
    assert time.monotonic() - started < 3
    assert polls <= 3
