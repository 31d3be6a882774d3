"""Schema modes at ingest: enforce rejects violations of the latest schema; warn and off accept."""

from __future__ import annotations

import pytest

from ingestion.models import InboxEvent
from streams.models import SchemaMode
from streams.services import api_key_create, schema_register, stream_create
from tests.intake import assert_api_error, post_batch, post_event

pytestmark = pytest.mark.django_db

BAD_PAGE_VIEW = {"event_id": "bad", "type": "page_view", "payload": {"page": 42, "referrer": ["x"]}}
GOOD_PAGE_VIEW = {"event_id": "good", "type": "page_view", "payload": {"page": "/pricing", "referrer": None}}


@pytest.fixture
def enforce_key(enforcing_stream):
    return api_key_create(kind="ingest", streams=[enforcing_stream]).raw_key


def test_enforce_rejects_a_violating_event_with_422_and_the_schema_errors(api, enforcing_stream, enforce_key):
    response = post_event(api, enforcing_stream.slug, BAD_PAGE_VIEW, key=enforce_key)

    details = assert_api_error(response, 422, "schema_violation")
    assert details["event_id"] == "bad"
    errors = {(e["field"], e["code"]) for e in details["errors"]}
    assert errors == {("payload/page", "schema"), ("payload/referrer", "schema")}
    assert all(e["message"] for e in details["errors"])
    assert InboxEvent.objects.count() == 0


def test_enforce_rejects_a_missing_required_field(api, enforcing_stream, enforce_key):
    response = post_event(api, enforcing_stream.slug, {"type": "login", "payload": {"ip": "1.2.3.4"}}, key=enforce_key)
    details = assert_api_error(response, 422, "schema_violation")
    assert details["errors"][0]["field"] == "payload"
    assert "user_id" in details["errors"][0]["message"]


def test_enforce_accepts_a_valid_event_and_types_without_a_schema(api, enforcing_stream, enforce_key):
    assert post_event(api, enforcing_stream.slug, GOOD_PAGE_VIEW, key=enforce_key).status_code == 202
    untyped = {"event_id": "custom", "type": "video_play", "payload": {"anything": [1, 2]}}
    assert post_event(api, enforcing_stream.slug, untyped, key=enforce_key).status_code == 202
    assert sorted(InboxEvent.objects.values_list("event_id", flat=True)) == ["custom", "good"]


@pytest.mark.parametrize("mode", [SchemaMode.WARN, SchemaMode.OFF])
def test_warn_and_off_accept_violating_events(api, mode):
    stream = stream_create(slug=f"mode-{mode}", schema_mode=mode, with_starter_schemas=True)
    key = api_key_create(kind="ingest", streams=[stream]).raw_key

    response = post_event(api, stream.slug, BAD_PAGE_VIEW, key=key)

    assert response.status_code == 202, response.content
    assert response.json() == {"event_id": "bad", "status": "accepted"}
    assert InboxEvent.objects.get().payload == BAD_PAGE_VIEW["payload"]


def test_enforce_uses_the_latest_schema_version(api, enforcing_stream, enforce_key, django_capture_on_commit_callbacks):
    # The first request caches the stream and its schemas; registering a version drops that on commit.
    assert post_event(api, enforcing_stream.slug, GOOD_PAGE_VIEW, key=enforce_key).status_code == 202
    with django_capture_on_commit_callbacks(execute=True):
        schema_register(
            stream=enforcing_stream,
            event_type="page_view",
            schema={
                "type": "object",
                "properties": {"page": {"type": "string"}, "title": {"type": "string"}},
                "required": ["page", "title"],
            },
        )

    valid_before = {"event_id": "v1", "type": "page_view", "payload": {"page": "/"}}
    valid_now = {"event_id": "v2", "type": "page_view", "payload": {"page": "/", "title": "Home"}}

    details = assert_api_error(
        post_event(api, enforcing_stream.slug, valid_before, key=enforce_key), 422, "schema_violation"
    )
    assert "title" in details["errors"][0]["message"]
    assert post_event(api, enforcing_stream.slug, valid_now, key=enforce_key).status_code == 202
    assert sorted(InboxEvent.objects.values_list("event_id", flat=True)) == ["good", "v2"]


def test_enforce_batch_rejects_violations_alone(api, enforcing_stream, enforce_key):
    response = post_batch(api, enforcing_stream.slug, [BAD_PAGE_VIEW, GOOD_PAGE_VIEW], key=enforce_key)

    assert response.status_code == 202, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["rejected", "accepted"]
    assert {e["code"] for e in results[0]["errors"]} == {"schema"}
    assert list(InboxEvent.objects.values_list("event_id", flat=True)) == ["good"]


def test_enforce_batch_where_every_event_violates_the_schema_is_422(api, enforcing_stream, enforce_key):
    events = [BAD_PAGE_VIEW, {"type": "button_click", "payload": {}}]
    details = assert_api_error(
        post_batch(api, enforcing_stream.slug, events, key=enforce_key), 422, "all_events_rejected"
    )
    assert details["rejected"] == 2
    assert InboxEvent.objects.count() == 0


def test_enforce_batch_rejected_for_mixed_reasons_is_400(api, enforcing_stream, enforce_key):
    events = [BAD_PAGE_VIEW, {"type": "bad\x07type"}]
    details = assert_api_error(
        post_batch(api, enforcing_stream.slug, events, key=enforce_key), 400, "all_events_rejected"
    )
    assert [r["errors"][0]["code"] for r in details["results"]] == ["schema", "invalid_type"]
    assert InboxEvent.objects.count() == 0


def test_shape_errors_in_an_enforcing_stream_are_still_400(api, enforcing_stream, enforce_key):
    response = post_event(api, enforcing_stream.slug, {"type": "page_view", "payload": "x"}, key=enforce_key)
    assert_api_error(response, 400, "invalid_event")
