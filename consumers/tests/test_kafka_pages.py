"""The dashboard's Kafka page: sinks and sources listed with their state, made, stopped and deleted."""

from __future__ import annotations

from typing import Any

import pytest

from consumers.kafka_services import Rejection, kafka_source_consumed, kafka_source_create
from consumers.models import KafkaSink, KafkaSource
from streams.models import Stream
from streams.services import stream_create

from .conftest import append


@pytest.fixture
def shop(db: Any) -> Stream:
    return stream_create(slug="shop", name="Shop")


@pytest.fixture
def admin(client: Any, django_user_model: Any) -> Any:
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def test_kafka_page_makes_a_sink_and_shows_it_without_its_password(shop: Stream, admin: Any) -> None:
    append(shop, 4)
    answer = admin.post(
        "/streams/shop/kafka/sinks/new/",
        {
            "topic": "shop.events",
            "key": "anonymous_id",
            "start": "earliest",
            "batch_size": 100,
            "bootstrap_servers": "kafka:9092",
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "ef",
            "sasl_password": "hunter22",
        },
    )
    assert answer.status_code == 302
    sink = KafkaSink.objects.get()
    assert (sink.topic, sink.key, sink.sasl_password, sink.group.committed_offset) == (
        "shop.events",
        "anonymous_id",
        "hunter22",
        0,
    )
    page = admin.get("/streams/shop/kafka/").content.decode()
    assert "shop.events" in page and "anonymous_id" in page and "No bridge running it" in page
    assert "hunter22" not in page

    assert admin.post(f"/streams/shop/kafka/sinks/{sink.pk}/toggle/").status_code == 302
    sink.refresh_from_db()
    assert (sink.is_active, sink.status) == (False, "stopped")
    assert admin.post(f"/streams/shop/kafka/sinks/{sink.pk}/delete/").status_code == 302
    assert not KafkaSink.objects.exists()


def test_kafka_page_shows_a_source_and_its_rejected_messages(shop: Stream, admin: Any) -> None:
    source = kafka_source_create(
        stream_id=shop.pk, stream_slug="shop", topic="incoming", start="earliest", bootstrap_servers="kafka:9092"
    )
    kafka_source_consumed(
        source_id=source.pk,
        consumed=3,
        accepted=2,
        duplicates=0,
        rejections=[
            Rejection(
                topic="incoming",
                partition=1,
                offset=7,
                event_id=None,
                errors=[{"field": "", "code": "invalid_json", "message": "The message is not JSON"}],
                value="{oops",
            )
        ],
        now=source.created_at,
    )
    page = admin.get("/streams/shop/kafka/").content.decode()
    assert "incoming:1@7" in page and "invalid_json" in page and "{oops" in page
    bad = admin.post("/streams/shop/kafka/sources/new/", {"topic": "bad topic", "start": "earliest", "batch_size": 5})
    assert bad.status_code == 200 and KafkaSource.objects.count() == 1
