"""Log lines that name their request: a filter and the two formats (``LOG_FORMAT``).

``RequestIdFilter`` (on the console handler, so it sees every record that is
printed, whichever logger wrote it) puts the id of the request being served
(eventflow/request_context.py) on each record as ``request_id``: in a web
process, the request's; in a worker, the request that caused the task. Django's
own ``django.request`` lines are written after the middleware has let go of
the request, so for them the id is read from the request they carry.

``LOG_FORMAT=json`` prints one JSON object a line (python-json-logger), for a
log collector; any other value is a Python logging format for people, to
which `` request_id=…`` is added when there is one and the format does not
place it itself.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from .request_context import current_request_id

# An API key as streams/services.py issues it, and the part of it that is stored and shown (its prefix).
_API_KEY_RE = re.compile(r"(ef_(?:ingest|secret)_[A-Za-z0-9_-]{8})[A-Za-z0-9_-]+")


def keys_masked(text: str) -> str:
    """``text`` with every API key cut to its display prefix: the SDK paths take a key in the URL
    (``/k/{key}/…``), and a path must not carry it into the audit log or a log line."""
    return _API_KEY_RE.sub(r"\1…", text) if "ef_" in text else text


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id()
        if not request_id:
            request_id = getattr(getattr(record, "request", None), "request_id", "") or ""
        record.request_id = request_id
        # Django's "Not Found: /k/ef_ingest_…/i" lines name the path, key and all.
        if isinstance(record.msg, str):
            record.msg = keys_masked(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(keys_masked(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", "")
        if request_id and "request_id" not in self._fmt:  # type: ignore[operator]
            first, newline, rest = line.partition("\n")
            # On the first line, so a traceback below it still reads as one.
            return f"{first} request_id={request_id}{newline}{rest}"
        return line


class JsonFormatter(_JsonFormatter):
    """``{"time", "level", "logger", "message", "request_id"?, …extra, "exc_info"?}``, one a line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", False)
        super().__init__(*args, **kwargs)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        # UTC, ISO 8601 with milliseconds: what collectors parse without a format of their own.
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        # Absent rather than empty outside a request (beat, start-up); a request object is no field.
        if not log_data.get("request_id"):
            log_data.pop("request_id", None)
        log_data.pop("request", None)
