"""Reads of the stream log that several apps ask: where it starts, where a time falls in it.

Beside the log's writes (streams/log.py, which also answers the head and an offset
range's time window); the measured read paths that stay with their readers say why
there: the consumer poll (consumers/services.py) and the query API (analytics/query.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import OuterRef, Subquery

from .models import LogEntry, StreamHead


def log_earliest_offset(*, stream_id: int) -> int | None:
    """The smallest offset still in the log (retention removes old entries), or None if empty."""
    return LogEntry.objects.filter(stream_id=stream_id).order_by("offset").values_list("offset", flat=True).first()


def log_offset_at(*, stream_id: int, timestamp: datetime) -> int | None:
    """The offset of the first event (in log order) whose time is at or after ``timestamp``."""
    return (
        LogEntry.objects.filter(stream_id=stream_id, event_time__gte=timestamp)
        .order_by("offset")
        .values_list("offset", flat=True)
        .first()
    )


@dataclass(frozen=True)
class LogCounts:
    """How many events a stream has logged since it began, and how many its log holds now."""

    logged: int
    kept: int


def log_counts(*, stream_ids: list[int]) -> dict[int, LogCounts]:
    """``LogCounts`` of each stream, in one query whatever the log's size.

    Offsets are gapless from 0 and retention only ever deletes a stream's oldest
    events (its log's front: offsets follow logged_at), so the log holds exactly
    the offsets from its smallest to the head's next one: one primary-key probe
    per partition for the smallest, instead of a count over the stream's events.
    """
    oldest = LogEntry.objects.filter(stream_id=OuterRef("stream_id")).order_by("offset").values("offset")[:1]
    rows = (
        StreamHead.objects.filter(stream_id__in=stream_ids)
        .annotate(oldest=Subquery(oldest))
        .values_list("stream_id", "next_offset", "oldest")
    )
    counts = dict.fromkeys(stream_ids, LogCounts(logged=0, kept=0))
    for stream_id, logged, first in rows:
        counts[stream_id] = LogCounts(logged=logged, kept=0 if first is None else logged - first)
    return counts
