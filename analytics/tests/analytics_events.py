"""Events sent through the real intake and processor, for the rollup and analytics tests.

Each event is built here as a plain dict together with what the test expects of
it (browser, page, country, …) written out by hand, so the tests compute their
expectations from what they sent, never from the rollups.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.test import Client

from ingestion.pipeline import stream_drain
from streams.models import ApiKeyKind, Stream
from streams.services import api_key_create
from tests.intake import post_batch

# Berlin leaves summer time on 2026-10-25 at 01:00 UTC (03:00 CEST → 02:00 CET): that local day has 25 hours.
START = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
UAS = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Firefox",
        "Windows",
        "desktop",
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
        "Chrome Mobile",
        "Android",
        "mobile",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Mobile/15E148 Safari/604.1",
        "Mobile Safari",
        "iOS",
        "mobile",
    ),
]
TYPES = ["page_view", "login", "button_click", "form_submit", "signup.done"]
PAGES = ["/", "/pricing", "/docs/start", "/blog/x"]


@dataclass
class Sent:
    """One event as sent, and what it should count as."""

    event: dict[str, Any]
    at: datetime
    type: str
    user: str | None
    key_id: int
    dims: dict[str, str]


def make_event(i: int, *, key_id: int, at: datetime | None = None, prefix: str = "e") -> Sent:
    ua, browser, os_, device = UAS[i % 3] if i % 11 else ("", "", "", "")
    at = at or START + timedelta(minutes=17 * i, seconds=i % 60)
    page = PAGES[i % 4]
    event: dict[str, Any] = {
        "event_id": f"{prefix}-{i}",
        "type": TYPES[i % 5],
        "timestamp": at.isoformat(),
        "payload": {"page": f"{page}?ref={i}" if i % 6 == 0 else page, "plan": "pro" if i % 3 == 0 else "free"},
        "context": {},
    }
    user = None
    if i % 7 == 3:
        event["anonymous_id"] = f"anon-{i % 4}"
        user = f"a:anon-{i % 4}"
    elif i % 13 != 5:
        event["user_id"] = f"user-{i % 23}"
        user = f"u:user-{i % 23}"
    country = ""
    if i % 4 == 1:
        event["context"]["country"] = "DE"
        country = "DE"
    elif i % 4 == 2:
        event["context"]["location"] = {"country": "FR"}
        country = "FR"
    referrer_host, utm_source, utm_medium, utm_campaign = "", "", "", ""
    if i % 5 == 2:
        event["context"]["page"] = {
            "url": "https://shop.example/landing?utm_source=news&utm_medium=email&utm_campaign=autumn",
            "referrer": "https://www.search.example/q",
        }
        referrer_host, utm_source, utm_medium, utm_campaign = "www.search.example", "news", "email", "autumn"
    if ua:
        event["context"]["user_agent"] = ua
    dims = {
        "browser": browser,
        "os": os_,
        "device_type": device,
        "referrer_host": referrer_host,
        "page": page,
        "utm_source": utm_source,
        "utm_medium": utm_medium,
        "utm_campaign": utm_campaign,
        "country": country,
        "api_key": str(key_id),
    }
    return Sent(event=event, at=at, type=event["type"], user=user, key_id=key_id, dims=dims)


@dataclass
class World:
    stream: Stream
    keys: list[str]
    key_ids: list[int]
    sent: list[Sent]


def send(client: Client, world: World, events: list[Sent], key_index: int) -> None:
    for chunk in range(0, len(events), 100):
        part = events[chunk : chunk + 100]
        response = post_batch(client, world.stream.slug, [s.event for s in part], key=world.keys[key_index])
        assert response.status_code == 202, response.content
    stream_drain(stream_id=world.stream.pk)


def world_build(client: Client, stream: Stream, n: int = 180) -> World:
    """``n`` events over two days around the Berlin DST change from two keys, some sent twice,
    and a late batch whose events happened hours before the others were sent."""
    created = [api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]) for _ in range(2)]
    world = World(stream=stream, keys=[c.raw_key for c in created], key_ids=[c.api_key.pk for c in created], sent=[])
    first = [make_event(i, key_id=world.key_ids[i % 2]) for i in range(n)]
    for key_index in (0, 1):
        mine = [s for s in first if s.key_id == world.key_ids[key_index]]
        send(client, world, mine, key_index)
    # Sent again: duplicates never count twice.
    send(client, world, [s for s in first if s.key_id == world.key_ids[0]][:30], 0)
    # Late: happened three hours before the first batch's last events, sent now.
    late = [
        make_event(1000 + i, key_id=world.key_ids[1], at=START + timedelta(hours=20, minutes=7 * i), prefix="late")
        for i in range(20)
    ]
    send(client, world, late, 1)
    world.sent = first + late
    return world


def json(response: Any) -> Any:
    assert response.status_code == 200, response.content
    return orjson.loads(response.content)
