"""Asking for processing: the fast path after an ingest commit."""

from __future__ import annotations

import logging

from eventflow import conf
from eventflow.celery_helpers import queue_once, queue_once_clear

logger = logging.getLogger(__name__)

# While this marker lives a task for the stream is queued or draining it; the
# drain deletes it before each look for more due rows, so events committed
# after that point queue a fresh task. It expires on its own in case the task
# was lost.
KICK_MARKER_SECONDS = 5
PROCESS_TASK = "ingestion.process_stream"


def kick_marker(stream_id: int) -> str:
    return f"{conf.get().redis_key_prefix}:kick:{stream_id}"


def processing_request(stream_id: int) -> None:
    # Redis down: not queued, so the intake pays no broker attempt per request; the sweep queues it.
    queue_once(
        marker=kick_marker(stream_id),
        seconds=KICK_MARKER_SECONDS,
        task_name=PROCESS_TASK,
        args=[stream_id],
        if_redis_down=False,
    )


def processing_request_clear(stream_id: int) -> None:
    queue_once_clear(kick_marker(stream_id))
