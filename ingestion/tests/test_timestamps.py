"""Event times: clock-skew correction from sent_at, and timestamps from the future."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from ingestion.models import InboxEvent
from tests.intake import post_batch, post_event

pytestmark = pytest.mark.django_db

HAPPENED = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_sent_at_shifts_event_times_by_the_producers_clock_error(api, stream, ingest_key):
    # The producer's clock runs one hour behind the server's.
    before = timezone.now()
    sent_at = before - timedelta(hours=1)
    response = post_batch(
        api,
        stream.slug,
        [{"event_id": "a", "type": "logout", "timestamp": iso(HAPPENED)}, {"event_id": "b", "type": "logout"}],
        key=ingest_key,
        sent_at=iso(sent_at),
    )
    after = timezone.now()

    assert response.status_code == 202, response.content
    shifted = InboxEvent.objects.get(event_id="a")
    # skew = received - sent_at, and received lies between before and after.
    assert HAPPENED + (before - sent_at) <= shifted.event_time <= HAPPENED + (after - sent_at)
    assert 3600 <= shifted.flags["clock_skew_seconds"] <= 3600 + (after - before).total_seconds() + 0.001
    result = response.json()["results"][0]
    assert result["flags"]["clock_skew_seconds"] == shifted.flags["clock_skew_seconds"]
    # An event without a timestamp happened when it was received: nothing to correct.
    untimed = InboxEvent.objects.get(event_id="b")
    assert untimed.event_time == untimed.received_at


def test_producer_clock_ahead_moves_times_back(api, stream, ingest_key):
    sent_at = timezone.now() + timedelta(minutes=10)
    response = post_batch(
        api, stream.slug, [{"type": "logout", "timestamp": iso(HAPPENED)}], key=ingest_key, sent_at=iso(sent_at)
    )
    assert response.status_code == 202, response.content
    row = InboxEvent.objects.get()
    assert HAPPENED - timedelta(minutes=10) <= row.event_time <= HAPPENED - timedelta(minutes=10) + timedelta(seconds=5)


def test_without_sent_at_timestamps_are_kept_as_sent(api, stream, ingest_key):
    response = post_batch(
        api, stream.slug, [{"type": "logout", "timestamp": "2026-11-21T10:00:00+01:00"}], key=ingest_key
    )
    assert response.status_code == 202
    row = InboxEvent.objects.get()
    assert row.event_time == HAPPENED
    assert row.flags == {}


def test_timestamp_more_than_a_day_ahead_is_set_to_the_received_time_and_flagged(api, stream, ingest_key):
    future = iso(timezone.now() + timedelta(days=1, minutes=5))
    response = post_event(api, stream.slug, {"event_id": "f", "type": "logout", "timestamp": future}, key=ingest_key)

    assert response.status_code == 202
    assert response.json() == {"event_id": "f", "status": "accepted", "flags": {"future_timestamp": future}}
    row = InboxEvent.objects.get()
    assert row.event_time == row.received_at
    assert row.flags == {"future_timestamp": future}


def test_timestamp_less_than_a_day_ahead_is_kept(api, stream, ingest_key):
    ahead = timezone.now() + timedelta(hours=23)
    response = post_event(api, stream.slug, {"type": "logout", "timestamp": iso(ahead)}, key=ingest_key)
    assert response.status_code == 202
    assert "flags" not in response.json()
    row = InboxEvent.objects.get()
    assert abs(row.event_time - ahead) < timedelta(milliseconds=1)
    assert row.flags == {}


def test_future_check_applies_after_skew_correction(api, stream, ingest_key):
    # Both the event and sent_at are two days ahead by the producer's clock: after
    # correction the event happened just now, so it is not from the future.
    ahead = timezone.now() + timedelta(days=2)
    response = post_batch(
        api, stream.slug, [{"type": "logout", "timestamp": iso(ahead)}], key=ingest_key, sent_at=iso(ahead)
    )
    assert response.status_code == 202
    row = InboxEvent.objects.get()
    assert "future_timestamp" not in row.flags
    assert abs(row.event_time - row.received_at) < timedelta(seconds=5)


def test_skew_correction_that_lands_in_the_future_is_flagged(api, stream, ingest_key):
    # The producer's clock is two days behind and the event claims to be from "now" by it.
    sent_at = timezone.now() - timedelta(days=2)
    event_time = iso(timezone.now())
    response = post_batch(
        api, stream.slug, [{"type": "logout", "timestamp": event_time}], key=ingest_key, sent_at=iso(sent_at)
    )
    assert response.status_code == 202
    row = InboxEvent.objects.get()
    assert row.flags["future_timestamp"] == event_time
    assert row.event_time == row.received_at
