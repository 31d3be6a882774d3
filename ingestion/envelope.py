"""Reading request bodies and checking event envelopes.

Everything here is pure: it turns bytes into checked events or into the clear
4xx errors of DESIGN.md invariant 8, and writes nothing.
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.http import HttpRequest

from eventflow import conf
from eventflow.db import within_depth
from eventflow.errors import ApiError
from streams.event_types import EVENT_TYPE_RE, EVENT_TYPE_RULE
from streams.events import ENVELOPE_FIELDS, MAX_EVENT_ID_LENGTH, MAX_ID_LENGTH

JSON_MEDIA_TYPES = ("application/json",)
READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class JsonBody:
    value: Any
    # False when the body holds no \u0000 escape: JSON has no other way to put a
    # NUL in a string, so the per-event search for NULs can be skipped.
    may_hold_nul: bool = True


@dataclass(frozen=True)
class EnvelopeLimits:
    """The settings ``check_event`` needs, read once per request rather than per event."""

    max_depth: int
    future_tolerance: timedelta

    @classmethod
    def current(cls) -> EnvelopeLimits:
        settings = conf.get()
        return cls(
            max_depth=settings.max_json_depth,
            future_tolerance=timedelta(seconds=settings.future_tolerance_seconds),
        )


# --- body -------------------------------------------------------------------------


def read_json_body(request: HttpRequest) -> JsonBody:
    """Read, size-check, decompress and parse a JSON request body."""
    settings = conf.get()
    content_type = request.META.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
    if content_type not in JSON_MEDIA_TYPES and not content_type.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            "Send the body as JSON with Content-Type: application/json.",
            {"content_type": content_type},
        )
    encoding = request.META.get("HTTP_CONTENT_ENCODING", "identity").strip().lower()
    if encoding not in ("identity", "gzip", ""):
        raise ApiError(
            415, "unsupported_content_encoding", "Content-Encoding may be gzip or identity.", {"encoding": encoding}
        )
    max_body = settings.max_body_bytes
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApiError(400, "invalid_content_length", "Content-Length is not a number.") from None
    if declared > max_body:
        # Refused from the header alone: the body is never read.
        raise ApiError(413, "body_too_large", f"The body may be at most {max_body} bytes.", {"limit": max_body})
    raw = _read_capped(request, max_body)
    if encoding == "gzip":
        raw = _gunzip_capped(raw, settings.max_decompressed_bytes)
    if not raw:
        raise ApiError(400, "empty_body", "The request body is empty.")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"The body is not valid JSON: {exc}") from None
    return JsonBody(value, may_hold_nul=b"\\u0000" in raw)


def _read_capped(request: HttpRequest, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = request.read(READ_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"The body may be at most {limit} bytes.", {"limit": limit})
        chunks.append(chunk)
    return b"".join(chunks)


def _gunzip_capped(raw: bytes, limit: int) -> bytes:
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(raw, limit + 1)
    except zlib.error:
        raise ApiError(400, "invalid_gzip", "The body is not valid gzip.") from None
    if len(out) > limit or decompressor.unconsumed_tail:
        raise ApiError(413, "body_too_large", f"The decompressed body may be at most {limit} bytes.", {"limit": limit})
    if not decompressor.eof:
        raise ApiError(400, "invalid_gzip", "The gzip body is truncated.")
    return out


# --- envelope ---------------------------------------------------------------------------


@dataclass
class CheckedEvent:
    event_id: str
    type: str
    event_time: datetime
    user_id: str | None
    anonymous_id: str | None
    session_id: str | None
    payload: dict[str, Any]
    context: dict[str, Any]
    flags: dict[str, Any] = field(default_factory=dict)
    generated_id: bool = False


def _error(field_name: str, code: str, message: str) -> dict[str, str]:
    return {"field": field_name, "code": code, "message": message}


def structure_errors(value: Any, max_depth: int) -> list[dict[str, str]]:
    """Nesting deeper than ``max_depth`` and NUL characters (which JSONB refuses)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > max_depth:
                return [_error("", "too_deep", f"JSON may nest at most {max_depth} levels.")]
            for key, child in item.items():
                if "\x00" in key:
                    return [_error("", "nul_character", "Strings may not contain NUL (\\u0000).")]
                if isinstance(child, (dict, list)):
                    stack.append((child, depth + 1))
                elif isinstance(child, str) and "\x00" in child:
                    return [_error("", "nul_character", "Strings may not contain NUL (\\u0000).")]
        elif isinstance(item, list):
            if depth > max_depth:
                return [_error("", "too_deep", f"JSON may nest at most {max_depth} levels.")]
            for child in item:
                if isinstance(child, (dict, list)):
                    stack.append((child, depth + 1))
                elif isinstance(child, str) and "\x00" in child:
                    return [_error("", "nul_character", "Strings may not contain NUL (\\u0000).")]
    return []


def parse_timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    try:
        # e.g. 0001-01-01T00:00:00+14:00 lies before year 1 in UTC: PostgreSQL would
        # store it BC and Python could never read the row back.
        return parsed.astimezone(UTC)
    except OverflowError:
        return None


def _optional_id(raw: dict[str, Any], name: str, errors: list[dict[str, str]]) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        errors.append(
            _error(name, "invalid", f"{name} must be a non-empty string of at most {MAX_ID_LENGTH} characters.")
        )
        return None
    return value


def check_event(
    raw: Any,
    *,
    received_at: datetime,
    skew: timedelta | None,
    limits: EnvelopeLimits | None = None,
    may_hold_nul: bool = True,
) -> CheckedEvent | list[dict[str, str]]:
    """Check one envelope; return the event or its list of errors.

    ``may_hold_nul=False`` says no string in ``raw`` holds NUL (see ``JsonBody``).
    """
    if not isinstance(raw, dict):
        return [_error("", "not_an_object", "An event must be a JSON object.")]
    limits = limits or EnvelopeLimits.current()
    errors: list[dict[str, str]] = []
    if not raw.keys() <= ENVELOPE_FIELDS:
        unknown = raw.keys() - ENVELOPE_FIELDS
        errors.append(
            _error(
                ",".join(sorted(unknown)),
                "unknown_field",
                f"Unknown top-level field(s): {', '.join(sorted(unknown))}. Put custom data in payload or context.",
            )
        )
    max_depth = limits.max_depth
    # The full walk names the first problem; the common case only needs to know there is none.
    if may_hold_nul or not within_depth(raw, max_depth):
        structural = structure_errors(raw, max_depth)
        if structural:
            return errors + structural

    event_type = raw.get("type")
    if not isinstance(event_type, str) or not EVENT_TYPE_RE.match(event_type):
        errors.append(_error("type", "invalid_type", f"type is required: {EVENT_TYPE_RULE}."))

    event_id = raw.get("event_id")
    generated = False
    if event_id is None:
        event_id = str(uuid.uuid4())
        generated = True
    elif not isinstance(event_id, str) or not event_id or len(event_id) > MAX_EVENT_ID_LENGTH:
        errors.append(
            _error(
                "event_id", "invalid_event_id", f"event_id must be a string of 1 to {MAX_EVENT_ID_LENGTH} characters."
            )
        )

    flags: dict[str, Any] = {}
    timestamp = raw.get("timestamp")
    if timestamp is None:
        event_time = received_at
    else:
        parsed = parse_timestamp(timestamp)
        if parsed is None:
            errors.append(
                _error(
                    "timestamp",
                    "invalid_timestamp",
                    "timestamp must be ISO 8601 with a time zone, e.g. 2026-11-21T09:00:00Z.",
                )
            )
            event_time = received_at
        else:
            if skew is not None:
                try:
                    parsed += skew
                except OverflowError:
                    # A wild sent_at can push the corrected time out of the calendar.
                    errors.append(
                        _error(
                            "timestamp", "invalid_timestamp", "timestamp is out of range after clock-skew correction."
                        )
                    )
                    parsed = received_at
                flags["clock_skew_seconds"] = round(skew.total_seconds(), 3)
            if parsed - received_at > limits.future_tolerance:
                flags["future_timestamp"] = timestamp
                parsed = received_at
            event_time = parsed

    payload = raw.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        errors.append(_error("payload", "not_an_object", "payload must be a JSON object."))
    context = raw.get("context", {})
    if context is None:
        context = {}
    if not isinstance(context, dict):
        errors.append(_error("context", "not_an_object", "context must be a JSON object."))

    user_id = _optional_id(raw, "user_id", errors)
    anonymous_id = _optional_id(raw, "anonymous_id", errors)
    session_id = _optional_id(raw, "session_id", errors)

    if errors:
        return errors
    return CheckedEvent(
        event_id=event_id,
        type=event_type,  # type: ignore[arg-type]
        event_time=event_time,
        user_id=user_id,
        anonymous_id=anonymous_id,
        session_id=session_id,
        payload=payload,
        context=context,
        flags=flags,
        generated_id=generated,
    )


def clock_skew(sent_at: Any, received_at: datetime) -> timedelta | None:
    """The producer's clock error, from the batch's sent_at; None when absent."""
    if sent_at is None:
        return None
    parsed = parse_timestamp(sent_at)
    if parsed is None:
        raise ApiError(400, "invalid_sent_at", "sent_at must be ISO 8601 with a time zone.", {"field": "sent_at"})
    return received_at - parsed
