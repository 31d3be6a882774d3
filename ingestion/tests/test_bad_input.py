"""Bad input: a clear 4xx with a machine-readable body, and nothing written (DESIGN invariant 8)."""

from __future__ import annotations

import gzip
import socket
from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.utils import timezone

from eventflow import conf
from ingestion.models import InboxEvent
from streams.services import stream_create
from tests.intake import assert_api_error, batch_url, events_url, post_batch, post_event, post_raw, read_http_response

pytestmark = pytest.mark.django_db

MAX_BODY = 5 * 1024 * 1024


def nested(levels: int) -> Any:
    """A value made of ``levels`` nested containers (objects and lists in turn)."""
    value: Any = "leaf"
    for level in range(levels):
        value = {"n": value} if level % 2 == 0 else [value]
    return value


@pytest.fixture
def nothing_written(db):
    yield
    assert InboxEvent.objects.count() == 0


def rejected_event(response, code: str, field: str | None = None, status: int = 400) -> None:
    details = assert_api_error(response, status, "invalid_event")
    codes = [(e["field"], e["code"]) for e in details["errors"]]
    assert any(c == code and (field is None or f == field) for f, c in codes), codes


# --- the body ---------------------------------------------------------------------------------


def test_body_that_is_not_json_is_400(api, stream, ingest_key, nothing_written):
    response = post_raw(api, events_url(stream.slug), b'{"type": "page_view",', key=ingest_key)
    assert_api_error(response, 400, "invalid_json")


def test_empty_body_is_400(api, stream, ingest_key, nothing_written):
    assert_api_error(post_raw(api, events_url(stream.slug), b"", key=ingest_key), 400, "empty_body")


def test_body_that_is_not_utf8_is_400(api, stream, ingest_key, nothing_written):
    response = post_raw(api, events_url(stream.slug), b'{"type": "a\xff\xfe"}', key=ingest_key)
    assert_api_error(response, 400, "invalid_json")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_wrong_content_type_is_415(api, stream, ingest_key, nothing_written, content_type):
    body = orjson.dumps({"type": "logout"})
    response = post_raw(api, events_url(stream.slug), body, key=ingest_key, content_type=content_type)
    details = assert_api_error(response, 415, "unsupported_media_type")
    assert details["content_type"] == content_type


def test_unknown_content_encoding_is_415(api, stream, ingest_key, nothing_written):
    body = orjson.dumps({"type": "logout"})
    response = post_raw(api, events_url(stream.slug), body, key=ingest_key, HTTP_CONTENT_ENCODING="br")
    assert_api_error(response, 415, "unsupported_content_encoding")


def test_body_over_the_limit_is_413(api, stream, ingest_key, nothing_written):
    body = orjson.dumps({"events": [{"type": "page_view", "payload": {"pad": "x" * MAX_BODY}}]})
    response = post_raw(api, batch_url(stream.slug), body, key=ingest_key)
    details = assert_api_error(response, 413, "body_too_large")
    assert details["limit"] == conf.get().max_body_bytes == MAX_BODY


class _UnreadableInput:
    """A WSGI input stream that records any attempt to read it."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self, *args: Any) -> bytes:
        self.reads += 1
        return b""

    readline = read


def test_body_over_the_limit_is_refused_from_content_length_without_reading(api, stream, ingest_key, nothing_written):
    stream_input = _UnreadableInput()
    response = api.post(
        batch_url(stream.slug),
        content_type="application/json",
        HTTP_X_API_KEY=ingest_key,
        CONTENT_LENGTH=str(MAX_BODY + 1),
        **{"wsgi.input": stream_input},
    )
    assert_api_error(response, 413, "body_too_large")
    assert stream_input.reads == 0


def test_live_server_answers_413_before_the_body_is_sent(live_server, stream, ingest_key):
    host, port = live_server.thread.host, live_server.thread.port
    head = (
        f"POST {batch_url(stream.slug)} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {ingest_key}\r\nContent-Length: {50 * MAX_BODY}\r\n\r\n"
    )
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head.encode())
        status, headers, body = read_http_response(sock)
    assert status == 413, body
    assert int(headers["content-length"]) == len(body)
    assert orjson.loads(body)["error"]["code"] == "body_too_large"
    assert InboxEvent.objects.count() == 0


def test_gzip_body_is_accepted(api, stream, ingest_key):
    body = gzip.compress(orjson.dumps({"events": [{"event_id": "gz", "type": "logout", "payload": {"user_id": "u"}}]}))
    response = post_raw(api, batch_url(stream.slug), body, key=ingest_key, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 202, response.content
    assert response.json()["results"][0]["status"] == "accepted"
    assert InboxEvent.objects.filter(event_id="gz").exists()


def test_gzip_bomb_is_413(api, stream, ingest_key, nothing_written):
    inflated = b'{"events": [{"type": "logout"}]' + b" " * (MAX_BODY + 1024) + b"}"
    body = gzip.compress(inflated, compresslevel=9)
    assert len(body) < 64 * 1024
    response = post_raw(api, batch_url(stream.slug), body, key=ingest_key, HTTP_CONTENT_ENCODING="gzip")
    assert_api_error(response, 413, "body_too_large")


def test_body_that_is_not_gzip_despite_the_header_is_400(api, stream, ingest_key, nothing_written):
    body = orjson.dumps({"type": "logout"})
    response = post_raw(api, events_url(stream.slug), body, key=ingest_key, HTTP_CONTENT_ENCODING="gzip")
    assert_api_error(response, 400, "invalid_gzip")


def test_truncated_gzip_is_400(api, stream, ingest_key, nothing_written):
    body = gzip.compress(orjson.dumps({"type": "logout", "payload": {"pad": "y" * 1000}}))[:-12]
    response = post_raw(api, events_url(stream.slug), body, key=ingest_key, HTTP_CONTENT_ENCODING="gzip")
    assert_api_error(response, 400, "invalid_gzip")


# --- nesting and NUL ----------------------------------------------------------------------------


def test_json_nested_deeper_than_32_levels_is_400(api, stream, ingest_key, nothing_written):
    # The event object is level 1; payload makes up the other 32.
    response = post_event(api, stream.slug, {"type": "a", "payload": {"deep": nested(31)}}, key=ingest_key)
    rejected_event(response, "too_deep")


def test_json_nested_exactly_32_levels_is_accepted(api, stream, ingest_key):
    response = post_event(api, stream.slug, {"type": "a", "payload": {"deep": nested(30)}}, key=ingest_key)
    assert response.status_code == 202, response.content


def test_deeply_nested_event_in_a_batch_is_rejected_alone(api, stream, ingest_key, nothing_written):
    response = post_batch(api, stream.slug, [{"type": "a", "context": {"x": nested(40)}}], key=ingest_key)
    details = assert_api_error(response, 400, "all_events_rejected")
    assert details["results"][0]["errors"][0]["code"] == "too_deep"


def test_absurdly_deep_json_is_400_not_a_crash(api, stream, ingest_key, nothing_written):
    body = b'{"type": "a", "payload": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    response = post_raw(api, events_url(stream.slug), body, key=ingest_key)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] in {"invalid_json", "invalid_event"}


@pytest.mark.parametrize(
    "event",
    [
        {"type": "a", "payload": {"name": "nul\u0000here"}},
        {"type": "a", "payload": {"nul\u0000key": 1}},
        {"type": "a", "payload": {"list": [{"deeper": ["x\u0000"]}]}},
        {"type": "a", "context": {"page": {"k\u0000": "v"}}},
        {"type": "a", "user_id": "u\u0000"},
    ],
    ids=["payload-value", "payload-key", "nested-list-value", "context-key", "user-id"],
)
def test_nul_characters_are_400(api, stream, ingest_key, nothing_written, event):
    rejected_event(post_event(api, stream.slug, event, key=ingest_key), "nul_character")


# --- the envelope ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event_type",
    ["", "   ", "a" * 201, "page_view\n", "tab\there", "del\x7f", "c1\x85", "line\u2028sep", 7, None, ["page_view"]],
    ids=["empty", "spaces", "201-chars", "newline", "tab", "del", "c1", "line-separator", "int", "null", "list"],
)
def test_type_outside_the_pattern_is_400(api, stream, ingest_key, nothing_written, event_type):
    rejected_event(post_event(api, stream.slug, {"type": event_type}, key=ingest_key), "invalid_type", "type")


def test_missing_type_is_400(api, stream, ingest_key, nothing_written):
    rejected_event(post_event(api, stream.slug, {"payload": {}}, key=ingest_key), "invalid_type", "type")


@pytest.mark.parametrize(
    "event_type",
    ["Order Completed", "$pageview", "page/view", "Grüße: Bestellung #1 (neu)!", ("app.checkout:step-1_ " * 10)[:200]],
    ids=["words", "dollar", "slash", "non-ascii-punctuation", "200-chars"],
)
def test_types_as_sdks_name_them_are_accepted(api, stream, ingest_key, event_type):
    response = post_event(api, stream.slug, {"type": event_type}, key=ingest_key)
    assert response.status_code == 202, response.content
    assert InboxEvent.objects.get().type == event_type


@pytest.mark.parametrize(
    "timestamp",
    ["yesterday", "2026-11-21T09:00:00", "2026-11-21 09:00", "2026-13-01T00:00:00Z", "2026-11-21", 1763715600, ""],
    ids=["words", "no-zone", "no-zone-short", "month-13", "date-only", "epoch-number", "empty"],
)
def test_unparseable_or_zoneless_timestamp_is_400(api, stream, ingest_key, nothing_written, timestamp):
    event = {"type": "logout", "timestamp": timestamp}
    rejected_event(post_event(api, stream.slug, event, key=ingest_key), "invalid_timestamp", "timestamp")


def test_timestamp_before_year_one_in_utc_is_400(api, stream, ingest_key, nothing_written):
    # Parses (its local date is 0001-01-01) but lies before year 1 in UTC, which Python can't hold.
    event = {"type": "logout", "timestamp": "0001-01-01T00:00:00+14:00"}
    rejected_event(post_event(api, stream.slug, event, key=ingest_key), "invalid_timestamp", "timestamp")


def test_batch_over_1000_events_is_413(api, stream, ingest_key, nothing_written):
    response = post_batch(api, stream.slug, [{"type": "logout"}] * 1001, key=ingest_key)
    details = assert_api_error(response, 413, "batch_too_large")
    assert details == {"limit": 1000, "received": 1001}


def test_empty_batch_is_400(api, stream, ingest_key, nothing_written):
    assert_api_error(post_batch(api, stream.slug, [], key=ingest_key), 400, "empty_batch")


@pytest.mark.parametrize("body", [[{"type": "logout"}], {"events": {"type": "logout"}}, {"sent_at": None}, "x", None])
def test_batch_that_is_not_an_object_with_an_event_list_is_400(api, stream, ingest_key, nothing_written, body):
    response = post_raw(api, batch_url(stream.slug), orjson.dumps(body), key=ingest_key)
    assert_api_error(response, 400, "invalid_batch")


@pytest.mark.parametrize("value", [[1, 2], "text", 5, True])
@pytest.mark.parametrize("name", ["payload", "context"])
def test_payload_or_context_that_is_not_an_object_is_400(api, stream, ingest_key, nothing_written, name, value):
    rejected_event(post_event(api, stream.slug, {"type": "a", name: value}, key=ingest_key), "not_an_object", name)


@pytest.mark.parametrize("body", [[{"type": "a"}], "event", 42, None])
def test_single_event_that_is_not_an_object_is_400(api, stream, ingest_key, nothing_written, body):
    rejected_event(post_event(api, stream.slug, body, key=ingest_key), "not_an_object")


def test_unknown_top_level_event_field_is_400(api, stream, ingest_key, nothing_written):
    response = post_event(api, stream.slug, {"type": "a", "page": "/x", "properties": {}}, key=ingest_key)
    rejected_event(response, "unknown_field", "page,properties")


def test_unknown_top_level_batch_field_is_400(api, stream, ingest_key, nothing_written):
    body = orjson.dumps({"events": [{"type": "a"}], "api_key": "x"})
    details = assert_api_error(post_raw(api, batch_url(stream.slug), body, key=ingest_key), 400, "unknown_field")
    assert details["fields"] == ["api_key"]


def test_event_id_over_128_characters_is_400(api, stream, ingest_key, nothing_written):
    response = post_event(api, stream.slug, {"type": "a", "event_id": "e" * 129}, key=ingest_key)
    details = assert_api_error(response, 400, "invalid_event")
    assert details["event_id"] == "e" * 129
    assert details["errors"][0]["code"] == "invalid_event_id"


def test_event_id_of_128_characters_is_accepted(api, stream, ingest_key):
    response = post_event(api, stream.slug, {"type": "a", "event_id": "é" * 128}, key=ingest_key)
    assert response.status_code == 202, response.content
    assert InboxEvent.objects.get().event_id == "é" * 128


@pytest.mark.parametrize("event_id", ["", 12345, {"id": 1}])
def test_event_id_that_is_not_a_non_empty_string_is_400(api, stream, ingest_key, nothing_written, event_id):
    rejected_event(
        post_event(api, stream.slug, {"type": "a", "event_id": event_id}, key=ingest_key), "invalid_event_id"
    )


@pytest.mark.parametrize("name", ["user_id", "anonymous_id", "session_id"])
def test_identity_fields_must_be_short_strings(api, stream, ingest_key, nothing_written, name):
    for value in ["", "u" * 257, 42]:
        rejected_event(post_event(api, stream.slug, {"type": "a", name: value}, key=ingest_key), "invalid", name)


def test_event_over_64_kb_is_400(api, stream, ingest_key, nothing_written):
    response = post_event(api, stream.slug, {"type": "a", "payload": {"pad": "z" * 70_000}}, key=ingest_key)
    rejected_event(response, "event_too_large")


def test_invalid_sent_at_is_400(api, stream, ingest_key, nothing_written):
    response = post_batch(api, stream.slug, [{"type": "a"}], key=ingest_key, sent_at="2026-11-21T09:00:00")
    assert_api_error(response, 400, "invalid_sent_at")


@pytest.mark.parametrize("sent_at", ["9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+00:00"])
def test_absurd_sent_at_never_makes_a_5xx(api, stream, ingest_key, sent_at):
    # One of the two lands in the calendar after correction, the other falls out of it.
    events = [{"type": "a", "timestamp": "0001-01-02T00:00:00Z"}, {"type": "a", "timestamp": "9999-12-30T00:00:00Z"}]
    response = post_batch(api, stream.slug, events, key=ingest_key, sent_at=sent_at)
    assert response.status_code == 202, response.content
    results = response.json()["results"]
    assert sorted(r["status"] for r in results) == ["accepted", "rejected"]
    rejected = next(r for r in results if r["status"] == "rejected")
    assert [(e["field"], e["code"]) for e in rejected["errors"]] == [("timestamp", "invalid_timestamp")]
    row = InboxEvent.objects.get()
    assert abs(row.event_time - timezone.now()) < timedelta(days=3)


# --- keys and streams -------------------------------------------------------------------------------


def test_missing_key_is_401(api, stream, nothing_written):
    response = post_event(api, stream.slug, {"type": "a"}, key=None)
    assert_api_error(response, 401, "missing_api_key")


def test_unknown_key_is_401(api, stream, nothing_written):
    response = post_event(api, stream.slug, {"type": "a"}, key="ef_ingest_" + "A" * 43)
    assert_api_error(response, 401, "invalid_api_key")


def test_key_for_another_stream_is_404(api, stream, ingest_key, nothing_written):
    other = stream_create(slug="other")
    response = post_event(api, other.slug, {"type": "a"}, key=ingest_key)
    assert_api_error(response, 404, "stream_not_found")
    response = post_batch(api, other.slug, [{"type": "a"}], key=ingest_key)
    assert_api_error(response, 404, "stream_not_found")


def test_nonexistent_stream_is_404(api, stream, ingest_key, nothing_written):
    assert_api_error(post_event(api, "no-such-stream", {"type": "a"}, key=ingest_key), 404, "stream_not_found")
    assert_api_error(post_batch(api, "no-such-stream", [{"type": "a"}], key=ingest_key), 404, "stream_not_found")


def test_auth_is_checked_before_the_body(api, stream, nothing_written):
    response = post_raw(api, events_url(stream.slug), b"not json", key=None, content_type="text/plain")
    assert_api_error(response, 401, "missing_api_key")


# --- never a 5xx --------------------------------------------------------------------------------------

ODD_BODIES = [
    b"null",
    b"[]",
    b"{}",
    b'"text"',
    b"0",
    b"1e400",
    b"NaN",
    b"\xef\xbb\xbf{}",
    b'{"type": "a", "payload": {"s": "\\ud800"}}',
    b'{"type": "a", "payload": {"n": 123456789012345678901234567890}}',
    b'{"type": "a", "payload": {"n": -1e308}}',
    b'{"type": "a", "timestamp": "9999-12-31T23:59:59-23:59"}',
    b'{"type": "a", "timestamp": "2026-11-21T09:00:00+25:00"}',
    b'{"events": [null, 1, "x", [], {"type": null}], "sent_at": "2026-11-21T09:00:00Z"}',
    b'{"events": [{"type": "a"}], "sent_at": ["2026"]}',
    b'{"events": [{"type": "a", "event_id": null}]}',
    b'{"type": "a", "payload": {"": {"": {"": ""}}}}',
    b"{" * 5000,
]


@pytest.mark.parametrize("body", ODD_BODIES)
@pytest.mark.parametrize("endpoint", ["events", "batch"])
def test_odd_bodies_never_make_a_5xx(api, stream, ingest_key, body, endpoint):
    api.raise_request_exception = False
    url = events_url(stream.slug) if endpoint == "events" else batch_url(stream.slug)
    response = post_raw(api, url, body, key=ingest_key)
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        assert response.json()["error"]["code"]
        assert InboxEvent.objects.count() == 0


@pytest.mark.parametrize(
    "extra",
    [
        {"CONTENT_LENGTH": "abc"},
        {"HTTP_X_API_KEY": "ef_ingest_\u00e9\u00ff"},
        {"HTTP_X_API_KEY": "k" * 100_000},
        {"HTTP_CONTENT_ENCODING": "gzip, deflate"},
        {"CONTENT_TYPE": "application/json; charset=utf-16"},
    ],
    ids=["content-length-words", "key-latin1", "key-100k", "two-encodings", "utf16-charset"],
)
def test_odd_headers_never_make_a_5xx(api, stream, ingest_key, nothing_written, extra):
    api.raise_request_exception = False
    response = post_raw(api, events_url(stream.slug), b'{"type": "a\\u0000"}', key=ingest_key, **extra)
    assert 400 <= response.status_code < 500, response.content
    assert response.json()["error"]["code"]
