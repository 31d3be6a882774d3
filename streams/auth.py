"""API key authentication (who is this key?), cached so that a request costs no key query.

What the key may then do is decided in ``streams/access.py``.

The cache is Redis (shared by every web process, so a revoke is seen by all on
the next request); when Redis is unavailable the key is read from PostgreSQL.
It is read with the shared Redis client rather than Django's cache, so that the
read and the count of the key's requests this minute take one round trip.

A change that can't reach Redis (it is unreachable when a key is revoked) is
kept in PostgreSQL (``ApiKey.cache_forget_pending_since``) until a sync lands
it. A process syncs before it trusts the cache again whenever Redis may have
missed writes (``redis_generation``: it failed to reach Redis, or opened a new
connection, as after a restart); beat syncs every few seconds for processes that
saw nothing of the outage. The hot path pays one integer comparison for it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import cast

import orjson
from django.utils import timezone

from eventflow import conf
from eventflow.errors import NotAuthenticated
from eventflow.redis import get_redis, guarded, redis_available, redis_generation

from .models import ApiKey

logger = logging.getLogger(__name__)

API_KEY_HEADER = "HTTP_X_API_KEY"
LAST_USED_WRITE_SECONDS = 60
_MISSING = "missing"
# A key that changed (revoked, regranted) is cached as this marker for a while.
# Requests fill the cache only where it is empty (SET NX), so one that read the
# key before the change can't put the old state back after it.
_CHANGED = "changed"
CHANGED_MARKER_SECONDS = 30
# Per-minute request counters outlive their minute a little, for clocks that differ.
USES_KEY_SECONDS = 90

# Per-process throttle for last_used_at writes: at most one UPDATE a minute per key.
_last_used_written: dict[int, float] = {}
# The redis_generation() at this process's last sync of pending forgets; none yet at start.
_synced_generation = -1


@dataclass(frozen=True)
class KeyPrincipal:
    key_id: int
    kind: str
    stream_ids: frozenset[int]
    expires_at: float | None
    revoked: bool
    prefix: str = ""
    # Requests a minute; None: the installation's default.
    rate_limit: int | None = None

    def usable(self) -> bool:
        return not self.revoked and (self.expires_at is None or self.expires_at > time.time())


def api_key_hash(raw_key: str) -> str:
    """What is stored of a key and looked up by: its SHA-256 (the key itself is shown once)."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def _cache_key(hashed: str) -> str:
    return f"{conf.get().redis_key_prefix}:apikey:{hashed}"


def _uses_key(hashed: str, minute: int) -> str:
    # The rate limiter's counter: requests of one key in one minute.
    return f"{conf.get().redis_key_prefix}:rl:apikey:{hashed}:{minute}"


def _encode(principal: KeyPrincipal | None) -> bytes:
    if principal is None:
        return _MISSING.encode()
    return orjson.dumps(
        {
            "key_id": principal.key_id,
            "kind": principal.kind,
            "stream_ids": sorted(principal.stream_ids),
            "expires_at": principal.expires_at,
            "revoked": principal.revoked,
            "prefix": principal.prefix,
            "rate_limit": principal.rate_limit,
        }
    )


def _decode(raw: bytes | None) -> KeyPrincipal | str | None:
    if raw is None or not raw.startswith(b"{"):
        return raw.decode() if raw is not None else None
    data = orjson.loads(raw)
    return KeyPrincipal(
        key_id=data["key_id"],
        kind=data["kind"],
        stream_ids=frozenset(data["stream_ids"]),
        expires_at=data["expires_at"],
        revoked=data["revoked"],
        prefix=data.get("prefix", ""),
        rate_limit=data.get("rate_limit"),
    )


def api_key_cache_forget(hashed_key: str) -> None:
    """Drop the cached state of a key that changed; the next request reads PostgreSQL.

    When Redis can't be told, the forget waits in PostgreSQL for ``api_key_cache_sync``:
    otherwise the entry cached before the change would accept a revoked key once Redis is back.
    """
    ck = _cache_key(hashed_key)
    landed = guarded(
        "api key cache forget", lambda: bool(get_redis().set(ck, _CHANGED, ex=CHANGED_MARKER_SECONDS)), False
    )
    if not landed:
        ApiKey.objects.filter(hashed_key=hashed_key).update(cache_forget_pending_since=timezone.now())


def api_key_cache_sync() -> int:
    """Land the forgets Redis missed (``api_key_cache_forget``); how many landed. Safe to run twice.

    One query when nothing waits, as nearly always. Each row is cleared only if no newer
    forget of its key was left meanwhile.
    """
    global _synced_generation
    generation = redis_generation()
    pending = list(
        ApiKey.objects.filter(cache_forget_pending_since__isnull=False).values_list(
            "pk", "hashed_key", "cache_forget_pending_since"
        )
    )
    if pending:

        def mark() -> bool:
            pipe = get_redis().pipeline(transaction=False)
            for _, hashed, _ in pending:
                pipe.set(_cache_key(hashed), _CHANGED, ex=CHANGED_MARKER_SECONDS)
            pipe.execute()
            return True

        if not guarded("api key cache sync", mark, False):
            return 0
        for pk, _, since in pending:
            ApiKey.objects.filter(pk=pk, cache_forget_pending_since=since).update(cache_forget_pending_since=None)
        logger.info("landed %d api key cache forget(s) that Redis missed", len(pending))
    _synced_generation = generation
    return len(pending)


def api_key_cache_clear(hashed_key: str) -> None:
    """Drop a cached "no such key" for a key that has just been created."""
    guarded("api key cache delete", lambda: get_redis().delete(_cache_key(hashed_key)), None)


def _cache_read(hashed: str, *, count: bool) -> tuple[bytes | None, int | None]:
    """The key's cached state and, when ``count``, this request's number in the current minute."""
    client = get_redis()
    if not count:
        return cast("bytes | None", client.get(_cache_key(hashed))), None
    uses_key = _uses_key(hashed, int(time.time() // 60))
    pipe = client.pipeline(transaction=False)
    pipe.get(_cache_key(hashed))
    pipe.incr(uses_key)
    pipe.expire(uses_key, USES_KEY_SECONDS)
    cached, uses, _ = pipe.execute()
    return cached, uses


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
        prefix=api_key.prefix,
        rate_limit=api_key.rate_limit_per_minute,
    )


def api_key_lookup(raw_key: str, *, count: bool = False) -> tuple[KeyPrincipal | None, int | None]:
    """The key's principal and, when ``count``, how many requests it has made this minute, this one included.

    The count is None when Redis is unavailable.
    """
    hashed = api_key_hash(raw_key)
    if _synced_generation != redis_generation() and redis_available():
        api_key_cache_sync()
    generation = redis_generation()
    missed: tuple[bytes | None, int | None] = (None, None)
    cached_raw, uses = guarded("api key cache get", lambda: _cache_read(hashed, count=count), missed)
    if redis_generation() != generation:
        # Redis failed, or this read opened a new connection (after a restart, say): the entry may
        # predate a forget Redis missed. PostgreSQL answers; the next request syncs first.
        cached_raw = _CHANGED.encode()
    cached = _decode(cached_raw)
    if cached == _MISSING:
        return None, uses
    if isinstance(cached, KeyPrincipal):
        return cached, uses
    principal = _load(hashed)
    if cached == _CHANGED:
        return principal, uses
    ttl = conf.get().auth_cache_seconds
    # Unknown keys are remembered briefly so a flood of bad keys can't reach the database.
    value = _encode(principal)
    ck = _cache_key(hashed)
    guarded("api key cache add", lambda: get_redis().set(ck, value, ex=ttl if principal else 30, nx=True), None)
    return principal, uses


def api_key_principal(raw_key: str) -> KeyPrincipal | None:
    return api_key_lookup(raw_key)[0]


def _touch(principal: KeyPrincipal) -> None:
    now = time.monotonic()
    if now - _last_used_written.get(principal.key_id, -1e9) < LAST_USED_WRITE_SECONDS:
        return
    _last_used_written[principal.key_id] = now
    ApiKey.objects.filter(pk=principal.key_id).update(last_used_at=timezone.now())


def authenticate_key_counted(meta: dict[str, str], *, count: bool = True) -> tuple[KeyPrincipal, int | None]:
    """The principal of the request's usable key, and this request's number in the key's current minute.

    The number is read in the same round trip as the key (None when Redis is
    unavailable or ``count`` is off). Raises ``NotAuthenticated`` for a
    missing, unknown, revoked or expired key.
    """
    raw = meta.get(API_KEY_HEADER, "")
    if not raw:
        raise NotAuthenticated("missing_api_key", "Send your API key in the X-API-Key header.")
    principal, uses = api_key_lookup(raw.strip(), count=count)
    if principal is None:
        raise NotAuthenticated("invalid_api_key", "The API key is not valid.")
    if principal.revoked:
        raise NotAuthenticated("revoked_api_key", "The API key has been revoked.")
    if not principal.usable():
        raise NotAuthenticated("expired_api_key", "The API key has expired.")
    _touch(principal)
    return principal, uses
