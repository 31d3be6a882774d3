from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.db.models import Sum

from analytics.models import MinuteCount
from ingestion.models import InboxEvent
from ingestion.pipeline import stream_drain, stream_process_batch
from streams.dead_letters import dead_letters_replay
from streams.models import DeadLetter, DeadLetterStage, DeadLetterStatus, LogEntry, SchemaMode
from streams.services import schema_register, stream_create
from tests.fixtures import conf_override

pytestmark = pytest.mark.django_db(transaction=True)

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)


def send(api, stream, key, events):
    response = api.post(
        f"/api/v1/streams/{stream.slug}/events/batch",
        data=orjson.dumps({"events": events}),
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )
    assert response.status_code == 202, response.content
    return response.json()


@pytest.fixture
def fast_retries(settings):
    conf_override(settings, retry_base_seconds=0, retry_max_seconds=0, max_attempts=3)


def test_batch_moves_to_log_with_gapless_offsets_and_enrichment(api, stream, ingest_key):
    events = [
        {
            "event_id": f"e{i}",
            "type": "page_view",
            "user_id": "u1",
            "payload": {"page": "/p"},
            "context": {
                "user_agent": IPHONE,
                "ip": "203.0.113.77",
                "page": {
                    "url": "https://shop.example/?utm_source=news&utm_campaign=fall",
                    "referrer": "https://www.google.com/search?q=x",
                },
            },
        }
        for i in range(5)
    ]
    send(api, stream, ingest_key, events)
    outcome = stream_process_batch(stream_id=stream.pk)
    assert outcome.appended == 5
    assert not InboxEvent.objects.filter(stream=stream).exists()
    entries = list(LogEntry.objects.filter(stream=stream).order_by("offset"))
    assert [e.offset for e in entries] == [0, 1, 2, 3, 4]
    first = entries[0]
    assert first.enrichment["browser"] == "Mobile Safari"
    assert first.enrichment["os"] == "iOS"
    assert first.enrichment["device_type"] == "mobile"
    assert first.enrichment["ip"] == "203.0.113.0"
    assert first.context["ip"] == "203.0.113.0"
    assert first.enrichment["referrer_host"] == "www.google.com"
    assert first.enrichment["utm"] == {"utm_source": "news", "utm_campaign": "fall"}
    # One session for the user, derived because the producer sent none.
    assert len({e.session_id for e in entries}) == 1
    assert (first.session_id or "").startswith("s_")


def test_running_the_same_batch_twice_appends_once(api, stream, ingest_key):
    send(api, stream, ingest_key, [{"event_id": "a", "type": "login", "payload": {"user_id": "u"}}])
    assert stream_process_batch(stream_id=stream.pk).appended == 1
    # The same event arrives again after it reached the log (e.g. a redelivered copy).
    InboxEvent.objects.create(stream=stream, event_id="a", type="login", event_time=datetime.now(UTC))
    outcome = stream_process_batch(stream_id=stream.pk)
    assert outcome.appended == 0 and outcome.duplicates == 1
    assert LogEntry.objects.filter(stream=stream).count() == 1
    assert not InboxEvent.objects.exists()


def test_rollups_equal_the_log(api, stream, ingest_key):
    events = [
        {"type": t, "payload": {"page": "/", "user_id": "u", "button_id": "b", "form_id": "f"}}
        for t in ["page_view", "login", "button_click", "form_submit"] * 30
    ]
    send(api, stream, ingest_key, events)
    stream_drain(stream_id=stream.pk)
    for event_type in ["page_view", "login", "button_click", "form_submit"]:
        logged = LogEntry.objects.filter(stream=stream, type=event_type).count()
        counted = MinuteCount.objects.filter(stream=stream, type=event_type).aggregate(n=Sum("count"))["n"]
        assert logged == counted == 30


def test_quarantined_event_retries_then_dead_letters_without_blocking(api, ingest_key, fast_retries, db):
    from streams.models import ApiKeyKind
    from streams.services import api_key_create

    stream = stream_create(slug="q", schema_mode=SchemaMode.QUARANTINE, with_starter_schemas=True)
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key
    events = [{"event_id": f"ok{i}", "type": "button_click", "payload": {"button_id": "b"}} for i in range(20)]
    events.insert(7, {"event_id": "poison", "type": "button_click", "payload": {"button_id": 5}})
    send(api, stream, key, events)
    for _ in range(3):
        stream_process_batch(stream_id=stream.pk)
    assert LogEntry.objects.filter(stream=stream).count() == 20
    letter = DeadLetter.objects.get(stream=stream)
    assert (letter.event_id, letter.stage, letter.attempts) == ("poison", DeadLetterStage.VALIDATE, 3)
    assert letter.error_class == "SchemaViolation" and "SchemaViolation" in letter.traceback
    # The first failure is remembered from the first attempt, not taken from the last one.
    assert letter.first_failed_at < letter.last_failed_at
    assert not InboxEvent.objects.filter(stream=stream).exists()

    # Fix the schema, replay twice: the event reaches the log once.
    schema_register(stream=stream, event_type="button_click", schema={"type": "object"})
    assert dead_letters_replay(ids=[letter.pk]).count == 1
    assert dead_letters_replay(ids=[letter.pk]).count == 0
    stream_drain(stream_id=stream.pk)
    assert LogEntry.objects.filter(stream=stream, event_id="poison").count() == 1
    assert LogEntry.objects.filter(stream=stream).count() == 21
    letter.refresh_from_db()
    assert letter.status == DeadLetterStatus.REPLAYED


def test_warn_mode_records_violations_on_the_event(api, stream, ingest_key):
    send(api, stream, ingest_key, [{"event_id": "w", "type": "button_click", "payload": {}}])
    stream_process_batch(stream_id=stream.pk)
    entry = LogEntry.objects.get(stream=stream, event_id="w")
    assert entry.flags["schema_violations"][0]["code"] == "schema"


def test_sessions_split_after_thirty_minutes_of_inactivity(api, stream, ingest_key):
    start = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    times = [start, start + timedelta(minutes=10), start + timedelta(minutes=50), start + timedelta(minutes=55)]
    send(
        api,
        stream,
        ingest_key,
        [
            {
                "event_id": f"s{i}",
                "type": "page_view",
                "user_id": "u9",
                "timestamp": t.isoformat(),
                "payload": {"page": "/"},
            }
            for i, t in enumerate(times)
        ],
    )
    stream_process_batch(stream_id=stream.pk)
    sessions = [LogEntry.objects.get(stream=stream, event_id=f"s{i}").session_id for i in range(4)]
    assert sessions[0] == sessions[1] != sessions[2] == sessions[3]
