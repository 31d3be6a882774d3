"""Waking long polls: one LISTEN connection per process, fanned out to waiting threads.

The log append sends ``pg_notify('eventflow_log', '<stream_id>:<next_offset>')``
when it commits; consumer groups send ``'<stream_id>:<group_id>'`` on
``eventflow_consumer`` when a lease is given back, a group is sought, resumed
or deleted. A waiting poll holds no database connection: it waits on a
``threading.Event`` that the listener thread sets.

When the listener is down, waiters re-check once a second until it is back
(and every waiter re-checks when it reconnects, for what it may have missed).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connections

from streams.log import LOG_CHANNEL

logger = logging.getLogger(__name__)

CONSUMER_CHANNEL = "eventflow_consumer"
DEGRADED_RECHECK_SECONDS = 1.0
START_TIMEOUT_SECONDS = 2.0


class Waiter:
    __slots__ = ("_event", "group_id", "stream_id")

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        # None until the waiting poll knows its group: it then hears every group's news.
        self.group_id: int | None = None
        self._event = threading.Event()

    def wake(self) -> None:
        self._event.set()

    def wait(self, timeout: float, *, listening: bool) -> bool:
        woken = self._event.wait(timeout if listening else min(timeout, DEGRADED_RECHECK_SECONDS))
        self._event.clear()
        return woken


class LogNotifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[int, set[Waiter]] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._listening = threading.Event()
        self._stop = threading.Event()

    # --- waiters -------------------------------------------------------------------

    @contextmanager
    def waiter(self, stream_id: int) -> Iterator[Waiter]:
        """Register a waiter for the stream; register *before* checking for news, so none is missed."""
        self.start()
        waiter = Waiter(stream_id)
        with self._lock:
            self._waiters.setdefault(stream_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                waiters = self._waiters.get(stream_id)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[stream_id]

    def wait(self, waiter: Waiter, timeout: float) -> bool:
        return waiter.wait(timeout, listening=self._listening.is_set())

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def waiting(self) -> int:
        with self._lock:
            return sum(len(w) for w in self._waiters.values())

    def _wake(self, stream_id: int, group_id: int | None) -> None:
        with self._lock:
            targets = list(self._waiters.get(stream_id, ()))
        for waiter in targets:
            if group_id is None or waiter.group_id is None or waiter.group_id == group_id:
                waiter.wake()

    def _wake_all(self) -> None:
        with self._lock:
            targets = [w for waiters in self._waiters.values() for w in waiters]
        for waiter in targets:
            waiter.wake()

    def dispatch(self, channel: str, payload: str) -> None:
        stream_part, _, rest = payload.partition(":")
        try:
            stream_id = int(stream_part)
            group_id = int(rest) if channel == CONSUMER_CHANNEL else None
        except ValueError:
            return
        self._wake(stream_id, group_id)

    # --- the listener thread ---------------------------------------------------------

    def start(self) -> bool:
        """Start the listener if this process has none (waiting briefly for it); True if it is listening."""
        with self._lock:
            started = self._thread is None or not self._thread.is_alive() or self._pid != os.getpid()
            if started:
                self._pid = os.getpid()
                self._stop.clear()
                self._listening.clear()
                self._thread = threading.Thread(target=self._run, name="eventflow-log-listener", daemon=True)
                self._thread.start()
        if started:
            return self._listening.wait(START_TIMEOUT_SECONDS)
        return self._listening.is_set()

    def stop(self) -> None:
        with self._lock:
            thread = self._thread
            self._thread = None
        self._stop.set()
        if thread is not None:
            thread.join(timeout=5)
        self._listening.clear()

    def _connect(self) -> psycopg.Connection:
        settings_dict = connections["default"].settings_dict
        params = {
            "dbname": settings_dict["NAME"],
            "user": settings_dict.get("USER") or None,
            "password": settings_dict.get("PASSWORD") or None,
            "host": settings_dict.get("HOST") or None,
            "port": settings_dict.get("PORT") or None,
        }
        return psycopg.connect(
            autocommit=True,
            connect_timeout=5,
            application_name="eventflow-log-listener",
            **{k: v for k, v in params.items() if v is not None},
        )

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {LOG_CHANNEL}")
                    conn.execute(f"LISTEN {CONSUMER_CHANNEL}")
                    self._listening.set()
                    self._wake_all()
                    backoff = 0.5
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self.dispatch(note.channel, note.payload)
            except Exception:  # the listener must outlive any database trouble
                logger.warning("log listener lost its connection; retrying in %.1fs", backoff, exc_info=True)
            finally:
                self._listening.clear()
                self._wake_all()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)


_notifier = LogNotifier()


def log_notifier() -> LogNotifier:
    return _notifier
