"""Retention after review: session state expires, rollup days agree, a failed part spares the others, and
operators see retention and the partitions ahead (/metrics, /health)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics.models import DayCount, DayDimension, HourCount, MinuteCount, PersonDay, UserSketch
from eventflow.health import heartbeat_key
from eventflow.redis import get_redis
from eventflow.tests.test_health import heartbeat  # noqa: F401 - a fixture
from eventflow.tests.test_metrics import scrape, token, value  # noqa: F401 - token is a fixture
from ingestion.pipeline import stream_process_batch
from streams import retention
from streams.models import DeadLetter, Stream
from streams.retention import RetentionFailed, log_partitions, log_partitions_ahead, log_partitions_ensure
from streams.services import stream_create
from streams.tasks import retention as retention_task
from streams.tests.test_log_migration import _migrate
from tests.fixtures import conf_override
from tests.intake import post_batch, separate_connection
from tests.subprocesses import scratch_database

# DETACH PARTITION CONCURRENTLY cannot run inside the test's transaction.
pytestmark = pytest.mark.django_db(transaction=True)

INSERT_STATE_SQL = """
INSERT INTO ingestion_session_state (stream_id, identity, session_id, started_at, last_seen, touched_at)
SELECT %(stream)s, %(prefix)s || g, 's' || g, now(), now(), %(touched)s FROM generate_series(1, %(n)s) AS g
"""


def _identities(stream_id: int) -> dict[str, datetime]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT identity, touched_at FROM ingestion_session_state WHERE stream_id = %s", [stream_id])
        return dict(cursor.fetchall())


def _age(stream_id: int, identity: str, by: timedelta) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ingestion_session_state SET touched_at = %s WHERE stream_id = %s AND identity = %s",
            [timezone.now() - by, stream_id, identity],
        )


def _process(api, stream: Stream, key: str, events: list[dict]) -> None:  # type: ignore[no-untyped-def]
    assert post_batch(api, stream.slug, events, key=key).status_code == 202
    stream_process_batch(stream_id=stream.pk)


# --- 1. session state ---------------------------------------------------------------------------


def test_session_state_expires_when_unused_for_the_stream_retention_never_by_its_event_times(
    api, stream: Stream, ingest_key: str
):
    now = timezone.now()
    year_ago = (now - timedelta(days=400)).isoformat()
    # A backfill of last year's events and a live one: both sessions are derived by processing.
    _process(
        api,
        stream,
        ingest_key,
        [
            {"type": "page_view", "user_id": "backfilled", "timestamp": year_ago},
            {"type": "page_view", "user_id": "live"},
        ],
    )
    longer = stream_create(slug="longer", name="Longer", retention_days=60)
    with connection.cursor() as cursor:
        cursor.execute(INSERT_STATE_SQL, {"stream": longer.pk, "prefix": "kept", "n": 1, "touched": now})
    _age(longer.pk, "kept1", timedelta(days=31))

    first = retention.retention_run()

    # A session whose events are a year old was used a moment ago: a backfill goes on with it.
    assert set(_identities(stream.pk)) == {"u:backfilled", "u:live"}
    assert first.rows_deleted["ingestion_session_state"] == 0

    _age(stream.pk, "u:backfilled", timedelta(days=31))
    _age(stream.pk, "u:live", timedelta(days=29))

    second = retention.retention_run()

    assert not second.failed
    assert set(_identities(stream.pk)) == {"u:live"}
    # Another stream keeps its people for its own (longer) retention.
    assert set(_identities(longer.pk)) == {"kept1"}
    assert second.rows_deleted["ingestion_session_state"] == 1


def test_using_a_session_renews_its_row_even_when_its_times_stay(api, stream: Stream, ingest_key: str):
    at = (timezone.now() - timedelta(minutes=5)).isoformat()
    _process(api, stream, ingest_key, [{"type": "page_view", "user_id": "u1", "timestamp": at}])
    ((identity, touched),) = _identities(stream.pk).items()

    # The same instant again: inside the session, neither its start nor its end moves.
    _process(api, stream, ingest_key, [{"type": "login", "user_id": "u1", "timestamp": at}])
    # Renewed at most hourly (a fresh row is not written again: its updates stay HOT).
    assert _identities(stream.pk)[identity] == touched

    _age(stream.pk, identity, timedelta(days=29))
    started = timezone.now()
    _process(api, stream, ingest_key, [{"type": "form_submit", "user_id": "u1", "timestamp": at}])

    assert _identities(stream.pk)[identity] >= started - timedelta(seconds=1)


def test_session_state_goes_in_small_chunks_along_its_stream_and_touched_at_index(stream: Stream, monkeypatch):
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(INSERT_STATE_SQL, {"stream": stream.pk, "prefix": "fresh", "n": 5000, "touched": now})
        cursor.execute(
            INSERT_STATE_SQL, {"stream": stream.pk, "prefix": "gone", "n": 5, "touched": now - timedelta(days=31)}
        )
        cursor.execute("ANALYZE ingestion_session_state")
        cursor.execute(
            "EXPLAIN " + retention._SESSIONS_CHUNK_SQL,
            {"stream": stream.pk, "cutoff": now - timedelta(days=30), "chunk": retention.CHUNK},
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # The rows to delete are found as one range of the (stream, touched_at) index, not by a scan.
    assert "session_stream_touched" in plan, plan
    assert "Seq Scan" not in plan, plan

    monkeypatch.setattr(retention, "CHUNK", 2)
    outcome = retention.RetentionOutcome()
    with CaptureQueriesContext(connection) as queries:
        retention.sessions_expire(now=now, deadline=time.monotonic() + 60, outcome=outcome)

    deletes = [q["sql"] for q in queries.captured_queries if "DELETE FROM ingestion_session_state" in q["sql"]]
    assert len(deletes) == 3  # 2 + 2 + 1, each its own short transaction
    assert outcome.rows_deleted["ingestion_session_state"] == 5
    assert not any(identity.startswith("gone") for identity in _identities(stream.pk))
    assert len(_identities(stream.pk)) == 5000


# --- 2. rollup days -----------------------------------------------------------------------------


def test_a_days_counts_and_its_active_people_expire_in_the_same_run(stream: Stream, settings):
    conf_override(settings, rollup_day_retention_days=10, rollup_hour_retention_days=5)
    now = timezone.now()
    if now.hour == 0 and now.minute == 0:  # the cutoff must fall inside the oldest kept day
        now += timedelta(minutes=5)
    oldest = (now - timedelta(days=10)).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    older = oldest - timedelta(days=1)
    for day in (older, oldest):
        DayCount.objects.create(stream=stream, day=day, type="page_view", count=3)
        DayDimension.objects.create(stream=stream, dimension="browser", day=day, value="Firefox", type="page_view")
        UserSketch.objects.create(stream=stream, grain="d", start=day, sketch=b"x", users=2)
        PersonDay.objects.create(stream=stream, day=day.date(), person="u1", first_at=day, last_at=day)
    hour = (now - timedelta(days=5)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    for at in (hour - timedelta(hours=1), hour):
        HourCount.objects.create(stream=stream, hour=at, type="page_view", count=1)

    outcome = retention.retention_run(now=now)

    assert not outcome.failed
    # The oldest day is partly within the retention: its counts and its people both stay.
    assert list(DayCount.objects.values_list("day", flat=True)) == [oldest]
    assert list(DayDimension.objects.values_list("day", flat=True)) == [oldest]
    assert list(UserSketch.objects.values_list("start", flat=True)) == [oldest]
    assert list(PersonDay.objects.values_list("day", flat=True)) == [oldest.date()]
    assert list(HourCount.objects.values_list("hour", flat=True)) == [hour]
    assert retention.rollup_boundary(now=now, grain="day") == oldest


# --- 3. a failed part ---------------------------------------------------------------------------


@pytest.fixture
def log_locked() -> Iterator[psycopg.Connection]:
    """Another session holds the lock a partition's attach or detach needs, as a long migration or
    a stuck reader's ALTER would: retention's statement gives up after its lock timeout."""
    other = separate_connection()
    other.autocommit = False
    other.execute("LOCK TABLE streams_log IN SHARE UPDATE EXCLUSIVE MODE")
    yield other
    other.rollback()
    other.close()


@pytest.mark.usefixtures("token")
def test_a_lock_timeout_on_a_partition_fails_its_part_only_and_the_task(client, stream: Stream, request):
    now = timezone.now()
    created = log_partitions_ensure(now=now - timedelta(days=40), days_ahead=1)  # expired, to be dropped
    assert created
    letter = DeadLetter.objects.create(
        stream=stream,
        event_id="old",
        event={},
        stage="validate",
        error_class="E",
        first_failed_at=now,
        last_failed_at=now,
    )
    DeadLetter.objects.filter(pk=letter.pk).update(created_at=now - timedelta(days=31))
    MinuteCount.objects.create(stream=stream, type="t", minute=now - timedelta(days=91), count=1)
    with connection.cursor() as cursor:
        cursor.execute(
            INSERT_STATE_SQL, {"stream": stream.pk, "prefix": "gone", "n": 1, "touched": now - timedelta(days=31)}
        )
    before = scrape(client)
    locked = request.getfixturevalue("log_locked")

    outcome = retention.retention_run()
    with pytest.raises(RetentionFailed) as failed:
        retention_task()

    assert outcome.failed == ["log"] and failed.value.parts == ["log"]
    # The partitions stay for the next run; everything after the log went all the same.
    assert set(created) <= {p.name for p in log_partitions()}
    assert not DeadLetter.objects.exists() and not MinuteCount.objects.exists()
    assert _identities(stream.pk) == {}
    assert outcome.rows_deleted["ingestion_deadletter"] == 1
    after = scrape(client)
    assert value(after, "eventflow_retention_part_failures_total", part="log") == (
        value(before, "eventflow_retention_part_failures_total", part="log") + 2
    )
    assert value(after, "eventflow_retention_last_success_timestamp_seconds") == value(
        before, "eventflow_retention_last_success_timestamp_seconds"
    )

    locked.rollback()
    started = time.time()
    retention_task()  # no part fails: no exception

    assert not set(created) & {p.name for p in log_partitions()}
    assert value(scrape(client), "eventflow_retention_last_success_timestamp_seconds") >= started


# --- 4. what operators see ----------------------------------------------------------------------


@pytest.fixture
def gap_after_tomorrow() -> Iterator[datetime]:
    """The partition of the day after tomorrow is missing (those after it are there); put back after."""
    day = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=2)
    name = f"{retention.PARTITION_PREFIX}{day:%Y%m%d}"
    assert name in {p.name for p in log_partitions()}
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {name}")
    yield day
    log_partitions_ensure()


@pytest.mark.usefixtures("token", "heartbeat")
def test_health_and_metrics_report_the_partitions_ahead(client, gap_after_tomorrow):
    get_redis().set(heartbeat_key(), time.time())  # the worker answers: only the partitions can degrade
    now = timezone.now()

    short = client.get("/health").json()
    samples = scrape(client)

    # Appends fail at the gap, whatever partitions come after it.
    assert short["status"] == "degraded"
    assert short["checks"]["log_partitions"]["status"] == "low"
    assert 1 <= short["checks"]["log_partitions"]["days_ahead"] <= 2
    ahead = value(samples, "eventflow_log_partitions_ahead_seconds")
    assert abs(ahead - (gap_after_tomorrow - now).total_seconds()) < 60

    log_partitions_ensure()
    mended = client.get("/health").json()

    assert mended["status"] == "ok"
    assert mended["checks"]["log_partitions"]["status"] == "ok"
    assert mended["checks"]["log_partitions"]["days_ahead"] >= 6
    assert value(scrape(client), "eventflow_log_partitions_ahead_seconds") >= 6 * 86400
    # Nothing holds now: appends fail at once.
    assert log_partitions_ahead(now=now + timedelta(days=400)) == timedelta(0)


# --- the migration ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_touched_at_migration_rewrites_nothing_on_a_live_sized_table():
    rows = 500_000
    with scratch_database("sessionmig") as url:
        _migrate(url)
        _migrate(url, "ingestion", "0008")  # backwards too
        with psycopg.connect(url, autocommit=True) as conn:
            stream = conn.execute(
                "INSERT INTO streams_stream (slug, name, description, schema_mode, retention_days, anonymize_ip,"
                " allowed_origins, created_at) VALUES ('s', 's', '', 'off', 30, true, '[]', now()) RETURNING id"
            ).fetchone()[0]  # type: ignore[index]
            conn.execute(
                "INSERT INTO ingestion_session_state (stream_id, identity, session_id, started_at, last_seen)"
                " SELECT %s, 'u' || g, 's' || g, now(), now() FROM generate_series(1, %s) AS g",
                [stream, rows],
            )
            before = conn.execute("SELECT pg_relation_filenode('ingestion_session_state')").fetchone()

        seconds = _migrate(url, "ingestion", "0009")
        print(f"migrate ingestion 0009 with {rows:,} session rows: {seconds:.1f} s")

        with psycopg.connect(url) as conn:
            # The column's default is kept in the catalog: the table is not rewritten.
            assert conn.execute("SELECT pg_relation_filenode('ingestion_session_state')").fetchone() == before
            assert conn.execute("SELECT count(DISTINCT touched_at) FROM ingestion_session_state").fetchone() == (1,)
            assert conn.execute(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 'session_stream_touched'::regclass"
            ).fetchone() == (True,)
