"""The request-row buffer: bounded, drops the oldest past its cap, and a crash loses at most the documented bound.

The crash tests run a real process that records rows through the buffer with
its flusher thread (as a web worker does), then kill it: with SIGKILL only the
rows of the last flush interval may be missing, and what is missing is always
the newest; a normal exit writes everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from eventflow.audit import AuditBuffer, request_row
from eventflow.models import AuditEntry
from launcher.devservices import BASE_DIR
from tests.subprocesses import current_database_url

CHILD = """
import os, sys, time
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "eventflow.settings")
django.setup()
from datetime import UTC, datetime
from eventflow.audit import audit_flusher_start, audit_request_record, request_row
audit_flusher_start()
rows, pause = int(sys.argv[1]), float(sys.argv[2])
for seq in range(rows):
    audit_request_record(request_row(
        at=datetime.now(UTC), request_id=f"seq-{seq}", method="POST", path=f"/crash/{seq}", status=202,
        duration_ms=1.0, caller="ef_ingest_x", user_id=None, key_prefix="ef_ingest_x", stream_id=None,
        client_ip="192.0.2.1"))
    print(seq, time.time(), flush=True)
    time.sleep(pause)
print("done", flush=True)
"""

FLUSH_SECONDS = 0.5
# Scheduling on a busy machine: a flush may start this much late and take this long.
SLACK_SECONDS = 1.0


def _row(seq: int) -> Any:
    return request_row(
        at=datetime.now(UTC),
        request_id=str(seq),
        method="POST",
        path=f"/p/{seq}",
        status=202,
        duration_ms=1.0,
        caller="",
        user_id=None,
        key_prefix="",
        stream_id=None,
        client_ip=None,
    )


def test_past_the_cap_the_oldest_rows_are_dropped_and_counted() -> None:
    buffer = AuditBuffer(flush_seconds=60, flush_rows=3, max_rows=5)
    for seq in range(8):
        buffer.add(_row(seq))
    assert len(buffer) == 5
    assert buffer.dropped == 3
    assert [row[1] for row in buffer._rows] == ["3", "4", "5", "6", "7"]


@pytest.mark.django_db
def test_a_failed_write_keeps_the_rows_for_the_next_try(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = AuditBuffer(flush_seconds=60, flush_rows=100, max_rows=100)
    for seq in range(3):
        buffer.add(_row(seq))

    def refuse(rows: list[Any]) -> None:
        raise OSError("database unreachable")

    monkeypatch.setattr("eventflow.audit.rows_write", refuse)
    assert buffer.flush() == 0
    assert len(buffer) == 3
    monkeypatch.undo()
    assert buffer.flush() == 3
    assert sorted(AuditEntry.objects.values_list("request_id", flat=True)) == ["0", "1", "2"]


def _child(rows: int, pause: float, **settings: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DATABASE_URL": current_database_url(),
        "EVENTFLOW_AUDIT_FLUSH_SECONDS": str(FLUSH_SECONDS),
        **settings,
    }
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(rows), str(pause)],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _written() -> list[int]:
    return sorted(int(path.rsplit("/", 1)[1]) for path in AuditEntry.objects.values_list("path", flat=True))


@pytest.mark.django_db(transaction=True)
def test_sigkill_loses_at_most_the_last_flush_interval() -> None:
    child = _child(100_000, 0.002)
    assert child.stdout is not None
    recorded: list[tuple[int, float]] = []
    try:
        for line in child.stdout:
            seq, at = line.split()
            recorded.append((int(seq), float(at)))
            if len(recorded) >= 1500:
                break
        killed_at = time.time()
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    recorded += [(int(s), float(a)) for s, a in (line.split() for line in rest.splitlines() if line != "done")]
    assert len(recorded) >= 1500, "the child did not start"

    written = _written()
    # What was written is a gapless prefix: only the newest rows can be missing.
    assert written == list(range(len(written)))
    assert written, "nothing was flushed in the background"
    missing = [(seq, at) for seq, at in recorded if seq >= len(written)]
    # Every row recorded longer ago than a flush interval (plus scheduling slack) is there.
    assert all(at > killed_at - FLUSH_SECONDS - SLACK_SECONDS for _, at in missing), (len(missing), killed_at)


@pytest.mark.django_db(transaction=True)
def test_sigkill_loses_at_most_the_row_cap() -> None:
    # Never flushed by time, only once 50 rows wait; at most 100 rows waiting or being written.
    child = _child(
        100_000,
        0.001,
        EVENTFLOW_AUDIT_FLUSH_SECONDS="3600",
        EVENTFLOW_AUDIT_FLUSH_ROWS="50",
        EVENTFLOW_AUDIT_BUFFER_MAX="100",
    )
    assert child.stdout is not None
    count = 0
    try:
        for _line in child.stdout:
            count += 1
            if count >= 1000:
                break
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    count += len([line for line in rest.splitlines() if line != "done"])
    written = _written()
    assert len(written) >= count - 100, (len(written), count)


@pytest.mark.django_db(transaction=True)
def test_a_normal_exit_writes_every_row() -> None:
    child = _child(300, 0.0, EVENTFLOW_AUDIT_FLUSH_SECONDS="3600")
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.splitlines()[-1] == "done"
    assert _written() == list(range(300))
