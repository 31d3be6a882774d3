"""The intake endpoints: one event, batches, per-event results, durable 202."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ingestion.models import InboxEvent
from tests.intake import (
    assert_api_error,
    batch_url,
    inbox_event_ids,
    post_batch,
    post_event,
    post_raw,
    separate_connection,
)

pytestmark = pytest.mark.django_db

PAGE_VIEW = {
    "event_id": "pv-1",
    "type": "page_view",
    "timestamp": "2026-11-21T09:00:00Z",
    "user_id": "u456",
    "anonymous_id": "anon-9",
    "session_id": "s-1",
    "payload": {"page": "/dashboard", "referrer": "/login"},
    "context": {"user_agent": "Mozilla/5.0", "ip": "203.0.113.7", "library": {"name": "web", "version": "1.2"}},
}


def test_single_event_is_accepted_and_stored_whole(api, stream, ingest_key):
    before = timezone.now()
    response = post_event(api, stream.slug, PAGE_VIEW, key=ingest_key)
    after = timezone.now()

    assert response.status_code == 202, response.content
    assert response.json() == {"event_id": "pv-1", "status": "accepted"}
    row = InboxEvent.objects.get(stream=stream, event_id="pv-1")
    assert row.type == "page_view"
    assert row.event_time == datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    assert before <= row.received_at <= after
    assert (row.user_id, row.anonymous_id, row.session_id) == ("u456", "anon-9", "s-1")
    assert row.payload == PAGE_VIEW["payload"]
    assert row.context == PAGE_VIEW["context"]
    assert row.flags == {}


def test_event_without_id_or_timestamp_gets_a_uuid_and_the_received_time(api, stream, ingest_key):
    response = post_event(api, stream.slug, {"type": "logout", "payload": {"user_id": "u1"}}, key=ingest_key)

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "accepted"
    row = InboxEvent.objects.get(stream=stream)
    assert row.event_id == body["event_id"]
    assert len(body["event_id"]) == 36 and body["event_id"].count("-") == 4
    assert row.event_time == row.received_at


def test_batch_answers_one_result_per_event_in_order_and_bad_events_do_not_stop_good_ones(api, stream, ingest_key):
    events = [
        {"event_id": "a", "type": "page_view", "payload": {"page": "/"}},
        {"event_id": "b", "type": "not\ta type"},
        {"event_id": "c", "type": "button_click", "payload": {"button_id": "buy"}},
        {"event_id": "a", "type": "page_view", "payload": {"page": "/"}},
        "not an object",
        {"event_id": "d", "type": "login", "timestamp": "yesterday"},
        {"type": "logout"},
    ]
    response = post_batch(api, stream.slug, events, key=ingest_key)

    assert response.status_code == 202, response.content
    body = response.json()
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(events)))
    assert [r["status"] for r in results] == [
        "accepted",
        "rejected",
        "accepted",
        "duplicate",
        "rejected",
        "rejected",
        "accepted",
    ]
    assert [r["event_id"] for r in results[:6]] == ["a", "b", "c", "a", None, "d"]
    assert [e["code"] for e in results[1]["errors"]] == ["invalid_type"]
    assert [e["code"] for e in results[4]["errors"]] == ["not_an_object"]
    assert [(e["field"], e["code"]) for e in results[5]["errors"]] == [("timestamp", "invalid_timestamp")]
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (3, 1, 3)
    generated = results[6]["event_id"]
    assert inbox_event_ids(stream.pk) == sorted(["a", "c", generated])


def test_batch_where_every_event_is_rejected_is_a_400_and_writes_nothing(api, stream, ingest_key):
    response = post_batch(api, stream.slug, [{"type": "BAD\t"}, {"type": "ok", "payload": []}], key=ingest_key)

    details = assert_api_error(response, 400, "all_events_rejected")
    assert details["rejected"] == 2 and details["accepted"] == 0
    assert [r["status"] for r in details["results"]] == ["rejected", "rejected"]
    assert InboxEvent.objects.count() == 0


def test_a_batch_of_1000_events_near_5_mb_is_accepted(api, stream, ingest_key):
    filler = "x" * 4800
    events = [
        {"event_id": f"e{i}", "type": "page_view", "payload": {"page": f"/{i}", "f": filler}} for i in range(1000)
    ]
    body = orjson.dumps({"events": events})
    assert 4_500_000 < len(body) < 5 * 1024 * 1024

    response = post_raw(api, batch_url(stream.slug), body, key=ingest_key)

    assert response.status_code == 202, response.content[:500]
    assert response.json()["accepted"] == 1000
    assert InboxEvent.objects.filter(stream=stream).count() == 1000


@pytest.mark.django_db(transaction=True)
def test_accepted_events_are_committed_before_the_202(api, stream, ingest_key):
    response = post_batch(
        api,
        stream.slug,
        [{"event_id": "c1", "type": "page_view", "payload": {"page": "/"}}, {"event_id": "c2", "type": "logout"}],
        key=ingest_key,
    )
    assert response.status_code == 202, response.content

    # A connection of its own sees only committed rows.
    with separate_connection() as other:
        rows = other.execute(
            "SELECT event_id FROM ingestion_inbox WHERE stream_id = %s ORDER BY event_id", [stream.pk]
        ).fetchall()
    assert rows == [("c1",), ("c2",)]


def _warm_batch_queries(api, stream, key, size: int, tag: str) -> list[str]:
    events = [{"event_id": f"{tag}-{i}", "type": "page_view", "payload": {"page": f"/{i}"}} for i in range(size)]
    with CaptureQueriesContext(connection) as ctx:
        response = post_batch(api, stream.slug, events, key=key)
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == size
    return [q["sql"] for q in ctx.captured_queries]


def test_a_batch_is_one_bulk_insert_and_queries_do_not_grow_with_batch_size(api, stream, ingest_key):
    # The first request fills the stream and key caches.
    _warm_batch_queries(api, stream, ingest_key, 1, "warm")

    one = _warm_batch_queries(api, stream, ingest_key, 1, "one")
    ten = _warm_batch_queries(api, stream, ingest_key, 10, "ten")
    thousand = _warm_batch_queries(api, stream, ingest_key, 1000, "thousand")

    assert len(one) == len(ten) == len(thousand)
    inserts = [sql for sql in thousand if sql.lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 1 and "ingestion_inbox" in inserts[0]
    assert InboxEvent.objects.filter(stream=stream).count() == 1012


def test_a_warm_single_event_costs_one_query(api, stream, ingest_key, django_assert_num_queries):
    assert post_event(api, stream.slug, {"type": "logout"}, key=ingest_key).status_code == 202

    with django_assert_num_queries(1) as captured:
        response = post_event(api, stream.slug, {"type": "logout"}, key=ingest_key)

    assert response.status_code == 202, response.content
    assert "ingestion_inbox" in captured.captured_queries[0]["sql"]
