"""Migration 0012 on a live-sized log: a million events at the old schema become a partitioned log, whole.

A throw-away database is migrated to the migration before 0012, filled by one
INSERT … SELECT (two streams, 500,000 events each, logged over the last 29
days), then migrated to the end by ``manage.py migrate`` as an upgrade runs it.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from tests.subprocesses import scratch_database

pytestmark = [pytest.mark.slow, pytest.mark.django_db, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
PER_STREAM = 500_000
FILL_SQL = """
INSERT INTO streams_log
    (stream_id, "offset", event_id, type, event_time, received_at, logged_at, user_id, session_id,
     payload, context, enrichment, flags)
SELECT %(stream)s, g, 'ev-' || g, (ARRAY['page_view', 'login', 'form_submit'])[1 + g %% 3],
       now() - (%(n)s - g) * interval '5 seconds', now() - (%(n)s - g) * interval '5 seconds',
       now() - (%(n)s - g) * interval '5 seconds', 'u' || (g %% 5000), 's' || (g / 7),
       jsonb_build_object('page', '/p/' || (g %% 50)), '{}', '{"browser": "Firefox"}', '{}'
FROM generate_series(0, %(n)s - 1) AS g
"""
CHECK_SCRIPT = textwrap.dedent(
    """
    from django.utils import timezone
    from analytics.filters import EventFilter
    from analytics.query import event_find, events_page
    from streams.log import LogRecord, log_append_now
    from streams.models import LogEntry
    now = timezone.now()
    old = LogRecord(event_id="ev-17", type="page_view", event_time=now, received_at=now)
    new = LogRecord(event_id="brand-new", type="page_view", event_time=now, received_at=now)
    result = log_append_now(stream_id={stream}, records=[old, new])
    assert [r.event_id for r in result.already_logged] == ["ev-17"], result
    assert [o for o, _ in result.appended] == [{n}], result
    found = event_find(stream_id={stream}, event_id="ev-123456")
    assert found.logged["offset"] == 123456, found
    page = events_page(stream_id={stream}, event_filter=EventFilter(types=("login",)), limit=10)
    assert [e["offset"] for e in page.events][:2] == [{n} - 1, {n} - 4], page.events[:2]
    offsets = list(LogEntry.objects.filter(stream_id={stream}, offset__gte=250000, offset__lt=250010)
                   .order_by("offset").values_list("offset", flat=True))
    assert offsets == list(range(250000, 250010)), offsets
    print("checks passed")
    """
)

EXPIRE_SCRIPT = textwrap.dedent(
    """
    import time
    from datetime import timedelta
    from django.utils import timezone
    from streams.retention import retention_run
    started = time.monotonic()
    outcome = retention_run(now=timezone.now() + timedelta(days=40), budget_seconds=600)
    assert outcome.finished and "streams_log_legacy" in outcome.partitions_dropped, outcome
    print(f"expired: {outcome.partitions_dropped} in {time.monotonic() - started:.1f} s")
    """
)


def _migrate(url: str, *args: str) -> float:
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "INFO"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", *args, "-v", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    print(done.stderr[-2000:])
    return time.monotonic() - started


def test_a_million_event_log_is_partitioned_in_place():
    before = importlib.import_module("streams.migrations.0012_log_partitions").Migration.dependencies[0][1]
    with scratch_database("logmig") as url:
        _migrate(url, "streams", before)
        with psycopg.connect(url) as conn:
            streams = []
            for slug in ("one", "two"):
                row = conn.execute(
                    "INSERT INTO streams_stream (slug, name, description, schema_mode, retention_days, anonymize_ip,"
                    " allowed_origins, created_at) VALUES (%s, %s, '', 'off', 30, true, '[]', now()) RETURNING id",
                    [slug, slug],
                ).fetchone()
                assert row is not None
                streams.append(row[0])
                conn.execute(
                    "INSERT INTO streams_streamhead (stream_id, next_offset) VALUES (%s, %s)", [row[0], PER_STREAM]
                )
                conn.execute(FILL_SQL, {"stream": row[0], "n": PER_STREAM})
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE streams_log")

        seconds = _migrate(url)
        print(f"migrate of {2 * PER_STREAM:,} events: {seconds:.1f} s")

        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT relkind FROM pg_class WHERE oid = 'streams_log'::regclass").fetchone() == ("p",)
            parts = conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'streams_log'::regclass"
            ).fetchall()
            assert ("streams_log_legacy",) in parts and len(parts) >= 7
            for stream in streams:
                count, low, high, distinct = conn.execute(
                    'SELECT count(*), min("offset"), max("offset"), count(DISTINCT event_id) FROM streams_log '
                    "WHERE stream_id = %s",
                    [stream],
                ).fetchone()  # type: ignore[misc]
                assert (count, low, high, distinct) == (PER_STREAM, 0, PER_STREAM - 1, PER_STREAM)
                keys = conn.execute(
                    "SELECT count(*) FROM streams_log_key k JOIN streams_log l ON l.stream_id = k.stream_id AND "
                    'l."offset" = k."offset" AND l.event_id = k.event_id WHERE k.stream_id = %s',
                    [stream],
                ).fetchone()
                assert keys == (PER_STREAM,)
        check = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", CHECK_SCRIPT.format(stream=streams[0], n=PER_STREAM)],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert "checks passed" in check.stdout, check.stderr[-3000:]
        # Forty days on, every event has expired: the legacy partition goes whole, keys first.
        expire = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", EXPIRE_SCRIPT],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert "expired" in expire.stdout, expire.stderr[-3000:]
        print(expire.stdout[-500:])
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT to_regclass('streams_log_legacy')").fetchone() == (None,)
            assert conn.execute("SELECT count(*) FROM streams_log").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM streams_log_key").fetchone() == (0,)
