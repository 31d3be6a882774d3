"""Edges of the SDK-compatible intake: shapes the real SDKs send that were refused, mis-mapped or made a 500."""

from __future__ import annotations

import base64
import gzip

import orjson
import pytest

from ingestion.models import InboxEvent

from .test_compat import basic, inbox, post

pytestmark = pytest.mark.django_db

TP2 = "com.snowplowanalytics.snowplow/tp2"


def _unstruct(data: dict[str, object]) -> str:
    event = {
        "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
        "data": {"schema": "iglu:com.acme/checkout/jsonschema/1-0-0", "data": data},
    }
    return base64.urlsafe_b64encode(orjson.dumps(event)).decode().rstrip("=")


def test_snowplow_nul_inside_base64_json_is_rejected_not_a_500(client, stream, ingest_key):
    # The trackers send ue_px and cx base64-encoded (the default): the body's text shows no \u0000.
    contexts = {"schema": "iglu:x/contexts/jsonschema/1-0-0", "data": [{"schema": "iglu:x/c/1-0-0", "data": "\x00"}]}
    body = {
        "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
        "data": [
            {"e": "ue", "eid": "s-nul", "ue_px": _unstruct({"note": "a\x00b"})},
            {"e": "pv", "eid": "s-cx", "cx": base64.urlsafe_b64encode(orjson.dumps(contexts)).decode()},
            {"e": "pv", "eid": "s-ok", "url": "https://x.example/"},
        ],
    }
    response = post(client, f"/k/{ingest_key}/{TP2}", body)

    assert response.status_code == 200, response.content
    assert list(inbox(stream)) == ["s-ok"]
    alone = post(client, f"/k/{ingest_key}/{TP2}", {"schema": "x", "data": body["data"][:1]})
    assert alone.status_code == 400 and alone.json()["error"]["code"] == "all_events_rejected"


def test_snowplow_posts_from_pages_carry_the_visitors_user_agent(client, stream, ingest_key):
    # The JavaScript tracker POSTs by default and sends no ua parameter: the collector reads the header.
    body = {
        "schema": "iglu:x/payload_data/jsonschema/1-0-4",
        "data": [{"e": "pv", "eid": "s-page", "url": "https://x/"}],
    }
    from_page = post(
        client,
        f"/k/{ingest_key}/{TP2}",
        body,
        HTTP_ORIGIN="https://shop.example.com",
        HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
    )
    server = {"schema": "x", "data": [{"e": "pv", "eid": "s-server", "url": "https://x/"}]}
    from_server = post(client, f"/k/{ingest_key}/{TP2}", server, HTTP_USER_AGENT="python-requests/2.32")

    assert from_page.status_code == from_server.status_code == 200
    rows = inbox(stream)
    assert rows["s-page"].context["user_agent"] == "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"
    assert "ip" in rows["s-page"].context
    # A server's own user agent is not the visitor's.
    assert "user_agent" not in rows["s-server"].context


def test_posthog_group_identify_is_mapped_like_a_segment_group(client, stream, ingest_key):
    # As posthog-python's group_identify and posthog-node's groupIdentify send it.
    event = {
        "event": "$groupidentify",
        "distinct_id": "d1",
        "uuid": "ph-group",
        "properties": {
            "$group_type": "company",
            "$group_key": "c1",
            "$group_set": {"name": "Acme"},
            "$lib": "posthog-python",
        },
    }
    segment_group = {"type": "group", "messageId": "seg-group", "userId": "u1", "groupId": "c1", "traits": {"n": 1}}
    assert post(client, "/batch/", {"api_key": ingest_key, "batch": [event]}).status_code == 200
    assert post(client, "/v1/batch", {"batch": [segment_group], "writeKey": ingest_key}).status_code == 200

    rows = inbox(stream)
    assert rows["ph-group"].type == rows["seg-group"].type == "group"
    assert rows["ph-group"].payload == {"group_id": "c1", "group_type": "company", "traits": {"name": "Acme"}}
    assert rows["seg-group"].payload["group_id"] == "c1"


def test_a_rudderstack_batch_beyond_segments_500_kb_is_taken(client, stream, ingest_key):
    # rudder-sdk-python sends up to 100 messages and 4 MB a batch, gzipped; a 413 is not retried: the batch is lost.
    batch = [
        {"type": "track", "event": "Viewed", "messageId": f"rs-{n}", "userId": "u1", "properties": {"blob": "y" * 6000}}
        for n in range(100)
    ]
    body = gzip.compress(orjson.dumps({"batch": batch, "sentAt": "2026-01-01T00:00:00Z"}))
    response = post(client, "/v1/batch", body, HTTP_AUTHORIZATION=basic(ingest_key), HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 200, response.content[:300]
    assert InboxEvent.objects.filter(stream=stream).count() == 100
    # A single call keeps Segment's 32 KB.
    big_call = {"event": "x", "userId": "u", "properties": {"blob": "y" * 40_000}, "writeKey": ingest_key}
    assert post(client, "/v1/track", big_call).status_code == 413
