"""A stream that anonymises never stores a whole address, whatever JSON type the ``ip`` is sent as."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from ingestion.enrichment import IP_WITHHELD, enrich
from ingestion.pipeline import stream_process_batch
from streams.models import ApiKeyKind, LogEntry, Stream
from streams.services import api_key_create, schema_register, stream_create

pytestmark = pytest.mark.django_db(transaction=True)

ADDRESS = "203.0.113.9"
# 203.0.113.9 as the integer ipaddress reads it: a number is an address too, for anyone who knows.
ADDRESS_NUMBER = 3405803785

NOT_STRINGS = [
    pytest.param([ADDRESS], id="list"),
    pytest.param([ADDRESS, "198.51.100.7"], id="forwarded-list"),
    pytest.param({"address": ADDRESS}, id="object"),
    pytest.param([[{"v4": ADDRESS}]], id="nested"),
    pytest.param(ADDRESS_NUMBER, id="integer"),
    pytest.param(float(ADDRESS_NUMBER), id="float"),
    pytest.param(True, id="boolean"),
]


def stored_text(entry: LogEntry) -> str:
    """Everything the log row holds that consumers, webhooks and exports pass on."""
    return orjson.dumps([entry.payload, entry.context, entry.enrichment, entry.flags]).decode()


def assert_no_address(text: str) -> None:
    assert ADDRESS not in text
    assert str(ADDRESS_NUMBER) not in text


def send(client: Any, stream: Stream, key: str, events: list[dict[str, Any]]) -> None:
    response = client.post(
        f"/api/v1/streams/{stream.slug}/events/batch",
        data=orjson.dumps({"events": events}),
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )
    assert response.status_code == 202, response.content


@pytest.mark.parametrize("value", NOT_STRINGS)
def test_enrich_keeps_nothing_of_an_ip_that_is_not_a_string(value):
    enriched = enrich(payload={"ip": value, "n": 1}, context={"ip": value, "os": "x"}, anonymize=True)

    assert enriched.context == {"ip": None, "os": "x"}
    assert enriched.payload == {"ip": None, "n": 1}
    assert enriched.enrichment["ip"] is None


@pytest.mark.parametrize("value", NOT_STRINGS)
def test_a_masking_stream_logs_no_address_sent_as_another_type(client, stream, ingest_key, value):
    assert stream.anonymize_ip
    send(
        client,
        stream,
        ingest_key,
        [{"event_id": "e", "type": "signup", "payload": {"ip": value}, "context": {"ip": value}}],
    )
    assert stream_process_batch(stream_id=stream.pk).appended == 1

    entry = LogEntry.objects.get(stream=stream, event_id="e")
    assert entry.context["ip"] is None
    assert entry.payload["ip"] is None
    assert entry.enrichment["ip"] is None
    assert_no_address(stored_text(entry))


def test_a_string_address_is_still_masked_beside_the_others(client, stream, ingest_key):
    send(
        client,
        stream,
        ingest_key,
        [
            {"event_id": "text", "type": "signup", "context": {"ip": f" {ADDRESS} "}},
            {"event_id": "list", "type": "signup", "context": {"ip": [ADDRESS]}},
        ],
    )
    stream_process_batch(stream_id=stream.pk)

    entries = {entry.event_id: entry for entry in LogEntry.objects.filter(stream=stream)}
    assert entries["text"].context["ip"] == entries["text"].enrichment["ip"] == "203.0.113.0"
    assert entries["list"].context["ip"] is None
    for entry in entries.values():
        assert_no_address(stored_text(entry))


def test_a_stream_that_keeps_addresses_keeps_them_as_sent(client, db):
    stream = stream_create(slug="keep", name="Keep", anonymize_ip=False)
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key
    masking = stream_create(slug="mask", name="Mask")
    masking_key = api_key_create(kind=ApiKeyKind.INGEST, streams=[masking]).raw_key
    event = {"event_id": "e", "type": "signup", "context": {"ip": [ADDRESS]}}
    send(client, stream, key, [event])
    send(client, masking, masking_key, [event])
    stream_process_batch(stream_id=stream.pk)
    stream_process_batch(stream_id=masking.pk)

    # The opt-out is the producer's call: what it sent is what it keeps.
    assert LogEntry.objects.get(stream=stream).context["ip"] == [ADDRESS]
    assert LogEntry.objects.get(stream=masking).context["ip"] is None


def test_segment_context_ip_of_another_type_is_not_logged(client, stream, ingest_key):
    auth = "Basic " + base64.b64encode(f"{ingest_key}:".encode()).decode()
    batch = [
        {"type": "track", "event": "signup", "messageId": "m1", "userId": "u1", "context": {"ip": [ADDRESS]}},
        {"type": "track", "event": "signup", "messageId": "m2", "userId": "u1", "properties": {"ip": ADDRESS_NUMBER}},
    ]
    response = client.generic(
        "POST",
        "/v1/batch",
        orjson.dumps({"batch": batch, "context": {"ip": {"v4": ADDRESS}}}),
        content_type="application/json",
        HTTP_AUTHORIZATION=auth,
    )
    assert response.status_code == 200, response.content
    assert stream_process_batch(stream_id=stream.pk).appended == 2

    for entry in LogEntry.objects.filter(stream=stream):
        assert entry.context["ip"] is None
        assert_no_address(stored_text(entry))


def test_schema_violations_do_not_quote_the_unmasked_address(client, stream, ingest_key):
    # Warn mode stores the violations with the event; the schema's message quotes the value it refused.
    schema_register(
        stream=stream,
        event_type="signup",
        schema={"type": "object", "properties": {"ip": {"type": "string"}}, "required": ["plan"]},
    )
    send(client, stream, ingest_key, [{"event_id": "e", "type": "signup", "payload": {"ip": [ADDRESS]}}])
    stream_process_batch(stream_id=stream.pk)

    entry = LogEntry.objects.get(stream=stream, event_id="e")
    violations = {error["field"]: error for error in entry.flags["schema_violations"]}
    assert violations["payload/ip"] == {"field": "payload/ip", "code": "schema", "message": IP_WITHHELD}
    # A message that quotes no address keeps its detail.
    assert "plan" in violations["payload"]["message"]
    assert_no_address(stored_text(entry))
