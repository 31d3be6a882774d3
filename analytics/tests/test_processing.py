"""Processing health against figures taken from the events themselves: receipt and logging times in the log."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from analytics.processing import LATENCY_BOUNDS_MS, latency_bucket, percentile_ms
from analytics.services import processing_stats_record
from consumers.selectors import Position
from consumers.services import consumer_group_create
from ingestion.pipeline import stream_process_batch
from ingestion.services import events_ingest
from streams.dead_letters import DeadLetterIn, dead_letters_record
from streams.models import DeadLetterStage, LogEntry, Stream
from streams.selectors import stream_info

from .journey_fixtures import BASE, person_of

pytestmark = pytest.mark.django_db
PROCESSING = f"{BASE}/analytics/processing"


def _exact_percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _bucket_bounds(ms: float) -> tuple[int, int]:
    index = latency_bucket(math.ceil(ms))
    return (LATENCY_BOUNDS_MS[index - 1] if index else 0), (
        LATENCY_BOUNDS_MS[index] if index < len(LATENCY_BOUNDS_MS) else 10**9
    )


def test_volume_latency_dead_letters_and_lag(stream: Stream):
    info = stream_info("shop")
    assert info is not None
    now = timezone.now()
    # Three receipts: 2 minutes ago, 1 minute ago and 1.5 s ago, processed together now.
    receipts = [now - timedelta(minutes=2), now - timedelta(minutes=1), now - timedelta(milliseconds=1500)]
    for i, received in enumerate(receipts):
        events = [{"type": "page_view", "event_id": f"p{i}-{n}", "payload": {"page": "/"}} for n in range(5 + i)]
        events_ingest(stream=info, raw_events=events, received_at=received)
    stream_process_batch(stream_id=stream.pk)
    # Still waiting in the inbox: accepted, not logged.
    events_ingest(
        stream=info,
        raw_events=[{"type": "login", "event_id": "w1"}, {"type": "login", "event_id": "w2"}],
        received_at=timezone.now(),
    )
    dead_letters_record(
        letters=[
            DeadLetterIn(stream_id=stream.pk, event_id="d1", event={}, stage=DeadLetterStage.VALIDATE, error_class="E"),
            DeadLetterIn(stream_id=stream.pk, event_id="d2", event={}, stage=DeadLetterStage.DELIVER, error_class="E"),
            DeadLetterIn(stream_id=stream.pk, event_id="d3", event={}, stage=DeadLetterStage.DELIVER, error_class="E"),
        ]
    )
    consumer_group_create(stream_id=stream.pk, name="billing", start=Position("earliest"))

    logged = list(LogEntry.objects.filter(stream=stream).values_list("received_at", "logged_at"))
    latencies = [int((at - received).total_seconds() * 1000) for received, at in logged]
    span = {
        "from": (now - timedelta(minutes=10)).isoformat(),
        "to": (timezone.now() + timedelta(minutes=1)).isoformat(),
    }
    response = person_of(stream).get(PROCESSING, **span)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    assert body["logged"] == len(logged) == 18
    assert body["accepted"] == 18 + 2
    assert body["waiting"] == 2
    assert body["latency_ms"]["max"] == max(latencies)
    assert body["latency_ms"]["mean"] == round(sum(latencies) / len(latencies), 1)
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        low, high = _bucket_bounds(_exact_percentile(latencies, q))
        assert low <= body["latency_ms"][name] <= min(high, max(latencies)), (name, body["latency_ms"], latencies)
    assert body["dead_letters_by_stage"] == {"validate": 1, "deliver": 2}
    assert body["consumer_lag"] == [{"group": "billing", "kind": "pull", "committed_offset": 0, "head": 18, "lag": 18}]
    # Per minute: accepted by minute of receipt, logged in the minute of processing.
    by_minute = {b["start"]: b for b in body["buckets"]}
    for i, received in enumerate(receipts):
        minute = received.replace(second=0, microsecond=0).isoformat().replace("+00:00", "Z")
        assert by_minute[minute]["accepted"] >= 5 + i
    assert sum(b["accepted"] for b in body["buckets"]) == 20
    assert sum(b["logged"] for b in body["buckets"]) == 18


def test_failures_and_retries_add_up_per_minute(stream: Stream):
    at = timezone.now().replace(second=5, microsecond=0)
    processing_stats_record(stream_id=stream.pk, at=at, latencies_ms=[3, 40, 700], retries=2)
    processing_stats_record(
        stream_id=stream.pk, at=at, latencies_ms=[40_000], dead_letters=1, received=[at - timedelta(minutes=3)]
    )
    span = {"from": (at - timedelta(minutes=5)).isoformat(), "to": (at + timedelta(minutes=1)).isoformat()}
    body = person_of(stream).get(PROCESSING, interval="hour", **span).json()
    assert body["retries"] == 2
    assert body["logged"] == 4
    assert body["accepted"] == 1
    assert body["latency_ms"]["max"] == 40_000
    # Four latencies: the median lies between the second and third (40 and 700 ms): in the 20 to 50 ms bucket.
    assert 20 <= body["latency_ms"]["p50"] <= 50


def test_percentiles_of_a_histogram():
    buckets = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    for ms in range(1, 101):
        buckets[latency_bucket(ms)] += 1
    assert percentile_ms(buckets, 0.5, 100) == pytest.approx(50, abs=1)
    assert (percentile_ms(buckets, 0.99, 100) or 0) <= 100
    assert percentile_ms([0] * len(buckets), 0.5, 0) is None


@pytest.mark.parametrize(
    "query", [{"interval": "day"}, {"tz": "Moon/Base"}, {"payload.page": "/"}, {"segment": "x"}, {"from": "now"}]
)
def test_bad_input_is_a_400(stream: Stream, query: dict[str, str]):
    response = person_of(stream).get(PROCESSING, **query)
    assert response.status_code == 400, response.content
