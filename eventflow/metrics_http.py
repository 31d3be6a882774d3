"""GET /metrics (the collectors read at scrape time, the exposition, who may read it) and the HTTP middleware.

The counters are in eventflow/metrics.py; what the database and Redis already
know is read here when Prometheus scrapes, each read under a short timeout.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

from django.db import connection, transaction
from django.db.models import Count, F, Min
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler, generate_latest
from prometheus_client.registry import Collector

from consumers.kafka_metrics import KafkaCollector
from consumers.models import ConsumerGroup, WebhookSubscription
from eventflow import conf
from eventflow.audit import audit_buffer
from eventflow.health import heartbeat_key
from eventflow.metrics import AUDIT_BUFFER_DEPTH, HTTP_LATENCY, HTTP_REQUESTS, child
from eventflow.redis import get_redis, redis_available
from ingestion.models import InboxEvent
from streams.retention import log_partitions_ahead

logger = logging.getLogger(__name__)

# --- collectors read at scrape time ------------------------------------------------------------

SCRAPE_STATEMENT_TIMEOUT_MS = 2000


class DatabaseCollector(Collector):
    """Inbox depth and age, consumer lag, disabled webhooks and the log's partitions ahead, read from
    PostgreSQL when scraped."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        up = GaugeMetricFamily("eventflow_scrape_database_up", "1 when the scrape's database reads answered.")
        depth = GaugeMetricFamily("eventflow_inbox_events", "Events waiting in the inbox.", labels=["stream"])
        age = GaugeMetricFamily(
            "eventflow_inbox_oldest_age_seconds", "Age of the oldest event waiting in the inbox.", labels=["stream"]
        )
        lag = GaugeMetricFamily(
            "eventflow_consumer_lag_events",
            "Events in the log a consumer group (pull or webhook) has not committed.",
            labels=["stream", "group", "kind"],
        )
        disabled = GaugeMetricFamily(
            "eventflow_webhook_subscriptions_disabled", "Webhook subscriptions now disabled.", labels=["stream"]
        )
        partitions = GaugeMetricFamily(
            "eventflow_log_partitions_ahead_seconds",
            "Time until appends find no log partition: retention creates them ahead (0: appends fail now).",
        )
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    # A slow scrape must not hold a web worker: the read gives up and says so.
                    cursor.execute(f"SET LOCAL statement_timeout = {SCRAPE_STATEMENT_TIMEOUT_MS}")
                inbox = list(
                    InboxEvent.objects.values("stream__slug")
                    .annotate(n=Count("id"), oldest=Min("received_at"))
                    .values_list("stream__slug", "n", "oldest")
                )
                groups = list(
                    ConsumerGroup.objects.values_list(
                        "stream__slug", "name", "kind", F("stream__head__next_offset") - F("committed_offset")
                    )
                )
                off = list(
                    WebhookSubscription.objects.filter(is_active=False)
                    .values("stream__slug")
                    .annotate(n=Count("id"))
                    .values_list("stream__slug", "n")
                )
                ahead = log_partitions_ahead()
        except Exception as exc:  # noqa: BLE001 - a scrape answers what it can
            logger.warning("metrics: database collector failed (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        now = time.time()
        for slug, count, oldest in inbox:
            depth.add_metric([slug], count)
            age.add_metric([slug], max(0.0, now - oldest.timestamp()))
        for slug, name, kind, behind in groups:
            lag.add_metric([slug, name, kind], max(0, behind or 0))
        for slug, count in off:
            disabled.add_metric([slug], count)
        partitions.add_metric([], ahead.total_seconds())
        up.add_metric([], 1)
        yield from (up, depth, age, lag, disabled, partitions)


class RedisCollector(Collector):
    """The worker's heartbeat age and this process's circuit breaker, read when scraped."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        breaker = GaugeMetricFamily(
            "eventflow_redis_breaker_open", "1 while the scraped process skips Redis after a failure."
        )
        breaker.add_metric([], 0 if redis_available() else 1)
        yield breaker
        heartbeat = GaugeMetricFamily(
            "eventflow_worker_heartbeat_age_seconds",
            "Seconds since the processing worker last answered beat's heartbeat (absent: never, or Redis down).",
        )
        try:
            value = get_redis().get(heartbeat_key())
        except Exception as exc:  # noqa: BLE001
            logger.warning("metrics: redis collector failed (%s)", type(exc).__name__)
            return
        if value is not None:
            heartbeat.add_metric([], max(0.0, time.time() - float(value)))
        yield heartbeat


COLLECTORS: tuple[Collector, ...] = (DatabaseCollector(), RedisCollector(), KafkaCollector())


def metrics_text(*, read_dependencies: bool = True) -> bytes:
    """The exposition: every process's counters added up (multiprocess mode), and the collectors' readings.

    ``read_dependencies=False`` leaves out what is read from PostgreSQL and Redis (a worker's own
    exporter: the web processes answer those).
    """
    path = conf.at_start().prometheus_multiproc_dir
    if path:
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry, path=path)
    else:
        registry = CollectorRegistry()
        for collector in _process_collectors():
            registry.register(collector)
    for collector in COLLECTORS if read_dependencies else ():
        registry.register(collector)
    return generate_latest(registry)


def _process_collectors() -> list[Collector]:
    # The default registry, wrapped so that it can sit in a fresh registry beside the collectors.
    class _Default(Collector):
        def collect(self) -> Iterable[Any]:
            return REGISTRY.collect()

    return [_Default()]


# --- access ------------------------------------------------------------------------------------


def _networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in conf.get().metrics_allow_networks)


def metrics_allowed(environ: dict[str, Any]) -> bool:
    """Closed unless METRICS_TOKEN is sent as a bearer token, or the peer is in METRICS_ALLOW_NETWORKS.

    ``environ`` is the WSGI environment (``request.META``). The peer is
    REMOTE_ADDR, never X-Forwarded-For: a scraper talks to the process
    directly, and a header is anyone's to write.
    """
    token = conf.get().metrics_token
    if token:
        given = str(environ.get("HTTP_AUTHORIZATION", ""))
        if given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip().encode(), token.encode()):
            return True
    networks = _networks()
    if networks:
        try:
            peer = ipaddress.ip_address(str(environ.get("REMOTE_ADDR", "")))
        except ValueError:
            return False
        return any(peer in network for network in networks)
    return False


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics in Prometheus's text format; 404 to anyone not allowed (it does not say it is there)."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    if not metrics_allowed(request.META):
        return HttpResponse("Not found.\n", status=404, content_type="text/plain")
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


def _worker_metrics_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    if environ.get("PATH_INFO") != "/metrics" or not metrics_allowed(environ):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not found.\n"]
    start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Cache-Control", "no-store")])
    return [metrics_text(read_dependencies=False)]


# Every interface: Prometheus scrapes a worker pod's own port.
def worker_metrics_serve(*, port: int, host: str = "0.0.0.0") -> WSGIServer:  # noqa: S104  # nosec B104
    """Serve a worker's /metrics on ``port`` from a daemon thread, under the web's access rule.

    Where the workers do not share PROMETHEUS_MULTIPROC_DIR with a web
    process (a pod of their own), Prometheus scrapes them here: the sum over
    the worker's processes, without the database and Redis readings.
    """
    server = make_server(host, port, _worker_metrics_app, ThreadingWSGIServer, handler_class=_SilentHandler)
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    return server


# --- the HTTP middleware -----------------------------------------------------------------------

UNMATCHED_ROUTE = "unmatched"
AUDIT_SAMPLE_SECONDS = 1.0


class MetricsMiddleware:
    """Counts every answer by route name and status, and times it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.next_sample = 0.0

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        if started >= self.next_sample:
            # The audit buffer's depth, sampled at most once a second rather than on each add.
            self.next_sample = started + AUDIT_SAMPLE_SECONDS
            AUDIT_BUFFER_DEPTH.set(len(audit_buffer()))
        match = request.resolver_match
        # The pattern's name (never the path: its slugs and ids would make a series per object).
        route = (match.url_name or match.route or UNMATCHED_ROUTE) if match is not None else UNMATCHED_ROUTE
        method = request.method if request.method in _METHODS else "other"
        child(HTTP_REQUESTS, route, method, _status_label(response.status_code)).inc()
        child(HTTP_LATENCY, route, method).observe(time.perf_counter() - started)
        return response


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STATUS_LABELS = {code: str(code) for code in range(100, 600)}


def _status_label(code: int) -> str:
    return _STATUS_LABELS.get(code, "other")
