"""The per-person activity rollup holds what the log holds, and retention read from it answers as from the log."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from analytics.filters import EventFilter
from analytics.journeys import retention
from analytics.management.commands.rollups_rebuild import rollups_rebuild
from analytics.models import PersonDay, PersonFirst
from streams.log import LogRecord
from streams.models import Stream

from .journey_fixtures import event, log
from .test_retention import reference

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")


def _expected(records: list[LogRecord]) -> tuple[dict[tuple[str, date, str], tuple[datetime, datetime]], dict]:
    days: dict[tuple[str, date, str], tuple[datetime, datetime]] = {}
    first: dict[tuple[str, str], datetime] = {}
    for r in records:
        person = r.user_id if r.user_id is not None else r.anonymous_id
        if person is None:
            continue
        day = r.event_time.astimezone(UTC).date()
        # Any-type activity only (by event type, retention reads the log).
        lo, hi = days.get(("", day, person), (r.event_time, r.event_time))
        days[("", day, person)] = (min(lo, r.event_time), max(hi, r.event_time))
        first[("", person)] = min(first.get(("", person), r.event_time), r.event_time)
    return days, first


def _stored(stream: Stream) -> tuple[dict, dict]:
    days = {
        (row.type, row.day, row.person): (row.first_at, row.last_at) for row in PersonDay.objects.filter(stream=stream)
    }
    first = {(row.type, row.person): row.first_at for row in PersonFirst.objects.filter(stream=stream)}
    return days, first


def _random_records(seed: int, n: int = 600) -> list[LogRecord]:
    rng = random.Random(seed)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    records = []
    for _ in range(n):
        who = rng.randrange(40)
        at = start + timedelta(seconds=rng.randrange(0, 86400 * 40), microseconds=rng.randrange(1_000_000))
        kind = rng.choice(["user", "user", "anon", "none"])
        records.append(
            event(
                rng.choice(["signup", "login", "page_view", "Order Completed"]),
                at,
                user=f"p{who}" if kind == "user" else None,
                # The same name as an id and an anonymous id is one person, as journeys count them.
                anon=f"p{who}" if kind == "anon" else (f"x{who}" if kind == "user" else None),
            )
        )
    return records


def test_the_rollup_equals_the_log_through_late_and_repeated_batches(stream: Stream):
    records = _random_records(1)
    rng = random.Random(2)
    rng.shuffle(records)  # late events: a batch holds times older than the last one's
    for i in range(0, len(records), 97):
        log(stream, records[i : i + 97])
    expected_days, expected_first = _expected(records)
    days, first = _stored(stream)
    assert days == expected_days
    assert first == expected_first
    assert ("", date(2026, 10, 1), "p0") in days or any(k[2] == "p0" for k in days)
    # Recounted from the log, the rollup is the same.
    PersonDay.objects.filter(stream=stream).delete()
    PersonFirst.objects.filter(stream=stream).delete()
    rollups_rebuild(stream_id=stream.pk)
    assert _stored(stream) == (expected_days, expected_first)


@pytest.mark.parametrize(("period", "periods"), [("day", 6), ("week", 4)])
def test_retention_from_the_rollup_matches_the_events(stream: Stream, period: str, periods: int):
    records = _random_records(5, 900)
    # Where a day's first and last time cannot tell (period 0 of a day in Berlin): a returning
    # event before the first sighting and one after local midnight, both in one UTC day, and a
    # person with one in between too.
    d = datetime(2026, 10, 20, tzinfo=UTC)
    for who, between in (("amb-no", False), ("amb-yes", True)):
        records += [
            event("login", d + timedelta(hours=5), user=who),
            event("signup", d + timedelta(hours=10), user=who),
            event("login", d + timedelta(hours=22, minutes=30), user=who),  # 00:30 the next day in Berlin
        ]
        if between:
            records.append(event("login", d + timedelta(hours=15), user=who))
    log(stream, records)
    start, end = datetime(2026, 10, 5, tzinfo=UTC), datetime(2026, 10, 29, tzinfo=UTC)
    for first_event, returning in ((None, None), ("signup", "login"), ("login", "login"), (None, "Order Completed")):
        result = retention(
            stream_id=stream.pk,
            period=period,  # type: ignore[arg-type]
            periods=periods,
            time_from=start,
            time_to=end,
            tz=BERLIN,
            event=first_event,
            returning_event=returning,
            event_filter=EventFilter(),
            now=timezone.now(),
        )
        got = [(c.start.astimezone(BERLIN).date(), c.people, c.returning) for c in result.cohorts]
        want = reference(
            records,
            period=period,
            periods=periods,
            start=start,
            end=end,
            tz=BERLIN,
            event=first_event,
            returning=returning,
        )
        assert got == want, (first_event, returning)
