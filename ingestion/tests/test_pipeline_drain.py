"""A backlog is drained batch after batch, in order, with failures isolated."""

import orjson
import pytest
from django.db.models import Sum

from analytics.models import MinuteCount
from ingestion.models import InboxEvent
from ingestion.pipeline import PROCESS_LOCK_CLASS, stream_drain
from streams.models import ApiKeyKind, DeadLetter, LogEntry, SchemaMode
from streams.services import api_key_create, stream_create
from tests.fixtures import conf_override
from tests.intake import separate_connection

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def small_batches(settings):
    conf_override(settings, process_batch_size=10, retry_base_seconds=0, retry_max_seconds=0, max_attempts=3)


def send(api, stream, key, events):
    response = api.post(
        f"/api/v1/streams/{stream.slug}/events/batch",
        data=orjson.dumps({"events": events}),
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )
    assert response.status_code == 202, response.content


def test_a_backlog_drains_once_in_order_with_failures_isolated(api, small_batches):
    stream = stream_create(slug="backlog", schema_mode=SchemaMode.QUARANTINE, with_starter_schemas=True)
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key
    events = [
        {"event_id": f"e{i:03d}", "type": "page_view", "user_id": f"u{i % 7}", "payload": {"page": f"/p{i}"}}
        for i in range(95)
    ]
    events[42] = {"event_id": "poison", "type": "page_view", "payload": {"page": 5}}
    send(api, stream, key, events)
    # Other threads of this test process (a live server of earlier tests) may hold connections too.
    backends_sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    with separate_connection() as conn:
        backends_before = conn.execute(backends_sql).fetchone()
    outcome = stream_drain(stream_id=stream.pk)

    # Read in id order: the offsets follow the order the events were sent in, with no gap.
    logged = list(LogEntry.objects.filter(stream=stream).order_by("offset").values_list("offset", "event_id"))
    assert logged == list(enumerate(e["event_id"] for e in events if e["event_id"] != "poison"))
    assert MinuteCount.objects.filter(stream=stream).aggregate(n=Sum("count"))["n"] == 94
    # The poison event went through its attempts without holding the others up.
    assert (outcome.appended, outcome.dead_lettered) == (94, 1)
    assert DeadLetter.objects.get(stream=stream).event_id == "poison"
    assert not InboxEvent.objects.filter(stream=stream).exists()
    # The lock is released and no connection is left behind.
    with separate_connection() as conn:
        locks = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid = %s"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [PROCESS_LOCK_CLASS, stream.pk],
        )
        assert locks.fetchone() == (0,)
        # The drain opened no connection of its own and left none behind.
        assert conn.execute(backends_sql).fetchone() == backends_before


def test_a_drain_is_refused_while_another_processor_holds_the_stream(api, stream, ingest_key, small_batches):
    send(api, stream, ingest_key, [{"type": "login", "payload": {"user_id": "u"}} for _ in range(25)])
    with separate_connection() as conn:
        conn.execute("SELECT pg_advisory_lock(%s, %s)", [PROCESS_LOCK_CLASS, stream.pk])
        assert stream_drain(stream_id=stream.pk).busy
        assert not LogEntry.objects.filter(stream=stream).exists()
        # Released here: a closed connection's backend lets its locks go only once it has
        # exited, which a loaded machine may not have done by the next line.
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", [PROCESS_LOCK_CLASS, stream.pk])
    assert stream_drain(stream_id=stream.pk).appended == 25
