"""Group commit: single events that arrive together in one process are written by one statement.

A single-event request spends most of its database time on what every
statement costs whatever its size: the round trip, the executor's start, the
commit and its WAL flush. ``GroupCommit.insert`` lets the requests of one
process share that cost. The first request to arrive becomes the leader and
writes its own row; requests arriving while it waits on PostgreSQL queue
their rows, and the next leader, one of them, writes all of those in one go.
Nobody waits for a timer: a request alone is written at once, as before.

Each group is written with the intake's own statement (``ingestion.services``:
idempotency, the log check, ``ON CONFLICT``), once per (stream, key) in it and
in one transaction; every request is answered only after that COMMIT. The
events of one statement share one received time, the earliest of them (at
most one commit's wait earlier than their own). A row whose ``event_id``
another row of the same group already carries is a duplicate, as it would be
written a moment later. If the statement fails, every request of the group
gets the error, as it would have alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction

# (stream_id, rows, received_at, api_key_id) -> the event_ids written
Insert = Callable[..., set[str]]


@dataclass(eq=False)
class _Entry:
    stream_id: int
    api_key_id: int | None
    event_id: str
    row: bytes
    received_at: datetime
    done: threading.Event = field(default_factory=threading.Event)
    # Set by the leader: written (True), a duplicate (False), or the error the group's statement raised.
    inserted: bool = False
    error: BaseException | None = None
    # Set instead when this entry's thread is to lead the next group.
    lead: bool = False


class GroupCommit:
    """One process's queue of single events waiting to be written."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Entry] = []
        self._leading = False
        # Statements and rows written, for the tests and docs/HOT_PATHS.md's figures.
        self.groups = 0
        self.rows = 0

    def insert(
        self,
        *,
        stream_id: int,
        event_id: str,
        row: bytes,
        received_at: datetime,
        api_key_id: int | None,
        write: Insert,
        committed: Callable[[int], None],
    ) -> bool:
        """Write one checked event (``row``, as ``write`` takes it); True if new, False if a duplicate.

        ``committed(stream_id)`` runs once per stream of the group after its COMMIT.
        """
        entry = _Entry(stream_id, api_key_id, event_id, row, received_at)
        with self._lock:
            self._queue.append(entry)
            lead = not self._leading
            if lead:
                self._leading = True
        if not lead:
            entry.done.wait()
            if not entry.lead:
                if entry.error is not None:
                    raise entry.error
                return entry.inserted
        self._lead(write, committed)
        if entry.error is not None:
            raise entry.error
        return entry.inserted

    def _lead(self, write: Insert, committed: Callable[[int], None]) -> None:
        with self._lock:
            group, self._queue = self._queue, []
        try:
            written = self._write(group, write)
        except BaseException as exc:  # noqa: BLE001 - handed to every request of the group, raised there
            for entry in group:
                entry.error = exc
        else:
            seen: set[tuple[int, str]] = set()
            for entry in group:
                key = (entry.stream_id, entry.event_id)
                entry.inserted = key in written and key not in seen
                seen.add(key)
            for stream_id in sorted({stream_id for stream_id, _ in written}):
                committed(stream_id)
        finally:
            with self._lock:
                # Whoever queued meanwhile is written next, led by the first of them.
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].done.set()
                else:
                    self._leading = False
            for entry in group:
                entry.done.set()

    def _write(self, group: list[_Entry], write: Insert) -> set[tuple[int, str]]:
        by_target: dict[tuple[int, int | None], list[_Entry]] = {}
        for entry in group:
            by_target.setdefault((entry.stream_id, entry.api_key_id), []).append(entry)
        self.groups += 1
        self.rows += len(group)
        written: set[tuple[int, str]] = set()

        def each() -> None:
            for (stream_id, api_key_id), entries in by_target.items():
                ids = write(
                    stream_id=stream_id,
                    rows=[entry.row for entry in entries],
                    received_at=min(entry.received_at for entry in entries),
                    api_key_id=api_key_id,
                )
                written.update((stream_id, event_id) for event_id in ids)

        if len(by_target) == 1:
            each()  # one statement on the intake's autocommit connection: its own transaction
        else:
            with transaction.atomic():
                each()
        return written


group_commit = GroupCommit()
