"""Writes for streams, schemas and API keys."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from .models import ApiKey, ApiKeyKind, EventSchema, SchemaMode, Stream, StreamHead, Team
from .schemas import schema_check, starter_schemas

KEY_RANDOM_BYTES = 32
KEY_PREFIX_CHARS = 8


def api_key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


@transaction.atomic
def stream_create(
    *,
    slug: str,
    name: str = "",
    description: str = "",
    schema_mode: str = SchemaMode.WARN,
    retention_days: int = 30,
    anonymize_ip: bool = True,
    with_starter_schemas: bool = False,
) -> Stream:
    stream = Stream.objects.create(
        slug=slug,
        name=name or slug,
        description=description,
        schema_mode=schema_mode,
        retention_days=retention_days,
        anonymize_ip=anonymize_ip,
    )
    StreamHead.objects.create(stream=stream)
    if with_starter_schemas:
        for event_type, schema in starter_schemas().items():
            schema_register(stream=stream, event_type=event_type, schema=schema)
    return stream


def stream_archive(*, stream: Stream) -> Stream:
    stream.archived_at = timezone.now()
    stream.save(update_fields=["archived_at"])
    transaction.on_commit(lambda: _forget_stream(stream.slug))
    return stream


def _forget_stream(slug: str) -> None:
    from .selectors import stream_cache_clear

    stream_cache_clear(slug)


@transaction.atomic
def schema_register(*, stream: Stream, event_type: str, schema: dict[str, Any]) -> EventSchema:
    """Add the next version of ``event_type``'s schema; earlier versions stay for the record."""
    schema_check(schema)
    # Lock the stream row so two registrations can't take the same version.
    Stream.objects.select_for_update().filter(pk=stream.pk).first()
    latest = EventSchema.objects.filter(stream=stream, event_type=event_type).aggregate(v=Max("version"))["v"]
    created = EventSchema.objects.create(stream=stream, event_type=event_type, version=(latest or 0) + 1, schema=schema)
    transaction.on_commit(lambda: _forget_stream(stream.slug))
    return created


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    raw_key: str


@transaction.atomic
def api_key_create(
    *,
    kind: str,
    streams: list[Stream],
    name: str = "",
    expires_at: datetime | None = None,
    created_by: Any = None,
) -> IssuedKey:
    if kind not in ApiKeyKind.values:
        raise ValueError(f"unknown key kind {kind!r}")
    raw_key = f"ef_{kind}_{secrets.token_urlsafe(KEY_RANDOM_BYTES)}"
    api_key = ApiKey.objects.create(
        name=name,
        kind=kind,
        prefix=raw_key[: len(f"ef_{kind}_") + KEY_PREFIX_CHARS],
        hashed_key=api_key_hash(raw_key),
        expires_at=expires_at,
        created_by=created_by,
    )
    api_key.streams.set(streams)
    hashed = api_key.hashed_key
    transaction.on_commit(lambda: _clear_missing_key(hashed))
    return IssuedKey(api_key=api_key, raw_key=raw_key)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    with transaction.atomic():
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    # Outside the transaction: the cache entry must go even if on_commit hooks
    # are deferred by an outer atomic block.
    _forget_key(api_key.hashed_key)
    transaction.on_commit(lambda: _forget_key(api_key.hashed_key))
    return api_key


def api_key_set_streams(*, api_key: ApiKey, streams: list[Stream]) -> ApiKey:
    api_key.streams.set(streams)
    transaction.on_commit(lambda: _forget_key(api_key.hashed_key))
    return api_key


def _forget_key(hashed_key: str) -> None:
    from .auth import api_key_cache_forget

    api_key_cache_forget(hashed_key)


def _clear_missing_key(hashed_key: str) -> None:
    # A new key has no cached state to go stale, at most a remembered "no such key".
    from .auth import api_key_cache_clear

    api_key_cache_clear(hashed_key)


# --- teams ------------------------------------------------------------------------------------


@transaction.atomic
def team_create(
    *, slug: str, name: str = "", members: list[Any] | None = None, streams: list[Stream] | None = None
) -> Team:
    team = Team(slug=slug, name=name or slug)
    team.full_clean()
    team.save()
    if members:
        team.members.add(*members)
    if streams:
        team.streams.add(*streams)
    return team
