"""Asking for processing: the fast path after an ingest commit."""

from __future__ import annotations

import atexit
import contextvars
import logging
import os
import threading

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


class Kicker:
    """A serving process's processing kicks, sent by one background thread and merged per stream.

    A kick is a Redis round trip (``processing_request``: SET NX, and a task when
    the marker was free). Sent inside the request after its COMMIT, it was a tenth
    of a single event's CPU in a web process under load, and the answer waited on
    it. Here the request only notes the stream; the thread sends one kick for
    every stream noted since its last round. Each noted kick is followed by a
    ``processing_request`` that starts after it was noted, so after its COMMIT,
    which is all a kick must guarantee (ingestion/processing.py's marker). The kick
    runs in the context of the first request that noted it (its request id and
    trace reach the task). Kicks noted but not yet sent when the process dies are
    left to the beat's sweep, as when Redis is down.

    Started by a serving process (eventflow/wsgi.py); until then, and in any other
    process, ``kick`` sends at once in the caller's thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._due: dict[int, contextvars.Context] = {}
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._stopping = False
        # Kicks noted and rounds sent, for the tests and docs/BENCHMARKS.md.
        self.noted = 0
        self.sent = 0

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="processing-kicker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Send what is noted and end the thread (at exit)."""
        with self._lock:
            thread, self._stopping = self._thread, True
            self._wake.notify()
        if thread is not None:
            thread.join(timeout)
        self._thread = None

    def after_fork(self) -> None:
        """In a forked child (gunicorn --preload), which has one thread and none of the parent's: start afresh."""
        if self._thread is None:
            return
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._due = {}
        self._thread = None
        self.start()

    def kick(self, stream_id: int) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            # Not started (or stopped, or its thread ended): sent here, as in any other process.
            processing_request(stream_id)
            return
        with self._lock:
            self.noted += 1
            if stream_id not in self._due:
                self._due[stream_id] = contextvars.copy_context()
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._due and not self._stopping:
                    self._wake.wait()
                due, self._due = self._due, {}
                stopping = self._stopping
            for stream_id, context in due.items():
                self.sent += 1
                try:
                    context.run(processing_request, stream_id)
                except Exception:  # one stream's kick never stops the others'; the sweep covers it
                    logger.exception("processing kick for stream %s failed; the sweep will queue it", stream_id)
            if stopping:
                return


kicker = Kicker()
os.register_at_fork(after_in_child=kicker.after_fork)


def kicker_start() -> None:
    """Send this process's processing kicks from a background thread, and what waits at exit."""
    first = kicker._thread is None and kicker._pid is None
    kicker.start()
    if first:
        atexit.register(kicker.stop)
