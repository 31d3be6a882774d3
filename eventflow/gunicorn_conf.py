"""gunicorn's hooks (``--config=python:eventflow.gunicorn_conf``; the command line sets everything else).

This runs in gunicorn's master, which never loads the application: it imports
no EventFlow module (``eventflow`` would bring the Celery app and Django's
settings into the master).
"""

from __future__ import annotations

import os
import socket
from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: its live gauges leave the metrics (its counters stay, summed).

    The files are named as eventflow.metrics.process_identifier names them: host and pid.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(f"{socket.gethostname()}-{worker.pid}", path)
