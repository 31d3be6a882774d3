"""What the rollups cost the processor: ``rollups_apply`` on real batches of the analytics benchmark's log.

Batches of ``--batch`` events are read from hours of the stream ``bench`` in ``eventflow_bench_analytics``
(loaded by ``python -m bench.analytics``), as the processor hands them over (``LogRecord``), and counted into
the rollups in a transaction that is rolled back, so every round sees the same tables. Reported per batch,
median and range over ``--rounds`` batches (each from its own hour of the middle of the log, where the
day's sketches are already dense): the Python counting (``Tally``) and the whole ``rollups_apply``
(counting, the sketches' read, update and write; the per-person activity of analytics/activity.py apart).

Usage: ``python -m bench.rollup_cost [--rounds 10] [--batch 1000]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import RedisSlot, django_setup

DATABASE = "eventflow_bench_analytics"
END = datetime(2026, 11, 1, tzinfo=UTC)


def _batches(stream_id: int, rounds: int, size: int) -> list[list[Any]]:
    from eventflow.db import bound_cursor
    from streams.log import LogRecord

    out = []
    for i in range(rounds):
        hour = END - timedelta(days=15) + timedelta(hours=7 * i + 3)
        with bound_cursor() as cursor:
            cursor.execute(
                "SELECT event_id, type, event_time, received_at, user_id, anonymous_id, session_id, payload, context,"
                " enrichment, flags, api_key_id FROM streams_log WHERE stream_id = %s AND event_time >= %s"
                " ORDER BY event_time LIMIT %s",
                [stream_id, hour, size],
                binary=True,
            )
            out.append([LogRecord(*row) for row in cursor.fetchall()])
    return out


# The activity rollup as it stood before the batch: built from the whole log, it holds the batch's
# events already, and an upsert that changes nothing writes nothing. Within the rolled-back
# transaction, people first seen (that day, or ever) at or after the batch's first event are taken
# out and the days' later last times moved back, so the batch inserts and moves them as it would.
_BEFORE_BATCH_SQL = """
DELETE FROM analytics_person_day WHERE stream_id = %(s)s AND day = %(d)s AND first_at >= %(t)s;
UPDATE analytics_person_day SET last_at = first_at
WHERE stream_id = %(s)s AND day = %(d)s AND last_at >= %(t)s;
DELETE FROM analytics_person_first WHERE stream_id = %(s)s AND first_at >= %(t)s;
"""


def _before_batch(stream_id: int, records: list[Any]) -> None:
    from django.db import connection

    start = min(r.event_time for r in records).astimezone(UTC)
    with connection.cursor() as cursor:
        cursor.execute(_BEFORE_BATCH_SQL, {"s": stream_id, "d": start.date(), "t": start})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    slot = RedisSlot.claim()
    try:
        django_setup(slot, DATABASE)
        run(args)
    finally:
        slot.cleanup()


def run(args: argparse.Namespace) -> None:
    from django.db import transaction

    from analytics.activity import activity_rebuild_day, activity_rebuild_first, activity_write
    from analytics.models import PersonDay
    from analytics.rollups import Tally, rollups_write
    from streams.models import Stream

    stream = Stream.objects.get(slug="bench")
    if not PersonDay.objects.filter(stream=stream).exists():
        print("building the activity rollup of the log", flush=True)
        for day in range(31):
            with transaction.atomic():
                activity_rebuild_day(stream_id=stream.pk, day=END - timedelta(days=31 - day))
        with transaction.atomic():
            activity_rebuild_first(stream_id=stream.pk)
    batches = _batches(stream.pk, args.rounds + 1, args.batch)
    counting: list[float] = []
    counts: list[float] = []
    activity: list[float] = []
    for i, records in enumerate(batches):
        started = time.perf_counter()
        Tally().add_records(records)
        tally_ms = (time.perf_counter() - started) * 1000
        with transaction.atomic():
            started = time.perf_counter()
            rollups_write(stream_id=stream.pk, tally=Tally().add_records(records))
            counts_ms = (time.perf_counter() - started) * 1000
            _before_batch(stream.pk, records)
            started = time.perf_counter()
            activity_write(stream_id=stream.pk, records=records)
            activity_ms = (time.perf_counter() - started) * 1000
            transaction.set_rollback(True)
        if i:  # the first is a warm-up
            counting.append(tally_ms)
            counts.append(counts_ms)
            activity.append(activity_ms)
        print(
            f"batch {i}: counting {tally_ms:.1f} ms, counts and sketches {counts_ms:.1f} ms, activity {activity_ms:.1f} ms"
        )

    def line(name: str, values: list[float]) -> str:
        return f"{name}: median {statistics.median(values):.1f} ms ({min(values):.1f} to {max(values):.1f})"

    print(line("counting (Tally)", counting))
    print(line("counts and sketches, counting included", counts))
    print(line("per-person activity", activity))
    print(line("rollups_apply", [a + b for a, b in zip(counts, activity, strict=True)]))


if __name__ == "__main__":
    main()
