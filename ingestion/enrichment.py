"""Enrichment: user agent, anonymised IP, referrer and campaign, sessions.

Pure functions except ``sessions_assign``, which reads and writes the session
state table inside the processor's transaction.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import ua_parser

from eventflow.db import bound_cursor

SESSION_GAP = timedelta(minutes=30)
# How stale a session row's touched_at may get before a use writes it anew. Renewing it on every
# write would change an indexed column each time (no HOT update; the (stream, touched_at) index
# written too): a 500-row upsert into 200k rows took 13.5 ms instead of 8.8 (medians); renewed at
# most hourly, 7.8 ms against 7.7 without the column. Retention adds this to a stream's
# retention_days, so a row still outlives its last use by the retention.
TOUCH_EVERY = timedelta(hours=1)
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
BOT_WORDS = ("bot", "crawler", "spider", "slurp", "crawling", "headless", "facebookexternalhit", "python-requests")
TABLET_OS_HINTS = ("iPad", "Tablet", "Kindle", "Silk", "PlayBook", "Nexus 7", "Nexus 10", "SM-T", "Tab")


@functools.lru_cache(maxsize=20_000)
def user_agent_details(user_agent: str) -> dict[str, str | None]:
    """Browser, OS and device type of a user-agent string (cached: real traffic repeats a few)."""
    result = ua_parser.parse(user_agent)
    browser = result.user_agent
    os_ = result.os
    device = result.device
    lowered = user_agent.lower()
    if (device and device.family == "Spider") or any(word in lowered for word in BOT_WORDS):
        device_type = "bot"
    elif any(hint in user_agent for hint in TABLET_OS_HINTS) or (
        "Android" in user_agent and "Mobile" not in user_agent
    ):
        device_type = "tablet"
    elif "Mobi" in user_agent or (os_ and os_.family in ("iOS", "Android", "Windows Phone")):
        device_type = "mobile"
    else:
        device_type = "desktop"
    return {
        "browser": browser.family if browser else None,
        "browser_version": _version(browser.major, browser.minor) if browser else None,
        "os": os_.family if os_ else None,
        "os_version": _version(os_.major, os_.minor) if os_ else None,
        "device_type": device_type,
        "device": device.family if device and device.family != "Other" else None,
    }


def _version(major: str | None, minor: str | None) -> str | None:
    if not major:
        return None
    return f"{major}.{minor}" if minor else major


# The longest text an address can have: a full IPv6 address in IPv4 form (45) with a zone
# id. Anything longer is not an address, and is never a key of the cache: the producer
# decides what ``ip`` holds, and 50,000 keys of an event's 64 kB would pin gigabytes
# in every worker.
MAX_IP_CHARS = 64


def anonymize_ip(value: str) -> str | None:
    """IPv4: zero the last octet. IPv6: keep the first 48 bits. None if not an IP."""
    value = value.strip()
    if len(value) > MAX_IP_CHARS:
        return None
    return _anonymize_ip(value)


@functools.lru_cache(maxsize=50_000)
def _anonymize_ip(value: str) -> str | None:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Network(f"{address}/24", strict=False).network_address)
    return str(ipaddress.IPv6Network(f"{address}/48", strict=False).network_address)


def masked_ip(value: Any) -> str | None:
    """What a stream that anonymises keeps of an ``ip`` sent as ``value``: the masked address, else None.

    Only a string is an address. A list (``["203.0.113.9"]``), a number (``3405803785`` is
    203.0.113.9 too), an object or a boolean is not one, and is kept as null like a string
    that names no address: kept as sent, it would carry the whole address into the log.
    """
    return anonymize_ip(value) if isinstance(value, str) else None


def _ip_texts(value: Any) -> set[str]:
    """The texts an error message could quote from ``value``: its strings and numbers, at any depth."""
    texts: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if item.strip():
                texts.update((item.strip(), orjson.dumps(item).decode()[1:-1]))
        elif isinstance(item, int | float) and not isinstance(item, bool):
            texts.add(orjson.dumps(item).decode())
    return texts


IP_WITHHELD = (
    "The value does not match the schema (the message is withheld: it quoted the payload's ip, "
    "which this stream anonymises)."
)


def violations_without_ip(errors: list[dict[str, str]], *, payload: dict[str, Any]) -> list[dict[str, str]]:
    """``errors`` with every message that quotes the payload's unmasked ``ip`` replaced by ``IP_WITHHELD``.

    A schema's message quotes the value it refused (``["203.0.113.9"] is not of type
    "string"``, or the whole payload for a ``oneOf`` at its root), and the violations are
    stored with the event: on a stream that anonymises they would keep the address that
    enrichment masked. Field and code stay; a short number may withhold a message that only
    looked like it, which costs its detail, never the address.
    """
    texts = _ip_texts(payload.get("ip"))
    if not texts:
        return errors
    return [
        {**error, "message": IP_WITHHELD} if any(text in error.get("message", "") for text in texts) else error
        for error in errors
    ]


# Referrers and page URLs repeat as much as user agents do; long ones are parsed
# without the cache so that it stays small.
CACHED_URL_CHARS = 2048


def _host(url: Any) -> str | None:
    if not isinstance(url, str) or not url:
        return None
    return _url_host(url) if len(url) <= CACHED_URL_CHARS else _url_host.__wrapped__(url)


@functools.lru_cache(maxsize=20_000)
def _url_host(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host or None


def _utm(url: Any) -> dict[str, str]:
    if not isinstance(url, str) or "utm_" not in url:
        return {}
    return dict(_url_utm(url) if len(url) <= CACHED_URL_CHARS else _url_utm.__wrapped__(url))


@functools.lru_cache(maxsize=20_000)
def _url_utm(url: str) -> tuple[tuple[str, str], ...]:
    try:
        query = urlsplit(url).query
    except ValueError:
        return ()
    return tuple((k, v) for k, v in parse_qsl(query) if k in UTM_FIELDS and v)


@dataclass
class Enriched:
    enrichment: dict[str, Any]
    context: dict[str, Any]
    payload: dict[str, Any]


def enrich(*, payload: dict[str, Any], context: dict[str, Any], anonymize: bool) -> Enriched:
    """Everything but the session: returns new dicts, never mutates its input."""
    enrichment: dict[str, Any] = {}
    user_agent = context.get("user_agent") or context.get("userAgent")
    if isinstance(user_agent, str) and user_agent:
        enrichment.update(user_agent_details(user_agent[:1024]))
    new_context = context
    new_payload = payload
    if anonymize:
        if context.get("ip") is not None:
            masked = masked_ip(context["ip"])
            new_context = {**context, "ip": masked}
            enrichment["ip"] = masked
        if payload.get("ip") is not None:
            new_payload = {**payload, "ip": masked_ip(payload["ip"])}
    elif isinstance(context.get("ip"), str):
        enrichment["ip"] = context["ip"]

    raw_page = context.get("page")
    page: dict[str, Any] = raw_page if isinstance(raw_page, dict) else {}
    referrer = page.get("referrer") or context.get("referrer") or payload.get("referrer")
    referrer_host = _host(referrer)
    if referrer_host:
        enrichment["referrer_host"] = referrer_host
    utm = _utm(page.get("url")) or _utm(payload.get("page"))
    campaign = context.get("campaign")
    if isinstance(campaign, dict):
        for key, value in campaign.items():
            field = key if key.startswith("utm_") else f"utm_{key}"
            if field in UTM_FIELDS and isinstance(value, str) and value:
                utm.setdefault(field, value)
    if utm:
        enrichment["utm"] = utm
    return Enriched(enrichment=enrichment, context=new_context, payload=new_payload)


# --- sessions -----------------------------------------------------------------------

# One index probe per identity whatever the statistics say: with few rows in
# them the planner turned ``identity = ANY(%s)`` into a filter comparing every
# row of the stream with the whole array, and a plain join into a hash join over
# the stream's whole state; LIMIT in a lateral subquery rules both out.
_SESSIONS_READ = """
SELECT i.identity, s.session_id, s.started_at, s.last_seen, s.touched_at
FROM json_array_elements_text(%s::json) AS i(identity)
CROSS JOIN LATERAL (
    SELECT session_id, started_at, last_seen, touched_at FROM ingestion_session_state
    WHERE stream_id = %s AND identity = i.identity LIMIT 1
) AS s
"""
_SESSIONS_WRITE = """
INSERT INTO ingestion_session_state (stream_id, identity, session_id, started_at, last_seen)
SELECT %s, r.identity, r.session_id, r.started_at, r.last_seen
FROM json_to_recordset(%s::json) AS r(identity text, session_id text, started_at timestamptz, last_seen timestamptz)
ON CONFLICT (stream_id, identity) DO UPDATE SET
    session_id = EXCLUDED.session_id, started_at = EXCLUDED.started_at,
    last_seen = GREATEST(ingestion_session_state.last_seen, EXCLUDED.last_seen),
    touched_at = CASE WHEN ingestion_session_state.touched_at < EXCLUDED.touched_at - %s
                      THEN EXCLUDED.touched_at ELSE ingestion_session_state.touched_at END
"""


def _session_id(identity: str, started_at: datetime) -> str:
    # Deterministic, so a replay or a re-run of the same batch names the same session.
    digest = hashlib.sha1(f"{identity}|{started_at.isoformat()}".encode(), usedforsecurity=False).hexdigest()[:20]
    return f"s_{digest}"


@dataclass
class SessionNeed:
    """One event that needs a session: its identity and time; ``session_id`` is filled in."""

    identity: str
    event_time: datetime
    session_id: str | None = None


def sessions_assign(*, stream_id: int, needs: Sequence[SessionNeed]) -> None:
    """Give each event without a session_id the session of its user (30 minutes of inactivity ends one)."""
    if not needs:
        return
    identities = sorted({need.identity for need in needs})
    with bound_cursor() as cursor:
        cursor.execute(_SESSIONS_READ, [orjson.dumps(identities).decode(), stream_id], binary=True)
        found = cursor.fetchall()
        state: dict[str, list[Any]] = {row[0]: [row[1], row[2], row[3]] for row in found}
        # A row not renewed for a while is written even if its times stay: retention goes by touched_at.
        stale_before = datetime.now(UTC) - TOUCH_EVERY
        changed: set[str] = {row[0] for row in found if row[4] < stale_before}
        for need in sorted(needs, key=lambda n: n.event_time):
            current = state.get(need.identity)
            if current is not None:
                session_id, started_at, last_seen = current
                # Compared as differences: ``started_at - SESSION_GAP`` overflows for a session
                # that starts in year 1 (a valid timestamp), and would fail every batch holding
                # that identity's events.
                if -SESSION_GAP <= need.event_time - started_at and need.event_time - last_seen <= SESSION_GAP:
                    need.session_id = session_id
                    if need.event_time > last_seen:
                        current[2] = need.event_time
                        changed.add(need.identity)
                    if need.event_time < started_at:
                        current[1] = need.event_time
                        changed.add(need.identity)
                    continue
                if need.event_time < started_at:
                    # A late event from an earlier session: name it by its 30-minute slot
                    # and leave the current session alone.
                    slot = (
                        need.event_time
                        - (need.event_time - datetime.min.replace(tzinfo=need.event_time.tzinfo)) % SESSION_GAP
                    )
                    need.session_id = _session_id(need.identity, slot)
                    continue
            new_id = _session_id(need.identity, need.event_time)
            state[need.identity] = [new_id, need.event_time, need.event_time]
            need.session_id = new_id
            changed.add(need.identity)
        if changed:
            rows = [
                {"identity": i, "session_id": state[i][0], "started_at": state[i][1], "last_seen": state[i][2]}
                for i in sorted(changed)
            ]
            cursor.execute(_SESSIONS_WRITE, [stream_id, orjson.dumps(rows).decode(), TOUCH_EVERY])
