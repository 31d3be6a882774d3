"""Migration 0013 swaps the log's (stream, type, event time) index for one that carries who and when,
on every partition, and back.

A throw-away database is migrated to the end, rows are logged into two of its
day partitions, then it goes back to 0012 and forward again as ``manage.py
migrate`` runs it. After each step every partition's index of the expected
definition is valid and attached to the parent's, and the other one is gone.
"""

from __future__ import annotations

import importlib
import threading
import time

import psycopg
import pytest

from streams.tests.test_log_migration import _migrate
from tests.subprocesses import current_database_url, scratch_database

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(600)]

INDEX_OF = """
SELECT c.relname, ci.relname, ix.indisvalid, pg_get_indexdef(ix.indexrelid)
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_inherits xi ON xi.inhparent = %s::regclass
JOIN pg_index ix ON ix.indexrelid = xi.inhrelid AND ix.indrelid = c.oid
JOIN pg_class ci ON ci.oid = ix.indexrelid
WHERE i.inhparent = 'streams_log'::regclass
"""


def _state(conn: psycopg.Connection) -> dict[str, bool]:
    rows = conn.execute(
        "SELECT c.relname, ix.indisvalid FROM pg_index ix JOIN pg_class c ON c.oid = ix.indexrelid "
        "WHERE ix.indrelid = 'streams_log'::regclass"
    ).fetchall()
    return {name: valid for name, valid in rows}


def _partitions(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'streams_log'::regclass"
    ).fetchall()
    return {name for (name,) in rows}


def _children(conn: psycopg.Connection, parent: str) -> dict[str, tuple[bool, str]]:
    return {part: (valid, definition) for part, _, valid, definition in conn.execute(INDEX_OF, [parent]).fetchall()}


def test_the_index_is_swapped_on_every_partition_and_back():
    with scratch_database("idxmig") as url:
        _migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            stream = conn.execute(
                "INSERT INTO streams_stream (slug, name, description, schema_mode, retention_days, anonymize_ip,"
                " allowed_origins, created_at) VALUES ('s', 's', '', 'off', 30, true, '[]', now()) RETURNING id"
            ).fetchone()
            assert stream is not None
            # 41 hours of rows from yesterday's UTC midnight on: the partitions the migrations made hold them
            # whatever the time of day the test runs at (40 hours back from now reached the day before
            # yesterday, which has none, when it ran before 16:00 UTC).
            conn.execute(
                'INSERT INTO streams_log (stream_id, "offset", event_id, type, event_time, received_at, logged_at,'
                " user_id, payload, context, enrichment, flags)"
                " SELECT %s, g, 'e' || g, 'login', t, t, t, 'u' || g, '{}', '{}', '{}', '{}'"
                " FROM generate_series(0, 40) AS g,"
                " LATERAL (SELECT date_trunc('day', now(), 'UTC') - interval '1 day' + g * interval '1 hour' AS t) AS at",
                [stream[0]],
            )
            partitions = _partitions(conn)
            assert len(partitions) >= 8
            state = _state(conn)
            assert state.get("log_type_time_people") is True and "log_stream_type_time" not in state
            children = _children(conn, "log_type_time_people")
            assert set(children) == partitions
            for valid, definition in children.values():
                assert valid and 'INCLUDE (user_id, anonymous_id, "offset", logged_at)' in definition

        _migrate(url, "streams", "0012")
        with psycopg.connect(url, autocommit=True) as conn:
            state = _state(conn)
            assert state.get("log_stream_type_time") is True and "log_type_time_people" not in state
            children = _children(conn, "log_stream_type_time")
            assert set(children) == _partitions(conn)
            assert all(valid and "INCLUDE" not in definition for valid, definition in children.values())

        _migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            state = _state(conn)
            assert state.get("log_type_time_people") is True and "log_stream_type_time" not in state
            children = _children(conn, "log_type_time_people")
            assert set(children) == _partitions(conn) and all(valid for valid, _ in children.values())
            count = conn.execute("SELECT count(*) FROM streams_log WHERE type = 'login'").fetchone()
            assert count == (41,)


def test_the_old_index_is_dropped_without_holding_appends_behind_a_long_reader():
    """A reader holds the table for 6 s: the DROP gives up after its 2 s lock timeout and tries
    again, so an append that comes meanwhile waits at most for that timeout (about 1 s here), not
    for the reader (about 5 s, as it would without the timeout)."""
    drop = importlib.import_module("streams.migrations.0013_log_type_time_people")._drop
    url = current_database_url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS idx_drop_probe")
        conn.execute("CREATE TABLE idx_drop_probe (x int)")
        conn.execute("CREATE INDEX idx_drop_probe_x ON idx_drop_probe (x)")
    released = threading.Event()

    def reader() -> None:
        with psycopg.connect(url) as conn:
            conn.execute("SELECT count(*) FROM idx_drop_probe").fetchone()
            time.sleep(6)
        released.set()

    waits: list[float] = []

    def appender() -> None:
        time.sleep(1)  # while the DROP waits for its lock
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.monotonic()
            conn.execute("INSERT INTO idx_drop_probe VALUES (1)")
            waits.append(time.monotonic() - started)

    threads = [threading.Thread(target=reader), threading.Thread(target=appender)]
    try:
        threads[0].start()
        time.sleep(0.3)
        threads[1].start()
        started = time.monotonic()
        with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cursor:
            drop(cursor, "idx_drop_probe_x", pause=0.5)
            assert released.is_set()  # it waited the reader out, by tries
            took = time.monotonic() - started
            index = conn.execute("SELECT to_regclass('idx_drop_probe_x')").fetchone()
            assert index == (None,)
            assert conn.execute("SHOW lock_timeout").fetchone() == ("0",)
        assert took >= 5
        for thread in threads:
            thread.join(10)
        assert len(waits) == 1 and waits[0] < 2.5, waits
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS idx_drop_probe")
