"""OpenTelemetry tracing, off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

Set up once per process: by eventflow/wsgi.py before Django loads its
middleware (the Django instrumentation adds one), and in each Celery worker
process (``celery_tracing_connect``, from eventflow/celery.py). When it is on,
requests, Celery publishes and runs, PostgreSQL statements (psycopg) and Redis
commands become spans, sent in batches over OTLP/HTTP to the endpoint. The
trace context travels from a request into the tasks it queues in the Celery
message's headers (``traceparent``), so a request and the processing it
caused are one trace.

When it is off nothing is instrumented and no provider is made: requests,
statements and tasks run exactly as without this module (the imports below sit
inside the functions so that an untraced process never loads the instrumentations). The exporter reads the
standard ``OTEL_EXPORTER_OTLP_*`` variables itself (headers, timeout,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); ``OTEL_SERVICE_NAME`` names the
process (default ``eventflow-web`` or ``eventflow-worker``),
``OTEL_RESOURCE_ATTRIBUTES`` adds to it, and ``OTEL_TRACES_SAMPLER`` /
``OTEL_TRACES_SAMPLER_ARG`` choose the sampling (the SDK's default: all).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery.signals import worker_init, worker_process_init, worker_process_shutdown, worker_shutdown

from eventflow import conf

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

logger = logging.getLogger(__name__)

_provider: TracerProvider | None = None


def tracing_enabled() -> bool:
    settings = conf.at_start()
    return bool(settings.otlp_endpoint.strip() or settings.otlp_traces_endpoint.strip())


def tracer_provider_build(*, service_name: str, exporter: SpanExporter | None = None) -> TracerProvider:
    """A provider exporting to ``exporter`` as each span ends (tests), or to OTLP/HTTP in batches."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    attributes = {} if conf.at_start().otel_service_name else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def instrument(provider: TracerProvider) -> None:
    """Django, Celery, psycopg and redis spans from ``provider``; call before Django loads its middleware."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    DjangoInstrumentor().instrument(tracer_provider=provider, excluded_urls="/health$,/ready$,/metrics$,/static/")
    CeleryInstrumentor().instrument(tracer_provider=provider)
    # No SQL comments: they would make every statement text unique and defeat PostgreSQL's statement stats.
    PsycopgInstrumentor().instrument(tracer_provider=provider, enable_commenter=False)
    RedisInstrumentor().instrument(tracer_provider=provider)


def uninstrument() -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    for instrumentor in (DjangoInstrumentor(), CeleryInstrumentor(), PsycopgInstrumentor(), RedisInstrumentor()):
        instrumentor.uninstrument()


def tracing_setup(*, service_name: str = "eventflow-web") -> bool:
    """Once per process: trace to the OTLP endpoint if one is set. True when tracing is on."""
    global _provider
    if _provider is not None:
        return True
    if not tracing_enabled():
        return False
    from opentelemetry import trace

    _provider = tracer_provider_build(service_name=service_name)
    trace.set_tracer_provider(_provider)
    instrument(_provider)
    logger.info(
        "tracing to %s",
        conf.at_start().otlp_traces_endpoint or conf.at_start().otlp_endpoint,
    )
    return True


def tracing_shutdown() -> None:
    """Send what the batch still holds (a worker process exiting)."""
    if _provider is not None:
        _provider.shutdown()


def _worker_process_started(**_: Any) -> None:
    # A prefork pool's child (or the solo pool's one process): the child traces on its own, with its own
    # batch thread, rather than through a provider forked from the parent.
    tracing_setup(service_name="eventflow-worker")


def _worker_started(sender: Any = None, **_: Any) -> None:
    # The thread pool runs tasks in the worker's own process and sends no worker_process_init.
    pool = getattr(sender, "pool_cls", "")
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    if "thread" in name:
        tracing_setup(service_name="eventflow-worker")


def _worker_stopping(**_: Any) -> None:
    tracing_shutdown()


def celery_tracing_connect() -> None:
    """Trace in Celery worker processes when tracing is on (eventflow/celery.py calls it)."""
    worker_process_init.connect(_worker_process_started, weak=False, dispatch_uid="eventflow.tracing.process")
    worker_init.connect(_worker_started, weak=False, dispatch_uid="eventflow.tracing.worker")
    worker_process_shutdown.connect(_worker_stopping, weak=False, dispatch_uid="eventflow.tracing.process_stop")
    worker_shutdown.connect(_worker_stopping, weak=False, dispatch_uid="eventflow.tracing.worker_stop")
