"""Reads of the Kafka bridge: a stream's sinks and sources, their state, and the bridge's health."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from eventflow.errors import NotFound

from .models import KafkaBridge, KafkaBridgeStatus, KafkaSink, KafkaSource

# Health answers: nothing configured, all running, something paused (broker), something no bridge runs.
HEALTH_NONE = "none"
HEALTH_OK = "ok"
HEALTH_PAUSED = "paused"
HEALTH_UNHELD = "unheld"


def kafka_sinks_of_stream(*, stream_id: int) -> QuerySet[KafkaSink]:
    return KafkaSink.objects.filter(stream_id=stream_id).select_related("group__stream__head", "stream")


def kafka_sources_of_stream(*, stream_id: int) -> QuerySet[KafkaSource]:
    return KafkaSource.objects.filter(stream_id=stream_id).select_related("stream")


def kafka_sink_get(*, stream_id: int, sink_id: int) -> KafkaSink:
    sink = kafka_sinks_of_stream(stream_id=stream_id).filter(pk=sink_id).first()
    if sink is None:
        raise NotFound("kafka_sink_not_found", "No such Kafka sink.")
    return sink


def kafka_source_get(*, stream_id: int, source_id: int) -> KafkaSource:
    source = kafka_sources_of_stream(stream_id=stream_id).filter(pk=source_id).first()
    if source is None:
        raise NotFound("kafka_source_not_found", "No such Kafka source.")
    return source


def _held(bridge: KafkaBridge, now: Any) -> bool:
    return bool(bridge.runner) and bridge.runner_expires_at is not None and bridge.runner_expires_at > now


def _common(bridge: KafkaBridge) -> dict[str, Any]:
    return {
        "id": bridge.pk,
        "topic": bridge.topic,
        "description": bridge.description,
        "bootstrap_servers": bridge.bootstrap_servers,
        "security_protocol": bridge.security_protocol,
        "sasl_mechanism": bridge.sasl_mechanism,
        "sasl_username": bridge.sasl_username,
        # Secrets are never shown: only whether one is set.
        "has_sasl_password": bool(bridge.sasl_password),
        "has_ssl_ca_pem": bool(bridge.ssl_ca_pem),
        "is_active": bridge.is_active,
        "status": bridge.status,
        "last_error": bridge.last_error,
        "last_error_at": bridge.last_error_at.isoformat() if bridge.last_error_at else None,
        "errors": bridge.errors,
        "runner": bridge.runner if _held(bridge, timezone.now()) else None,
        "created_at": bridge.created_at.isoformat(),
    }


def kafka_sink_state(sink: KafkaSink) -> dict[str, Any]:
    """A sink as the API and the pages show it (read with ``kafka_sinks_of_stream``: no further queries)."""
    head = sink.group.stream.head.next_offset
    return {
        **_common(sink),
        "key": sink.key,
        "batch_size": sink.batch_size,
        "committed_offset": sink.group.committed_offset,
        "head": head,
        "lag": max(0, head - sink.group.committed_offset),
        "published": sink.published,
        "last_published_at": sink.last_published_at.isoformat() if sink.last_published_at else None,
    }


def kafka_source_state(source: KafkaSource) -> dict[str, Any]:
    return {
        **_common(source),
        "consumer_group": source.consumer_group,
        "start": source.start,
        "batch_size": source.batch_size,
        "consumed": source.consumed,
        "accepted": source.accepted,
        "duplicates": source.duplicates,
        "rejected": source.rejected,
        "recent_rejections": source.recent_rejections,
        "last_consumed_at": source.last_consumed_at.isoformat() if source.last_consumed_at else None,
    }


def kafka_bridge_health() -> dict[str, Any]:
    """For /health: how many active sinks and sources, how many paused, how many no live bridge holds.

    Counts only: /health is public, and names of topics and streams are not.
    """
    out: dict[str, Any] = {"sinks": 0, "sources": 0, "paused": 0, "unheld": 0}
    unheld = Q(runner="") | Q(runner_expires_at__isnull=True) | Q(runner_expires_at__lt=Now())
    for model, name in ((KafkaSink, "sinks"), (KafkaSource, "sources")):
        counts = model.objects.filter(is_active=True).aggregate(
            n=Count("id"),
            paused=Count("id", filter=Q(status=KafkaBridgeStatus.PAUSED)),
            unheld=Count("id", filter=unheld),
        )
        out[name] = counts["n"]
        out["paused"] += counts["paused"]
        out["unheld"] += counts["unheld"]
    if not out["sinks"] and not out["sources"]:
        out["status"] = HEALTH_NONE
    elif out["paused"]:
        out["status"] = HEALTH_PAUSED
    elif out["unheld"]:
        out["status"] = HEALTH_UNHELD
    else:
        out["status"] = HEALTH_OK
    return out
