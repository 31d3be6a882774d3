"""Recount a stream's rollups from its log: after an upgrade that adds rollups, or to check them.

    python manage.py rollups_rebuild --stream shop [--from 2026-11-01T00:00Z] [--to 2026-12-01T00:00Z]

One UTC hour per transaction, each under the stream's processing lock (the
processor waits for at most one hour's worth of work), then the day rollups
of each day from its hours and its per-person activity from the log,
and at the end each person's first sighting from those days, and the tables' statistics. Safe while events keep arriving: an event
appended between two chunks is either in an hour still to be recounted, or
was counted into a recounted hour by the processor itself.

Rollups outlive the log (README, Retention), and a late event sits in a later day's
partition than the rest of its hour: an hour or day whose rollups have counted more events
than the log still holds is kept (counts, dimensions, sketches, and a day's people), as a
recount would lose the others; the command says how many it kept. A kept hour takes only the
log's events none of its rollups counted, and a kept day moves with its recounted hours
(``analytics.rollups.rebuild_hour``). From the time the log still holds every event of
(``wholly_logged_from``), a bucket that counted more than the log holds counted too many, and
is recounted. An hour or day without rollups yet is counted from the log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from analytics.activity import activity_rebuild_day, activity_rebuild_first
from analytics.filters import parse_time
from analytics.rollups import (
    DAY,
    buckets_partly_logged,
    ceil_to,
    floor_to,
    log_time_bounds,
    rebuild_day,
    rebuild_hour,
)
from eventflow.errors import Invalid
from ingestion.pipeline import PROCESS_LOCK_CLASS
from streams.models import Stream

REBUILT_TABLES = (
    "analytics_minute_count",
    "analytics_hour_count",
    "analytics_day_count",
    "analytics_hour_dimension",
    "analytics_day_dimension",
    "analytics_user_sketch",
    "analytics_person_day",
    "analytics_person_first",
)


def _lock(stream_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [PROCESS_LOCK_CLASS, stream_id])


@dataclass
class Rebuilt:
    """What ``rollups_rebuild`` recounted, and what it kept."""

    events: int = 0  # the log's events of the hours recounted
    # Kept: the log holds fewer of their events than their rollups have counted (retention took some).
    kept_hours: list[datetime] = field(default_factory=list)
    kept_days: list[datetime] = field(default_factory=list)


def rollups_rebuild(
    *, stream_id: int, time_from: datetime | None = None, time_to: datetime | None = None, progress: Any = None
) -> Rebuilt:
    """Recount the rollups of the whole UTC days that [time_from, time_to) touches, but those the log
    holds only part of."""
    rebuilt = Rebuilt()
    if time_from is None or time_to is None:
        bounds = log_time_bounds(stream_id=stream_id)
        if bounds is None:
            return rebuilt
        time_from = time_from or bounds[0]
        time_to = time_to or bounds[1] + timedelta(microseconds=1)
    day = floor_to(time_from, "day")
    end = ceil_to(time_to, "day")
    while day < end:
        for h in range(24):
            hour = day + timedelta(hours=h)
            with transaction.atomic():
                _lock(stream_id)
                events = rebuild_hour(stream_id=stream_id, hour=hour)
            if events is None:
                rebuilt.kept_hours.append(hour)
            else:
                rebuilt.events += events
        with transaction.atomic():
            _lock(stream_id)
            # Checked in the transaction that recounts: a partition retention drops meanwhile
            # waits for it. A day without count rows (the first build) costs no count of the log.
            if buckets_partly_logged(stream_id=stream_id, grain=DAY, starts=[day]):
                rebuilt.kept_days.append(day)
            else:
                rebuild_day(stream_id=stream_id, day=day)
                activity_rebuild_day(stream_id=stream_id, day=day)
        if progress is not None:
            progress(day, rebuilt.events)
        day += timedelta(days=1)
    # First sightings are the least of every day's, so they are recounted once all days are.
    with transaction.atomic():
        _lock(stream_id)
        activity_rebuild_first(stream_id=stream_id)
    # Fresh statistics for the rewritten tables: their readers' plans depend on them. Without, at 10 M
    # events, the sketches' read filtered all of a dimension's rows (371 ms, against 0.14 ms analysed) and
    # the retention page took 65 s (its question 2-3 s once analysed): docs/BENCHMARKS.md.
    with connection.cursor() as cursor:
        for table in REBUILT_TABLES:
            cursor.execute(f"ANALYZE {table}")
    return rebuilt


class Command(BaseCommand):
    help = "Recount a stream's rollups from its log, one hour per transaction."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--stream", required=True, help="the stream's slug")
        parser.add_argument("--from", dest="time_from", help="ISO 8601 with zone (default: the log's first event)")
        parser.add_argument("--to", dest="time_to", help="ISO 8601 with zone (default: the log's last event)")

    def handle(self, *args: Any, **options: Any) -> None:
        stream = Stream.objects.filter(slug=options["stream"]).first()
        if stream is None:
            raise CommandError(f"No stream {options['stream']!r}.")
        try:
            time_from = parse_time(options["time_from"], "from") if options["time_from"] else None
            time_to = parse_time(options["time_to"], "to") if options["time_to"] else None
        except Invalid as exc:
            raise CommandError(exc.message) from None
        started = time.monotonic()

        def progress(day: datetime, total: int) -> None:
            self.stdout.write(f"{day:%Y-%m-%d} done, {total:,} events so far")

        rebuilt = rollups_rebuild(stream_id=stream.pk, time_from=time_from, time_to=time_to, progress=progress)
        self.stdout.write(f"Rebuilt the rollups of {rebuilt.events:,} events in {time.monotonic() - started:.1f} s.")
        if rebuilt.kept_hours or rebuilt.kept_days:
            hours, days = len(rebuilt.kept_hours), len(rebuilt.kept_days)
            self.stdout.write(
                f"Kept the rollups of {hours:,} hour{'s' * (hours != 1)} and {days:,} day{'s' * (days != 1)} "
                "as they were: the log no longer holds all of their events (retention took some), "
                "and a recount would lose them and their users."
            )
