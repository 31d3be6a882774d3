"""Asking for processing: the fast path after an ingest commit."""

from __future__ import annotations

import logging

from eventflow import conf
from eventflow.redis import get_redis, guarded

logger = logging.getLogger(__name__)

# While this marker lives a task for the stream is queued or draining it; the
# drain deletes it before each look for more due rows, so events committed
# after that point queue a fresh task. It expires on its own in case the task
# was lost.
KICK_MARKER_SECONDS = 5


def kick_marker(stream_id: int) -> str:
    return f"{conf.get().redis_key_prefix}:kick:{stream_id}"


def processing_request(stream_id: int) -> None:
    claimed = guarded(
        "processing kick",
        lambda: bool(get_redis().set(kick_marker(stream_id), 1, nx=True, ex=KICK_MARKER_SECONDS)),
        False,
    )
    if not claimed:
        return
    # Lazy: ingestion.tasks imports this module; moved there, services → tasks → pipeline → alerts → services.
    from .tasks import process_stream

    try:
        process_stream.apply_async(args=[stream_id])
    except Exception:
        logger.warning("could not queue processing for stream %s; the sweep will pick it up", stream_id, exc_info=True)


def processing_request_clear(stream_id: int) -> None:
    guarded("processing kick clear", lambda: get_redis().delete(kick_marker(stream_id)), 0)
