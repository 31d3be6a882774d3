"""Merged sketches of past windows (analytics/spans.py): stored by the first reader, read back whole,
and deleted by a late write to any of their hours, so that answers equal the sketches as they stand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from analytics.models import SketchEpoch, SketchSpan
from analytics.spans import spans_epoch, spans_store
from streams.models import Stream
from tests.fixtures import conf_override

from .journey_fixtures import BASE, event, log, person_of

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
SERIES = f"{BASE}/analytics/timeseries"
DAY0 = datetime(2026, 10, 5, tzinfo=BERLIN)
WINDOW = {
    "from": DAY0.isoformat(),
    "to": (DAY0 + timedelta(days=3)).isoformat(),
    "tz": "Europe/Berlin",
    "interval": "day",
}


def _users_by_day(answer: dict) -> list[int]:  # type: ignore[type-arg]
    return [bucket["unique_users"] for bucket in answer["buckets"]]


def test_local_days_are_merged_once_read_back_and_invalidated_by_a_late_event(stream: Stream, settings: Any) -> None:
    conf_override(settings, analytics_cache_seconds=0)  # each call computes its answer
    # Day k has 3 + k users, each seen twice in different hours of that Berlin day.
    records = []
    for k in range(3):
        for u in range(3 + k):
            for hour in (1, 20):
                records.append(event("page_view", DAY0 + timedelta(days=k, hours=hour), user=f"u{k}-{u}"))
    log(stream, records)
    analyst = person_of(stream)

    first = analyst.get(SERIES, **WINDOW).json()
    assert _users_by_day(first) == [3, 4, 5]
    spans = {(s.lo, s.hi): s.users for s in SketchSpan.objects.filter(stream=stream, dimension="", value="")}
    days = [(DAY0 + timedelta(days=k)).astimezone(UTC) for k in range(4)]
    assert spans == {(days[k], days[k + 1]): 3 + k for k in range(3)}

    # Read back whole: a stored span is the answer (changed here by hand to show it is read).
    SketchSpan.objects.filter(stream=stream, lo=days[1]).update(users=40)
    assert _users_by_day(analyst.get(SERIES, **WINDOW).json()) == [3, 40, 5]

    # A late event of a new user in day 1: its span goes, the answer counts the new user.
    epoch = SketchEpoch.objects.get(stream=stream).n
    log(stream, [event("login", DAY0 + timedelta(days=1, hours=12), user="late-comer")])
    assert SketchEpoch.objects.get(stream=stream).n == epoch + 1
    assert not SketchSpan.objects.filter(stream=stream, lo=days[1]).exists()
    assert SketchSpan.objects.filter(stream=stream, lo=days[0]).exists()
    assert _users_by_day(analyst.get(SERIES, **WINDOW).json()) == [3, 5, 5]
    assert SketchSpan.objects.get(stream=stream, dimension="", value="", lo=days[1]).users == 5


def test_recent_windows_are_not_stored_and_current_events_do_not_invalidate(stream: Stream) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    log(stream, [event("page_view", now - timedelta(hours=h), user=f"r{h}") for h in range(1, 30)])
    analyst = person_of(stream)
    window = {"from": (now - timedelta(hours=30)).isoformat(), "to": now.isoformat(), "interval": "hour"}
    answer = analyst.get(SERIES, **window, tz="Asia/Kolkata").json()
    assert sum(bucket["count"] for bucket in answer["buckets"]) == 29
    daily = analyst.get(SERIES, **{**window, "interval": "day"}, tz="Europe/Berlin").json()
    assert sum(bucket["count"] for bucket in daily["buckets"]) == 29
    # Only windows that ended three hours before this hour began may be stored.
    for span in SketchSpan.objects.filter(stream=stream):
        assert span.hi <= now - timedelta(hours=3)
    epoch = spans_epoch(stream.pk)
    log(stream, [event("page_view", datetime.now(UTC), user="now")])
    assert spans_epoch(stream.pk) == epoch


def test_a_span_merged_before_a_late_write_is_not_stored(stream: Stream) -> None:
    epoch = spans_epoch(stream.pk)
    log(stream, [event("page_view", DAY0, user="old")])  # late: the epoch moves on
    lo, hi = DAY0.astimezone(UTC), (DAY0 + timedelta(days=1)).astimezone(UTC)
    assert not spans_store(stream_id=stream.pk, dimension="", epoch=epoch, merged=[(("", lo, hi), 7, b"x")])
    assert not SketchSpan.objects.filter(stream=stream).exists()
    assert spans_store(
        stream_id=stream.pk, dimension="", epoch=spans_epoch(stream.pk), merged=[(("", lo, hi), 7, b"x")]
    )
    assert SketchSpan.objects.get(stream=stream).users == 7
