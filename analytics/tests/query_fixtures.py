"""Events in a stream's log, and callers, for the tests of the event query, lookup and export.

Every test computes what it expects from the ``LogRecord``s it appended (offset
``i`` is ``records[i]`` on a fresh stream), never from the database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth.models import Group, User
from django.test import Client
from rest_framework_simplejwt.tokens import RefreshToken

from streams.log import LogRecord, log_append_now, log_head
from streams.models import ApiKeyKind, Stream
from streams.services import api_key_create, stream_create, team_create

BASE_TIME = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
TYPES = ["page_view", "login", "button_click", "Order Completed"]
BROWSERS = ["Firefox", "Chrome", "Safari"]
EVENTS = "/api/v1/streams/shop/events"


def record(i: int) -> LogRecord:
    """The i-th event of the test log: every field varies, event times are out of order, some are hours late."""
    payload: dict[str, Any] = {"page": f"/p/{i % 4}", "n": i, "nested": {"level": i % 3}}
    if i % 7:
        payload["plan"] = "pro" if i % 2 else "free"
    if i % 5 == 0:
        payload["coupon"] = f"C{i}"
    # Late arrivals: every ninth event happened three hours before it was received.
    late = timedelta(hours=3) if i % 9 == 4 else timedelta(0)
    return LogRecord(
        event_id=f"ev-{i}",
        type=TYPES[i % len(TYPES)],
        event_time=BASE_TIME + timedelta(minutes=5 * i) - late,
        received_at=BASE_TIME + timedelta(minutes=5 * i, seconds=1),
        user_id=f"u{i % 5}" if i % 6 else None,
        anonymous_id=f"anon-{i % 3}" if i % 6 == 0 else None,
        session_id=f"s{i // 8}",
        payload=payload,
        context={"library": {"name": "js" if i % 2 else "python"}, "ip": "203.0.113.9"},
        enrichment={"browser": BROWSERS[i % 3], "device_type": "mobile" if i % 4 == 1 else "desktop"},
        flags={"late": True} if late else {},
    )


def append(stream: Stream, n: int) -> list[LogRecord]:
    """Append the next ``n`` test events; returns them (their offsets continue the log's)."""
    start = log_head(stream.pk)
    records = [record(i) for i in range(start, start + n)]
    log_append_now(stream_id=stream.pk, records=records)
    return records


def person(username: str, role: str, stream: Stream, team: str) -> Client:
    """A person with ``role`` in a team of ``stream``, signed in by JWT."""
    user = User.objects.create_user(username, password="a-long-password-1")
    user.groups.add(Group.objects.get(name=role))
    team_create(slug=team, members=[user], streams=[stream])
    token = str(RefreshToken.for_user(user).access_token)
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def analyst_of(stream: Stream) -> Client:
    return person("analyst", "Analyst", stream, "shop-analysts")


def foreign_analyst() -> Client:
    """An Analyst of another team's stream."""
    other = stream_create(slug="other", name="Other")
    return person("outsider", "Analyst", other, "other-analysts")


def secret_key_of(stream: Stream) -> str:
    return api_key_create(kind=ApiKeyKind.SECRET, streams=[stream]).raw_key
