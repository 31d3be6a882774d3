"""Writes for streams, schemas, API keys and teams.

Every write validates here (``full_clean`` or an explicit rule) and raises
domain errors, so the REST API, the pages and Django admin get the same checks
and the same cache invalidation.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from eventflow.audit import audit_security
from eventflow.errors import Conflict, Invalid

from .auth import api_key_cache_clear, api_key_cache_forget, api_key_hash
from .event_types import EVENT_TYPE_RULE, is_event_type
from .models import ApiKey, ApiKeyKind, EventSchema, SchemaMode, Stream, StreamHead, Team
from .schemas import InvalidSchema, schema_check, schemas_same, starter_schemas
from .selectors import DryRun, schema_dry_run, stream_cache_clear

KEY_RANDOM_BYTES = 32
KEY_PREFIX_CHARS = 8


@transaction.atomic
def stream_create(
    *,
    slug: str,
    name: str = "",
    description: str = "",
    schema_mode: str = SchemaMode.WARN,
    retention_days: int = 30,
    anonymize_ip: bool = True,
    allowed_origins: list[str] | None = None,
    with_starter_schemas: bool = False,
    teams: list[Team] | None = None,
) -> Stream:
    stream = Stream(
        slug=slug,
        name=name or slug,
        description=description,
        schema_mode=schema_mode,
        retention_days=retention_days,
        anonymize_ip=anonymize_ip,
        allowed_origins=origins_normalized(allowed_origins or []),
    )
    _validated(stream)
    try:
        with transaction.atomic():
            stream.save()
    except IntegrityError:
        raise Conflict("stream_exists", "A stream with this slug exists already.", {"slug": slug}) from None
    StreamHead.objects.create(stream=stream)
    for team in teams or []:
        team.streams.add(stream)
    if with_starter_schemas:
        for event_type, schema in starter_schemas().items():
            schema_register(stream=stream, event_type=event_type, schema=schema)
    return stream


def _validated(instance: Any, *, exclude: list[str] | None = None) -> None:
    """``full_clean`` as a domain error: the field messages go to the caller's details."""
    try:
        instance.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise Invalid("invalid_fields", "Some fields are invalid.", exc.message_dict) from None


STREAM_UPDATABLE = ("name", "description", "schema_mode", "retention_days", "anonymize_ip", "allowed_origins")


def origins_normalized(origins: Any) -> Any:
    """Origins as browsers send them (lowercase, no trailing slash), each once; the model's validator judges the rest."""
    if not isinstance(origins, list):
        return origins
    normalized = [entry.strip().lower().rstrip("/") if isinstance(entry, str) else entry for entry in origins]
    return list(dict.fromkeys(normalized))


@transaction.atomic
def stream_update(*, stream: Stream, **changes: Any) -> Stream:
    """Change a stream's settings (its slug never changes: keys, URLs and SDKs name it)."""
    unknown = sorted(set(changes) - set(STREAM_UPDATABLE))
    if unknown:
        raise Invalid("unknown_field", f"These fields can't be changed: {', '.join(unknown)}.", {"fields": unknown})
    if "allowed_origins" in changes:
        changes["allowed_origins"] = origins_normalized(changes["allowed_origins"])
    for name, value in changes.items():
        setattr(stream, name, value)
    _validated(stream)
    stream.save(update_fields=[*changes] or None)
    _forget_stream_now_and_on_commit(stream.slug)
    return stream


def stream_archive(*, stream: Stream) -> Stream:
    """Stop a stream taking events (409 at the intake); its log, groups and webhooks stay readable."""
    with transaction.atomic():
        if stream.archived_at is None:
            stream.archived_at = timezone.now()
            stream.save(update_fields=["archived_at"])
            audit_security(action="stream.archive", stream_id=stream.pk, target=f"stream:{stream.slug}")
    _forget_stream_now_and_on_commit(stream.slug)
    return stream


def stream_unarchive(*, stream: Stream) -> Stream:
    with transaction.atomic():
        if stream.archived_at is not None:
            stream.archived_at = None
            stream.save(update_fields=["archived_at"])
    _forget_stream_now_and_on_commit(stream.slug)
    return stream


def _forget_stream_now_and_on_commit(slug: str) -> None:
    # Now, so this process sees the change even inside an outer transaction; and
    # after commit, so a request that read the old state meanwhile can't keep it.
    _forget_stream(slug)
    transaction.on_commit(lambda: _forget_stream(slug))


def _forget_stream(slug: str) -> None:
    stream_cache_clear(slug)


def schema_register(*, stream: Stream, event_type: str, schema: dict[str, Any]) -> EventSchema:
    """Add the next version of ``event_type``'s schema; earlier versions stay for the record.

    The same schema as the newest version adds none: that version is returned.
    """
    return _schema_save(stream=stream, event_type=event_type, schema=schema)[0]


def _schema_checked(*, event_type: str, schema: dict[str, Any]) -> None:
    if not is_event_type(event_type):
        raise Invalid("invalid_event_type", f"An event type is {EVENT_TYPE_RULE}.", {"event_type": event_type})
    try:
        schema_check(schema)
    except InvalidSchema as exc:
        raise Invalid("invalid_schema", f"The schema is not a valid JSON Schema (draft 2020-12): {exc}") from None


def _schema_newest(*, stream: Stream, event_type: str) -> EventSchema | None:
    return EventSchema.objects.filter(stream=stream, event_type=event_type).order_by("-version").first()


@transaction.atomic
def _schema_save(*, stream: Stream, event_type: str, schema: dict[str, Any]) -> tuple[EventSchema, bool]:
    """The new version, or the newest one when ``schema`` is the same as it; and whether it was created."""
    _schema_checked(event_type=event_type, schema=schema)
    # Lock the stream row so two registrations can't take the same version, nor both add the same schema.
    Stream.objects.select_for_update().filter(pk=stream.pk).first()
    newest = _schema_newest(stream=stream, event_type=event_type)
    if newest is not None and schemas_same(newest.schema, schema):
        return newest, False
    created = EventSchema.objects.create(
        stream=stream, event_type=event_type, version=(newest.version if newest else 0) + 1, schema=schema
    )
    audit_security(
        action="schema.register",
        stream_id=stream.pk,
        target=f"schema:{stream.slug}/{event_type}",
        details={"version": created.version},
    )
    _forget_stream_now_and_on_commit(stream.slug)
    return created, True


@dataclass(frozen=True)
class SchemaOutcome:
    created: EventSchema | None
    dry_run: DryRun
    # The newest version, when the schema is the same as it: nothing was (or would be) saved.
    unchanged: EventSchema | None = None


def schema_version_add(
    *, stream: Stream, event_type: str, schema: dict[str, Any], dry_run: bool = False, force: bool = False
) -> SchemaOutcome:
    """Try a new schema version on the newest logged events of its type, then save it unless it would break them.

    Saves nothing with ``dry_run``; refuses (``Conflict``) when the schema would
    have rejected any of them, unless ``force``: nobody breaks a producer by accident.
    The same schema as the newest version saves nothing either (``unchanged``), so
    publishing it again, or a retry, never adds a version.
    """
    _schema_checked(event_type=event_type, schema=schema)
    report = schema_dry_run(stream_id=stream.pk, event_type=event_type, schema=schema)
    newest = _schema_newest(stream=stream, event_type=event_type)
    unchanged = newest if newest is not None and schemas_same(newest.schema, schema) else None
    # An unchanged schema is in force already: whatever it says of logged events, keeping it breaks nothing.
    if dry_run or unchanged is not None:
        return SchemaOutcome(created=None, dry_run=report, unchanged=unchanged)
    if report.rejected and not force:
        raise Conflict(
            "schema_would_reject",
            f"This schema would have rejected {report.rejected} of the newest {report.checked} logged "
            f"{event_type} events; send force: true to save it anyway.",
            {"checked": report.checked, "rejected": report.rejected, "reasons": report.reasons},
        )
    # Someone may have saved the same schema since the look above: then it is answered as unchanged.
    saved, created = _schema_save(stream=stream, event_type=event_type, schema=schema)
    return SchemaOutcome(created=saved if created else None, dry_run=report, unchanged=None if created else saved)


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
    rate_limit_per_minute: int | None = None,
) -> IssuedKey:
    if kind not in ApiKeyKind.values:
        raise Invalid("invalid_key_kind", f"A key's kind is one of: {', '.join(ApiKeyKind.values)}.", {"kind": kind})
    if not name and not streams:
        raise Invalid("invalid_fields", "A key needs a name or at least one stream.")

    if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
        raise Invalid("invalid_fields", "rate_limit_per_minute is at least 1 (empty: the installation's limit).")
    raw_key = f"ef_{kind}_{secrets.token_urlsafe(KEY_RANDOM_BYTES)}"
    api_key = ApiKey.objects.create(
        name=name,
        kind=kind,
        prefix=raw_key[: len(f"ef_{kind}_") + KEY_PREFIX_CHARS],
        hashed_key=api_key_hash(raw_key),
        expires_at=expires_at,
        created_by=created_by,
        rate_limit_per_minute=rate_limit_per_minute,
    )
    api_key.streams.set(streams)
    audit_security(
        action="key.create",
        user=created_by,
        target=f"key:{api_key.pk}",
        details={"prefix": api_key.prefix, "kind": kind, "streams": [stream.slug for stream in streams]},
    )
    hashed = api_key.hashed_key
    transaction.on_commit(lambda: _clear_missing_key(hashed))
    return IssuedKey(api_key=api_key, raw_key=raw_key)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Mark the key revoked (the row stays for the record); it fails from the next request on."""
    with transaction.atomic():
        if api_key.revoked_at is None:
            api_key.revoked_at = timezone.now()
            api_key.save(update_fields=["revoked_at"])
            audit_security(action="key.revoke", target=f"key:{api_key.pk}", details={"prefix": api_key.prefix})
    # Outside the transaction: the cache entry must go even if on_commit hooks
    # are deferred by an outer atomic block.
    _forget_key(api_key.hashed_key)
    transaction.on_commit(lambda: _forget_key(api_key.hashed_key))
    return api_key


def api_key_set_streams(*, api_key: ApiKey, streams: list[Stream]) -> ApiKey:
    with transaction.atomic():
        api_key.streams.set(streams)
        audit_security(
            action="key.streams",
            target=f"key:{api_key.pk}",
            details={"prefix": api_key.prefix, "streams": [stream.slug for stream in streams]},
        )
    transaction.on_commit(lambda: _forget_key(api_key.hashed_key))
    return api_key


KEY_UPDATABLE = ("name", "expires_at", "rate_limit_per_minute")


@transaction.atomic
def api_key_update(*, api_key: ApiKey, streams: list[Stream] | None = None, **changes: Any) -> ApiKey:
    """Rename a key, change its expiry, its own request limit or its streams; the cached state goes at once."""
    unknown = sorted(set(changes) - set(KEY_UPDATABLE))
    if unknown:
        raise Invalid("unknown_field", f"These fields can't be changed: {', '.join(unknown)}.", {"fields": unknown})
    if api_key.revoked_at is not None:
        raise Conflict("api_key_revoked", "A revoked key can't be changed.")
    for name, value in changes.items():
        setattr(api_key, name, value)
    _validated(api_key, exclude=["hashed_key", "prefix", "kind"])
    if changes:
        api_key.save(update_fields=[*changes])
    if streams is not None:
        api_key_set_streams(api_key=api_key, streams=streams)
    hashed = api_key.hashed_key
    _forget_key(hashed)
    transaction.on_commit(lambda: _forget_key(hashed))
    return api_key


def _forget_key(hashed_key: str) -> None:
    api_key_cache_forget(hashed_key)


def _clear_missing_key(hashed_key: str) -> None:
    # A new key has no cached state to go stale, at most a remembered "no such key".
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
