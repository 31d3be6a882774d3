"""Helpers for talking to the ingestion API in tests."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from django.db import connection
from django.test import Client

from ingestion.models import InboxEvent

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse


def events_url(slug: str) -> str:
    return f"/api/v1/streams/{slug}/events"


def batch_url(slug: str) -> str:
    return f"/api/v1/streams/{slug}/events/batch"


def post_raw(
    client: Client,
    url: str,
    body: bytes,
    *,
    key: str | None,
    content_type: str = "application/json",
    **extra: Any,
) -> TestResponse:
    if key is not None:
        extra["HTTP_X_API_KEY"] = key
    # The test client leaves Content-Type out when the body is empty.
    extra.setdefault("CONTENT_TYPE", content_type)
    return client.post(url, data=body, content_type=content_type, **extra)


def post_event(client: Client, slug: str, event: Any, *, key: str | None, **extra: Any) -> TestResponse:
    return post_raw(client, events_url(slug), orjson.dumps(event), key=key, **extra)


def post_batch(
    client: Client, slug: str, events: Any, *, key: str | None, sent_at: str | None = None, **extra: Any
) -> TestResponse:
    body: dict[str, Any] = {"events": events}
    if sent_at is not None:
        body["sent_at"] = sent_at
    return post_raw(client, batch_url(slug), orjson.dumps(body), key=key, **extra)


def assert_api_error(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    """Assert the status and the machine-readable error body; return ``details``."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return error["details"]


def inbox_event_ids(stream_id: int | None = None) -> list[str]:
    rows = InboxEvent.objects.all() if stream_id is None else InboxEvent.objects.filter(stream_id=stream_id)
    return sorted(rows.values_list("event_id", flat=True))


def separate_connection() -> psycopg.Connection[Any]:
    """A new autocommit connection to the test database, outside Django's (it sees only committed rows)."""
    db = connection.settings_dict
    return psycopg.connect(
        dbname=db["NAME"],
        host=db["HOST"] or None,
        port=db["PORT"] or None,
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        autocommit=True,
    )


def read_http_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length from a raw socket."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, body
        body += chunk
    return int(status_line.split()[1]), headers, body
