"""Reads for streams: a short-lived per-process cache of what the hot path needs."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from .models import EventSchema, Stream
from .schemas import compiled_validator


@dataclass(frozen=True)
class StreamInfo:
    id: int
    slug: str
    schema_mode: str
    archived: bool
    anonymize_ip: bool
    # event type -> (schema row id, schema)
    schemas: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)

    def validator_for(self, event_type: str) -> Any:
        entry = self.schemas.get(event_type)
        if entry is None:
            return None
        return compiled_validator(entry[0], entry[1])


_cache: dict[str, tuple[float, StreamInfo | None]] = {}
_lock = threading.Lock()


def latest_schemas(stream_id: int) -> dict[str, tuple[int, dict[str, Any]]]:
    rows = (
        EventSchema.objects.filter(stream_id=stream_id)
        .order_by("event_type", "-version")
        .distinct("event_type")
        .values_list("event_type", "pk", "schema")
    )
    return {event_type: (pk, schema) for event_type, pk, schema in rows}


def stream_info_load(slug: str) -> StreamInfo | None:
    stream = Stream.objects.filter(slug=slug).first()
    if stream is None:
        return None
    return StreamInfo(
        id=stream.pk,
        slug=stream.slug,
        schema_mode=stream.schema_mode,
        archived=stream.archived_at is not None,
        anonymize_ip=stream.anonymize_ip,
        schemas=latest_schemas(stream.pk),
    )


def stream_info(slug: str) -> StreamInfo | None:
    """The stream's settings and current schemas, at most STREAM_CACHE_SECONDS old."""
    now = time.monotonic()
    hit = _cache.get(slug)
    if hit is not None and hit[0] > now:
        return hit[1]
    info = stream_info_load(slug)
    with _lock:
        _cache[slug] = (now + settings.EVENTFLOW["STREAM_CACHE_SECONDS"], info)
    return info


def stream_cache_clear(slug: str | None = None) -> None:
    with _lock:
        if slug is None:
            _cache.clear()
        else:
            _cache.pop(slug, None)
