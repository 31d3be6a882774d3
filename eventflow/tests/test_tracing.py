"""OpenTelemetry: one trace from an intake request to the processing task it queued; nothing when off."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from eventflow.redis import get_redis
from eventflow.tracing import instrument, tracer_provider_build, uninstrument
from ingestion.processing import kick_marker
from streams.models import LogEntry, Stream

from .test_logging import published, run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def exporter(stream: Stream, ingest_key: str) -> Iterator[InMemorySpanExporter]:
    """Spans of this process, kept in memory; after the stream and key exist, so their making is no trace."""
    published("celery")
    get_redis().delete(kick_marker(stream.pk))
    exporter = InMemorySpanExporter()
    provider = tracer_provider_build(service_name="eventflow-test", exporter=exporter)
    instrument(provider)
    # psycopg is traced from the connections opened after this: open the next one traced.
    connections.close_all()
    try:
        yield exporter
    finally:
        uninstrument()
        connections.close_all()
        provider.shutdown()


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _descends(span: ReadableSpan, ancestor: ReadableSpan, by_id: dict[int, ReadableSpan]) -> bool:
    current: ReadableSpan | None = span
    while current is not None:
        if current.context.span_id == ancestor.context.span_id:  # type: ignore[union-attr]
            return True
        parent = _parent(current)
        current = by_id.get(parent) if parent is not None else None
    return False


# Committed for real: the processing kick is queued on commit, inside the request, as in production.
@pytest.mark.django_db(transaction=True)
def test_one_trace_from_the_intake_request_to_the_processing_task(
    client: Client, stream: Stream, ingest_key: str, exporter: InMemorySpanExporter
) -> None:
    response = client.post(
        "/api/v1/streams/shop/events",
        data={"type": "page_view", "payload": {"page": "/pricing"}},
        content_type="application/json",
        HTTP_X_API_KEY=ingest_key,
    )
    assert response.status_code == 202, response.content
    [message] = published("celery")
    assert message.headers["task"] == "ingestion.process_stream"
    # W3C trace context rides in the message's headers.
    assert message.headers["traceparent"].startswith("00-")

    run(message)
    spans = list(exporter.get_finished_spans())
    assert LogEntry.objects.filter(stream=stream).count() == 1
    by_id = {span.context.span_id: span for span in spans}  # type: ignore[union-attr]
    [server] = [span for span in spans if span.kind is SpanKind.SERVER]
    assert server.name == "POST api/v1/streams/<slug:slug>/events"
    assert server.attributes is not None and server.attributes.get("http.status_code") == 202
    [publish] = [span for span in spans if span.kind is SpanKind.PRODUCER]
    [task] = [span for span in spans if span.kind is SpanKind.CONSUMER]
    assert publish.name == "apply_async/ingestion.process_stream"
    assert task.name == "run/ingestion.process_stream"

    trace_id = server.context.trace_id  # type: ignore[union-attr]
    assert {span.context.trace_id for span in spans} == {trace_id}  # type: ignore[union-attr]
    assert _parent(publish) == server.context.span_id  # type: ignore[union-attr]
    assert _parent(task) == publish.context.span_id  # type: ignore[union-attr]
    assert message.headers["traceparent"].split("-")[1] == f"{trace_id:032x}"

    # The request's and the task's PostgreSQL statements and Redis commands are spans of the same trace.
    def under(root: ReadableSpan, system: str) -> list[ReadableSpan]:
        return [
            span
            for span in spans
            if (span.attributes or {}).get("db.system") == system and _descends(span, root, by_id)
        ]

    assert under(server, "postgresql") and under(task, "postgresql")
    assert under(task, "redis")


def _process(code: str, **env: str) -> str:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "eventflow.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


# What a serving process has instrumented: its tracer provider, Django's middleware, psycopg, redis, Celery.
SERVING = (
    "import eventflow.wsgi, psycopg, redis\n"
    "from celery.signals import before_task_publish\n"
    "from django.conf import settings\n"
    "from opentelemetry import trace\n"
    "print(type(trace.get_tracer_provider()).__name__,"
    " any('opentelemetry' in entry for entry in settings.MIDDLEWARE),"
    " hasattr(psycopg.connect, '__wrapped__'),"
    " hasattr(redis.Redis.execute_command, '__wrapped__'),"
    " any('opentelemetry' in repr(receiver) for _, receiver in before_task_publish.receivers))\n"
)


def test_tracing_is_off_without_an_endpoint_and_nothing_is_instrumented() -> None:
    assert _process(SERVING) == "ProxyTracerProvider False False False False"


def test_an_endpoint_turns_it_on_in_a_serving_process() -> None:
    # Nothing listens on the discard port: no span is made here, so nothing is sent.
    assert _process(SERVING, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9") == "TracerProvider True True True True"


def test_a_worker_process_sets_up_once(monkeypatch: Any) -> None:
    code = (
        "import django; django.setup()\n"
        "from celery.signals import worker_process_init\n"
        "from opentelemetry import trace\n"
        "from eventflow import tracing\n"
        "worker_process_init.send(sender='w1'); first = tracing._provider\n"
        "worker_process_init.send(sender='w1')\n"
        "print(first is tracing._provider, trace.get_tracer_provider() is first,"
        " first.resource.attributes['service.name'])\n"
    )
    assert _process(code, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9") == "True True eventflow-worker"
