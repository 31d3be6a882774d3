"""GET /metrics: closed by default, opened by a token or a network; the values move with real traffic."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from django.test import Client
from prometheus_client import Histogram
from prometheus_client.parser import text_string_to_metric_families

from consumers.models import WebhookSubscription
from consumers.selectors import Position
from consumers.services import consumer_group_create
from consumers.tests.conftest import append
from consumers.webhook_services import webhook_create, webhook_deliver, webhook_enable
from eventflow.metrics import observe_many
from eventflow.metrics_http import worker_metrics_serve
from eventflow.redis import get_redis, redis_failed, reset_breaker
from eventflow.tasks import heartbeat
from ingestion.pipeline import stream_process_batch
from launcher.devservices import free_port
from streams.models import ApiKeyKind, SchemaMode, Stream
from streams.services import api_key_create, stream_create
from tests.fixtures import conf_override
from tests.intake import post_batch, post_event
from tests.receiver import Answer, receiver

pytestmark = pytest.mark.django_db

TOKEN = "scrape-token-for-the-tests"


def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def token(settings: Any) -> str:
    conf_override(settings, metrics_token=TOKEN)
    conf_override(settings, metrics_allow_networks=())
    return TOKEN


def test_metrics_are_closed_by_default(client, settings):
    conf_override(settings, metrics_token="")
    conf_override(settings, metrics_allow_networks=())

    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


def test_metrics_open_with_the_token_only(client, token):
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION=TOKEN).status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


def test_metrics_open_to_an_allowed_network_and_not_by_forwarded_for(client, settings):
    conf_override(settings, metrics_token="")
    conf_override(
        settings,
        metrics_allow_networks=(
            "10.1.0.0/16",
            "::1/128",
        ),
    )

    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.2.0.1").status_code == 404
    # A header anyone may write does not open it.
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_intake_and_processing_move_the_counters(client, token, stream: Stream, ingest_key: str):
    before = scrape(client)
    post_batch(
        client,
        "shop",
        [
            {"event_id": "m-1", "type": "page_view", "payload": {"url": "/a"}},
            {"event_id": "m-2", "type": "page_view", "payload": {"url": "/b"}},
            {"event_id": "m-1", "type": "page_view", "payload": {"url": "/a"}},
            {"type": ""},
        ],
        key=ingest_key,
    )
    assert post_event(client, "shop", {"event_id": "m-2", "type": "page_view"}, key=ingest_key).status_code == 202
    middle = scrape(client)

    assert (
        value(middle, "eventflow_events_accepted_total", stream="shop")
        - value(before, "eventflow_events_accepted_total", stream="shop")
        == 2
    )
    assert (
        value(middle, "eventflow_events_duplicate_total", stream="shop")
        - value(before, "eventflow_events_duplicate_total", stream="shop")
        == 2
    )
    assert (
        value(middle, "eventflow_events_rejected_total", stream="shop", reason="invalid")
        - value(before, "eventflow_events_rejected_total", stream="shop", reason="invalid")
        == 1
    )
    assert value(middle, "eventflow_inbox_events", stream="shop") == 2
    assert 0 <= value(middle, "eventflow_inbox_oldest_age_seconds", stream="shop") < 60
    route = {"route": "events-send-batch", "method": "POST", "status": "202"}
    assert (
        value(middle, "eventflow_http_requests_total", **route)
        - value(before, "eventflow_http_requests_total", **route)
        == 1
    )
    timed = {"route": "events-send-batch", "method": "POST"}
    assert (
        value(middle, "eventflow_http_request_duration_seconds_count", **timed)
        - value(before, "eventflow_http_request_duration_seconds_count", **timed)
        == 1
    )

    consumer_group_create(stream_id=stream.pk, name="readers", start=Position(kind="earliest"))
    while stream_process_batch(stream_id=stream.pk).fetched:
        pass
    after = scrape(client)

    assert (
        value(after, "eventflow_events_logged_total", stream="shop")
        - value(middle, "eventflow_events_logged_total", stream="shop")
        == 2
    )
    assert (
        value(after, "eventflow_event_logged_latency_seconds_count", stream="shop")
        - value(middle, "eventflow_event_logged_latency_seconds_count", stream="shop")
        == 2
    )
    assert value(after, "eventflow_inbox_events", stream="shop") == 0
    assert value(after, "eventflow_consumer_lag_events", stream="shop", group="readers", kind="pull") == 2
    assert value(after, "eventflow_scrape_database_up") == 1


def test_the_worker_heartbeat_and_the_breaker_are_read_when_scraped(client, token):
    from eventflow.health import heartbeat_key

    get_redis().set(heartbeat_key(), time.time() - 42)
    try:
        samples = scrape(client)
    finally:
        get_redis().delete(heartbeat_key())
    assert 41 <= value(samples, "eventflow_worker_heartbeat_age_seconds") < 60
    assert value(samples, "eventflow_redis_breaker_open") == 0

    trips = value(samples, "eventflow_redis_breaker_trips_total")
    redis_failed(OSError("gone"), "a test")
    try:
        tripped = scrape(client)
    finally:
        reset_breaker()
    assert value(tripped, "eventflow_redis_breaker_open") == 1
    assert value(tripped, "eventflow_redis_breaker_trips_total") == trips + 1
    assert value(tripped, "eventflow_redis_breaker_open_until_seconds") > time.time()


def test_routes_are_pattern_names_never_paths(client, token, stream: Stream):
    client.get("/api/v1/streams/no-such-stream/events/batch")
    client.get("/no/such/page/12345")
    names = {labels for (name, labels) in scrape(client) if name == "eventflow_http_requests_total"}
    routes = {dict(labels)["route"] for labels in names}

    assert "events-send-batch" in routes
    assert "unmatched" in routes
    assert not any("/" in route for route in routes)


def test_observe_many_equals_observing_each():
    one = Histogram("one_by_one", "", buckets=(0.1, 1.0, 10.0))
    bulk = Histogram("all_at_once", "", ["stream"], buckets=(0.1, 1.0, 10.0))
    amounts = [0.05, 0.1, 0.2, 1.0, 5.0, 11.0, 0.0]
    for amount in amounts:
        one.observe(amount)
    observe_many(bulk, ("s",), amounts)

    def shape(histogram: Histogram) -> list[tuple[str, float]]:
        samples = next(iter(histogram.collect())).samples
        return [(s.name.split("_")[-1] + s.labels.get("le", ""), s.value) for s in samples if "created" not in s.name]

    assert shape(one) == shape(bulk)


def test_webhook_deliveries_failures_and_disabling_are_counted(client, token, webhook_settings, stream: Stream):
    conf_override(webhook_settings, webhook_disable_after_failures=2)
    healthy = threading.Event()

    def script(index: int, body: bytes) -> Answer:
        return Answer(200) if healthy.is_set() else Answer(503)

    before = scrape(client)
    with receiver(script) as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url, batch_size=10)
        append(stream, 3)
        for _ in range(5):
            if webhook_deliver(webhook_id=created.webhook.pk).stopped_because == "inactive":
                break
        disabled = scrape(client)
        healthy.set()
        webhook_enable(webhook=WebhookSubscription.objects.get(pk=created.webhook.pk))
        webhook_deliver(webhook_id=created.webhook.pk)
    after = scrape(client)

    def moved(name: str, earlier: dict[Any, float], later: dict[Any, float], **labels: str) -> float:
        return value(later, name, **labels) - value(earlier, name, **labels)

    assert moved("eventflow_webhook_deliveries_total", before, disabled, stream="shop", outcome="failed") == 2
    assert moved("eventflow_webhook_disabled_total", before, disabled, stream="shop") == 1
    assert value(disabled, "eventflow_webhook_subscriptions_disabled", stream="shop") == 1
    group = WebhookSubscription.objects.get(pk=created.webhook.pk).group.name
    assert value(disabled, "eventflow_consumer_lag_events", stream="shop", group=group, kind="webhook") == 3
    assert moved("eventflow_webhook_deliveries_total", disabled, after, stream="shop", outcome="delivered") == 1
    assert moved("eventflow_webhook_events_delivered_total", disabled, after, stream="shop") == 3
    assert value(after, "eventflow_webhook_subscriptions_disabled", stream="shop") == 0
    assert value(after, "eventflow_consumer_lag_events", stream="shop", group=group, kind="webhook") == 0


def test_celery_tasks_are_counted_and_timed(client, token):
    before = scrape(client)
    heartbeat.apply()
    after = scrape(client)

    ran = {"task": "eventflow.heartbeat", "outcome": "success"}
    assert (
        value(after, "eventflow_celery_tasks_total", **ran) - value(before, "eventflow_celery_tasks_total", **ran) == 1
    )
    timed = {"task": "eventflow.heartbeat"}
    assert (
        value(after, "eventflow_celery_task_duration_seconds_count", **timed)
        - value(before, "eventflow_celery_task_duration_seconds_count", **timed)
        == 1
    )


def test_a_worker_serves_its_own_metrics_under_the_same_rule(settings):
    conf_override(settings, metrics_token=TOKEN)
    conf_override(settings, metrics_allow_networks=())
    heartbeat.apply()
    server = worker_metrics_serve(port=free_port(), host="127.0.0.1")
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        with pytest.raises(urllib.error.HTTPError) as closed:
            urllib.request.urlopen(url, timeout=5)
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()

    assert closed.value.code == 404
    assert 'eventflow_celery_tasks_total{outcome="success",task="eventflow.heartbeat"}' in text
    # The database and Redis readings are the web's to answer.
    assert "eventflow_inbox_events" not in text


@pytest.mark.django_db(transaction=True)
def test_retries_and_dead_letters_are_counted_by_stage(client, token, settings, ingest_key):
    conf_override(settings, retry_base_seconds=0, retry_max_seconds=0, max_attempts=2)
    quarantine = stream_create(slug="q", schema_mode=SchemaMode.QUARANTINE, with_starter_schemas=True)
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[quarantine]).raw_key
    events = [{"event_id": f"ok{i}", "type": "button_click", "payload": {"button_id": "b"}} for i in range(3)]
    events.append({"event_id": "poison", "type": "button_click", "payload": {"button_id": 5}})
    before = scrape(client)
    assert post_batch(client, "q", events, key=key).status_code == 202
    first = stream_process_batch(stream_id=quarantine.pk)
    second = stream_process_batch(stream_id=quarantine.pk)
    after = scrape(client)

    assert (first.appended, first.retried, second.dead_lettered) == (3, 1, 1)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("eventflow_events_logged_total", stream="q") == 3
    assert moved("eventflow_events_retried_total", stream="q") == 1
    assert moved("eventflow_events_dead_lettered_total", stream="q", stage="validate") == 1
    assert moved("eventflow_event_logged_latency_seconds_count", stream="q") == 3
