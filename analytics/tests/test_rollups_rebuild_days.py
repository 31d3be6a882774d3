"""``rollups_rebuild`` of a day the log holds only part of, one of whose hours it holds all of.

The day is kept as it was (a recount would lose the events retention took), but an hour of it
that came in late sits wholly in a later partition and is recounted from the log. Where the
recount changes that hour, the kept day must change by as much, or the day and the sum of its
hours disagree. Also: a bucket that counted too many where retention has taken nothing is
recounted, and a kept hour takes the logged events it certainly never counted. Every
expectation is computed from the events the test logged, never read back from the rollups.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction

from analytics.management.commands.rollups_rebuild import rollups_rebuild
from streams.log import LogRecord, log_append
from streams.models import LogEntry, Stream
from streams.retention import log_partitions_ensure, retention_run

from . import test_rollups_rebuild_partial as partial
from .journey_fixtures import event, log
from .test_rollups import _stored
from .test_rollups_rebuild_partial import (
    FIREFOX,
    Scene,
    _activity,
    _expected,
    _expected_activity,
    _firefox,
    _scene,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _late_hour(
    stream: Stream, scene: Scene, *, lose: bool = True
) -> tuple[datetime, tuple[LogRecord, ...], tuple[LogRecord, ...]]:
    """20:00 of the kept day, all of it logged after midnight (the next day's partition, which stays).

    Returns the hour, the events counted into the rollups as they were logged, and those of a
    second batch, whose rollups are lost where ``lose`` (as a processor bug might lose them): the
    log holds them, the hour and day rollups and the activity do not.
    """
    hour = scene.day + timedelta(hours=20)
    after_midnight = scene.day + timedelta(days=1, minutes=20)
    counted = (
        event("page_view", hour + timedelta(minutes=3), user="kim", enrichment=FIREFOX),
        event("page_view", hour + timedelta(minutes=4), user="liam"),
        event("login", hour + timedelta(minutes=6), user="liam"),
    )
    log(stream, list(counted), logged_at=after_midnight)
    lost = (
        event("page_view", hour + timedelta(minutes=40), user="mona", enrichment=FIREFOX),
        event("signup", hour + timedelta(minutes=41), user="mona"),
        event("page_view", hour + timedelta(minutes=45), user="kim", enrichment=FIREFOX),
    )
    if lose:
        with transaction.atomic():
            log_append(stream_id=stream.pk, records=list(lost), logged_at=after_midnight)
    else:
        log(stream, list(lost), logged_at=after_midnight)
    return hour, counted, lost


def _retention_takes_the_day(stream: Stream, scene: Scene, late: int) -> None:
    outcome = retention_run()
    assert not outcome.failed
    assert f"streams_log_p{scene.day:%Y%m%d}" in outcome.partitions_dropped
    # Left: the noon hour's two late events, the next day's three, and the ``late`` ones logged since.
    assert LogEntry.objects.filter(stream=stream).count() == 5 + late


def _day_equals_its_hours(stored: dict[str, Any], day: datetime) -> None:
    hours: Counter[str] = Counter()
    for (start, type_), n in stored["hours"].items():
        if day <= start < day + timedelta(days=1):
            hours[type_] += n
    days = {t: n for (start, t), n in stored["days"].items() if start == day}
    assert days == dict(hours)
    hour_dims: Counter[tuple[str, str, str]] = Counter()
    for (dimension, start, value, type_), n in stored["hour_dims"].items():
        if day <= start < day + timedelta(days=1):
            hour_dims[(dimension, value, type_)] += n
    day_dims = {(d, v, t): n for (d, start, v, t), n in stored["day_dims"].items() if start == day}
    assert day_dims == dict(hour_dims)


def test_a_kept_day_takes_what_the_recount_of_its_whole_hour_adds(stream: Stream) -> None:
    scene = _scene(stream)
    hour, counted, lost = _late_hour(stream, scene)
    _retention_takes_the_day(stream, scene, late=len(counted) + len(lost))
    sent = (*scene.sent, *counted, *lost)
    expected = _expected(sent)
    # Before: the hour and the day miss the lost batch, and the activity its people's times.
    before = _stored(stream)
    assert before["hours"][(hour, "page_view")] == 2
    assert before["days"][(scene.day, "page_view")] == 8

    outcome = rollups_rebuild(stream_id=stream.pk)

    # 03:00 and noon are kept (the log lost their events), 20:00 is recounted, and the day is kept:
    # its other hours' events are gone from the log.
    assert outcome.kept_hours == [scene.early, scene.noon]
    assert outcome.kept_days == [scene.day]
    after = _stored(stream)
    for name in ("minutes", "hours", "days"):
        assert after[name] == expected[name], name
    assert after["days"][(scene.day, "page_view")] == 10
    assert after["days"][(scene.day, "signup")] == 1
    assert _firefox(after) == expected["firefox"]
    _day_equals_its_hours(after, scene.day)
    # The users: the day's seven of the morning and noon, and kim, liam and mona.
    for key, n in expected["users"].items():
        assert after["users"][key] == n, key
    assert after["users"][("d", scene.day, "", "")] == 10
    assert after["users"][("d", scene.day, "type", "signup")] == 1
    assert _activity(stream) == _expected_activity(sent)


def test_a_kept_day_loses_what_the_recount_of_its_whole_hour_takes_away(stream: Stream) -> None:
    scene = _scene(stream)
    hour, counted, lost = _late_hour(stream, scene, lose=False)
    # A Firefox page view of the hour counted as a Safari login, as a bug might: in the hour and its
    # day alike (the processor writes them together). The hour's total is right, so it is recounted.
    with connection.cursor() as cursor:
        for table, column, start in (("hour", "hour", hour), ("day", "day", scene.day)):
            for type_, n in (("page_view", -1), ("login", 1)):
                cursor.execute(
                    f"UPDATE analytics_{table}_count SET count = count + %s "
                    f"WHERE stream_id = %s AND {column} = %s AND type = %s",
                    [n, stream.pk, start, type_],
                )
            cursor.execute(
                f"UPDATE analytics_{table}_dimension SET count = count - 1 WHERE stream_id = %s AND {column} = %s "
                "AND dimension = 'browser' AND value = 'Firefox' AND type = 'page_view'",
                [stream.pk, start],
            )
            cursor.execute(
                f"INSERT INTO analytics_{table}_dimension (stream_id, dimension, {column}, value, type, count) "
                "VALUES (%s, 'browser', %s, 'Safari', 'login', 1)",
                [stream.pk, start],
            )
    _retention_takes_the_day(stream, scene, late=len(counted) + len(lost))
    sent = (*scene.sent, *counted, *lost)
    expected = _expected(sent)
    before = _stored(stream)
    assert before["days"][(scene.day, "login")] == 4  # carol's, jane's, liam's, and the Safari one

    outcome = rollups_rebuild(stream_id=stream.pk)

    assert outcome.kept_hours == [scene.early, scene.noon]
    assert outcome.kept_days == [scene.day]
    after = _stored(stream)
    for name in ("minutes", "hours", "days"):
        assert after[name] == expected[name], name
    assert after["days"][(scene.day, "login")] == 3
    # The Safari login was the hour's alone: its rows go from the hour and the day, none left at zero.
    assert [k for k in (*after["hour_dims"], *after["day_dims"]) if k[2] == "Safari"] == []
    assert _firefox(after) == expected["firefox"]
    _day_equals_its_hours(after, scene.day)


def _count_more(stream: Stream, hour: datetime, n: int) -> None:
    """``n`` page views too many in the hour and its day alike, as a batch counted twice would leave them."""
    with connection.cursor() as cursor:
        for table, column, start in (("hour", "hour", hour), ("day", "day", hour.replace(hour=0))):
            cursor.execute(
                f"UPDATE analytics_{table}_count SET count = count + %s "
                f"WHERE stream_id = %s AND {column} = %s AND type = 'page_view'",
                [n, stream.pk, start],
            )


def test_a_bucket_that_counted_too_many_is_recounted_where_retention_has_taken_nothing(stream: Stream) -> None:
    scene = _scene(stream)
    # Yesterday: the log holds every event of it (the oldest it holds were logged the day after
    # the dropped one, and an event is logged no earlier than a day and an hour before its time).
    yesterday = scene.day + timedelta(days=3, hours=10)
    log_partitions_ensure(now=yesterday, days_ahead=1)
    recent = (
        event("page_view", yesterday + timedelta(minutes=1), user="nina", enrichment=FIREFOX),
        event("login", yesterday + timedelta(minutes=2), user="nina"),
    )
    log(stream, list(recent), logged_at=yesterday + timedelta(minutes=30))
    _retention_takes_the_day(stream, scene, late=len(recent))
    sent = (*scene.sent, *recent)
    expected = _expected(sent)
    _count_more(stream, yesterday, 5)
    # The same too many in the next day's 09:00 hour: its day's events were logged on the day after
    # the dropped one, the oldest day the log still holds some of, which retention may have begun.
    _count_more(stream, scene.whole, 5)

    outcome = rollups_rebuild(stream_id=stream.pk)

    after = _stored(stream)
    assert after["hours"][(yesterday, "page_view")] == 1
    assert after["days"][(yesterday.replace(hour=0), "page_view")] == 1
    # Telling that 09:00 counted too many from an hour retention took events of needs a record of
    # what retention took: it is kept as it was.
    assert after["hours"][(scene.whole, "page_view")] == 2 + 5
    assert outcome.kept_hours == [scene.early, scene.noon, scene.whole]
    assert outcome.kept_days == [scene.day, scene.day + timedelta(days=1)]
    recounted = {k: n for k, n in expected["hours"].items() if k[0] not in (scene.early, scene.noon, scene.whole)}
    assert {k: n for k, n in after["hours"].items() if k in recounted or k[0] >= yesterday} == recounted
    assert {k: n for k, n in after["days"].items() if k[0] > scene.day + timedelta(days=1)} == {
        k: n for k, n in expected["days"].items() if k[0] > scene.day + timedelta(days=1)
    }
    _day_equals_its_hours(after, yesterday.replace(hour=0))


def _scene_late_lost(stream: Stream, monkeypatch: pytest.MonkeyPatch) -> Scene:
    """``_scene``, but the noon hour's two late events (the batch logged just after midnight) have
    their rollups lost: the log holds them, no rollup of the hour, the day or the activity does."""

    def logging(stream: Stream, records: list[LogRecord], *, logged_at: datetime) -> list[LogRecord]:
        if logged_at.hour != 0:
            return log(stream, records, logged_at=logged_at)
        with transaction.atomic():
            log_append(stream_id=stream.pk, records=records, logged_at=logged_at)
        return records

    monkeypatch.setattr(partial, "log", logging)
    return _scene(stream)


def test_a_kept_hour_takes_the_logged_events_its_minutes_never_counted(
    stream: Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = _scene_late_lost(stream, monkeypatch)
    expected = _expected(scene.sent)
    _retention_takes_the_day(stream, scene, late=0)
    before = _stored(stream)
    assert before["hours"][(scene.noon, "login")] == 1  # carol's; jane's late one lost

    outcome = rollups_rebuild(stream_id=stream.pk)

    # Still kept (the log holds two of the noon hour's six events), but with the two it never counted.
    assert outcome.kept_hours == [scene.early, scene.noon]
    assert outcome.kept_days == [scene.day]
    after = _stored(stream)
    for name in ("minutes", "hours", "days"):
        assert after[name] == expected[name], name
    assert _firefox(after) == expected["firefox"]
    for key, n in expected["users"].items():
        assert after["users"][key] == n, key
    _day_equals_its_hours(after, scene.day)
    assert _activity(stream) == _expected_activity(scene.sent)
