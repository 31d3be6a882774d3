"""The log becomes a table partitioned by day of logged_at, with its idempotency keys in a table of their own.

Works on a live installation (docs/SCALING.md, "Migrating a live log"): nothing
rewrites the old table and no long lock is held.

1. The old table gets CHECK (logged_at < cutover) NOT VALID, then VALIDATE
   (SHARE UPDATE EXCLUSIVE: reads and appends go on while it scans).
2. Its keys are copied into streams_log_key in chunks of 20,000 offsets, each
   its own transaction (appends go on).
3. One short transaction (ACCESS EXCLUSIVE on the old table, held for
   milliseconds): the keys appended since step 2 are copied, the old table is
   renamed streams_log_legacy, the partitioned streams_log is created and the
   old table attached as its partition (MINVALUE) .. (cutover) — the validated
   CHECK spares the scan, and its indexes become the partitions' of the new
   parent's — and the daily partitions from the cutover are created.

On an empty table (a fresh install) the old table is simply replaced. The
legacy partition is dropped by retention once every stream's events in it
have expired; until then its own unique index on (stream_id, event_id) stays.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import django.db.models.deletion
from django.db import migrations, models, transaction

logger = logging.getLogger("streams.migrations")

KEY_CHUNK = 20_000
DAYS_AHEAD = 7
# The reader indexes of the log, as the parent declares them (migrations 0001, 0007).
INDEXES = {
    "log_stream_time": "(stream_id, event_time)",
    "log_stream_type_time": "(stream_id, type, event_time)",
    "log_stream_user_time": "(stream_id, user_id, event_time) WHERE user_id IS NOT NULL",
    "log_stream_session_time": "(stream_id, session_id, event_time) WHERE session_id IS NOT NULL",
}
COPY_KEYS_SQL = """
INSERT INTO streams_log_key (stream_id, event_id, "offset", logged_at)
SELECT stream_id, event_id, "offset", logged_at FROM streams_log
WHERE stream_id = %s AND "offset" >= %s AND "offset" < %s
ON CONFLICT DO NOTHING
"""


def _one(cursor, sql, params=()):  # type: ignore[no-untyped-def]
    cursor.execute(sql, params)
    return cursor.fetchone()[0]


def _day_partition(cursor, day: datetime) -> None:  # type: ignore[no-untyped-def]
    name = f"streams_log_p{day:%Y%m%d}"
    cursor.execute(
        f"CREATE TABLE {name} PARTITION OF streams_log FOR VALUES FROM (%s) TO (%s)", [day, day + timedelta(days=1)]
    )
    cursor.execute(f'ALTER TABLE {name} ADD CONSTRAINT {name}_pkey PRIMARY KEY (stream_id, "offset")')


def partition_log(apps, schema_editor):  # type: ignore[no-untyped-def]
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if _one(cursor, "SELECT relkind FROM pg_class WHERE oid = 'streams_log'::regclass") == "p":
            return
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        empty = not _one(cursor, "SELECT EXISTS (SELECT 1 FROM streams_log)")
        cutover = today + timedelta(days=2)
        heads: dict[int, int] = {}
        if not empty:
            # 1. The bound the old table will hold as a partition, proved without a long lock.
            if not _one(cursor, "SELECT count(*) FROM pg_constraint WHERE conname = 'streams_log_legacy_bound'"):
                cursor.execute(
                    "ALTER TABLE streams_log ADD CONSTRAINT streams_log_legacy_bound CHECK (logged_at < %s) NOT VALID",
                    [cutover],
                )
            else:
                cutover = _one(
                    cursor,
                    "SELECT substring(pg_get_constraintdef(oid) from '''(.*)''')::timestamptz FROM pg_constraint "
                    "WHERE conname = 'streams_log_legacy_bound'",
                )
            started = time.monotonic()
            cursor.execute("ALTER TABLE streams_log VALIDATE CONSTRAINT streams_log_legacy_bound")
            logger.info("log partitioning: bound validated in %.1f s", time.monotonic() - started)
            started = time.monotonic()
            # 2. The keys, a chunk a transaction, up to each stream's head as it is now.
            cursor.execute("SELECT stream_id, next_offset FROM streams_streamhead ORDER BY stream_id")
            heads = dict(cursor.fetchall())
            for stream_id, head in heads.items():
                for low in range(0, head, KEY_CHUNK):
                    cursor.execute(COPY_KEYS_SQL, [stream_id, low, low + KEY_CHUNK])
            logger.info("log partitioning: keys copied in %.1f s", time.monotonic() - started)
        # 3. The switch.
        started = time.monotonic()
        with transaction.atomic(using=connection.alias):
            cursor.execute("SET LOCAL lock_timeout = '30s'")
            cursor.execute("LOCK TABLE streams_log IN ACCESS EXCLUSIVE MODE")
            if not empty:
                cursor.execute("SELECT stream_id, next_offset FROM streams_streamhead ORDER BY stream_id")
                for stream_id, head in cursor.fetchall():
                    cursor.execute(COPY_KEYS_SQL, [stream_id, heads.get(stream_id, 0), head])
                cursor.execute(
                    "UPDATE streams_streamhead h SET last_logged_at = (SELECT l.logged_at FROM streams_log l "
                    'WHERE l.stream_id = h.stream_id ORDER BY l."offset" DESC LIMIT 1)'
                )
            cursor.execute(
                "SELECT conname FROM pg_constraint WHERE conrelid = 'streams_log'::regclass AND contype = 'f'"
            )
            for (name,) in cursor.fetchall():
                # No foreign key from the log: it cost a lookup per appended event (Django's
                # collector deletes a stream's events, as it deletes its keys).
                cursor.execute(f'ALTER TABLE streams_log DROP CONSTRAINT "{name}"')
            cursor.execute("ALTER TABLE streams_log RENAME TO streams_log_legacy")
            cursor.execute("ALTER INDEX streams_log_pkey RENAME TO streams_log_legacy_pkey")
            for name in INDEXES:
                cursor.execute(f"ALTER INDEX {name} RENAME TO {name.replace('log_', 'streams_log_legacy_', 1)}")
            cursor.execute(
                "CREATE TABLE streams_log (LIKE streams_log_legacy INCLUDING DEFAULTS INCLUDING STORAGE "
                "INCLUDING COMPRESSION) PARTITION BY RANGE (logged_at)"
            )
            if empty:
                cursor.execute("DROP TABLE streams_log_legacy")
                first_day = today - timedelta(days=1)
            else:
                cursor.execute(
                    "ALTER TABLE streams_log ATTACH PARTITION streams_log_legacy FOR VALUES FROM (MINVALUE) TO (%s)",
                    [cutover],
                )
                first_day = cutover
            # Built on the parent, each matches the legacy partition's index of the same
            # definition and adopts it (no build).
            for name, definition in INDEXES.items():
                cursor.execute(f"CREATE INDEX {name} ON streams_log {definition}")
            day = first_day
            while day <= today + timedelta(days=DAYS_AHEAD):
                _day_partition(cursor, day)
                day += timedelta(days=1)
        logger.info(
            "log partitioning: switched in %.3f s (ACCESS EXCLUSIVE on the old table)", time.monotonic() - started
        )


def unpartition_log(apps, schema_editor):  # type: ignore[no-untyped-def]
    """Back to one plain table, rows copied (for development databases: it holds a lock while it copies)."""
    with schema_editor.connection.cursor() as cursor:
        if _one(cursor, "SELECT relkind FROM pg_class WHERE oid = 'streams_log'::regclass") != "p":
            return
        cursor.execute(
            "CREATE TABLE streams_log_plain (LIKE streams_log INCLUDING DEFAULTS INCLUDING STORAGE "
            "INCLUDING COMPRESSION)"
        )
        cursor.execute("INSERT INTO streams_log_plain SELECT * FROM streams_log")
        cursor.execute("DROP TABLE streams_log")
        cursor.execute("ALTER TABLE streams_log_plain RENAME TO streams_log")
        cursor.execute('ALTER TABLE streams_log ADD CONSTRAINT streams_log_pkey PRIMARY KEY (stream_id, "offset")')
        cursor.execute("ALTER TABLE streams_log ADD CONSTRAINT uniq_log_event_id UNIQUE (stream_id, event_id)")
        cursor.execute(
            "ALTER TABLE streams_log ADD CONSTRAINT streams_log_stream_id_fk_streams_stream_id FOREIGN KEY "
            "(stream_id) REFERENCES streams_stream (id) DEFERRABLE INITIALLY DEFERRED"
        )
        for name, definition in INDEXES.items():
            cursor.execute(f"CREATE INDEX {name} ON streams_log {definition}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("streams", "0011_erasure"),
    ]

    operations = [
        migrations.CreateModel(
            name="LogKey",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "stream_id", "event_id", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("event_id", models.CharField(max_length=128)),
                ("offset", models.BigIntegerField()),
                ("logged_at", models.DateTimeField()),
                (
                    "stream",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="streams.stream",
                    ),
                ),
            ],
            options={"db_table": "streams_log_key"},
        ),
        migrations.CreateModel(
            name="LogSegment",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "stream_id", "day", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("day", models.DateTimeField()),
                ("first_offset", models.BigIntegerField()),
                (
                    "stream",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="streams.stream",
                    ),
                ),
            ],
            options={"db_table": "streams_log_segment"},
        ),
        migrations.AddField(
            model_name="streamhead",
            name="last_logged_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        # The old table's unique constraint and foreign key stay with it as the legacy
        # partition (the foreign key is dropped by partition_log); the state follows.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(model_name="logentry", name="uniq_log_event_id"),
                migrations.AlterField(
                    model_name="logentry",
                    name="stream",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="streams.stream",
                    ),
                ),
            ]
        ),
        migrations.RunPython(partition_log, unpartition_log, elidable=False),
    ]
