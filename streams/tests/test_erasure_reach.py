"""Review of erasure and retention: what an erased person left behind, and rollups an erasure left wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from analytics.alerts import alert_rule_create, alert_rules_cache_clear
from analytics.models import Alert, PersonDay, PersonFirst
from analytics.tests.analytics_events import world_build
from analytics.tests.journey_fixtures import event, log
from analytics.tests.test_rollups import _expected_from_log, _stored
from consumers.kafka_services import Rejection, kafka_source_consumed, kafka_source_rejected
from consumers.models import KafkaSource
from ingestion.pipeline import stream_drain
from streams.dead_letters import DeadLetterIn, dead_letters_record
from streams.erasure import erasure_request, erasure_run
from streams.models import DeadLetter, DeadLetterStage, LogEntry, Stream
from streams.retention import RetentionOutcome, rollups_expire
from tests.intake import post_batch

pytestmark = pytest.mark.django_db(transaction=True)

JANE = "jane-doe-77"
JANE_EMAIL = "jane.doe@example.com"


def _mentions_jane(value: Any) -> bool:
    text = orjson.dumps(value).decode()
    return JANE in text or JANE_EMAIL in text


def _erase(stream: Stream, *, by: str = "user_id", subject: str = JANE) -> None:
    erasure = erasure_request(caller=None, stream_id=stream.pk, by=by, subject=subject)
    done = erasure_run(erasure_id=erasure.pk)
    assert done is not None and done.status == "done"


def test_an_erasure_deletes_the_dead_letters_of_the_alerts_raised_for_the_person(
    client: Client, stream: Stream
) -> None:
    world = world_build(client, stream)
    rule = alert_rule_create(
        stream_id=stream.pk,
        name="logins",
        window_seconds=86_400,
        event_types=["login"],
        threshold=2,
        group_by="user_id",
    )
    alert_rules_cache_clear()
    now = timezone.now()
    events = [
        {
            "event_id": f"jane-{i}",
            "type": "login",
            "user_id": JANE,
            "timestamp": (now - timedelta(minutes=i)).isoformat(),
        }
        for i in range(1, 3)
    ]
    response = post_batch(client, stream.slug, events, key=world.keys[0])
    assert response.status_code == 202, response.content
    stream_drain(stream_id=stream.pk)
    stream_drain(stream_id=stream.pk)  # the alert event the first drain queued
    alert = Alert.objects.get(rule=rule, group_value=JANE)
    entry = LogEntry.objects.get(stream=stream, event_id=f"alert-{alert.pk}")
    assert entry.payload["group_value"] == JANE
    # A webhook gave up on the alert event: its letter holds the event as the log had it.
    dead_letters_record(
        letters=[
            DeadLetterIn(
                stream_id=stream.pk,
                event_id=entry.event_id,
                event={"event_id": entry.event_id, "type": entry.type, "user_id": None, "payload": entry.payload},
                stage=DeadLetterStage.DELIVER,
                log_offset=entry.offset,
                error_class="HTTPError",
            )
        ]
    )

    _erase(stream)

    assert not any(_mentions_jane(letter.event) for letter in DeadLetter.objects.filter(stream=stream))


def _rejection(offset: int, value: dict[str, Any] | bytes) -> Rejection:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return Rejection(
        topic="orders",
        partition=0,
        offset=offset,
        event_id=None,
        errors=[{"field": "payload", "code": "schema_violation", "message": "no"}],
        value=raw.decode(errors="replace")[:2000],
        raw=raw,
    )


def test_an_erasure_deletes_the_person_s_messages_a_kafka_source_refused(stream: Stream) -> None:
    source = KafkaSource.objects.create(stream=stream, topic="orders", consumer_group="eventflow-orders")
    rejections = [
        _rejection(1, {"type": "login", "user_id": JANE, "payload": {"email": JANE_EMAIL}}),
        _rejection(2, {"type": "login", "user_id": "bob", "payload": {"email": "bob@example.com"}}),
        _rejection(3, b"not json at all"),
    ]
    now = timezone.now()
    kafka_source_rejected(source_id=source.pk, stream_id=stream.pk, rejections=rejections, now=now)
    kafka_source_consumed(source_id=source.pk, consumed=3, accepted=0, duplicates=0, rejections=rejections, now=now)
    assert DeadLetter.objects.filter(stream=stream, stage=DeadLetterStage.SOURCE).count() == 3

    _erase(stream)

    letters = list(DeadLetter.objects.filter(stream=stream))
    assert not any(_mentions_jane(letter.event) for letter in letters)
    assert sorted(letter.event["kafka"]["offset"] for letter in letters) == [2, 3]
    source.refresh_from_db()
    assert not _mentions_jane(source.recent_rejections)
    assert sorted(r["offset"] for r in source.recent_rejections) == [2, 3]


def test_an_erasure_reaches_the_person_s_activity_on_days_the_log_no_longer_holds(stream: Stream) -> None:
    day = datetime(2026, 11, 20, 9, tzinfo=UTC)
    old = day - timedelta(days=40)
    log(
        stream,
        [
            event("login", old, user=JANE),
            event("login", old, user="bob"),
            event("login", day, user=JANE),
            event("login", day, user="bob"),
        ],
    )
    # The log's retention took the old day's events; its rollups are kept longer (README, Retention).
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM streams_log WHERE stream_id = %s AND event_time < %s", [stream.pk, day - timedelta(days=1)]
        )
    assert PersonDay.objects.filter(stream=stream, person=JANE).count() == 2

    _erase(stream)

    assert not PersonDay.objects.filter(stream=stream, person=JANE).exists()
    assert not PersonFirst.objects.filter(stream=stream, person=JANE).exists()
    # Bob's activity stays, the old day included.
    assert PersonDay.objects.filter(stream=stream, person="bob").count() == 2
    assert PersonFirst.objects.get(stream=stream, person="bob").first_at == old


def test_an_erasure_of_an_event_older_than_the_hour_rollups_keeps_its_day_right(stream: Stream) -> None:
    Stream.objects.filter(pk=stream.pk).update(retention_days=3650)
    now = timezone.now()
    day = (now - timedelta(days=500)).replace(hour=0, minute=0, second=0, microsecond=0)
    records = [event("login", day + timedelta(hours=h, minutes=5), user=f"user-{h}") for h in range(0, 24, 2)]
    records.append(event("page_view", day + timedelta(hours=7), user=JANE, payload={"page": "/jane"}))
    log(stream, records)
    # Retention removes the hour rows of that day (400 days by default) and keeps its day rows.
    rollups_expire(now=now, deadline=float("inf"), outcome=RetentionOutcome())
    before = _stored(stream)
    assert not [key for key in before["hours"] if key[0] < now - timedelta(days=400)]
    assert before["days"] == _expected_from_log(stream)["days"]

    _erase(stream)

    expected, stored = _expected_from_log(stream), _stored(stream)
    assert stored["days"] == expected["days"]
    assert stored["day_dims"] == expected["day_dims"]
    day_users = {k: v for k, v in stored["users"].items() if k[0] == "d"}
    assert day_users == {k: v for k, v in expected["users"].items() if k[0] == "d"}
