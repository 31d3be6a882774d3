"""``rollups_rebuild`` where the log holds only part of an hour or a day: those rollups stay as they are.

Rollups outlive the log (README, Retention), and a late event is logged in a later day's
partition than the rest of its hour, so retention can take an hour's other events and leave
the late ones. Recounted from that log, the hour and its day would lose their counts and
users. The log loses its rows here the way retention takes them (``retention_run`` dropping a
day's partition), and every expectation is computed from the events the test logged, never
read back from the rollups.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from analytics.management.commands.rollups_rebuild import rollups_rebuild
from analytics.models import PersonDay
from streams.log import LogRecord
from streams.models import LogEntry, Stream
from streams.retention import log_partitions_ensure, retention_run

from .journey_fixtures import event, log
from .test_rollups import _stored

# Dropping a partition (DETACH … CONCURRENTLY) cannot run inside the test's transaction.
pytestmark = pytest.mark.django_db(transaction=True)

# The stream's log keeps events 3 days: the partition of the day four days ago goes, the next day's stays.
RETENTION_DAYS = 3
FIREFOX = {"browser": "Firefox"}


@dataclass(frozen=True)
class Scene:
    day: datetime  # a UTC day four days ago, whose partition retention drops
    early: datetime  # 03:00 that day: none of its events is left in the log
    noon: datetime  # 12:00 that day: only its two late events are left
    whole: datetime  # 09:00 the next day: all of its events are left
    sent: tuple[LogRecord, ...]


def _scene(stream: Stream) -> Scene:
    Stream.objects.filter(pk=stream.pk).update(retention_days=RETENTION_DAYS)
    today = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day = today - timedelta(days=RETENTION_DAYS + 1)
    early, noon, whole = day + timedelta(hours=3), day + timedelta(hours=12), day + timedelta(days=1, hours=9)
    log_partitions_ensure(now=day + timedelta(days=1), days_ahead=1)  # the day and the next
    on_time = [
        event("page_view", early + timedelta(minutes=5), user="frank", enrichment=FIREFOX),
        event("page_view", early + timedelta(minutes=9), user="gina"),
        event("page_view", noon + timedelta(minutes=5), user="jane", enrichment=FIREFOX),
        event("page_view", noon + timedelta(minutes=10), user="bob"),
        event("login", noon + timedelta(minutes=20), user="carol"),
        event("page_view", noon + timedelta(minutes=25), anon="dave-cookie"),
    ]
    log(stream, on_time, logged_at=noon + timedelta(minutes=30))
    # Sent at 12:50 and 12:55, received after midnight: logged in the next day's partition.
    late = [
        event("login", noon + timedelta(minutes=50), user="jane"),
        event("page_view", noon + timedelta(minutes=55), user="erin", enrichment=FIREFOX),
    ]
    log(stream, late, logged_at=day + timedelta(days=1, minutes=10))
    next_day = [
        event("page_view", whole + timedelta(minutes=1), user="hank", enrichment=FIREFOX),
        event("login", whole + timedelta(minutes=2), user="ivy"),
        event("page_view", whole + timedelta(minutes=2, seconds=30), user="ivy"),
    ]
    log(stream, next_day, logged_at=whole + timedelta(minutes=30))
    return Scene(day=day, early=early, noon=noon, whole=whole, sent=(*on_time, *late, *next_day))


def _retention_takes_the_day(stream: Stream, scene: Scene) -> None:
    outcome = retention_run()
    assert not outcome.failed
    assert f"streams_log_p{scene.day:%Y%m%d}" in outcome.partitions_dropped
    # Left in the log: the two late events of the day and the next day's three.
    assert LogEntry.objects.filter(stream=stream).count() == 5


def _person(record: LogRecord) -> str | None:
    return record.user_id or record.anonymous_id


def _expected(records: tuple[LogRecord, ...]) -> dict[str, Any]:
    """Counts by type per minute, hour and day, Firefox page views, and unique users, from the events sent."""
    minutes: Counter[tuple[datetime, str]] = Counter()
    hours: Counter[tuple[datetime, str]] = Counter()
    days: Counter[tuple[datetime, str]] = Counter()
    users: defaultdict[tuple[str, datetime, str, str], set[str]] = defaultdict(set)
    firefox: Counter[tuple[str, datetime]] = Counter()
    for r in records:
        hour = r.event_time.replace(minute=0, second=0, microsecond=0)
        day = hour.replace(hour=0)
        minutes[(r.event_time.replace(second=0, microsecond=0), r.type)] += 1
        hours[(hour, r.type)] += 1
        days[(day, r.type)] += 1
        if (r.enrichment or {}).get("browser") == "Firefox":
            firefox[("h", hour)] += 1
            firefox[("d", day)] += 1
        user = "u:" + r.user_id if r.user_id else "a:" + str(r.anonymous_id)
        for grain, start in (("h", hour), ("d", day)):
            users[(grain, start, "", "")].add(user)
            users[(grain, start, "type", r.type)].add(user)
    return {
        "minutes": dict(minutes),
        "hours": dict(hours),
        "days": dict(days),
        "firefox": dict(firefox),
        "users": {key: len(members) for key, members in users.items()},
    }


def _firefox(stored: dict[str, Any]) -> dict[tuple[str, datetime], int]:
    found: Counter[tuple[str, datetime]] = Counter()
    for grain, name in (("h", "hour_dims"), ("d", "day_dims")):
        for (dimension, start, value, _type), n in stored[name].items():
            if dimension == "browser" and value == "Firefox":
                found[(grain, start)] += n
    return dict(found)


def _activity(stream: Stream) -> dict[tuple[date, str], tuple[datetime, datetime]]:
    rows = PersonDay.objects.filter(stream=stream).values_list("day", "person", "first_at", "last_at")
    return {(d, p): (f.astimezone(UTC), last.astimezone(UTC)) for d, p, f, last in rows}


def _expected_activity(records: tuple[LogRecord, ...]) -> dict[tuple[date, str], tuple[datetime, datetime]]:
    out: dict[tuple[date, str], tuple[datetime, datetime]] = {}
    for r in records:
        person = _person(r)
        assert person is not None
        key = (r.event_time.date(), person)
        first, last = out.get(key, (r.event_time, r.event_time))
        out[key] = (min(first, r.event_time), max(last, r.event_time))
    return out


def _corrupt_the_whole_hour(stream: Stream, scene: Scene) -> None:
    """The whole hour's rollups as a bug might leave them: a type undercounted, a minute and its sketches gone."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE analytics_hour_count SET count = 1 WHERE stream_id = %s AND hour = %s AND type = 'page_view'",
            [stream.pk, scene.whole],
        )
        cursor.execute(
            "DELETE FROM analytics_minute_count WHERE stream_id = %s AND minute = %s",
            [stream.pk, scene.whole + timedelta(minutes=2)],
        )
        cursor.execute(
            "DELETE FROM analytics_user_sketch WHERE stream_id = %s AND grain = 'h' AND start = %s",
            [stream.pk, scene.whole],
        )


def test_a_rebuild_keeps_the_rollups_of_hours_and_days_the_log_holds_only_part_of(stream: Stream) -> None:
    scene = _scene(stream)
    expected = _expected(scene.sent)
    # Before anything, the rollups are what was sent.
    stored = _stored(stream)
    for name in ("minutes", "hours", "days", "users"):
        assert {k: v for k, v in stored[name].items() if name != "users" or k[2] in ("", "type")} == expected[name]
    _retention_takes_the_day(stream, scene)
    before = _stored(stream)
    activity_before = _activity(stream)
    assert activity_before == _expected_activity(scene.sent)
    _corrupt_the_whole_hour(stream, scene)

    outcome = rollups_rebuild(stream_id=stream.pk)

    after = _stored(stream)
    assert after["hours"].get((scene.early, "page_view")) == 2
    assert after["hours"].get((scene.noon, "page_view")) == 4
    assert after["days"].get((scene.day, "page_view")) == 6
    # Recounted, the noon hour would hold jane and erin alone, and the day too.
    assert after["users"].get(("h", scene.noon, "", "")) == 5
    assert after["users"].get(("d", scene.day, "", "")) == 7
    assert after["users"][("h", scene.whole, "", "")] == 2  # rebuilt: hank and ivy
    assert after["hours"][(scene.whole, "page_view")] == 2  # rebuilt: it was corrupted to 1
    # Everything is as retention left it: the partly kept hours and day unchanged, and the
    # corrupted hour recounted from the log (which holds all of it).
    assert after == before
    for name in ("minutes", "hours", "days"):
        assert after[name] == expected[name], name
    for key, n in expected["users"].items():
        assert after["users"][key] == n, key
    assert _firefox(after) == expected["firefox"]
    # The people active that day, kept with the day.
    assert _activity(stream) == _expected_activity(scene.sent)
    assert outcome.events == 3  # the next day's: the two late events are in the noon hour, kept
    # 03:00 (no event left in the log), noon (two of six left) and their day; 09:00 the next day is whole.
    assert outcome.kept_hours == [scene.early, scene.noon]
    assert outcome.kept_days == [scene.day]


def test_the_command_says_how_many_buckets_it_kept_and_why(stream: Stream) -> None:
    scene = _scene(stream)
    _retention_takes_the_day(stream, scene)
    before = _stored(stream)
    out = StringIO()

    call_command("rollups_rebuild", stream=stream.slug, stdout=out)

    assert "Kept the rollups of 2 hours and 1 day as they were" in out.getvalue()
    assert "the log no longer holds all of their events" in out.getvalue()
    assert _stored(stream) == before


def test_buckets_without_rollups_are_built_from_the_log(stream: Stream) -> None:
    scene = _scene(stream)
    _retention_takes_the_day(stream, scene)
    # As after an upgrade that adds the rollups: none yet, only the log.
    with connection.cursor() as cursor:
        for table in ("minute_count", "hour_count", "day_count", "hour_dimension", "day_dimension", "user_sketch"):
            cursor.execute(f"DELETE FROM analytics_{table} WHERE stream_id = %s", [stream.pk])

    outcome = rollups_rebuild(stream_id=stream.pk)

    left = tuple(r for r in scene.sent if r.event_time >= scene.noon + timedelta(minutes=50))
    assert len(left) == 5
    stored, expected = _stored(stream), _expected(left)
    for name in ("minutes", "hours", "days"):
        assert stored[name] == expected[name], name
    assert {k: v for k, v in stored["users"].items() if k[2] in ("", "type")} == expected["users"]
    assert outcome.events == 5 and outcome.kept_hours == [] and outcome.kept_days == []
