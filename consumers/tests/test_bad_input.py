"""Bad input to every endpoint gets a clear 4xx with the error shape, never a 5xx, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from consumers.models import ConsumerGroup, WebhookSubscription
from consumers.selectors import Position
from consumers.services import consumer_group_create

from .conftest import GROUPS, append

pytestmark = pytest.mark.django_db

# Too big for a bigint; orjson can't write it, so bodies carry it as a float-looking number.
HUGE = 1.0e30
WEBHOOKS = "/api/v1/streams/shop/webhooks"

GROUP_CREATE = [
    {},
    {"name": ""},
    {"name": "a" * 65},
    {"name": "has space"},
    {"name": "nul\x00"},
    {"name": 5},
    {"name": "g", "start": "middle"},
    {"name": "g", "start": "offset"},
    {"name": "g", "offset": -1},
    {"name": "g", "offset": HUGE},
    {"name": "g", "offset": 1.5},
    {"name": "g", "offset": True},
    {"name": "g", "start": "latest", "offset": 1},
    {"name": "g", "offset": 1, "timestamp": "2026-11-21T09:00:00Z"},
    {"name": "g", "timestamp": "yesterday"},
    {"name": "g", "timestamp": "2026-13-45T99:00:00Z"},
    {"name": "g", "max_deliver": 0},
    {"name": "g", "max_deliver": HUGE},
    {"name": "g", "on_max_deliver": "explode"},
    {"name": "g", "unknown": 1},
    {"name": ["g"]},
    {"name": {"$ne": 1}},
]
POLL = [
    {"max": 0},
    {"max": 1001},
    {"max": -5},
    {"max": "lots"},
    {"max": HUGE},
    {"lease_seconds": 0},
    {"lease_seconds": 3601},
    {"wait_ms": -1},
    {"wait_ms": 30001},
    {"wait_ms": None},
    {"max_records": 10},
]
COMMIT = [
    {},
    {"offset": 1},
    {"lease_id": "not-a-uuid", "offset": 1},
    {"lease_id": "00000000-0000-4000-8000-000000000000"},
    {"lease_id": "00000000-0000-4000-8000-000000000000", "offset": -1},
    {"lease_id": "00000000-0000-4000-8000-000000000000", "offset": HUGE},
    {"lease_id": "00000000-0000-4000-8000-000000000000", "offset": 1, "release": "maybe"},
    {"lease_id": 7, "offset": 1},
]
SEEK = [
    {},
    {"to": "somewhere"},
    {"to": "offset"},
    {"to": "timestamp"},
    {"offset": -1},
    {"offset": HUGE},
    {"timestamp": "21/11/2026"},
    {"timestamp": 12},
    {"to": "earliest", "offset": 2},
]
WEBHOOK = [
    {},
    {"url": ""},
    {"url": 5},
    {"url": "not a url"},
    {"url": "http://example.com/\x00"},
    {"url": "http://93.184.216.34/" + "a" * 2000},
    {"url": "http://93.184.216.34/", "event_types": "login"},
    {"url": "http://93.184.216.34/", "event_types": ["not\ta type"]},
    {"url": "http://93.184.216.34/", "event_types": ["t"] * 101},
    {"url": "http://93.184.216.34/", "batch_size": 0},
    {"url": "http://93.184.216.34/", "batch_size": 1001},
    {"url": "http://93.184.216.34/", "description": "x" * 501},
    {"url": "http://93.184.216.34/", "description": "nul\x00"},
    {"url": "http://93.184.216.34/", "secret": "mine"},
]


def assert_clear_4xx(response: Any, allowed: tuple[int, ...] = (400,)) -> None:
    assert response.status_code in allowed, (response.status_code, response.content)
    error = response.json()["error"]
    assert error["code"] and error["message"] and isinstance(error["details"], dict)


@pytest.fixture
def billing(stream):
    append(stream, 3)
    return consumer_group_create(stream_id=stream.pk, name="billing", start=Position("earliest"))


@pytest.mark.parametrize("body", GROUP_CREATE)
def test_group_create(manager, billing, body):
    assert_clear_4xx(manager.post(GROUPS, body))
    assert ConsumerGroup.objects.count() == 1


@pytest.mark.parametrize("body", POLL)
def test_poll(manager, billing, body):
    assert_clear_4xx(manager.post(f"{GROUPS}/billing/poll", body))
    assert ConsumerGroup.objects.get().lease_id is None


@pytest.mark.parametrize("body", COMMIT)
def test_commit(manager, billing, body):
    # A lease id that parses (even from a number) but is not the group's: 409.
    assert_clear_4xx(manager.post(f"{GROUPS}/billing/commit", body), (400, 409))
    assert ConsumerGroup.objects.get().committed_offset == 0


@pytest.mark.parametrize("body", SEEK)
def test_seek(manager, billing, body):
    assert_clear_4xx(manager.post(f"{GROUPS}/billing/seek", body))
    assert ConsumerGroup.objects.get().committed_offset == 0


@pytest.mark.parametrize("body", WEBHOOK)
def test_webhook_create(manager, billing, body):
    assert_clear_4xx(manager.post(WEBHOOKS, body))
    assert WebhookSubscription.objects.count() == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", GROUPS),
        ("post", f"{GROUPS}/billing/poll"),
        ("post", f"{GROUPS}/billing/commit"),
        ("post", f"{GROUPS}/billing/seek"),
        ("post", WEBHOOKS),
    ],
)
@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"{not json", (400,)),
        (b"[1, 2]", (400,)),
        (b'"text"', (400,)),
        (b"null", (400,)),
        (b"NaN", (400,)),
        (b"[" * 5000 + b"]" * 5000, (400,)),
        (b'{"a": "' + b"x" * 70000 + b'"}', (413,)),
        (b"\xff\xfe", (400,)),
        (b'{"offset": 1180591620717411303424, "max": 99999999999999999999999}', (400,)),
    ],
)
def test_malformed_bodies(manager, billing, method, path, raw, status):
    assert_clear_4xx(manager.post(path, raw=raw), status)


@pytest.mark.parametrize("path", [f"{GROUPS}/billing/poll", GROUPS])
def test_wrong_media_type(manager, billing, path):
    response = manager.client.post(
        path, data="max=5", content_type="application/x-www-form-urlencoded", **manager.headers
    )
    assert_clear_4xx(response, (415,))


@pytest.mark.parametrize(
    "path",
    [
        f"{GROUPS}/nope",
        f"{GROUPS}/nope/poll",
        f"{GROUPS}/{'x' * 300}",
        f"{WEBHOOKS}/99999999999999999999999",
        f"{WEBHOOKS}/0",
        f"{WEBHOOKS}/5/deliveries",
    ],
)
def test_missing_things_are_404(manager, billing, path):
    response = manager.post(path, {}) if path.endswith("poll") else manager.get(path)
    assert_clear_4xx(response, (404,))


def test_bad_cursor_and_page_size(manager, billing):
    assert_clear_4xx(manager.get(f"{GROUPS}?cursor=bad"), (400,))
    assert manager.get(f"{GROUPS}?limit=abc").status_code == 200
    assert manager.get(f"{GROUPS}?limit=100000").status_code == 200


def test_wrong_methods(manager, billing):
    assert_clear_4xx(manager.get(f"{GROUPS}/billing/poll"), (405,))
    assert_clear_4xx(manager.delete(GROUPS), (405,))
