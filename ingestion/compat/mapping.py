"""Small rules every format's mapping shares: ids, times, names."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ingestion.envelope import parse_timestamp

# Event names SDKs give the native types (the mapping table in the README).
NATIVE_TYPES = {
    "$pageview": "page_view",
    "$pageleave": "page_leave",
    "$screen": "screen_view",
    "$identify": "identify",
    "$create_alias": "alias",
    "$groupidentify": "group",
    "$mp_web_page_view": "page_view",
}


def native_type(name: Any) -> Any:
    """The native type of an SDK's event name; anything else is kept exactly as sent (and checked later)."""
    if isinstance(name, str):
        return NATIVE_TYPES.get(name, name)
    return name


def id_text(value: Any) -> Any:
    """Ids as text: SDKs send numbers for user ids; other non-strings are left for the envelope check to refuse."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(value)
    return value


def epoch_iso(value: Any, *, unit: str = "auto") -> Any:
    """A Unix time (seconds or milliseconds, number or digits) as ISO 8601; anything else unchanged."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    seconds = value / 1000 if unit == "ms" or (unit == "auto" and value > 100_000_000_000) else value
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return str(value)


def minus_ms(base: Any, offset_ms: Any) -> Any:
    """``base`` (ISO 8601) less ``offset_ms`` milliseconds; None when either is unusable."""
    parsed = parse_timestamp(base) if isinstance(base, str) else base if isinstance(base, datetime) else None
    if parsed is None or isinstance(offset_ms, bool) or not isinstance(offset_ms, int | float):
        return None
    try:
        return (parsed - timedelta(milliseconds=offset_ms)).isoformat()
    except (OverflowError, ValueError):
        return None


def content_id(prefix: str, value: Any) -> str | None:
    """An event id made from the message itself, for formats whose messages carry none:
    the same message sent again is the same event.

    None for a message orjson won't write (nested past its 254 levels): the envelope
    check refuses it for its depth, so it never needs an id.
    """
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None
    return f"{prefix}-{hashlib.sha256(text).hexdigest()[:40]}"


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def envelope(**fields: Any) -> dict[str, Any]:
    """An envelope without the fields that are None (absent, as the native intake expects)."""
    return {name: value for name, value in fields.items() if value is not None}
