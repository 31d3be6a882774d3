"""Processing under a hostile producer: odd but accepted events cost at most themselves."""

from datetime import UTC, datetime

import pytest
from django.utils import timezone

from ingestion import pipeline
from ingestion.enrichment import _anonymize_ip, anonymize_ip, sessions_assign
from ingestion.models import InboxEvent, SessionState
from ingestion.pipeline import stream_process_batch
from ingestion.services import events_ingest
from streams.models import DeadLetter, DeadLetterStage, LogEntry
from streams.selectors import stream_info
from tests.fixtures import conf_override

pytestmark = pytest.mark.django_db(transaction=True)


def ingest(stream, events):
    info = stream_info(stream.slug)
    assert info is not None
    result = events_ingest(stream=info, raw_events=events, received_at=timezone.now())
    assert result.accepted == len(events), result.summary()


def test_sessions_that_start_in_year_one_do_not_poison_their_batch(stream):
    # Year 1 is a valid timestamp; ``started_at - 30 minutes`` is not a date.
    ingest(
        stream,
        [
            {"event_id": "y1", "type": "page_view", "user_id": "old", "timestamp": "0001-01-01T00:00:00Z"},
            {"event_id": "y2", "type": "page_view", "user_id": "old", "timestamp": "0001-01-01T00:10:00Z"},
            {"event_id": "l1", "type": "page_view", "user_id": "late", "timestamp": "0001-01-01T03:00:00Z"},
            {"event_id": "n", "type": "page_view", "user_id": "new"},
        ],
    )
    assert stream_process_batch(stream_id=stream.pk).appended == 4
    # Later batches meet the stored year-1 sessions: inside one, and late before another.
    ingest(
        stream,
        [
            {"event_id": "y3", "type": "page_view", "user_id": "old", "timestamp": "0001-01-01T00:20:00Z"},
            {"event_id": "l0", "type": "page_view", "user_id": "late", "timestamp": "0001-01-01T00:00:00Z"},
        ],
    )
    assert stream_process_batch(stream_id=stream.pk).appended == 2
    assert not InboxEvent.objects.filter(stream=stream).exists()
    assert not DeadLetter.objects.filter(stream=stream).exists()
    sessions = dict(LogEntry.objects.filter(stream=stream).values_list("event_id", "session_id"))
    assert sessions["y1"] == sessions["y2"] == sessions["y3"]
    assert sessions["l0"] not in (None, sessions["l1"])
    assert list(LogEntry.objects.filter(stream=stream).order_by("offset").values_list("offset", flat=True)) == [
        0,
        1,
        2,
        3,
        4,
        5,
    ]
    assert LogEntry.objects.get(stream=stream, event_id="l0").event_time == datetime(1, 1, 1, tzinfo=UTC)


def test_long_ip_strings_are_masked_without_being_cached(stream):
    _anonymize_ip.cache_clear()
    ingest(
        stream,
        [{"event_id": f"e{i}", "type": "page_view", "payload": {"ip": f"{i}" + "9" * 60_000}} for i in range(3)]
        + [{"event_id": "real", "type": "page_view", "context": {"ip": " 203.0.113.77 "}}],
    )
    assert stream_process_batch(stream_id=stream.pk).appended == 4
    payload_ips = set(
        LogEntry.objects.filter(stream=stream, event_id__startswith="e").values_list("payload__ip", flat=True)
    )
    assert payload_ips == {None}
    assert LogEntry.objects.get(stream=stream, event_id="real").context["ip"] == "203.0.113.0"
    # Only the real address is a key of the cache: a producer's 60 kB strings would pin
    # 50,000 of them (60 kB each) in every worker.
    assert _anonymize_ip.cache_info().currsize == 1
    assert anonymize_ip("::ffff:198.51.100.9") == "198.51.100.0"
    assert anonymize_ip("fe80::1%eth0") == "fe80::"


def test_a_session_failure_costs_only_its_identitys_events(stream, settings, monkeypatch):
    # Sessions are assigned under the lock, outside the per-event checks: whatever an
    # identity's events make them fail on next (the year-1 overflow was one such), the
    # other events of the batch are logged and those become dead letters, not a batch
    # that fails on every retry.
    conf_override(settings, retry_base_seconds=0, retry_max_seconds=0, max_attempts=2)

    def assign(*, stream_id, needs):
        if any(need.identity == "u:bad" for need in needs):
            # Writes first, so the failed attempt must leave nothing behind.
            sessions_assign(stream_id=stream_id, needs=needs)
            raise OverflowError("date value out of range")
        sessions_assign(stream_id=stream_id, needs=needs)

    monkeypatch.setattr(pipeline, "sessions_assign", assign)
    ingest(
        stream,
        [
            {"event_id": "b1", "type": "page_view", "user_id": "bad"},
            {"event_id": "g1", "type": "page_view", "user_id": "good"},
            {"event_id": "b2", "type": "page_view", "user_id": "bad"},
            {"event_id": "g2", "type": "page_view", "anonymous_id": "anon"},
            {"event_id": "g3", "type": "page_view"},
        ],
    )
    first = stream_process_batch(stream_id=stream.pk)
    assert (first.appended, first.retried) == (3, 2)
    second = stream_process_batch(stream_id=stream.pk)
    assert (second.appended, second.dead_lettered) == (0, 2)
    assert not InboxEvent.objects.filter(stream=stream).exists()
    logged = dict(LogEntry.objects.filter(stream=stream).values_list("event_id", "session_id"))
    assert set(logged) == {"g1", "g2", "g3"}
    assert logged["g1"] and logged["g2"] and logged["g3"] is None
    letters = DeadLetter.objects.filter(stream=stream)
    assert {(d.event_id, d.stage, d.error_class) for d in letters} == {
        ("b1", DeadLetterStage.ENRICH, "OverflowError"),
        ("b2", DeadLetterStage.ENRICH, "OverflowError"),
    }
    assert all("OverflowError" in d.traceback for d in letters)
    # The failed attempts wrote no session state for the identity.
    identities = SessionState.objects.filter(stream=stream).order_by("identity").values_list("identity", flat=True)
    assert list(identities) == ["a:anon", "u:good"]
