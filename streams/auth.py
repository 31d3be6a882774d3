"""API key authentication, cached so that a request costs no key query.

The cache is Redis (shared by every web process, so a revoke is seen by all on
the next request); when Redis is unavailable the key is read from PostgreSQL.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from eventflow.errors import ApiError
from eventflow.redis import guarded

from .models import ApiKey
from .services import api_key_hash

logger = logging.getLogger(__name__)

API_KEY_HEADER = "HTTP_X_API_KEY"
LAST_USED_WRITE_SECONDS = 60
_MISSING = "missing"
# A key that changed (revoked, regranted) is cached as this marker for a while.
# Requests fill the cache only where it is empty (SET NX), so one that read the
# key before the change can't put the old state back after it.
_CHANGED = "changed"
CHANGED_MARKER_SECONDS = 30

# Per-process throttle for last_used_at writes: at most one UPDATE a minute per key.
_last_used_written: dict[int, float] = {}


@dataclass(frozen=True)
class KeyPrincipal:
    key_id: int
    kind: str
    stream_ids: frozenset[int]
    expires_at: float | None
    revoked: bool

    def usable(self) -> bool:
        return not self.revoked and (self.expires_at is None or self.expires_at > time.time())


def _cache_key(hashed: str) -> str:
    return f"apikey:{hashed}"


def api_key_cache_forget(hashed_key: str) -> None:
    """Drop the cached state of a key that changed; the next request reads PostgreSQL."""
    ck = _cache_key(hashed_key)
    guarded("api key cache forget", lambda: cache.set(ck, _CHANGED, CHANGED_MARKER_SECONDS), None)


def api_key_cache_clear(hashed_key: str) -> None:
    """Drop a cached "no such key" for a key that has just been created."""
    guarded("api key cache delete", lambda: cache.delete(_cache_key(hashed_key)), None)


def _load(hashed: str) -> KeyPrincipal | None:
    api_key = ApiKey.objects.filter(hashed_key=hashed).first()
    if api_key is None:
        return None
    return KeyPrincipal(
        key_id=api_key.pk,
        kind=api_key.kind,
        stream_ids=frozenset(api_key.streams.values_list("pk", flat=True)),
        expires_at=api_key.expires_at.timestamp() if api_key.expires_at else None,
        revoked=api_key.revoked_at is not None,
    )


def api_key_principal(raw_key: str) -> KeyPrincipal | None:
    hashed = api_key_hash(raw_key)
    ck = _cache_key(hashed)
    cached = guarded("api key cache get", lambda: cache.get(ck), None)
    if cached == _MISSING:
        return None
    if isinstance(cached, KeyPrincipal):
        return cached
    principal = _load(hashed)
    if cached == _CHANGED:
        return principal
    ttl = settings.EVENTFLOW["AUTH_CACHE_SECONDS"]
    # Unknown keys are remembered briefly so a flood of bad keys can't reach the database.
    value = principal if principal is not None else _MISSING
    guarded("api key cache add", lambda: cache.add(ck, value, ttl if principal else 30), None)
    return principal


def _touch(principal: KeyPrincipal) -> None:
    now = time.monotonic()
    if now - _last_used_written.get(principal.key_id, -1e9) < LAST_USED_WRITE_SECONDS:
        return
    _last_used_written[principal.key_id] = now
    ApiKey.objects.filter(pk=principal.key_id).update(last_used_at=timezone.now())


def authenticate_key(meta: dict[str, str], *, stream_id: int | None, kinds: frozenset[str]) -> KeyPrincipal:
    """Return the principal of the request's key, or raise the 401/404 the API promises."""
    raw = meta.get(API_KEY_HEADER, "")
    if not raw:
        raise ApiError(401, "missing_api_key", "Send your API key in the X-API-Key header.")
    principal = api_key_principal(raw.strip())
    if principal is None:
        raise ApiError(401, "invalid_api_key", "The API key is not valid.")
    if principal.revoked:
        raise ApiError(401, "revoked_api_key", "The API key has been revoked.")
    if not principal.usable():
        raise ApiError(401, "expired_api_key", "The API key has expired.")
    if principal.kind not in kinds:
        raise ApiError(403, "key_kind_not_allowed", f"A {principal.kind} key cannot do this.")
    if stream_id is not None and stream_id not in principal.stream_ids:
        raise ApiError(404, "stream_not_found", "No such stream.")
    _touch(principal)
    return principal
