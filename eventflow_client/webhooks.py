"""Checking that a webhook delivery came from EventFlow, unaltered and recently."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE_HEADER = "X-EventFlow-Signature"
TIMESTAMP_HEADER = "X-EventFlow-Timestamp"
DEFAULT_TOLERANCE_SECONDS = 300


class WebhookSignatureError(ValueError):
    """The delivery's signature or timestamp does not check out: reject the request (e.g. with 400)."""


def verify_signature(
    *,
    secret: str,
    body: bytes,
    signature: str,
    timestamp: str,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise WebhookSignatureError unless ``signature`` signs ``timestamp`` and ``body`` with ``secret``.

    ``signature`` is the X-EventFlow-Signature header (``v1=<hex>``, possibly
    several separated by commas); ``timestamp`` is X-EventFlow-Timestamp (Unix
    seconds). Deliveries older or newer than ``tolerance_seconds`` are refused,
    so a captured request cannot be replayed later. Check the raw body bytes,
    before any JSON parsing.
    """
    # Headers are whatever the sender put there: only plain digits are a timestamp (int() would also take
    # "+1_7…" and other scripts' digits, and a few hundred of them overflow the float comparison below).
    if not (isinstance(timestamp, str) and timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise WebhookSignatureError("missing or malformed timestamp")
    sent_at = int(timestamp)
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance_seconds:
        raise WebhookSignatureError("timestamp outside the tolerance: possible replay")
    expected = hmac.new(secret.encode(), f"{sent_at}.".encode() + body, hashlib.sha256).hexdigest().encode()
    # Compared as bytes: compare_digest refuses str with non-ASCII characters (TypeError, not a refusal).
    candidates = [
        part.strip()[3:].encode("utf-8", "surrogateescape")
        for part in (signature or "").split(",")
        if part.strip().startswith("v1=")
    ]
    if not candidates:
        raise WebhookSignatureError("missing or malformed signature")
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise WebhookSignatureError("signature mismatch")


def verify_webhook_request(
    *,
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """``verify_signature`` reading the two headers from a request's header mapping (any case)."""
    lowered = {key.lower(): value for key, value in headers.items()}
    verify_signature(
        secret=secret,
        body=body,
        signature=lowered.get(SIGNATURE_HEADER.lower(), ""),
        timestamp=lowered.get(TIMESTAMP_HEADER.lower(), ""),
        tolerance_seconds=tolerance_seconds,
    )
