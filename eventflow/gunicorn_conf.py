"""gunicorn's hooks (``--config=python:eventflow.gunicorn_conf``; the command line sets everything else)."""

from __future__ import annotations

from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: its live gauges leave the metrics (its counters stay, summed)."""
    from eventflow.metrics import mark_process_dead

    mark_process_dead(worker.pid)
