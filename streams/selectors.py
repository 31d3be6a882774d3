"""Reads for streams: a short-lived per-process cache of what the hot path needs."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Exists, OuterRef, Prefetch, QuerySet

from eventflow import conf
from eventflow.errors import Conflict, Invalid, NotFound

from .event_types import is_event_type
from .models import ApiKey, EventSchema, LogEntry, Stream, Team
from .schemas import compiled_validator, schema_validator, stored_schema_refusal, validation_errors


@dataclass(frozen=True)
class StreamInfo:
    id: int
    slug: str
    schema_mode: str
    archived: bool
    anonymize_ip: bool
    # event type -> (schema row id, schema)
    schemas: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    # Origins whose pages may send (the compatible intake's check); empty: any.
    allowed_origins: tuple[str, ...] = ()
    # The stream's display name, for pages.
    name: str = ""

    def validator_for(self, event_type: str) -> Any:
        entry = self.schemas.get(event_type)
        if entry is None:
            return None
        return compiled_validator(entry[0], entry[1])


_cache: dict[str, tuple[float, StreamInfo | None]] = {}
_lock = threading.Lock()


def latest_schemas(stream_id: int) -> dict[str, tuple[int, dict[str, Any]]]:
    """The newest schema version of each event type, as the intake and processing apply them.

    A newest version that ``schema_check`` would refuse now (one saved before the complexity
    limit) is left out: its type is validated as one without a schema until a new version is
    registered. Not an older version instead: it was replaced on purpose. Not dead letters:
    every event of the type, valid ones too, would pile up there. The registry says which
    versions are refused (``stored_schema_refusal``).
    """
    rows = (
        EventSchema.objects.filter(stream_id=stream_id)
        .order_by("event_type", "-version")
        .distinct("event_type")
        .values_list("event_type", "pk", "schema")
    )
    return {event_type: (pk, schema) for event_type, pk, schema in rows if stored_schema_refusal(pk, schema) is None}


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
        allowed_origins=tuple(stream.allowed_origins or ()),
        name=stream.name,
    )


def stream_info(slug: str) -> StreamInfo | None:
    """The stream's settings and current schemas, at most STREAM_CACHE_SECONDS old."""
    now = time.monotonic()
    hit = _cache.get(slug)
    if hit is not None and hit[0] > now:
        return hit[1]
    info = stream_info_load(slug)
    with _lock:
        _cache[slug] = (now + conf.get().stream_cache_seconds, info)
    return info


def stream_cache_clear(slug: str | None = None) -> None:
    with _lock:
        if slug is None:
            _cache.clear()
        else:
            _cache.pop(slug, None)


# --- the management API's reads ---------------------------------------------------------------


def stream_get(*, stream_id: int) -> Stream:
    return Stream.objects.select_related("head").prefetch_related("teams").get(pk=stream_id)


def schemas_of_stream(*, stream_id: int) -> dict[str, list[EventSchema]]:
    """Every event type of the stream with its versions, newest first."""
    by_type: dict[str, list[EventSchema]] = {}
    for schema in EventSchema.objects.filter(stream_id=stream_id).order_by("event_type", "-version"):
        by_type.setdefault(schema.event_type, []).append(schema)
    return by_type


def schema_version_get(*, stream_id: int, event_type: str, version: int | None = None) -> EventSchema:
    """One version of an event type's schema (the newest when ``version`` is None)."""
    if not is_event_type(event_type):
        # No such type can have a schema; and PostgreSQL refuses some of them (NUL) outright.
        raise NotFound("schema_not_found", "No such schema version.", {"event_type": event_type, "version": version})
    schemas = EventSchema.objects.filter(stream_id=stream_id, event_type=event_type)
    found = schemas.filter(version=version).first() if version is not None else schemas.order_by("-version").first()
    if found is None:
        raise NotFound("schema_not_found", "No such schema version.", {"event_type": event_type, "version": version})
    return found


@dataclass(frozen=True)
class DryRun:
    """What a schema would have said of the newest logged events of its type."""

    checked: int
    rejected: int
    # The most frequent reasons, with how many events each, and a few offsets to look at.
    reasons: list[dict[str, Any]]


DRY_RUN_EVENTS = 1000
DRY_RUN_REASONS = 10


def schema_dry_run(*, stream_id: int, event_type: str, schema: dict[str, Any], limit: int = DRY_RUN_EVENTS) -> DryRun:
    """Validate the newest ``limit`` logged events of ``event_type`` against ``schema`` (one index scan)."""
    validator = schema_validator(schema)
    rows = (
        LogEntry.objects.filter(stream_id=stream_id, type=event_type)
        .order_by("-event_time")
        .values_list("offset", "payload")[:limit]
    )
    checked = rejected = 0
    reasons: dict[str, dict[str, Any]] = {}
    for offset, payload in rows:
        checked += 1
        errors = validation_errors(validator, payload)
        if not errors:
            continue
        rejected += 1
        for error in errors:
            reason = reasons.setdefault(
                f"{error['field']}: {error['message']}",
                {"field": error["field"], "message": error["message"], "events": 0, "offsets": []},
            )
            reason["events"] += 1
            if len(reason["offsets"]) < 5:
                reason["offsets"].append(offset)
    top = sorted(reasons.values(), key=lambda r: -r["events"])[:DRY_RUN_REASONS]
    return DryRun(checked=checked, rejected=rejected, reasons=top)


def payload_check(*, schema: EventSchema, payload: Any) -> list[dict[str, str]]:
    """The errors ``payload`` would get from ``schema`` (empty when valid).

    ``Conflict`` for a version that is refused now: events are not validated against it,
    and trying it could take minutes.
    """
    refusal = stored_schema_refusal(schema.pk, schema.schema)
    if refusal is not None:
        raise Conflict(
            "schema_refused",
            f"Version {schema.version} of this schema is not applied to events: {refusal} Register a new version.",
            {"event_type": schema.event_type, "version": schema.version},
        )
    return validation_errors(compiled_validator(schema.pk, schema.schema), payload)


def api_keys_for(*, manageable: frozenset[int] | None) -> QuerySet[ApiKey]:
    """Keys whose every stream is one the caller manages (None: all keys), streams prefetched.

    A key granted a stream the caller does not manage is not shown at all, so a
    list never names another team's stream.
    """
    keys = ApiKey.objects.prefetch_related(Prefetch("streams", queryset=Stream.objects.only("pk", "slug")))
    if manageable is None:
        return keys
    foreign = ApiKey.streams.through.objects.filter(apikey_id=OuterRef("pk")).exclude(stream_id__in=manageable)
    return keys.filter(streams__in=manageable).exclude(Exists(foreign)).distinct()


def api_key_get(*, manageable: frozenset[int] | None, key_id: int) -> ApiKey:
    found = api_keys_for(manageable=manageable).filter(pk=key_id).first() if key_id < 2**63 else None
    if found is None:
        raise NotFound("api_key_not_found", "No such API key.")
    return found


def teams_for_new_stream(*, caller: Any, slugs: list[str] | None) -> list[Team]:
    """The teams a new stream is granted to: the named ones the caller belongs to (any, for a superuser).

    Unnamed, it is the caller's only team; a caller in several must name them.
    """
    mine = Team.objects.all() if caller.is_superuser else Team.objects.filter(members=caller.user)
    if slugs:
        found = list(mine.filter(slug__in=slugs))
        missing = sorted(set(slugs) - {t.slug for t in found})
        if missing:
            raise Invalid("unknown_team", f"No such team of yours: {', '.join(missing)}.", {"teams": missing})
        return found
    if caller.is_superuser:
        return []
    own = list(mine[:2])
    if len(own) != 1:
        raise Invalid(
            "team_required",
            "Say which of your teams reaches the new stream (teams: [...]).",
            {"teams": [t.slug for t in mine]},
        )
    return own
