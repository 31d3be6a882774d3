"""The wire formats of other products' SDKs, through the Django test client: mapping, keys, answers, bad bodies."""

from __future__ import annotations

import base64
import gzip
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from ingestion.models import InboxEvent
from streams.models import ApiKeyKind, Stream
from streams.selectors import stream_cache_clear
from streams.services import api_key_create, stream_archive, stream_create

pytestmark = pytest.mark.django_db


# lz-string's compressToBase64 of [{"event":"clicked","properties":{"distinct_id":"d"},"uuid":"e-lz64-form"}].
LZ64_EVENTS = "NobwRApgbhB2AuYBcYDGAbAlqg1hAJmADRgAOATgPakTnyYQDOy4+mj9sq8A+poSkIBfEgFdR/ZJAC06AF4A2ACzSAZpXIBbMEIC6QA="


def inbox(stream: Stream) -> dict[str, InboxEvent]:
    return {row.event_id: row for row in InboxEvent.objects.filter(stream=stream)}


def post(client: Any, path: str, body: Any, *, content_type: str = "application/json", **extra: Any) -> Any:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.generic("POST", path, data, content_type=content_type, **extra)


def form(client: Any, path: str, fields: dict[str, str]) -> Any:
    return client.generic("POST", path, urlencode(fields), content_type="application/x-www-form-urlencoded")


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


# --- Segment / RudderStack -----------------------------------------------------------------------


def test_segment_batch_maps_every_call_type(client, stream, ingest_key):
    batch = [
        {
            "type": "track",
            "event": "checkout_done",
            "messageId": "m-track",
            "userId": "u1",
            "properties": {"total": 10},
            "context": {"ip": "10.1.2.3"},
            "timestamp": "2026-01-02T03:04:05Z",
        },
        {"type": "page", "name": "Home", "messageId": "m-page", "anonymousId": "a1", "properties": {"path": "/"}},
        {"type": "screen", "name": "Main", "messageId": "m-screen", "userId": 42},
        {"type": "identify", "messageId": "m-identify", "userId": "u1", "traits": {"plan": "pro"}},
        {"type": "group", "messageId": "m-group", "userId": "u1", "groupId": "g1", "traits": {"size": 3}},
        {"type": "alias", "messageId": "m-alias", "userId": "u1", "previousId": "a1"},
    ]
    response = post(client, "/v1/batch", {"batch": batch, "writeKey": ingest_key})

    assert response.status_code == 200, response.content
    assert response.json()["success"] is True
    rows = inbox(stream)
    assert {event_id: row.type for event_id, row in rows.items()} == {
        "m-track": "checkout_done",
        "m-page": "page_view",
        "m-screen": "screen_view",
        "m-identify": "identify",
        "m-group": "group",
        "m-alias": "alias",
    }
    assert rows["m-track"].user_id == "u1"
    assert rows["m-track"].payload == {"total": 10}
    assert rows["m-track"].context == {"ip": "10.1.2.3"}
    assert rows["m-track"].event_time.isoformat() == "2026-01-02T03:04:05+00:00"
    assert rows["m-page"].anonymous_id == "a1"
    assert rows["m-page"].payload == {"path": "/", "name": "Home"}
    assert rows["m-screen"].user_id == "42"
    assert rows["m-identify"].payload == {"traits": {"plan": "pro"}}
    assert rows["m-group"].payload == {"group_id": "g1", "traits": {"size": 3}}
    assert rows["m-alias"].payload == {"previous_id": "a1"}


def test_segment_single_call_with_basic_auth_gzip_labelled_text_and_a_retry_is_a_duplicate(client, stream, ingest_key):
    body = gzip.compress(orjson.dumps({"event": "signed_up", "messageId": "m-1", "userId": "u1"}))
    for _ in range(2):
        response = post(client, "/v1/track/", body, content_type="text/plain", HTTP_AUTHORIZATION=basic(ingest_key))
        assert response.status_code == 200, response.content
    assert list(inbox(stream)) == ["m-1"]
    assert response.json()["duplicates"] == 1


def test_rudderstack_original_timestamp_is_the_event_time_corrected_by_sent_at(client, stream, ingest_key):
    response = post(
        client,
        "/v1/batch",
        {
            "batch": [
                {
                    "type": "track",
                    "event": "x",
                    "messageId": "r-1",
                    "anonymousId": "a",
                    "originalTimestamp": "2026-01-01T00:00:00Z",
                    "timestamp": "2025-01-01T00:00:00Z",
                }
            ],
            "sentAt": "2026-01-01T00:00:10Z",
        },
        HTTP_AUTHORIZATION=basic(ingest_key),
    )
    assert response.status_code == 200, response.content
    row = inbox(stream)["r-1"]
    # The device clock ran (sentAt - received) behind; the event time is moved by the same amount.
    assert row.event_time > row.received_at.replace(year=2025) and row.flags.get("clock_skew_seconds")


def test_segment_bad_key_is_401_with_code_and_message_at_the_top(client, stream):
    response = post(client, "/v1/batch", {"batch": [{"type": "track", "event": "x"}], "writeKey": "ef_ingest_nope"})
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key" and response.json()["message"]
    assert not InboxEvent.objects.exists()


def test_segment_every_message_bad_is_400_and_nothing_is_written(client, stream, ingest_key):
    response = post(client, "/v1/batch", {"batch": [{"type": "nonsense"}, "x"], "writeKey": ingest_key})
    assert response.status_code == 400
    assert response.json()["code"] == "all_events_rejected"
    assert not InboxEvent.objects.exists()


# --- keys, streams, Origin -----------------------------------------------------------------------


@pytest.fixture
def two_streams(stream: Stream) -> tuple[Stream, str]:
    other = stream_create(slug="blog", name="Blog")
    return other, api_key_create(kind=ApiKeyKind.INGEST, streams=[stream, other]).raw_key


def test_a_key_of_several_streams_needs_the_stream_prefix(client, stream, two_streams):
    other, key = two_streams
    root = post(client, "/v1/track", {"event": "x", "messageId": "m", "userId": "u", "writeKey": key})
    prefixed = post(client, "/s/blog/v1/track", {"event": "x", "messageId": "m", "userId": "u", "writeKey": key})

    assert root.status_code == 400 and root.json()["code"] == "stream_required"
    assert prefixed.status_code == 200
    assert list(inbox(other)) == ["m"] and not inbox(stream)


def test_a_stream_the_key_was_not_granted_is_404(client, stream, ingest_key):
    stream_create(slug="blog", name="Blog")
    response = post(client, "/s/blog/v1/track", {"event": "x", "userId": "u", "writeKey": ingest_key})
    assert response.status_code == 404


def test_archived_stream_is_409(client, stream, ingest_key):
    stream_archive(stream=stream)
    stream_cache_clear()
    response = post(client, "/v1/track", {"event": "x", "userId": "u", "writeKey": ingest_key})
    assert response.status_code == 409


def test_origin_allow_list(client, stream, ingest_key):
    Stream.objects.filter(pk=stream.pk).update(allowed_origins=["https://shop.example.com", "https://*.example.org"])
    stream_cache_clear()
    url = f"/s/shop/k/{ingest_key}/api/event"
    event = {"name": "pageview", "url": "https://shop.example.com/"}

    allowed = post(client, url, event, HTTP_ORIGIN="https://shop.example.com")
    wildcard = post(client, url, event, HTTP_ORIGIN="https://www.example.org")
    server = post(client, url, event)
    refused = post(client, url, event, HTTP_ORIGIN="https://evil.example.net")

    assert [allowed.status_code, wildcard.status_code, server.status_code] == [202, 202, 202]
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "origin_not_allowed"
    assert refused["Access-Control-Allow-Origin"] == "https://evil.example.net"
    assert InboxEvent.objects.count() == 3


def test_allowed_origins_are_set_through_the_streams_api_and_checked(client, stream, ingest_key):
    from django.contrib.auth.models import Group, User
    from django.test import Client
    from rest_framework_simplejwt.tokens import RefreshToken

    from streams.services import team_create

    user = User.objects.create_user("developer", password="a-long-password-1")
    user.groups.add(Group.objects.get(name="Developer"))
    team_create(slug="shop-team", members=[user], streams=[stream])
    token = RefreshToken.for_user(user).access_token
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")

    def patch(body: Any) -> Any:
        return api.patch("/api/v1/streams/shop", orjson.dumps(body), content_type="application/json")

    changed = patch({"allowed_origins": ["HTTPS://Shop.Example.com/", "https://*.example.org"]})
    bad = [patch({"allowed_origins": [value]}) for value in ("shop.example.com", "https://x.example/path", "ftp://x")]
    too_many = patch({"allowed_origins": [f"https://s{n}.example.com" for n in range(51)]})

    assert changed.status_code == 200, changed.content
    assert changed.json()["allowed_origins"] == ["https://shop.example.com", "https://*.example.org"]
    assert [response.status_code for response in bad] == [400, 400, 400]
    assert too_many.status_code == 400
    refused = post(
        client, f"/k/{ingest_key}/api/event", {"name": "pageview", "url": "https://x/"}, HTTP_ORIGIN="https://x.example"
    )
    allowed = post(
        client,
        f"/k/{ingest_key}/api/event",
        {"name": "pageview", "url": "https://x/"},
        HTTP_REFERER="https://shop.example.com/cart",
    )
    assert refused.status_code == 403
    assert allowed.status_code == 202


def test_widened_types_in_schemas_and_their_urls(client, stream, ingest_key):
    from django.contrib.auth.models import User
    from rest_framework_simplejwt.tokens import RefreshToken

    from eventflow.errors import Invalid
    from streams.services import schema_register

    admin = User.objects.create_superuser("root", password="a-long-password-1")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {RefreshToken.for_user(admin).access_token}"}
    schema = {"type": "object", "properties": {"total": {"type": "number"}}}
    registered = client.post(
        "/api/v1/streams/shop/schemas/Order%20Completed",
        orjson.dumps({"schema": schema}),
        content_type="application/json",
        **auth,
    )
    shown = client.get("/api/v1/streams/shop/schemas/Order%20Completed", **auth)

    assert registered.status_code == 201, registered.content
    assert shown.status_code == 200 and shown.json()["event_type"] == "Order Completed"
    for bad in ("x" * 201, "tab\there", "  "):
        with pytest.raises(Invalid):
            schema_register(stream=stream, event_type=bad, schema=schema)


def test_a_secret_key_is_refused_in_a_url(client, stream):
    secret = api_key_create(kind=ApiKeyKind.SECRET, streams=[stream]).raw_key
    response = post(client, f"/k/{secret}/api/event", {"name": "pageview", "url": "https://x.example/"})
    assert response.status_code == 403
    assert not InboxEvent.objects.exists()


def test_preflight_answers_without_a_key(client, stream):
    response = client.options(
        "/s/shop/v1/batch", HTTP_ORIGIN="https://app.example.com", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "authorization" in response["Access-Control-Allow-Headers"].lower()


# --- PostHog -------------------------------------------------------------------------------------


def test_posthog_batch_with_offset_set_and_page_names(client, stream, ingest_key):
    body = {
        "api_key": ingest_key,
        "sent_at": "2026-03-01T10:00:00+00:00",
        "batch": [
            {
                "event": "$pageview",
                "distinct_id": "d1",
                "uuid": "p-1",
                "properties": {"$current_url": "https://x.example/a", "$lib": "posthog-python", "plan": 1},
                "timestamp": "2026-03-01T09:59:00+00:00",
            },
            {"event": "$pageleave", "properties": {"distinct_id": "d2"}, "uuid": "p-2", "offset": 1500},
            {"event": "$set", "$distinct_id": "d3", "uuid": "p-3", "$set": {"email": "a@example.com"}},
            {"event": "signed_up", "distinct_id": "d4", "uuid": "p-4", "properties": {"$set": {"plan": "pro"}}},
        ],
    }
    response = post(client, "/batch/", body, content_type="text/plain")

    assert response.status_code == 200, response.content
    assert response.json() == {"status": 1}
    rows = inbox(stream)
    assert rows["p-1"].type == "page_view" and rows["p-1"].user_id == "d1"
    assert rows["p-1"].payload == {"plan": 1}
    assert rows["p-1"].context["page"] == {"url": "https://x.example/a"}
    assert rows["p-1"].context["library"]["name"] == "posthog-python"
    assert rows["p-2"].type == "page_leave" and rows["p-2"].user_id == "d2"
    # offset: 1.5 s before the request was sent, on the server's clock.
    assert abs((rows["p-2"].received_at - rows["p-2"].event_time).total_seconds() - 1.5) < 0.01
    assert rows["p-3"].type == "identify" and rows["p-3"].payload == {"traits": {"email": "a@example.com"}}
    assert rows["p-4"].type == "signed_up" and rows["p-4"].payload == {"traits": {"plan": "pro"}}


@pytest.mark.parametrize("encoding", ["json", "gzip-js", "gzip-magic", "base64-form", "lz64-form", "base64-raw"])
def test_posthog_body_encodings(client, stream, ingest_key, encoding):
    events = [{"event": "clicked", "properties": {"distinct_id": "d", "token": ingest_key}, "uuid": f"e-{encoding}"}]
    text = orjson.dumps(events)
    path, content_type = "/e/", "application/json"
    if encoding == "json":
        body = text
    elif encoding == "gzip-js":
        body, path, content_type = gzip.compress(text), "/e/?compression=gzip-js", "text/plain"
    elif encoding == "gzip-magic":
        body, content_type = gzip.compress(text), "application/x-www-form-urlencoded"
    elif encoding == "base64-form":
        body = urlencode({"data": base64.b64encode(text).decode()}).encode()
        content_type = "application/x-www-form-urlencoded"
    elif encoding == "lz64-form":
        # Made by the JavaScript lz-string (tests/data/lzstring_vectors.json); the key travels in the URL.
        body = urlencode({"data": LZ64_EVENTS, "compression": "lz64"}).encode()
        path, content_type = f"/k/{ingest_key}/e/", "application/x-www-form-urlencoded"
    else:
        body = base64.b64encode(text)
    response = post(client, path, body, content_type=content_type)
    assert response.status_code == 200, response.content
    assert list(inbox(stream)) == [f"e-{encoding}"]


def test_track_tells_posthog_from_mixpanel_by_the_body(client, stream, ingest_key):
    posthog = post(client, "/track/", {"api_key": ingest_key, "event": "a", "distinct_id": "d", "uuid": "ph"})
    mixpanel = form(
        client,
        "/track",
        {
            "data": orjson.dumps(
                {
                    "event": "b",
                    "properties": {"token": ingest_key, "distinct_id": "d", "$insert_id": "mp", "time": 1767225600},
                }
            ).decode()
        },
    )
    assert posthog.status_code == 200 and posthog.json() == {"status": 1}
    assert mixpanel.status_code == 200 and mixpanel.content == b"1"
    rows = inbox(stream)
    assert rows["ph"].type == "a" and rows["mp"].type == "b"
    assert rows["mp"].event_time.isoformat() == "2026-01-01T00:00:00+00:00"


# --- Mixpanel ------------------------------------------------------------------------------------


def test_mixpanel_verbose_answers_and_engage(client, stream, ingest_key):
    ok = form(
        client,
        "/engage",
        {
            "data": orjson.dumps(
                {"$token": ingest_key, "$distinct_id": "u1", "$set": {"name": "Ann"}, "$time": 1767225600000}
            ).decode(),
            "verbose": "1",
        },
    )
    again = form(
        client,
        "/engage",
        {
            "data": orjson.dumps(
                {"$token": ingest_key, "$distinct_id": "u1", "$set": {"name": "Ann"}, "$time": 1767225600000}
            ).decode(),
            "verbose": "1",
        },
    )
    bad_key = form(
        client,
        "/track",
        {"data": orjson.dumps({"event": "x", "properties": {"token": "nope"}}).decode(), "verbose": "1"},
    )
    bad_plain = form(client, "/track", {"data": "%%%"})

    assert ok.status_code == 200 and ok.json() == {"status": 1, "error": None}
    assert again.json() == {"status": 1, "error": None}
    assert bad_key.status_code == 401 and bad_key.json()["status"] == 0 and bad_key.json()["error"]
    assert bad_plain.status_code == 400 and bad_plain.content == b"0"
    [row] = inbox(stream).values()
    assert row.type == "identify" and row.user_id == "u1" and row.payload == {"traits": {"name": "Ann"}}


# --- Snowplow ------------------------------------------------------------------------------------


def test_snowplow_post_and_pixel(client, stream, ingest_key):
    unstruct = {
        "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
        "data": {"schema": "iglu:com.acme/checkout/jsonschema/1-0-0", "data": {"total": 5}},
    }
    body = {
        "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
        "data": [
            {
                "e": "pv",
                "eid": "s-pv",
                "url": "https://x.example/",
                "page": "Home",
                "duid": "d1",
                "dtm": "1767225600000",
                "stm": "1767225600000",
                "tv": "py-1.1.0",
                "p": "srv",
            },
            {"e": "ue", "eid": "s-ue", "uid": "u1", "ue_px": base64.urlsafe_b64encode(orjson.dumps(unstruct)).decode()},
            {"e": "se", "eid": "s-se", "se_ca": "shop", "se_ac": "add-to-basket", "se_va": "2"},
        ],
    }
    response = post(client, f"/s/shop/k/{ingest_key}/com.snowplowanalytics.snowplow/tp2", body)
    pixel = client.get(
        f"/k/{ingest_key}/i",
        {"e": "pv", "eid": "s-px", "url": "https://x.example/b"},
        HTTP_USER_AGENT="Mozilla/5.0 test",
    )

    assert response.status_code == 200, response.content
    assert pixel.status_code == 200 and pixel["Content-Type"] == "image/gif"
    rows = inbox(stream)
    assert rows["s-pv"].type == "page_view" and rows["s-pv"].anonymous_id == "d1"
    assert rows["s-pv"].context["page"] == {"url": "https://x.example/", "title": "Home"}
    assert rows["s-pv"].context["snowplow"] == {"tv": "py-1.1.0", "p": "srv"}
    assert rows["s-ue"].type == "checkout" and rows["s-ue"].payload == {"total": 5}
    assert rows["s-ue"].context["schema"] == "iglu:com.acme/checkout/jsonschema/1-0-0"
    assert rows["s-se"].type == "add-to-basket"
    assert rows["s-se"].payload == {"category": "shop", "action": "add-to-basket", "value": "2"}
    assert rows["s-px"].context["user_agent"] == "Mozilla/5.0 test"


def test_snowplow_without_a_key_is_401(client, stream):
    response = post(client, "/com.snowplowanalytics.snowplow/tp2", {"schema": "x", "data": [{"e": "pv"}]})
    assert response.status_code == 401


# --- Plausible -----------------------------------------------------------------------------------


def test_plausible_event_short_and_long_names(client, stream, ingest_key):
    url = f"/k/{ingest_key}/api/event"
    long = post(
        client,
        url,
        {"name": "pageview", "url": "https://x.example/a", "referrer": "https://r.example/", "domain": "x.example"},
        content_type="text/plain",
        HTTP_USER_AGENT="UA/1",
    )
    short = post(
        client,
        url,
        {"n": "signup", "u": "https://x.example/b", "d": "x.example", "p": orjson.dumps({"plan": "pro"}).decode()},
        content_type="text/plain",
    )
    assert long.status_code == 202 and long.content == b"ok"
    assert short.status_code == 202
    rows = sorted(InboxEvent.objects.filter(stream=stream), key=lambda row: row.type)
    assert [row.type for row in rows] == ["page_view", "signup"]
    assert rows[0].payload == {"url": "https://x.example/a", "referrer": "https://r.example/"}
    assert rows[0].context["user_agent"] == "UA/1"
    assert rows[1].payload == {"plan": "pro"}


# --- bad bodies: 4xx, nothing written, never 5xx -------------------------------------------------

GARBAGE = [
    b"",
    b"{",
    b"[]",
    b"null",
    b"\x1f\x8b\x08\x00garbage",
    gzip.compress(b"{not json")[:-4],
    b"data=%%%",
    b"data=" + base64.b64encode(b"{no"),
    b"\xff\xfe\x00\x00",
    b'{"batch": "no"}',
    b'{"batch": [1, 2]}',
    b'{"data": [{"e": 1}]}',
    b'{"event": {"x": 1}, "api_key": 5}',
    b'[{"event": "\\u0000", "properties": {"token": "t"}}]',
    b'{"name": ["x"]}',
    b"compression=lz64&data=%21%21%21",
    b"compression=lz64&data=NobwRApgbhB2AuYBcYAkAHAh",
]
PATHS = [
    "/v1/batch",
    "/v1/identify",
    "/batch/",
    "/e/",
    "/track",
    "/engage",
    "/com.snowplowanalytics.snowplow/tp2",
    "/api/event",
]


@pytest.mark.parametrize("path", PATHS)
def test_garbage_bodies_are_4xx_and_write_nothing(client, stream, ingest_key, path):
    for body in GARBAGE:
        for payload in (body, body[: len(body) // 2]):
            response = client.generic(
                "POST",
                f"/k/{ingest_key}{path}",
                payload,
                content_type="application/json",
                HTTP_AUTHORIZATION=basic(ingest_key),
            )
            assert 400 <= response.status_code < 500, (path, payload, response.status_code, response.content)
    assert not InboxEvent.objects.exists()


# The processor reads inbox rows due by the database's clock, which a test transaction would hold still.
@pytest.mark.django_db(transaction=True)
def test_a_long_sdk_type_is_processed_into_the_log_and_rollups_and_filtered_on(client, stream, ingest_key):
    from django.contrib.auth.models import User
    from rest_framework_simplejwt.tokens import RefreshToken

    from analytics.models import DayCount
    from ingestion.pipeline import stream_process_batch
    from streams.models import LogEntry

    long_type = "Checkout Step Completed: " + "x" * 150
    response = post(
        client, "/v1/track", {"event": long_type, "userId": "u1", "messageId": "long", "writeKey": ingest_key}
    )
    assert response.status_code == 200, response.content
    assert stream_process_batch(stream_id=stream.pk).appended == 1

    assert LogEntry.objects.get(stream=stream).type == long_type
    assert DayCount.objects.get(stream=stream).type == long_type
    admin = User.objects.create_superuser("root", password="a-long-password-1")
    answer = client.get(
        "/api/v1/streams/shop/analytics/count-by-type",
        {"type": long_type},
        HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(admin).access_token}",
    )
    assert answer.status_code == 200, answer.content
    assert long_type in str(answer.json())
