"""A Mixpanel event's ``$ip`` is the client's address: it goes to context.ip, masked like any other, never logged as sent."""

from __future__ import annotations

import orjson
import pytest

from ingestion.models import InboxEvent
from ingestion.pipeline import stream_drain
from streams.models import LogEntry, Stream

from .test_compat import form

pytestmark = pytest.mark.django_db(transaction=True)

ADDRESS = "203.0.113.9"


def _track(client, ingest_key: str, insert_id: str, ip: object) -> None:
    data = {
        "event": "Signed Up",
        "properties": {"token": ingest_key, "distinct_id": "u1", "$insert_id": insert_id, "$ip": ip, "plan": "pro"},
    }
    response = form(client, "/track", {"data": orjson.dumps(data).decode()})
    assert response.status_code == 200 and response.content == b"1", response.content


def test_a_tracked_events_ip_is_masked_in_the_log_and_not_kept_in_the_payload(client, stream: Stream, ingest_key):
    _track(client, ingest_key, "mp-ip", ADDRESS)
    waiting = InboxEvent.objects.get(stream=stream, event_id="mp-ip")
    assert waiting.context["ip"] == ADDRESS and "$ip" not in waiting.payload
    stream_drain(stream_id=stream.pk)
    logged = LogEntry.objects.get(stream=stream, event_id="mp-ip")
    assert logged.context["ip"] == "203.0.113.0" and logged.payload == {"plan": "pro"}
    assert ADDRESS not in orjson.dumps([logged.payload, logged.context, logged.enrichment]).decode()


def test_an_ip_that_is_not_a_string_is_dropped(client, stream: Stream, ingest_key):
    _track(client, ingest_key, "mp-ip-list", [ADDRESS])
    stream_drain(stream_id=stream.pk)
    logged = LogEntry.objects.get(stream=stream, event_id="mp-ip-list")
    assert "ip" not in logged.context and "$ip" not in logged.payload
    assert ADDRESS not in orjson.dumps([logged.payload, logged.context, logged.enrichment]).decode()
