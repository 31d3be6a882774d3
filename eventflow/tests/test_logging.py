"""The request id: from a trusted proxy (or made), into the Celery messages the request queues, and into
the logs and audit rows of the tasks run from them; LOG_FORMAT=json."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.app.trace import trace_task_ret
from django.db import transaction
from django.test import Client
from kombu.message import Message

from eventflow.audit import audit_security
from eventflow.celery import app as celery_app
from eventflow.logs import JsonFormatter, PlainFormatter, RequestIdFilter
from eventflow.models import AuditEntry, AuditKind
from eventflow.redis import get_redis
from eventflow.request_context import (
    REQUEST_ID_HEADER,
    RequestContext,
    current_request,
    request_context_reset,
    request_context_set,
)
from ingestion.processing import kick_marker
from streams.models import LogEntry, Stream
from tests.fixtures import conf_overridden

ROOT = Path(__file__).resolve().parents[2]


@celery_app.task(name="eventflow.tests.audited", ignore_result=True)
def audited_task(target: str) -> None:
    with transaction.atomic():
        audit_security(action="test.task", target=target)


def published(queue: str = "celery") -> list[Message]:
    """Every message waiting in ``queue`` of the in-memory broker (the test run's), taken off it."""
    taken = []
    with celery_app.connection_for_read() as connection:
        channel = connection.default_channel
        while (message := channel.basic_get(queue=queue, no_ack=True)) is not None:
            taken.append(message)
    return taken


def run(message: Message) -> None:
    """Run a message's task in this process as a worker's pool does: its headers become the task's request."""
    headers = dict(message.headers)
    trace_task_ret(
        headers["task"],
        headers["id"],
        headers,
        message.body,
        message.content_type,
        message.content_encoding,
        app=celery_app,
    )


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """What the console handler would print, as JSON: the real filter and formatter, on the root logger."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    # Django's loggers print through their own handler and do not propagate (settings.LOGGING).
    loggers = [logging.getLogger(), logging.getLogger("django")]
    for logger in loggers:
        logger.addHandler(handler)
    yield out
    for logger in loggers:
        logger.removeHandler(handler)


def records(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.fixture(autouse=True)
def _empty_queues() -> None:
    published("celery")
    published("webhooks")


def _send(client: Client, ingest_key: str, stream: Stream, **headers: Any) -> str:
    # The kick is queued once per stream until a worker takes it: start from none waiting.
    get_redis().delete(kick_marker(stream.pk))
    response = client.post(
        "/api/v1/streams/shop/events",
        data={"type": "page_view", "payload": {"page": "/"}},
        content_type="application/json",
        HTTP_X_API_KEY=ingest_key,
        **headers,
    )
    assert response.status_code == 202, response.content
    return str(response["X-Request-ID"])


# Committed for real: the kick is queued on commit, inside the request, as in production.
@pytest.mark.django_db(transaction=True)
@conf_overridden(trusted_proxies=("10.0.0.0/8",))
def test_a_proxys_request_id_reaches_the_processing_task_and_its_logs(
    client: Client,
    stream: Stream,
    ingest_key: str,
    lines: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ingestion")
    answered = _send(client, ingest_key, stream, HTTP_X_REQUEST_ID="lb-8f2c", REMOTE_ADDR="10.0.0.7")
    assert answered == "lb-8f2c"

    [message] = published()
    assert message.headers["task"] == "ingestion.process_stream"
    assert message.headers[REQUEST_ID_HEADER] == "lb-8f2c"

    lines.truncate(0)
    lines.seek(0)
    run(message)
    assert LogEntry.objects.filter(stream=stream).count() == 1
    task_lines = [line for line in records(lines) if line["logger"] == "ingestion.tasks"]
    assert task_lines, records(lines)
    assert {line.get("request_id") for line in task_lines} == {"lb-8f2c"}
    # The task's context ends with it: nothing after names the request.
    assert current_request() is None
    logging.getLogger("ingestion.tasks").info("after")
    assert "request_id" not in records(lines)[-1]


@pytest.mark.django_db(transaction=True)
@conf_overridden(trusted_proxies=("10.0.0.0/8",))
def test_an_untrusted_clients_request_id_is_replaced_in_the_message_too(
    client: Client, stream: Stream, ingest_key: str
) -> None:
    answered = _send(client, ingest_key, stream, HTTP_X_REQUEST_ID="forged-id", REMOTE_ADDR="192.0.2.10")
    assert answered != "forged-id" and len(answered) == 32
    [message] = published()
    assert message.headers[REQUEST_ID_HEADER] == answered


def test_a_task_queued_in_a_request_writes_its_audit_rows_with_the_request_id(db: Any) -> None:
    token = request_context_set(RequestContext("req-5150", "203.0.113.4", "POST", "/api/v1/streams"))
    try:
        audited_task.apply_async(args=["stream:shop"])
    finally:
        request_context_reset(token)
    [message] = published()
    assert message.headers[REQUEST_ID_HEADER] == "req-5150"

    run(message)
    entry = AuditEntry.objects.get(kind=AuditKind.SECURITY, action="test.task")
    assert (entry.request_id, entry.target) == ("req-5150", "stream:shop")
    assert current_request() is None


def test_a_task_queued_outside_a_request_carries_no_id(db: Any) -> None:
    audited_task.apply_async(args=["beat"])
    [message] = published()
    assert REQUEST_ID_HEADER not in message.headers
    run(message)
    assert AuditEntry.objects.get(action="test.task").request_id == ""


def test_an_eager_task_leaves_the_requests_context_as_it_found_it(db: Any) -> None:
    context = RequestContext("req-eager", None, "POST", "/x")
    token = request_context_set(context)
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        audited_task.apply_async(args=["eager"])
        assert current_request() is context
    finally:
        celery_app.conf.task_always_eager = previous
        request_context_reset(token)
    assert AuditEntry.objects.get(action="test.task").request_id == "req-eager"


def test_djangos_own_request_lines_name_the_request(client: Client, db: Any, lines: io.StringIO) -> None:
    # "Not Found: …" is written after the middleware let go of the request: the id comes from the request.
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    [line] = [line for line in records(lines) if line["logger"] == "django.request"]
    assert line["request_id"] == response["X-Request-ID"]
    assert "request" not in line


def test_plain_lines_name_the_request_after_the_message() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom %s", ("now",), None)
    record.request_id = "abc"
    assert PlainFormatter("%(levelname)s %(name)s: %(message)s").format(record) == "ERROR x: boom now request_id=abc"
    placed = PlainFormatter("[%(request_id)s] %(message)s").format(record)
    assert placed == "[abc] boom now"


def _log_from_a_process(log_format: str | None) -> str:
    env = {key: value for key, value in os.environ.items() if key != "LOG_FORMAT"}
    if log_format is not None:
        env["LOG_FORMAT"] = log_format
    code = (
        "import django, logging; django.setup()\n"
        "from eventflow.request_context import RequestContext, request_context_set\n"
        "request_context_set(RequestContext('rid-1', None, 'GET', '/'))\n"
        "logging.getLogger('eventflow.check').warning('hello %s', 'there', extra={'stream_id': 7})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "eventflow.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stderr.strip().splitlines()[-1]


def test_log_format_json_prints_json_lines_and_people_get_text_by_default() -> None:
    line = json.loads(_log_from_a_process("json"))
    assert {key: line[key] for key in ("level", "logger", "message", "request_id", "stream_id")} == {
        "level": "WARNING",
        "logger": "eventflow.check",
        "message": "hello there",
        "request_id": "rid-1",
        "stream_id": 7,
    }
    assert line["time"].endswith("Z")
    text = _log_from_a_process(None)
    assert text.endswith("WARNING eventflow.check: hello there request_id=rid-1")
