"""Cookieless visitors: a salted hash of (client IP, user agent, stream) that changes every UTC day.

The browser tracker sets no cookie and keeps nothing in the browser, so the
server names the visitor, as Plausible does: ``visitor_id`` hashes the
address and user agent with the stream and a secret salt of the day. The
same browser on the same network is the same visitor all day; the next day it
is a new one. Each day's salt is made once, by whichever process needs it
first, and kept in the database so that every web process hashes alike.
``visitor_salts_prune`` (periodic) deletes every salt older than yesterday;
after that a day's hashes can't be recomputed from an address, so yesterday's
visitor can't be followed today, not even by someone who reads the database.
Yesterday's salt is kept one more day only for requests received just before
midnight and hashed just after it.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from datetime import UTC, date, datetime, timedelta

from .models import VisitorSalt

SALT_BYTES = 32
VISITOR_PREFIX = "v_"

# Salts by day, for this process: the current day's (and, around midnight, the day before).
# A day's salt never changes once made, so a copy can't go stale; only deletion ends it.
_salts: dict[date, bytes] = {}
_salts_lock = threading.Lock()


def visitor_salt(day: date) -> bytes:
    """The salt of ``day``, made (once, whoever asks first) when it has none yet."""
    salt = _salts.get(day)
    if salt is not None:
        return salt
    row, _ = VisitorSalt.objects.get_or_create(day=day, defaults={"salt": secrets.token_bytes(SALT_BYTES)})
    salt = bytes(row.salt)
    with _salts_lock:
        for old in [known for known in _salts if known < day - timedelta(days=1)]:
            del _salts[old]
        _salts[day] = salt
    return salt


def visitor_salts_forget() -> None:
    """Drop this process's copies (tests; the database stays as it is)."""
    with _salts_lock:
        _salts.clear()


def visitor_id(*, stream_id: int, ip: str | None, user_agent: str | None, at: datetime) -> str:
    """The visitor's id for the UTC day of ``at``: 32 hex digits of a keyed BLAKE2b, ``v_``-prefixed."""
    salt = visitor_salt(at.astimezone(UTC).date())
    material = f"{stream_id}\x1f{ip or ''}\x1f{user_agent or ''}".encode()
    return VISITOR_PREFIX + hashlib.blake2b(material, key=salt, digest_size=16).hexdigest()


def visitor_salts_prune(*, today: date) -> int:
    """Delete the salts of days before yesterday (UTC); returns how many went."""
    cutoff = today - timedelta(days=1)
    deleted, _ = VisitorSalt.objects.filter(day__lt=cutoff).delete()
    with _salts_lock:
        for old in [known for known in _salts if known < cutoff]:
            del _salts[old]
    return deleted
