"""Retention: the log's partitions dropped or thinned per stream, keys with them, and the other tables' rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from analytics.models import MinuteCount
from streams.log import LogRecord, log_append, log_append_now, log_head
from streams.models import DeadLetter, LogEntry, LogKey
from streams.retention import log_partitions, log_partitions_ensure, retention_run
from streams.services import stream_create

# DETACH PARTITION CONCURRENTLY cannot run inside the test's transaction.
pytestmark = pytest.mark.django_db(transaction=True)


def _records(prefix: str, n: int, at) -> list[LogRecord]:  # type: ignore[no-untyped-def]
    return [LogRecord(event_id=f"{prefix}{i}", type="page_view", event_time=at, received_at=at) for i in range(n)]


def _append(stream_id: int, records: list[LogRecord], at) -> None:  # type: ignore[no-untyped-def]
    with transaction.atomic():
        log_append(stream_id=stream_id, records=records, logged_at=at)


def _names() -> set[str]:
    return {p.name for p in log_partitions()}


def test_partitions_are_created_ahead_and_only_once():
    now = timezone.now()
    created = log_partitions_ensure(now=now, days_ahead=12)
    # The migration made the days up to a week ahead; the rest are new.
    assert created == [f"streams_log_p{now + timedelta(days=d):%Y%m%d}" for d in range(8, 13)]
    assert log_partitions_ensure(now=now, days_ahead=12) == []
    day = f"streams_log_p{now + timedelta(days=12):%Y%m%d}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s ORDER BY 1", [day])
        indexes = [row[0] for row in cursor.fetchall()]
    # The parent's reader indexes and the partition's own primary key.
    assert len(indexes) == 5 and f"{day}_pkey" in indexes


def test_expired_partitions_are_dropped_and_shared_ones_thinned_per_stream():
    now = timezone.now()
    old = now - timedelta(days=40)
    log_partitions_ensure(now=old, days_ahead=2)  # the days around 40 days ago
    short = stream_create(slug="short", name="Short", retention_days=30)
    long = stream_create(slug="long", name="Long", retention_days=60)
    solo = stream_create(slug="solo", name="Solo", retention_days=30)
    _append(short.pk, _records("s", 7, old), old)
    _append(long.pk, _records("l", 5, old), old)
    _append(solo.pk, _records("o", 3, old + timedelta(days=1)), old + timedelta(days=1))
    log_append_now(stream_id=short.pk, records=_records("s-new", 2, now))
    log_append_now(stream_id=solo.pk, records=_records("o-new", 1, now))
    shared = f"streams_log_p{old:%Y%m%d}"
    solo_day = f"streams_log_p{old + timedelta(days=1):%Y%m%d}"
    empty_day = f"streams_log_p{old - timedelta(days=1):%Y%m%d}"
    assert {shared, solo_day, empty_day} <= _names()

    outcome = retention_run(now=now)

    assert outcome.finished
    # The day only solo used, and the empty one, are gone whole; the day long still keeps stays.
    assert {solo_day, empty_day} <= set(outcome.partitions_dropped)
    assert shared in _names() and solo_day not in _names()
    assert outcome.events_deleted == 7
    assert sorted(LogEntry.objects.filter(stream=short).values_list("offset", flat=True)) == [7, 8]
    assert LogEntry.objects.filter(stream=long).count() == 5
    assert sorted(LogEntry.objects.filter(stream=solo).values_list("offset", flat=True)) == [3]
    # Keys went with their events and only with them.
    assert not LogKey.objects.filter(stream=short, event_id__startswith="s0").exists()
    assert LogKey.objects.filter(stream=short).count() == 2
    assert LogKey.objects.filter(stream=long).count() == 5
    assert LogKey.objects.filter(stream=solo).count() == 1
    # Offsets go on from the head; an expired event sent again is new, a kept one a duplicate.
    assert log_head(short.pk) == 9
    again = log_append_now(stream_id=short.pk, records=_records("s", 1, now) + _records("s-new", 1, now))
    assert [o for o, _ in again.appended] == [9]
    assert [r.event_id for r in again.already_logged] == ["s-new0"]
    kept = log_append_now(stream_id=long.pk, records=_records("l", 1, now))
    assert kept.appended == [] and [r.event_id for r in kept.already_logged] == ["l0"]
    # A second run finds nothing more to do.
    second = retention_run(now=now)
    assert second.partitions_dropped == [] and second.events_deleted == 0


def test_dead_letters_and_rollups_older_than_their_settings_go(stream):
    now = timezone.now()
    for event_id, age in (("old", 31), ("new", 1)):
        letter = DeadLetter.objects.create(
            stream=stream,
            event_id=event_id,
            event={},
            stage="validate",
            error_class="E",
            first_failed_at=now,
            last_failed_at=now,
        )
        DeadLetter.objects.filter(pk=letter.pk).update(created_at=now - timedelta(days=age))
    for age in (91, 89):
        MinuteCount.objects.create(stream=stream, type="t", minute=now - timedelta(days=age), count=1)

    outcome = retention_run(now=now)

    assert list(DeadLetter.objects.values_list("event_id", flat=True)) == ["new"]
    assert outcome.rows_deleted["ingestion_deadletter"] == 1
    assert MinuteCount.objects.count() == 1 and outcome.rows_deleted["analytics_minute_count"] == 1
