"""A Kafka source's refused messages as dead letters: kept once each, replayed through the intake.

The broker side (a batch read, letters written before the offsets are
committed) is in test_kafka_source.py; these tests call the services the
source runner calls, so they need no broker.
"""

from __future__ import annotations

import base64
import dataclasses

import orjson
import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from consumers.kafka_services import (
    DEAD_LETTER_VALUE_BYTES,
    Rejection,
    kafka_source_rejected,
    message_event,
    source_event_id,
)
from ingestion.models import InboxEvent
from streams.dead_letters import SKIP_STILL_REJECTED, DeadLetterIn, dead_letters_record, dead_letters_replay
from streams.models import DeadLetter, DeadLetterStage, DeadLetterStatus, Stream
from streams.services import schema_version_add

pytestmark = pytest.mark.django_db

# Against the starter schema of page_view, which the enforcing stream checks: page must be a string.
BAD_PAGE = orjson.dumps({"type": "page_view", "user_id": "u1", "payload": {"page": 42}})


def refused(raw: bytes | None, offset: int, *, topic: str = "orders.in") -> Rejection:
    """A message of ``topic`` partition 0 as the source refuses it, with the intake's errors for it."""
    event_id = source_event_id(topic=topic, partition=0, offset=offset)
    event, errors = message_event(raw, event_id=event_id)
    if errors is None:
        errors = [{"field": "payload/page", "code": "schema", "message": "42 is not of type 'string'"}]
    return Rejection(
        topic=topic,
        partition=0,
        offset=offset,
        event_id=event.get("event_id") if isinstance(event, dict) else None,
        errors=errors,
        value=(raw or b"").decode("utf-8", "replace"),
        raw=raw,
    )


def test_each_refused_message_is_kept_once_with_its_whole_value_and_why(enforcing_stream: Stream) -> None:
    long_value = b'{"type": "page_view", "payload": {"text": "' + b"x" * 5000 + b'"}'  # not JSON: unclosed
    batch = [refused(BAD_PAGE, 3), refused(b"{not json", 4), refused(None, 5), refused(long_value, 6)]

    kafka_source_rejected(source_id=7, stream_id=enforcing_stream.pk, rejections=batch, now=timezone.now())
    assert DeadLetter.objects.filter(stream=enforcing_stream).count() == 4
    # The batch read again (a crash before the offsets were committed): nothing new.
    kafka_source_rejected(source_id=7, stream_id=enforcing_stream.pk, rejections=batch, now=timezone.now())
    assert DeadLetter.objects.filter(stream=enforcing_stream).count() == 4
    letters = {letter.event_id: letter for letter in DeadLetter.objects.filter(stream=enforcing_stream)}
    assert set(letters) == {f"kafka:orders.in:0:{offset}" for offset in (3, 4, 5, 6)}
    assert {letter.stage for letter in letters.values()} == {DeadLetterStage.SOURCE}
    schema = letters["kafka:orders.in:0:3"]
    assert schema.event["kafka"] == {"source_id": 7, "topic": "orders.in", "partition": 0, "offset": 3}
    assert orjson.loads(schema.event["value"]) == orjson.loads(BAD_PAGE)
    assert (schema.error_class, schema.error_message) == ("schema", "payload/page: 42 is not of type 'string'")
    not_json = letters["kafka:orders.in:0:4"]
    assert not_json.error_class == "invalid_json"
    assert not_json.error_message.startswith("The message is not JSON")
    assert letters["kafka:orders.in:0:5"].event["value"] is None
    # The whole value, not the 2,000 characters the source's recent_rejections show.
    assert letters["kafka:orders.in:0:6"].event["value"] == long_value.decode()
    assert "truncated" not in letters["kafka:orders.in:0:6"].event


def test_a_value_larger_than_kafkas_default_message_is_kept_to_that_size_and_marked(enforcing_stream: Stream) -> None:
    huge = b"x" * (DEAD_LETTER_VALUE_BYTES + 10)
    kafka_source_rejected(source_id=1, stream_id=enforcing_stream.pk, rejections=[refused(huge, 1)], now=timezone.now())
    kept = DeadLetter.objects.get(stream=enforcing_stream).event
    assert (len(kept["value"]), kept["truncated"]) == (DEAD_LETTER_VALUE_BYTES, True)


def test_a_replayed_letter_goes_through_the_intake_again_once_the_schema_takes_it(enforcing_stream: Stream) -> None:
    given_id = orjson.dumps({"event_id": "mine", "type": "page_view", "payload": {"page": 7}})
    kafka_source_rejected(
        source_id=1,
        stream_id=enforcing_stream.pk,
        rejections=[refused(BAD_PAGE, 3), refused(given_id, 8), refused(b"{not json", 4)],
        now=timezone.now(),
    )
    letters = {letter.event_id: letter.pk for letter in DeadLetter.objects.filter(stream=enforcing_stream)}

    # Still against the schema: refused again, left open with the new error.
    first = dead_letters_replay(ids=[letters["kafka:orders.in:0:3"]])
    assert first.acted == []
    assert [(skipped.id, skipped.reason) for skipped in first.skipped] == [
        (letters["kafka:orders.in:0:3"], SKIP_STILL_REJECTED)
    ]
    letter = DeadLetter.objects.get(pk=letters["kafka:orders.in:0:3"])
    assert (letter.status, letter.attempts, letter.error_class) == (DeadLetterStatus.OPEN, 2, "schema")
    assert InboxEvent.objects.count() == 0

    # The schema now takes a number as the page: the same replay takes the messages in.
    schema_version_add(
        stream=enforcing_stream,
        event_type="page_view",
        schema={"type": "object", "properties": {"page": {"type": ["string", "number"]}}},
    )
    outcome = dead_letters_replay(ids=list(letters.values()))

    assert sorted(outcome.acted) == sorted([letters["kafka:orders.in:0:3"], letters["kafka:orders.in:0:8"]])
    assert [(skipped.id, skipped.reason) for skipped in outcome.skipped] == [
        (letters["kafka:orders.in:0:4"], SKIP_STILL_REJECTED)
    ]
    # The event_id the source would have given it, or its own: a second reading of the topic is a duplicate.
    assert dict(InboxEvent.objects.values_list("event_id", "payload")) == {
        "kafka:orders.in:0:3": {"page": 42},
        "mine": {"page": 7},
    }
    assert DeadLetter.objects.get(pk=letters["kafka:orders.in:0:4"]).status == DeadLetterStatus.OPEN
    assert set(DeadLetter.objects.filter(status=DeadLetterStatus.REPLAYED).values_list("event_id", flat=True)) == {
        "kafka:orders.in:0:3",
        "kafka:orders.in:0:8",
    }


def test_values_ids_and_errors_with_nul_or_bad_utf8_are_kept_exactly_and_never_fail_the_batch(
    enforcing_stream: Stream,
) -> None:
    latin1 = '{"type": "page_view", "user_id": "u1", "payload": {"page": "/caf\xe9"}}'.encode("latin-1")
    nul_value = b'{"type": "page_view", "payload": {"page": "/a\x00b"}}'
    batch = [
        refused(latin1, 10),
        refused(nul_value, 11),
        # A refused message whose own event_id and whose error both hold a NUL (PostgreSQL refuses NUL in text).
        Rejection(
            topic="orders.in",
            partition=0,
            offset=12,
            event_id="id-\x00-x",
            errors=[{"field": "payload/\x00", "code": "unknown_field", "message": "field \x00 is not allowed"}],
            value="{}",
            raw=b"{}",
        ),
    ]

    kafka_source_rejected(source_id=1, stream_id=enforcing_stream.pk, rejections=batch, now=timezone.now())
    assert DeadLetter.objects.filter(stream=enforcing_stream).count() == 3

    letters = {letter.event_id: letter for letter in DeadLetter.objects.filter(stream=enforcing_stream)}
    # Not text PostgreSQL can keep as it came: the exact bytes, in base64.
    assert base64.b64decode(letters["kafka:orders.in:0:10"].event["value_base64"]) == latin1
    assert base64.b64decode(letters["kafka:orders.in:0:11"].event["value_base64"]) == nul_value
    assert letters["kafka:orders.in:0:10"].event["value"] is None
    named = letters["kafka:orders.in:0:12"]
    assert named.event["event_id"] == "id-\ufffd-x"
    assert "\x00" not in named.error_message and "\ufffd" in named.error_message
    # The source's recent_rejections (jsonb) are written from the same rejections.
    assert "\x00" not in str(batch[2].as_dict(timezone.now()))

    # Replayed, the bytes are read as they were: Latin-1 is still not JSON, so it is not taken in altered.
    outcome = dead_letters_replay(ids=[letters["kafka:orders.in:0:10"].pk])
    assert [(skipped.reason) for skipped in outcome.skipped] == [SKIP_STILL_REJECTED]
    assert DeadLetter.objects.get(pk=letters["kafka:orders.in:0:10"].pk).error_class == "invalid_json"
    assert InboxEvent.objects.count() == 0


def test_two_bridges_recording_the_same_message_keep_one_letter(enforcing_stream: Stream) -> None:
    """During a rebalance two bridge processes may both read a batch before either recorded it."""
    letter = DeadLetterIn(
        stream_id=enforcing_stream.pk,
        event_id="kafka:orders.in:0:3",
        event={"value": "{not json"},
        stage=DeadLetterStage.SOURCE,
        error_class="invalid_json",
    )
    dead_letters_record(letters=[letter], skip_recorded=True)
    dead_letters_record(letters=[letter], skip_recorded=True)
    assert DeadLetter.objects.filter(stream=enforcing_stream).count() == 1
    # The index is what keeps it to one: written without skipping, the second is refused.
    with pytest.raises(IntegrityError), transaction.atomic():
        dead_letters_record(letters=[letter])
    # Other stages keep a letter for each failure (a redelivered record that fails again is a new letter).
    other = dataclasses.replace(letter, stage=DeadLetterStage.CONSUME)
    dead_letters_record(letters=[other, other])
    assert DeadLetter.objects.filter(stream=enforcing_stream, stage=DeadLetterStage.CONSUME).count() == 2
