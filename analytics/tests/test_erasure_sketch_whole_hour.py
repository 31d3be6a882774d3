"""Erasure and the unique-user sketches: rebuilt only where the log still holds the whole hour or day.

An erasure cannot take one person out of a HyperLogLog sketch; it can only rebuild the sketch
from the log. A late event is logged in a later day's partition than the rest of its hour, so
the log's retention can take an hour's other events and leave the late one: a sketch rebuilt
then would lose everyone else. The log loses its rows here the way retention takes them
(``retention_run`` dropping a day's partition), and every expectation is the set of people the
test logged, never read back from the rollups.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.utils import timezone

from analytics.models import SketchSpan
from streams.erasure import erasure_request, erasure_run
from streams.models import LogEntry, Stream
from streams.retention import log_partitions_ensure, retention_run
from tests.fixtures import conf_override

from .journey_fixtures import BASE, event, log, person_of

# Dropping a partition (DETACH … CONCURRENTLY) cannot run inside the test's transaction.
pytestmark = pytest.mark.django_db(transaction=True)

JANE = "jane"
BERLIN = ZoneInfo("Europe/Berlin")
SERIES = f"{BASE}/analytics/timeseries"
# The stream's log keeps events 3 days: the partition of the day four days ago goes, the next day's stays.
RETENTION_DAYS = 3


@dataclass(frozen=True)
class Scene:
    day: datetime  # a UTC day four days ago
    hour: datetime  # its noon, where jane's late event sits
    hour_users: frozenset[str]  # every person logged in that hour
    day_users: frozenset[str]  # every person logged that day


def _scene(stream: Stream) -> Scene:
    """People of one past day; jane's and erin's noon events came in late, after midnight."""
    Stream.objects.filter(pk=stream.pk).update(retention_days=RETENTION_DAYS)
    today = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day = today - timedelta(days=RETENTION_DAYS + 1)
    hour = day + timedelta(hours=12)
    log_partitions_ensure(now=day + timedelta(days=1), days_ahead=1)  # the day and the next
    on_time = [
        event("page_view", day + timedelta(hours=3, minutes=5), user="frank"),
        event("page_view", day + timedelta(hours=3, minutes=9), user="gina"),
        event("page_view", hour + timedelta(minutes=5), user=JANE),
        event("page_view", hour + timedelta(minutes=10), user="bob"),
        event("login", hour + timedelta(minutes=20), user="carol"),
        event("page_view", hour + timedelta(minutes=25), anon="dave-cookie"),
    ]
    log(stream, on_time, logged_at=hour + timedelta(minutes=30))
    late = [
        event("login", hour + timedelta(minutes=50), user=JANE),
        event("page_view", hour + timedelta(minutes=55), user="erin"),
    ]
    log(stream, late, logged_at=day + timedelta(days=1, minutes=10))
    people = frozenset({JANE, "bob", "carol", "dave-cookie", "erin"})
    return Scene(day=day, hour=hour, hour_users=people, day_users=people | {"frank", "gina"})


def _retention_takes_the_day(stream: Stream, scene: Scene) -> None:
    outcome = retention_run()
    assert not outcome.failed
    assert f"streams_log_p{scene.day:%Y%m%d}" in outcome.partitions_dropped
    # Only the two late events of the day are left in the log.
    assert LogEntry.objects.filter(stream=stream, event_time__gte=scene.day).count() == 2


def _sketches(stream: Stream, *, grain: str, start: datetime) -> dict[tuple[str, str], tuple[int, bytes]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT dimension, value, users, sketch FROM analytics_user_sketch "
            "WHERE stream_id = %s AND grain = %s AND start = %s",
            [stream.pk, grain, start],
        )
        return {(d, v): (int(u), bytes(s)) for d, v, u, s in cursor.fetchall()}


def _estimates(stream: Stream, *, grain: str, start: datetime) -> dict[tuple[str, str], int]:
    return {key: users for key, (users, _) in _sketches(stream, grain=grain, start=start).items()}


def _users(stream: Stream, *, grain: str, start: datetime) -> int:
    return _sketches(stream, grain=grain, start=start).get(("", ""), (0, b""))[0]


def _erase(stream: Stream) -> None:
    erasure = erasure_request(caller=None, stream_id=stream.pk, by="user_id", subject=JANE)
    done = erasure_run(erasure_id=erasure.pk)
    assert done is not None and done.status == "done"


def _berlin_day(analyst: Any, scene: Scene) -> int:
    """Unique users of the Berlin day that holds the scene's UTC day's events (a merged, kept window)."""
    start = datetime.combine(scene.day.date(), datetime.min.time(), tzinfo=BERLIN)
    window = {"from": start.isoformat(), "to": (start + timedelta(days=1)).isoformat(), "tz": "Europe/Berlin"}
    answer = analyst.get(SERIES, **window, interval="day").json()
    [bucket] = answer["buckets"]
    return int(bucket["unique_users"])


def _berlin_span(stream: Stream, scene: Scene) -> tuple[datetime, datetime, int, bytes] | None:
    """The kept window over the scene's hour, as stored."""
    span = SketchSpan.objects.filter(stream=stream, dimension="", value="", lo__lte=scene.hour, hi__gt=scene.hour)
    found = span.values_list("lo", "hi", "users", "sketch").first()
    return None if found is None else (found[0], found[1], found[2], bytes(found[3]))


def test_an_hour_the_log_holds_only_part_of_keeps_its_sketches(stream: Stream, settings: Any) -> None:
    conf_override(settings, analytics_cache_seconds=0)
    scene = _scene(stream)
    _retention_takes_the_day(stream, scene)
    analyst = person_of(stream)
    assert _berlin_day(analyst, scene) == len(scene.day_users)
    span = _berlin_span(stream, scene)
    assert span is not None and span[2] == len(scene.day_users)
    hour_before = _sketches(stream, grain="h", start=scene.hour)
    day_before = _sketches(stream, grain="d", start=scene.day)

    _erase(stream)

    # Rebuilt from the log, the hour would hold erin alone. Left as it was, it keeps everyone
    # else, and jane too: a HyperLogLog cannot take one person out (README, Erasure).
    remaining_hour, remaining_day = scene.hour_users - {JANE}, scene.day_users - {JANE}
    assert _users(stream, grain="h", start=scene.hour) >= len(remaining_hour)
    assert _users(stream, grain="d", start=scene.day) >= len(remaining_day)
    assert _sketches(stream, grain="h", start=scene.hour) == hour_before
    # The day is merged anew from its hours (none of which changed): the same users, maybe in another order.
    assert _estimates(stream, grain="d", start=scene.day) == {key: users for key, (users, _) in day_before.items()}
    # The kept window over the hour still equals the union of its sketches, which did not change.
    assert _berlin_span(stream, scene) == span
    assert _berlin_day(analyst, scene) == len(scene.day_users)


def test_an_hour_the_log_holds_whole_is_rebuilt_without_the_person(stream: Stream, settings: Any) -> None:
    conf_override(settings, analytics_cache_seconds=0)
    scene = _scene(stream)  # the late events sit in the next day's partition, and nothing has expired
    analyst = person_of(stream)
    assert _berlin_day(analyst, scene) == len(scene.day_users)
    assert _berlin_span(stream, scene) is not None

    _erase(stream)

    # Few users: the sketch still lists them, so its estimate is exact.
    assert _users(stream, grain="h", start=scene.hour) == len(scene.hour_users - {JANE})
    assert _users(stream, grain="d", start=scene.day) == len(scene.day_users - {JANE})
    assert _users(stream, grain="h", start=scene.hour - timedelta(hours=9)) == 2  # frank and gina, untouched
    # The sketches by type too: login's held jane and carol.
    assert _sketches(stream, grain="h", start=scene.hour)[("type", "login")][0] == 1
    # The kept window over the rebuilt hour went, and is merged anew without her.
    assert _berlin_span(stream, scene) is None
    assert _berlin_day(analyst, scene) == len(scene.day_users - {JANE})


@pytest.mark.parametrize("log_lost", [True, False], ids=["log-lost-part", "log-whole"])
def test_a_day_past_the_hour_rollups_is_rebuilt_only_when_the_log_holds_it_whole(
    stream: Stream, settings: Any, log_lost: bool
) -> None:
    # The hour rollups are kept 2 days: the scene's day is older, so its sketches come from the log.
    conf_override(settings, rollup_hour_retention_days=2)
    scene = _scene(stream)
    if log_lost:
        _retention_takes_the_day(stream, scene)
    else:
        Stream.objects.filter(pk=stream.pk).update(retention_days=30)  # the log keeps the day
        assert not retention_run().failed
        assert LogEntry.objects.filter(stream=stream).count() == 8
    assert _sketches(stream, grain="h", start=scene.hour) == {}  # gone with the hour rollups
    day_before = _sketches(stream, grain="d", start=scene.day)

    _erase(stream)

    remaining = scene.day_users - {JANE}
    if log_lost:
        # Rebuilt from the log, the day would hold erin alone.
        assert _users(stream, grain="d", start=scene.day) >= len(remaining)
        assert _sketches(stream, grain="d", start=scene.day) == day_before
    else:
        assert _users(stream, grain="d", start=scene.day) == len(remaining)
