"""Review of erasure and retention as a privacy-minded customer and an operator would read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from analytics.models import PersonDay, PersonFirst
from analytics.tests.journey_fixtures import event, log
from analytics.tests.test_rollups import _expected_from_log, _stored
from streams.erasure import erasure_request, erasure_run
from streams.models import Stream

pytestmark = pytest.mark.django_db(transaction=True)

JANE = "jane-doe-77"


def _erase(stream: Stream, *, by: str = "user_id", subject: str = JANE) -> None:
    erasure = erasure_request(caller=None, stream_id=stream.pk, by=by, subject=subject)
    done = erasure_run(erasure_id=erasure.pk)
    assert done is not None and done.status == "done"


def _log_lost(stream: Stream, *, user: str) -> None:
    """The log's retention took ``user``'s events: logged a day before the others, their partition went first."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM streams_log WHERE stream_id = %s AND user_id = %s", [stream.pk, user])


def _hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def test_an_erasure_keeps_the_counts_of_events_the_log_no_longer_holds(stream: Stream) -> None:
    # Bob's event was logged at 23:40; Jane's of the same hour came in late, after midnight, so
    # her event sits in the next day's partition and outlives Bob's by a day (README, Retention).
    hour = _hour(timezone.now() - timedelta(days=3)).replace(hour=23)
    log(
        stream,
        [
            event("login", hour + timedelta(minutes=40), user="bob", enrichment={"browser": "Firefox"}),
            event("login", hour + timedelta(minutes=50), user=JANE, enrichment={"browser": "Chrome"}),
        ],
    )
    _log_lost(stream, user="bob")
    before = _stored(stream)

    _erase(stream)

    after = _stored(stream)
    # A tombstone keeps its type and time: the counts by type do not change (README, Erasure).
    for name in ("minutes", "hours", "days"):
        assert after[name] == before[name], name
    day = hour.replace(hour=0)
    # Bob's browser is still counted; Jane's moved to the tombstone's empty value.
    assert after["hour_dims"][("browser", hour, "Firefox", "login")] == 1
    assert after["day_dims"][("browser", day, "Firefox", "login")] == 1
    assert ("browser", hour, "Chrome", "login") not in after["hour_dims"]
    assert ("browser", day, "Chrome", "login") not in after["day_dims"]
    assert after["hour_dims"][("browser", hour, "", "login")] == 1
    # The unique-user sketches stay as they were: rebuilt from a log that no longer holds Bob's
    # event, they would lose him; so Jane stays counted in them (README, Erasure).
    assert after["users"] == before["users"]
    assert after["users"][("h", hour, "", "")] == 2


def test_an_erasure_where_the_log_holds_everything_leaves_rollups_equal_to_the_log(stream: Stream) -> None:
    now = timezone.now()
    hour = _hour(now - timedelta(days=2))
    log(
        stream,
        [
            event("login", hour + timedelta(minutes=1), user="bob", enrichment={"browser": "Firefox"}),
            event("login", hour + timedelta(minutes=2), user=JANE, enrichment={"browser": "Chrome"}),
            event(
                "page_view",
                hour + timedelta(hours=3),
                user=JANE,
                payload={"page": "/jane"},
                context={"country": "DE"},
            ),
            event("page_view", hour + timedelta(hours=3, minutes=5), anon="anon-1", payload={"page": "/"}),
        ],
    )

    _erase(stream)

    expected, stored = _expected_from_log(stream), _stored(stream)
    for name in ("minutes", "hours", "days", "hour_dims", "day_dims", "users"):
        assert stored[name] == expected[name], name


def _persons(stream: Stream, person: str) -> list[Any]:
    return sorted(PersonDay.objects.filter(stream=stream, person=person).values_list("day", flat=True))


def test_an_erasure_reaches_activity_of_expired_days_when_a_late_event_keeps_an_older_one(stream: Stream) -> None:
    now = timezone.now()
    late = now - timedelta(days=60)
    expired = now - timedelta(days=30)
    log(
        stream,
        [
            # Someone's phone sent a two-month-old event yesterday: the log keeps it.
            event("login", late, user="carol"),
            event("login", expired, user=JANE),
            event("login", expired, user="bob"),
            event("login", now - timedelta(hours=1), user=JANE),
        ],
    )
    # The log's retention took the events logged a month ago, Jane's and Bob's.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM streams_log WHERE stream_id = %s AND event_time = %s", [stream.pk, expired])
    assert len(_persons(stream, JANE)) == 2

    _erase(stream)

    assert _persons(stream, JANE) == []
    assert not PersonFirst.objects.filter(stream=stream, person=JANE).exists()
    assert len(_persons(stream, "bob")) == 1
    assert len(_persons(stream, "carol")) == 1
