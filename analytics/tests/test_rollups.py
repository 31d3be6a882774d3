"""Rollups equal the log: events go through the real intake and processor, and every rollup
row is compared with counts computed in the test from the log's rows."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from analytics.management.commands.rollups_rebuild import rollups_rebuild
from analytics.rollups import DIMENSIONS, dimension_sql, dimension_values, sketch_load
from streams.log import LogRecord, log_append_now
from streams.models import LogEntry, Stream

from .analytics_events import World, world_build

pytestmark = pytest.mark.django_db(transaction=True)


def _rows(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC)


def _hour(at: datetime) -> datetime:
    return _utc(at).replace(minute=0, second=0, microsecond=0)


def _expected_from_log(stream: Stream) -> dict[str, Any]:
    """Every rollup, recounted by the test from the log's rows."""
    minutes: Counter[tuple[datetime, str]] = Counter()
    hours: Counter[tuple[datetime, str]] = Counter()
    days: Counter[tuple[datetime, str]] = Counter()
    hour_dims: Counter[tuple[str, datetime, str, str]] = Counter()
    day_dims: Counter[tuple[str, datetime, str, str]] = Counter()
    users: defaultdict[tuple[str, datetime, str, str], set[str]] = defaultdict(set)
    for entry in LogEntry.objects.filter(stream=stream):
        hour = _hour(entry.event_time)
        day = hour.replace(hour=0)
        minutes[(_utc(entry.event_time).replace(second=0, microsecond=0), entry.type)] += 1
        hours[(hour, entry.type)] += 1
        days[(day, entry.type)] += 1
        values = dimension_values(
            enrichment=entry.enrichment, payload=entry.payload, context=entry.context, api_key_id=entry.api_key_id
        )
        user = f"u:{entry.user_id}" if entry.user_id else (f"a:{entry.anonymous_id}" if entry.anonymous_id else None)
        for dimension, value in zip(DIMENSIONS, values, strict=True):
            hour_dims[(dimension, hour, value, entry.type)] += 1
            day_dims[(dimension, day, value, entry.type)] += 1
        if user:
            for grain, start in (("h", hour), ("d", day)):
                users[(grain, start, "", "")].add(user)
                users[(grain, start, "type", entry.type)].add(user)
                for dimension, value in zip(DIMENSIONS, values, strict=True):
                    users[(grain, start, dimension, value)].add(user)
    return {
        "minutes": dict(minutes),
        "hours": dict(hours),
        "days": dict(days),
        "hour_dims": dict(hour_dims),
        "day_dims": dict(day_dims),
        "users": {k: len(v) for k, v in users.items()},
    }


def _stored(stream: Stream) -> dict[str, Any]:
    s = [stream.pk]
    return {
        "minutes": {
            (_utc(m), t): n
            for m, t, n in _rows("SELECT minute, type, count FROM analytics_minute_count WHERE stream_id = %s", s)
        },
        "hours": {
            (_utc(h), t): n
            for h, t, n in _rows("SELECT hour, type, count FROM analytics_hour_count WHERE stream_id = %s", s)
        },
        "days": {
            (_utc(d), t): n
            for d, t, n in _rows("SELECT day, type, count FROM analytics_day_count WHERE stream_id = %s", s)
        },
        "hour_dims": {
            (d, _utc(h), v, t): n
            for d, h, v, t, n in _rows(
                "SELECT dimension, hour, value, type, count FROM analytics_hour_dimension WHERE stream_id = %s", s
            )
        },
        "day_dims": {
            (d, _utc(h), v, t): n
            for d, h, v, t, n in _rows(
                "SELECT dimension, day, value, type, count FROM analytics_day_dimension WHERE stream_id = %s", s
            )
        },
        "users": {
            (g, _utc(t), d, v): u
            for g, t, d, v, u in _rows(
                "SELECT grain, start, dimension, value, users FROM analytics_user_sketch WHERE stream_id = %s", s
            )
        },
    }


def test_every_rollup_equals_what_the_log_holds(client: Client, stream: Stream) -> None:
    world: World = world_build(client, stream)
    logged = LogEntry.objects.filter(stream=stream).count()
    # Duplicates were refused: one log entry per distinct event sent.
    assert logged == len(world.sent)
    assert set(LogEntry.objects.filter(stream=stream).values_list("api_key_id", flat=True)) == set(world.key_ids)
    expected = _expected_from_log(stream)
    stored = _stored(stream)
    for name in ("minutes", "hours", "days", "hour_dims", "day_dims"):
        assert stored[name] == expected[name], name
        assert sum(stored[name].values()) == logged * (len(DIMENSIONS) if "dims" in name else 1)
    # A few dozen users per sketch: HyperLogLog keeps them exactly at this size.
    assert stored["users"] == expected["users"]


def test_the_sketches_hold_the_users_and_merge(client: Client, stream: Stream) -> None:
    world_build(client, stream)
    ((data,),) = _rows(
        "SELECT sketch FROM analytics_user_sketch WHERE stream_id = %s AND grain = 'd' AND dimension = '' "
        "ORDER BY users DESC LIMIT 1",
        [stream.pk],
    )
    sketch = sketch_load(data)
    assert sketch.get_estimate() > 10


def test_a_rebuild_from_the_log_writes_the_same_rollups(client: Client, stream: Stream) -> None:
    world_build(client, stream)
    before = _stored(stream)
    for table in ("minute_count", "hour_count", "day_count", "hour_dimension", "day_dimension", "user_sketch"):
        _rows(f"DELETE FROM analytics_{table} WHERE stream_id = %s RETURNING 1", [stream.pk])
    rebuilt = rollups_rebuild(stream_id=stream.pk)
    assert rebuilt.events == LogEntry.objects.filter(stream=stream).count()
    assert rebuilt.kept_hours == [] and rebuilt.kept_days == []
    assert _stored(stream) == before
    # Run again over part of the range: nothing counts twice.
    rollups_rebuild(
        stream_id=stream.pk,
        time_from=datetime(2026, 10, 25, 5, tzinfo=UTC),
        time_to=datetime(2026, 10, 25, 6, tzinfo=UTC),
    )
    assert _stored(stream) == before


def test_the_sql_of_each_dimension_agrees_with_the_python(stream: Stream) -> None:
    at = datetime(2026, 11, 1, 10, tzinfo=UTC)
    odd: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any], int | None]] = [
        ({"page": "/a?b=c#d"}, {}, {"browser": "Firefox", "utm": {"utm_source": "x"}}, 7),
        ({"page": 5}, {"page": {"path": "/from-context"}, "country": 3}, {"browser": None}, None),
        ({}, {"location": {"country": "NL"}, "page": "flat"}, {"utm": "not a dict"}, None),
        ({"page": "/" + "p" * 300}, {"country": "SE", "location": {"country": "NO"}}, {"os": "x" * 250}, 12),
        ({"page": None}, {"page": {"path": ["list"]}}, {}, None),
    ]
    records = [
        LogRecord(
            event_id=f"odd-{i}",
            type="page_view",
            event_time=at,
            received_at=at,
            payload=p,
            context=c,
            enrichment=e,
            api_key_id=k,
        )
        for i, (p, c, e, k) in enumerate(odd)
    ]
    log_append_now(stream_id=stream.pk, records=records)
    columns = ", ".join(dimension_sql(d) for d in DIMENSIONS)
    rows = _rows(f'SELECT {columns} FROM streams_log l WHERE l.stream_id = %s ORDER BY l."offset"', [stream.pk])
    assert [tuple(r) for r in rows] == [
        dimension_values(payload=p, context=c, enrichment=e, api_key_id=k) for p, c, e, k in odd
    ]


def test_only_the_appended_events_count_when_a_batch_is_replayed(stream: Stream) -> None:
    from analytics.services import rollups_apply

    at = datetime(2026, 11, 1, 10, 30, tzinfo=UTC)
    records = [
        LogRecord(event_id=f"r-{i}", type="login", event_time=at, received_at=at, user_id="u1") for i in range(3)
    ]
    first = log_append_now(stream_id=stream.pk, records=records)
    assert len(first.appended) == 3
    # The processor counts what log_append appended; a replay of the same events appends none.
    again = log_append_now(stream_id=stream.pk, records=records)
    assert again.appended == []
    rollups_apply(stream_id=stream.pk, records=[r for _, r in again.appended])
    assert _rows("SELECT count FROM analytics_hour_count WHERE stream_id = %s", [stream.pk]) == []
    hour = at.replace(minute=0) - timedelta(0)
    rollups_apply(stream_id=stream.pk, records=[r for _, r in first.appended])
    assert _rows("SELECT hour, count FROM analytics_hour_count WHERE stream_id = %s", [stream.pk]) == [(hour, 3)]
