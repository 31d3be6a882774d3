"""GET /api/v1/streams/{slug}/events/{event_id}: the event in the log, the inbox or the dead letters."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client
from django.utils import timezone

from ingestion.models import InboxEvent
from ingestion.services import events_ingest
from streams.dead_letters import DeadLetterIn, dead_letters_record
from streams.log import LogRecord, log_append_now
from streams.models import DeadLetterStage, Stream
from streams.selectors import stream_info

from .query_fixtures import EVENTS, analyst_of, append, foreign_analyst, secret_key_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def analyst(stream: Stream) -> Client:
    return analyst_of(stream)


def _show(client: Client, event_id: str, **extra: Any) -> Any:
    return client.get(f"{EVENTS}/{quote(event_id, safe='')}", **extra)


def _letter(stream: Stream, event_id: str, stage: str, **kwargs: Any) -> None:
    dead_letters_record(
        letters=[
            DeadLetterIn(
                stream_id=stream.pk,
                event_id=event_id,
                event={"event_id": event_id, "type": "page_view"},
                stage=stage,
                error_class="ValueError",
                error_message=f"failed at {stage}",
                **kwargs,
            )
        ]
    )


def test_a_logged_event_with_its_offset_and_the_dead_letters_of_its_readers(analyst: Client, stream: Stream):
    records = append(stream, 5)
    _letter(stream, "ev-3", DeadLetterStage.CONSUME, subscriber="billing", log_offset=3, attempts=5)
    _letter(stream, "ev-3", DeadLetterStage.DELIVER, subscriber="webhook-1", log_offset=3)
    response = _show(analyst, "ev-3")
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "logged"
    assert body["accepted"] is None
    logged = body["logged"]
    assert (logged["offset"], logged["event_id"], logged["type"]) == (3, "ev-3", records[3].type)
    assert logged["payload"] == records[3].payload
    assert logged["enrichment"] == records[3].enrichment
    letters = body["dead_letters"]
    assert [(d["stage"], d["subscriber"], d["log_offset"], d["status"]) for d in letters] == [
        ("consume", "billing", 3, "open"),
        ("deliver", "webhook-1", 3, "open"),
    ]
    assert letters[0]["attempts"] == 5
    assert letters[1]["error_message"] == "failed at deliver"


def test_an_accepted_event_still_in_the_inbox_with_its_attempts(analyst: Client, stream: Stream):
    info = stream_info(stream.slug)
    assert info is not None
    result = events_ingest(
        stream=info,
        raw_events=[{"event_id": "waiting", "type": "page_view", "user_id": "u1", "payload": {"page": "/x"}}],
        received_at=timezone.now(),
    )
    assert result.results[0]["status"] == "accepted"
    # As the processor leaves a row after a failed attempt (ingestion/pipeline.py).
    InboxEvent.objects.filter(event_id="waiting").update(attempts=2, last_error="enrich: boom")
    body = _show(analyst, "waiting").json()
    assert body["state"] == "accepted"
    assert body["logged"] is None
    assert body["dead_letters"] == []
    accepted = body["accepted"]
    assert (accepted["type"], accepted["user_id"], accepted["payload"]) == ("page_view", "u1", {"page": "/x"})
    assert (accepted["attempts"], accepted["last_error"]) == (2, "enrich: boom")


def test_a_dead_letter_of_processing_only(analyst: Client, stream: Stream):
    _letter(stream, "poison", DeadLetterStage.VALIDATE, attempts=3)
    body = _show(analyst, "poison").json()
    assert body["state"] == "dead_letter"
    assert body["logged"] is None and body["accepted"] is None
    (letter,) = body["dead_letters"]
    assert (letter["stage"], letter["error_class"], letter["error_message"], letter["attempts"]) == (
        "validate",
        "ValueError",
        "failed at validate",
        3,
    )
    assert letter["log_offset"] is None


@pytest.mark.parametrize(
    "event_id",
    ["a/b/c", "with space and ?query=1#frag", "üñí©ødé-✓", "%41-percent", "x" * 128, "..", "ev-0/"],
)
def test_any_id_up_to_128_characters_url_encoded(analyst: Client, stream: Stream, event_id: str):
    now = timezone.now()
    log_append_now(
        stream_id=stream.pk, records=[LogRecord(event_id=event_id, type="page_view", event_time=now, received_at=now)]
    )
    response = _show(analyst, event_id)
    assert response.status_code == 200, response.content
    assert response.json()["logged"]["event_id"] == event_id


def test_nowhere_is_404(analyst: Client, stream: Stream):
    append(stream, 2)
    for event_id in ("ev-99", "x" * 129, "nul\x00byte", "ev-0 "):
        response = _show(analyst, event_id)
        assert response.status_code == 404, event_id
        assert response.json()["error"]["code"] == "event_not_found"


def test_another_streams_event_is_not_found(analyst: Client, stream: Stream, client: Client):
    append(stream, 1)
    outsider = foreign_analyst()
    foreign = _show(outsider, "ev-0")
    assert foreign.status_code == 404
    assert foreign.json()["error"]["code"] == "stream_not_found"
    # The other stream's own events are not this one's.
    other = Stream.objects.get(slug="other")
    now = timezone.now()
    log_append_now(
        stream_id=other.pk, records=[LogRecord(event_id="theirs", type="login", event_time=now, received_at=now)]
    )
    assert _show(analyst, "theirs").status_code == 404
    assert _show(client, "ev-0", HTTP_X_API_KEY=secret_key_of(stream)).status_code == 200


def test_export_names_the_export_endpoint_never_an_event(analyst: Client, stream: Stream):
    now = timezone.now()
    log_append_now(
        stream_id=stream.pk, records=[LogRecord(event_id="export", type="login", event_time=now, received_at=now)]
    )
    response = _show(analyst, "export")
    assert response["Content-Type"].startswith("text/csv")


def test_a_lookup_is_three_index_probes(analyst: Client, stream: Stream, django_assert_num_queries: Any):
    append(stream, 3)
    _letter(stream, "ev-1", DeadLetterStage.CONSUME, log_offset=1)
    analyst.get(EVENTS)  # the stream is cached in the process after the first request
    # The person's access takes four; the log and the dead letters one each (a logged event is not in the inbox).
    with django_assert_num_queries(6):
        assert _show(analyst, "ev-1").json()["state"] == "logged"
    with django_assert_num_queries(7):
        assert _show(analyst, "nowhere").status_code == 404
