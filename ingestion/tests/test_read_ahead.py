"""A batch read ahead of the lock is written only with what nobody has taken since, and counted exactly."""

import orjson
import pytest
from django.db.models import Sum

import ingestion.pipeline as pipeline
from analytics.models import MinuteCount
from ingestion.models import InboxEvent
from ingestion.pipeline import ReadAhead, stream_drain, stream_process_batch
from streams.models import ApiKeyKind, DeadLetter, LogEntry, SchemaMode
from streams.services import api_key_create, stream_create
from tests.fixtures import conf_override

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def one_attempt(settings):
    conf_override(settings, retry_base_seconds=0, retry_max_seconds=0, max_attempts=1)


def send(api, stream, key, events):
    response = api.post(
        f"/api/v1/streams/{stream.slug}/events/batch",
        data=orjson.dumps({"events": events}),
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )
    assert response.status_code == 202, response.content


def logged(stream):
    return list(LogEntry.objects.filter(stream=stream).order_by("offset").values_list("offset", "event_id"))


def counted(stream):
    return MinuteCount.objects.filter(stream=stream).aggregate(n=Sum("count"))["n"]


def test_rows_taken_by_another_processor_meanwhile_are_not_written_again(api, one_attempt):
    stream = stream_create(slug="ahead", schema_mode=SchemaMode.QUARANTINE, with_starter_schemas=True)
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key
    events = [
        {"event_id": f"e{i}", "type": "page_view", "user_id": f"u{i}", "payload": {"page": "/"}} for i in range(10)
    ]
    events[2] = {"event_id": "poison", "type": "page_view", "payload": {"page": 5}}
    send(api, stream, key, events)
    first_id = InboxEvent.objects.filter(stream=stream).order_by("id").values_list("id", flat=True)[0]

    ahead = ReadAhead(stream.pk)
    try:
        # All ten rows are read ahead; then another processor logs the first five (and
        # dead-letters the poison among them) before this one takes the stream.
        ahead.start(after_id=first_id - 1, limit=10).result()
        taken = stream_process_batch(stream_id=stream.pk, limit=5)
        assert (taken.appended, taken.dead_lettered) == (4, 1)
        outcome = stream_process_batch(stream_id=stream.pk, limit=10, ahead=ahead)
    finally:
        ahead.close()

    assert (outcome.fetched, outcome.appended, outcome.duplicates, outcome.dead_lettered) == (5, 5, 0, 0)
    assert logged(stream) == list(enumerate(e["event_id"] for e in events if e["event_id"] != "poison"))
    assert DeadLetter.objects.filter(stream=stream).count() == 1
    assert counted(stream) == 9
    assert not InboxEvent.objects.filter(stream=stream).exists()


def test_a_batch_holding_an_event_already_logged_counts_only_what_it_appends(api, stream, ingest_key):
    send(api, stream, ingest_key, [{"event_id": "old", "type": "login", "payload": {"user_id": "u"}}])
    stream_drain(stream_id=stream.pk)
    # The same event reaches the inbox again (as a replay racing the processor can make it).
    row = LogEntry.objects.get(stream=stream, event_id="old")
    InboxEvent.objects.create(
        stream=stream, event_id="old", type="login", event_time=row.event_time, payload={"user_id": "u"}, context={}
    )
    send(
        api, stream, ingest_key, [{"event_id": f"n{i}", "type": "login", "payload": {"user_id": "u"}} for i in range(3)]
    )

    outcome = stream_drain(stream_id=stream.pk)

    assert (outcome.appended, outcome.duplicates) == (3, 1)
    assert [event_id for _, event_id in logged(stream)] == ["old", "n0", "n1", "n2"]
    assert counted(stream) == 4


def test_a_backlog_is_read_ahead_and_drained_in_growing_batches(api, stream, ingest_key, settings, monkeypatch):
    conf_override(settings, process_batch_size=10)
    events = [{"event_id": f"b{i:03d}", "type": "login", "payload": {"user_id": f"u{i % 9}"}} for i in range(300)]
    for start in range(0, 300, 100):
        send(api, stream, ingest_key, events[start : start + 100])
    limits: list[int] = []
    read_ahead: list[int] = []
    real_batch, real_read = pipeline.stream_process_batch, pipeline._read_batch

    def batch(**kwargs):
        limits.append(kwargs["limit"])
        return real_batch(**kwargs)

    def read(**kwargs):
        batch = real_read(**kwargs)
        if kwargs.get("after_id") is not None:
            read_ahead.append(len(batch.rows))
        return batch

    monkeypatch.setattr(pipeline, "stream_process_batch", batch)
    monkeypatch.setattr(pipeline, "_read_batch", read)
    outcome = stream_drain(stream_id=stream.pk)

    assert outcome.appended == 300
    assert logged(stream) == list(enumerate(e["event_id"] for e in events))
    assert counted(stream) == 300
    # 10, 20, 40, 80, then the cap (BACKLOG_BATCH_FACTOR x 10); every batch after the
    # first was read while the one before it was written.
    assert limits[:6] == [10, 20, 40, 80, 80, 80]
    assert sum(read_ahead) == 290
