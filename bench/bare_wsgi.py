"""A WSGI application that does nothing: under gunicorn it measures gunicorn's own cost per request."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b'{"event_id":"00000000-0000-4000-8000-000000000000","status":"accepted"}'


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    environ["wsgi.input"].read()
    start_response("202 Accepted", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]
