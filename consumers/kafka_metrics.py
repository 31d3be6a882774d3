"""The Kafka bridge's metrics, read from its rows when Prometheus scrapes (eventflow/metrics_http.py).

The bridge keeps its counts on the sink and source rows (kafka_services), so
any web process answers for every bridge process, wherever it runs, and a
restarted bridge does not reset them. One query per kind, under the scrape's
statement timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .models import KafkaBridgeStatus, KafkaSink, KafkaSource

logger = logging.getLogger(__name__)

SCRAPE_STATEMENT_TIMEOUT_MS = 2000
_LABELS = ["sink", "stream", "topic"]
_SOURCE_LABELS = ["source", "stream", "topic"]


def _up(status: str, runner: str, expires: datetime | None, now: datetime) -> int:
    """1 while a live bridge runs it and the broker answers."""
    return int(status == KafkaBridgeStatus.RUNNING and bool(runner) and expires is not None and expires > now)


class KafkaCollector(Collector):
    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        sink_up = GaugeMetricFamily(
            "eventflow_kafka_sink_up", "1 while a bridge runs the sink and its broker takes messages.", labels=_LABELS
        )
        sink_lag = GaugeMetricFamily(
            "eventflow_kafka_sink_lag", "Events in the stream's log the sink has not published yet.", labels=_LABELS
        )
        sink_published = CounterMetricFamily(
            "eventflow_kafka_sink_published", "Events the sink published (acknowledged by the broker).", labels=_LABELS
        )
        sink_errors = CounterMetricFamily(
            "eventflow_kafka_sink_errors",
            "Batches the broker did not take (sent again after a backoff).",
            labels=_LABELS,
        )
        source_up = GaugeMetricFamily(
            "eventflow_kafka_source_up",
            "1 while a bridge runs the source and its broker answers.",
            labels=_SOURCE_LABELS,
        )
        source_messages = CounterMetricFamily(
            "eventflow_kafka_source_messages",
            "Messages the source took, by outcome (accepted, duplicate, rejected).",
            labels=[*_SOURCE_LABELS, "outcome"],
        )
        source_errors = CounterMetricFamily(
            "eventflow_kafka_source_errors", "Times the source could not reach its broker.", labels=_SOURCE_LABELS
        )
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL statement_timeout = {SCRAPE_STATEMENT_TIMEOUT_MS}")
                sinks = list(
                    KafkaSink.objects.filter(is_active=True)
                    .annotate(lag=F("stream__head__next_offset") - F("group__committed_offset"))
                    .values_list(
                        "pk",
                        "stream__slug",
                        "topic",
                        "status",
                        "runner",
                        "runner_expires_at",
                        "lag",
                        "published",
                        "errors",
                    )
                )
                sources = list(
                    KafkaSource.objects.filter(is_active=True).values_list(
                        "pk",
                        "stream__slug",
                        "topic",
                        "status",
                        "runner",
                        "runner_expires_at",
                        "accepted",
                        "duplicates",
                        "rejected",
                        "errors",
                    )
                )
        except Exception as exc:  # noqa: BLE001 - a scrape answers what it can
            logger.warning("metrics: kafka collector failed (%s)", type(exc).__name__)
            return
        now = timezone.now()
        for pk, slug, topic, status, runner, expires, lag, published, errors in sinks:
            labels = [str(pk), slug, topic]
            sink_up.add_metric(labels, _up(status, runner, expires, now))
            sink_lag.add_metric(labels, max(0, lag or 0))
            sink_published.add_metric(labels, published)
            sink_errors.add_metric(labels, errors)
        for pk, slug, topic, status, runner, expires, accepted, duplicates, rejected, errors in sources:
            labels = [str(pk), slug, topic]
            source_up.add_metric(labels, _up(status, runner, expires, now))
            for outcome, count in (("accepted", accepted), ("duplicate", duplicates), ("rejected", rejected)):
                source_messages.add_metric([*labels, outcome], count)
            source_errors.add_metric(labels, errors)
        yield from (sink_up, sink_lag, sink_published, sink_errors, source_up, source_messages, source_errors)
