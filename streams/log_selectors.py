"""Reads of the stream log that several apps ask: where it starts, where a time falls in it.

Beside the log's writes (streams/log.py, which also answers the head and an offset
range's time window); the measured read paths that stay with their readers say why
there: the consumer poll (consumers/services.py) and the query API (analytics/query.py).
"""

from __future__ import annotations

from datetime import datetime

from .models import LogEntry


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
