"""The SDK-compatible intake's review: HEAD stores nothing, batches are capped like the native ones, bad input is 4xx."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from ingestion.models import InboxEvent
from streams.models import Stream
from tests.fixtures import conf_override

from .test_compat import basic, form, post

pytestmark = pytest.mark.django_db

TP2 = "com.snowplowanalytics.snowplow/tp2"


def stored(stream: Stream) -> list[str]:
    return sorted(InboxEvent.objects.filter(stream=stream).values_list("event_id", flat=True))


def b64(value: Any) -> str:
    return base64.b64encode(orjson.dumps(value)).decode()


# --- HEAD: answered like the GET, nothing stored ----------------------------------------------------


def test_head_on_the_snowplow_pixel_answers_like_get_and_stores_nothing(client, stream, ingest_key):
    params = {"e": "pv", "eid": "head-px", "url": "https://x.example/"}

    head = client.head(f"/k/{ingest_key}/i", params)

    assert head.status_code == 200
    assert head["Content-Type"] == "image/gif" and head["Cache-Control"] == "no-store"
    assert head.content == b""
    assert stored(stream) == []
    get = client.get(f"/k/{ingest_key}/i", params)
    assert get.status_code == 200 and stored(stream) == ["head-px"]


def test_head_on_mixpanel_track_and_engage_stores_nothing(client, stream, ingest_key):
    event = {"event": "signup", "properties": {"token": ingest_key, "distinct_id": "u1", "$insert_id": "head-mp"}}
    update = {"$token": ingest_key, "$distinct_id": "u1", "$set": {"plan": "pro"}}

    track = client.head("/track", {"data": b64([event]), "verbose": "1"})
    engage = client.head("/engage", {"data": b64([update])})

    assert track.status_code == 200 and track["Content-Type"] == "application/json"
    assert engage.status_code == 200 and engage["Content-Type"].startswith("text/plain")
    assert stored(stream) == []
    assert client.get("/track", {"data": b64([event])}).status_code == 200
    assert stored(stream) == ["head-mp"]


def test_head_is_refused_where_get_would_be_and_stores_nothing(client, stream, ingest_key):
    wrong_key = client.head("/k/ef_ingest_nope/i", {"e": "pv", "eid": "head-bad"})
    no_event = client.head(f"/k/{ingest_key}/i")
    post_only = client.head(f"/k/{ingest_key}/v1/batch")

    assert wrong_key.status_code == 401
    assert no_event.status_code == 400
    assert post_only.status_code == 405 and "POST" in post_only["Allow"]
    assert stored(stream) == []


# --- batches: the native intake's event count, in each format's error ------------------------------


def _segment(key: str, n: int) -> tuple[str, bytes, dict[str, Any]]:
    batch = [{"type": "track", "event": "e", "userId": "u", "messageId": f"seg-{i}"} for i in range(n)]
    return "/v1/batch", orjson.dumps({"batch": batch}), {"HTTP_AUTHORIZATION": basic(key)}


def _posthog_batch(key: str, n: int) -> tuple[str, bytes, dict[str, Any]]:
    batch = [{"event": "e", "distinct_id": "d", "uuid": f"ph-{i}"} for i in range(n)]
    return "/batch/", orjson.dumps({"api_key": key, "batch": batch}), {}


def _posthog_list(key: str, n: int) -> tuple[str, bytes, dict[str, Any]]:
    events = [{"event": "e", "distinct_id": "d", "uuid": f"pl-{i}", "properties": {"token": key}} for i in range(n)]
    return "/e/", orjson.dumps(events), {}


def _mixpanel_track(key: str, n: int) -> tuple[str, bytes, dict[str, Any]]:
    events = [
        {"event": "e", "properties": {"token": key, "distinct_id": "d", "$insert_id": f"mp-{i}"}} for i in range(n)
    ]
    return "/track", orjson.dumps(events), {}


def _mixpanel_engage(key: str, n: int) -> tuple[str, bytes, dict[str, Any]]:
    updates = [{"$token": key, "$distinct_id": f"u{i}", "$set": {"n": i}} for i in range(n)]
    return "/engage", orjson.dumps(updates), {}


def _snowplow(key: str, n: int) -> tuple[str, bytes, dict[str, Any]]:
    events = [{"e": "pv", "eid": f"sp-{i}", "url": "https://x.example/"} for i in range(n)]
    return f"/k/{key}/{TP2}", orjson.dumps({"schema": "iglu:x/payload_data/jsonschema/1-0-4", "data": events}), {}


BATCHES = {
    "segment": _segment,
    "posthog-batch": _posthog_batch,
    "posthog-list": _posthog_list,
    "mixpanel-track": _mixpanel_track,
    "mixpanel-engage": _mixpanel_engage,
    "snowplow": _snowplow,
}


def _error_code(name: str, response: Any) -> str:
    if name == "segment":
        assert response.json()["success"] is False
        return response.json()["code"]
    if name.startswith("posthog"):
        assert response.json()["status"] == 0
        return response.json()["code"]
    if name.startswith("mixpanel"):
        assert response.content == b"0"
        return "batch_too_large"
    assert response.json()["error"]["details"] == {"limit": 3, "received": 4}
    return response.json()["error"]["code"]


@pytest.mark.parametrize("name", BATCHES)
def test_a_compat_batch_over_the_native_event_limit_is_413_and_stores_nothing(
    client, settings, stream, ingest_key, name
):
    conf_override(settings, max_batch_events=3)
    path, body, extra = BATCHES[name](ingest_key, 4)

    refused = client.generic("POST", path, body, content_type="application/json", **extra)

    assert refused.status_code == 413, refused.content
    assert _error_code(name, refused) == "batch_too_large"
    assert stored(stream) == []
    path, body, extra = BATCHES[name](ingest_key, 3)
    taken = client.generic("POST", path, body, content_type="application/json", **extra)
    assert taken.status_code == 200, taken.content
    assert len(stored(stream)) == 3


def test_the_batch_limit_counts_messages_the_format_refuses_itself(client, settings, stream, ingest_key):
    conf_override(settings, max_batch_events=2)
    # Segment refuses a message without userId/anonymousId before the envelope check: it still counts.
    batch = [
        {"type": "track", "event": "e", "userId": "u", "messageId": "seg-ok"},
        {"type": "track"},
        {"type": "track"},
    ]

    response = post(client, "/v1/batch", {"batch": batch}, HTTP_AUTHORIZATION=basic(ingest_key))

    assert response.status_code == 413 and response.json()["code"] == "batch_too_large"
    assert stored(stream) == []


def test_a_mixpanel_get_beacon_over_the_limit_is_refused_in_mixpanels_verbose_answer(
    client, settings, stream, ingest_key
):
    conf_override(settings, max_batch_events=1)
    events = [
        {"event": "e", "properties": {"token": ingest_key, "distinct_id": "d", "$insert_id": f"g-{i}"}}
        for i in range(2)
    ]

    response = client.get("/track", {"data": b64(events), "verbose": "1"})

    assert response.status_code == 413
    assert response.json()["status"] == 0 and response.json()["error"].startswith("batch_too_large:")
    assert stored(stream) == []


# --- bad input: a 4xx, never a 5xx, nothing stored --------------------------------------------------


def test_segment_basic_auth_that_is_not_ascii_is_401(client, stream, ingest_key):
    batch = {"batch": [{"type": "track", "event": "e", "userId": "u", "messageId": "seg-auth"}]}

    response = post(client, "/v1/batch", batch, HTTP_AUTHORIZATION="Basic \xe9t\xe9")

    assert response.status_code == 401 and response.json()["code"] == "invalid_authorization"
    assert stored(stream) == []


def _nested(depth: int) -> str:
    # As text: orjson itself writes no deeper than 254 levels.
    return '{"a":' * depth + '"x"' + "}" * depth


@pytest.mark.parametrize("path", ["/track", "/engage"])
def test_mixpanel_messages_nested_too_deep_for_an_id_are_refused_not_a_500(client, stream, ingest_key, path):
    # Messages without $insert_id get an id hashed from their JSON, which orjson won't write past 254 levels.
    if path == "/track":
        message = f'{{"event": "deep", "properties": {{"token": "{ingest_key}", "distinct_id": "d", "deep": {_nested(300)}}}}}'
    else:
        message = f'{{"$token": "{ingest_key}", "$distinct_id": "d", "$set": {{"deep": {_nested(300)}}}}}'

    response = form(client, path, {"data": f"[{message}]", "verbose": "1"})

    assert response.status_code == 400, response.content
    assert response.json()["status"] == 0
    assert response.json()["error"].startswith("all_events_rejected:") and "too deeply" in response.json()["error"]
    assert stored(stream) == []
