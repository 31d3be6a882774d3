"""Logs and traces from real processes: gunicorn and a prefork Celery worker, set up as in production.

One intake request through gunicorn, from a trusted proxy with its X-Request-ID:
the worker's JSON log lines of the processing run name that id, and an OTLP/HTTP
receiver in this test gets the web process's and the worker's spans as one trace.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from launcher.devservices import free_port
from streams.models import ApiKeyKind, LogEntry
from streams.services import api_key_create, stream_create
from tests.workers import Stack, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

# (service name, span name, kind, trace id, span id, parent span id), as the collector got them.
Received = tuple[str, str, int, str, str, str]


class Collector:
    """An OTLP/HTTP traces endpoint on the loopback address that keeps what it is sent."""

    def __init__(self) -> None:
        self.spans: list[Received] = []
        received = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            received.append(
                                (
                                    attributes.get("service.name", ""),
                                    span.name,
                                    span.kind,
                                    span.trace_id.hex(),
                                    span.span_id.hex(),
                                    span.parent_span_id.hex(),
                                )
                            )
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    collector = Collector()
    yield collector
    collector.close()


@pytest.fixture
def stack(transactional_db: Any, tmp_path: Path, collector: Collector) -> Iterator[Stack]:
    stack = Stack(
        tmp_path / "stack",
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "LOG_FORMAT": "json",
            "EVENTFLOW_TRUSTED_PROXIES": "127.0.0.1",
        },
    )
    try:
        yield stack
    finally:
        stack.close()
        print(stack.log_tails())


def test_a_request_through_gunicorn_and_a_worker_is_one_trace_and_its_id_is_in_the_workers_json_logs(
    stack: Stack, collector: Collector
) -> None:
    stream = stream_create(slug="shop", name="Shop", with_starter_schemas=True)
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key
    stack.web(workers=1)
    worker = stack.worker()
    stack.wait_ready()

    with stack.client() as client:
        response = client.post(
            "/api/v1/streams/shop/events",
            json={"type": "page_view", "payload": {"page": "/"}},
            headers={"X-API-Key": key, "X-Request-ID": "edge-5e1f"},
        )
    assert response.status_code == 202, response.text
    assert response.headers["X-Request-ID"] == "edge-5e1f"
    wait_until(lambda: LogEntry.objects.filter(stream=stream).exists(), timeout=30, what="the event logged")

    def worker_lines() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("logger") == "ingestion.tasks"]

    processed = wait_until(worker_lines, timeout=10, what="the worker's line about the run")
    assert {line.get("request_id") for line in processed} == {"edge-5e1f"}

    def both() -> tuple[Received, Received] | None:
        servers = [s for s in collector.spans if s[0] == "eventflow-web" and s[1].startswith("POST api/v1/streams")]
        runs = [s for s in collector.spans if s[0] == "eventflow-worker" and s[1] == "run/ingestion.process_stream"]
        return (servers[0], runs[0]) if servers and runs else None

    server, run = wait_until(both, timeout=15, what="the web's and the worker's spans at the collector")
    assert run[3] == server[3], collector.spans
    publish = [s for s in collector.spans if s[1] == "apply_async/ingestion.process_stream" and s[3] == server[3]]
    assert publish and run[5] == publish[0][4]
    # The worker's own statements are in the same trace.
    assert any(s[0] == "eventflow-worker" and s[3] == server[3] and s[2] == 3 for s in collector.spans)
