"""A group whose position retention removed reads from the oldest kept offset at once, and says what it skipped.

The log's oldest day is expired by the retention job itself (its partition
detached and dropped), so the tests run outside a wrapping transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from prometheus_client import REGISTRY

from consumers.models import ConsumerGroup, DeliveryAttempt, GroupKind, MaxDeliverPolicy
from consumers.services import consumer_group_poll_once
from consumers.webhook_services import webhook_create, webhook_deliver
from streams.log import LogRecord, log_append
from streams.log_selectors import log_earliest_offset
from streams.models import LogEntry, Stream
from streams.retention import log_partitions_ensure, retention_run
from tests.receiver import receiver

from .conftest import GROUPS

# DETACH PARTITION CONCURRENTLY (retention dropping the expired day) cannot run inside the test's transaction.
pytestmark = pytest.mark.django_db(transaction=True)

EXPIRED = 25  # offsets 0..24 are logged 40 days ago, past the stream's 30 days
KEPT = 5  # offsets 25..29 are logged now


def _append(stream: Stream, prefix: str, n: int, at: datetime) -> None:
    records = [
        LogRecord(event_id=f"{prefix}{i}", type="page_view", event_time=at, received_at=at, payload={"i": i})
        for i in range(n)
    ]
    with transaction.atomic():
        log_append(stream_id=stream.pk, records=records, logged_at=at)


def _log_with_an_expired_front(stream: Stream, *, kept: int = KEPT) -> datetime:
    """Offsets 0..24 logged 40 days ago and ``kept`` more now; returns now."""
    now = timezone.now()
    old = now - timedelta(days=40)
    log_partitions_ensure(now=old, days_ahead=2)
    _append(stream, "old", EXPIRED, old)
    if kept:
        _append(stream, "new", kept, now)
    return now


def _expire(now: datetime) -> None:
    outcome = retention_run(now=now)
    assert outcome.finished and not outcome.failed
    assert not LogEntry.objects.filter(offset__lt=EXPIRED).exists()


def _expired_counted(kind: str) -> float:
    return REGISTRY.get_sample_value("eventflow_consumer_offsets_expired_total", {"stream": "shop", "kind": kind}) or 0


def _poll(consumer, name="billing", **body):  # type: ignore[no-untyped-def]
    response = consumer.post(f"{GROUPS}/{name}/poll", body)
    assert response.status_code == 200, response.content
    return response.json()


def test_poll_below_the_oldest_kept_offset_returns_kept_events_in_that_poll(consumer, stream):
    now = _log_with_an_expired_front(stream)
    assert consumer.post(GROUPS, {"name": "billing", "start": "earliest"}).json()["committed_offset"] == 0
    _expire(now)
    assert log_earliest_offset(stream_id=stream.pk) == EXPIRED
    counted = _expired_counted("pull")

    batch = _poll(consumer, max=10)

    # One poll, not three empty ranges of ten: the kept events, and what was skipped to reach them.
    assert [r["offset"] for r in batch["records"]] == [25, 26, 27, 28, 29]
    assert batch["expired_skipped"] == EXPIRED
    assert batch["committed_offset"] == EXPIRED and batch["lease"]["start_offset"] == EXPIRED
    assert batch["next_offset"] == 30 and batch["lag"] == KEPT
    assert [r["delivery_count"] for r in batch["records"]] == [1] * KEPT
    assert _expired_counted("pull") == counted + EXPIRED
    # The position moved with it, and the lease commits as any other.
    commit = consumer.post(f"{GROUPS}/billing/commit", {"lease_id": batch["lease"]["id"], "offset": 30})
    assert commit.status_code == 200 and commit.json()["committed_offset"] == 30
    after = _poll(consumer, max=10)
    assert after["records"] == [] and after["idle_reason"] == "caught_up" and after["expired_skipped"] == 0


def test_a_group_whose_whole_log_expired_is_caught_up_and_reads_what_comes_next(consumer, stream):
    now = _log_with_an_expired_front(stream, kept=0)
    consumer.post(GROUPS, {"name": "billing", "start": "earliest"})
    _expire(now)

    idle = _poll(consumer, max=10)

    # Nothing is kept: no lease over an empty range, the position is the head, and the skip is told.
    assert idle["lease"] is None and idle["idle_reason"] == "caught_up"
    assert idle["expired_skipped"] == EXPIRED
    assert idle["committed_offset"] == idle["head"] == EXPIRED and idle["lag"] == 0
    assert ConsumerGroup.objects.get(name="billing").committed_offset == EXPIRED
    _append(stream, "next", 2, timezone.now())
    batch = _poll(consumer, max=10)
    assert [r["offset"] for r in batch["records"]] == [25, 26] and batch["expired_skipped"] == 0


def test_kept_positions_and_live_leases_are_not_moved(consumer, stream):
    now = _log_with_an_expired_front(stream)
    consumer.post(GROUPS, {"name": "billing", "start": "earliest"})
    consumer.post(GROUPS, {"name": "late", "offset": 27})
    leased = _poll(consumer, max=5)
    assert leased["lease"]["start_offset"] == 0 and leased["lease"]["end_offset"] == 5
    _expire(now)

    # A position the log still keeps reads from itself, even though older offsets are gone.
    kept = _poll(consumer, "late", max=10)
    assert [r["offset"] for r in kept["records"]] == [27, 28, 29] and kept["expired_skipped"] == 0
    # A lease handed out before retention still holds its range and its commit is taken as before.
    assert _poll(consumer, max=10)["idle_reason"] == "lease_held"
    commit = consumer.post(f"{GROUPS}/billing/commit", {"lease_id": leased["lease"]["id"], "offset": 5})
    assert commit.status_code == 200 and commit.json()["committed_offset"] == 5
    # The next poll skips from there.
    batch = _poll(consumer, max=10)
    assert batch["expired_skipped"] == EXPIRED - 5
    assert [r["offset"] for r in batch["records"]] == [25, 26, 27, 28, 29]


def test_seek_and_start_below_the_oldest_kept_offset_go_to_it(consumer, stream):
    now = _log_with_an_expired_front(stream)
    consumer.post(GROUPS, {"name": "billing", "start": "earliest"})
    _expire(now)
    counted = _expired_counted("pull")

    sought = consumer.post(f"{GROUPS}/billing/seek", {"offset": 3})
    assert sought.status_code == 200
    assert sought.json()["committed_offset"] == EXPIRED and sought.json()["lag"] == KEPT
    assert _expired_counted("pull") == counted + EXPIRED - 3
    # A kept offset is taken as asked, as are earliest and a start at an offset.
    assert consumer.post(f"{GROUPS}/billing/seek", {"offset": 27}).json()["committed_offset"] == 27
    assert consumer.post(f"{GROUPS}/billing/seek", {"to": "earliest"}).json()["committed_offset"] == EXPIRED
    created = consumer.post(GROUPS, {"name": "new", "offset": 10})
    assert created.status_code == 201 and created.json()["committed_offset"] == EXPIRED
    assert consumer.post(f"{GROUPS}/billing/seek", {"offset": 31}).status_code == 422


def test_webhook_delivery_starts_at_the_oldest_kept_offset(webhook_settings, stream):
    with receiver() as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url, batch_size=10)
        now = _log_with_an_expired_front(stream)
        _expire(now)
        counted = _expired_counted("webhook")

        webhook_deliver(webhook_id=created.webhook.pk, budget_seconds=5)

    assert [r.offsets for r in hook.requests] == [[25, 26, 27, 28, 29]]
    # The batch went out as the first range polled, not after walking empty ones.
    attempt = DeliveryAttempt.objects.get()
    assert (attempt.first_offset, attempt.end_offset) == (EXPIRED, 30)
    assert _expired_counted("webhook") == counted + EXPIRED


def test_a_kafka_sinks_group_takes_over_and_polls_from_the_oldest_kept_offset(stream):
    from consumers.kafka_services import kafka_sink_take_over

    now = _log_with_an_expired_front(stream)
    group = ConsumerGroup.objects.create(
        stream=stream, name="kafka:1", kind=GroupKind.KAFKA, on_max_deliver=MaxDeliverPolicy.STOP
    )
    _expire(now)

    # A sink's runner starting seeks the group to its own position: that is raised to the oldest kept one.
    kafka_sink_take_over(group_id=group.pk)
    assert ConsumerGroup.objects.get(pk=group.pk).committed_offset == EXPIRED
    poll = consumer_group_poll_once(lookup={"pk": group.pk}, max_records=3, lease_seconds=30)
    assert poll.lease is not None and (poll.lease.start_offset, poll.lease.end_offset) == (25, 28)
    assert poll.record_count == 3


def test_the_poll_service_skips_for_any_group_kind_with_a_type_filter(stream):
    now = _log_with_an_expired_front(stream)
    group = ConsumerGroup.objects.create(stream=stream, name="webhook:x", kind=GroupKind.WEBHOOK)
    _expire(now)

    poll = consumer_group_poll_once(lookup={"pk": group.pk}, max_records=2, lease_seconds=30, event_types=["page_view"])

    assert poll.expired_skipped == EXPIRED and poll.committed_offset == EXPIRED
    assert poll.lease is not None and (poll.lease.start_offset, poll.lease.end_offset) == (25, 27)
    assert poll.record_count == 2
