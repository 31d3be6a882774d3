"""The log's index by (stream, type, event time) also carries the person, the offset and logged_at.

Funnels and retention by event type read, for each event of a type in a time
range, only who (user_id, anonymous_id), when (event_time, offset) and the
partition key (logged_at, which event-time readers bound so that the plan skips
old partitions). With those columns in the index the reads are index-only scans
instead of heap reads of wide rows with their JSON: the step-1 scan of a
three-step funnel at 10 million events (1.28 M page views in a week) took
353 ms instead of 1,010 (docs/BENCHMARKS.md, "Funnels at 10 M").

Works on a live installation: the partitioned index is declared ON ONLY the
parent first (a partition created meanwhile gets its own at once), each
existing partition's index is built CONCURRENTLY (reads and appends go on) and
attached, and only then is the old index dropped (a short ACCESS EXCLUSIVE on
the log: dropping an index takes no scan; with a 2 s lock timeout, tried again,
so that appends never wait long behind it while a long query holds the log). On a log that is one plain table
(a development database migrated back) both steps are CONCURRENTLY.
"""

from __future__ import annotations

import time

import psycopg
from django.db import OperationalError, migrations, models

NEW = "log_type_time_people"
OLD = "log_stream_type_time"
KEY = "(stream_id, type, event_time)"
COVER = 'INCLUDE (user_id, anonymous_id, "offset", logged_at)'
DROP_ATTEMPTS = 30


def _partitioned(cursor) -> bool:  # type: ignore[no-untyped-def]
    cursor.execute("SELECT relkind FROM pg_class WHERE oid = 'streams_log'::regclass")
    return cursor.fetchone()[0] == "p"


def _swap(cursor, *, new: str, new_definition: str, old: str) -> None:  # type: ignore[no-untyped-def]
    if not _partitioned(cursor):
        cursor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {new} ON streams_log {new_definition}")
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {old}")
        return
    cursor.execute(f"CREATE INDEX IF NOT EXISTS {new} ON ONLY streams_log {new_definition}")
    # The partitions whose index of the new definition is not attached yet (a partition created
    # after the statement above has one already).
    cursor.execute(
        """
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'streams_log'::regclass
          AND NOT EXISTS (
              SELECT 1 FROM pg_inherits x JOIN pg_index ix ON ix.indexrelid = x.inhrelid
              WHERE x.inhparent = %s::regclass AND ix.indrelid = c.oid
          )
        ORDER BY c.relname
        """,
        [new],
    )
    for (partition,) in cursor.fetchall():
        child = f"{partition}_{new}"[:63]
        cursor.execute(f"DROP INDEX IF EXISTS {child}")  # an invalid one left by an interrupted run
        cursor.execute(f"CREATE INDEX CONCURRENTLY {child} ON {partition} {new_definition}")
        cursor.execute(f"ALTER INDEX {new} ATTACH PARTITION {child}")
    _drop(cursor, old)


def _drop(cursor, name: str, *, pause: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    """Drop the partitioned index under ACCESS EXCLUSIVE, but never queue appends behind a long reader.

    A DROP that waits for a running query (an analytics statement of seconds) holds up every append
    queued behind it; with lock_timeout it gives up after a moment and tries again.
    """
    cursor.execute("SET lock_timeout = '2s'")
    try:
        for attempt in range(DROP_ATTEMPTS):
            try:
                cursor.execute(f"DROP INDEX IF EXISTS {name}")
                return
            except (OperationalError, psycopg.errors.LockNotAvailable):  # Django's cursor, or psycopg's
                if attempt == DROP_ATTEMPTS - 1:
                    raise
                time.sleep(min(30.0, pause * 2**attempt))
    finally:
        cursor.execute("RESET lock_timeout")


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    with schema_editor.connection.cursor() as cursor:
        _swap(cursor, new=NEW, new_definition=f"{KEY} {COVER}", old=OLD)


def backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    with schema_editor.connection.cursor() as cursor:
        _swap(cursor, new=OLD, new_definition=KEY, old=NEW)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("streams", "0012_log_partitions"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="logentry", name=OLD),
                migrations.AddIndex(
                    model_name="logentry",
                    index=models.Index(
                        fields=["stream", "type", "event_time"],
                        include=["user_id", "anonymous_id", "offset", "logged_at"],
                        name=NEW,
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(forward, backward)],
        ),
    ]
