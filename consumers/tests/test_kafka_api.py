"""The Kafka bridge's configuration API, and who runs what (no broker needed)."""

from __future__ import annotations

from typing import Any

import pytest

from consumers.kafka_bridge import Bridge
from consumers.kafka_services import kafka_client_config, kafka_sink_create, source_event_id
from consumers.models import ConsumerGroup, GroupKind, KafkaBridgeStatus, KafkaSink, KafkaSource
from consumers.selectors import Position
from streams.models import Stream
from tests.fixtures import conf_override

from .conftest import append

SINKS = "/api/v1/streams/shop/kafka/sinks"
SOURCES = "/api/v1/streams/shop/kafka/sources"
# Nothing listens here: the runners made in these tests never reach a broker.
NOWHERE = "127.0.0.1:9"


@pytest.fixture
def shop(db: Any) -> Stream:
    from streams.services import stream_create

    return stream_create(slug="shop", name="Shop")


@pytest.fixture
def admin_api(client: Any, django_user_model: Any) -> Any:
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def post(client: Any, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, body, content_type="application/json")


def patch(client: Any, url: str, body: dict[str, Any]) -> Any:
    return client.patch(url, body, content_type="application/json")


def test_sink_create_show_change_delete_and_secrets_never_returned(shop: Stream, admin_api: Any) -> None:
    append(shop, 5)
    answer = post(
        admin_api,
        SINKS,
        {
            "topic": "shop.events",
            "key": "session_id",
            "start": "offset",
            "offset": 2,
            "bootstrap_servers": "kafka-1:9092,kafka-2:9092",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "eventflow",
            "sasl_password": "s3cret-pw",
            "ssl_ca_pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        },
    )
    assert answer.status_code == 201, answer.content
    sink = answer.json()
    assert b"s3cret-pw" not in answer.content and b"BEGIN CERTIFICATE" not in answer.content
    assert sink["has_sasl_password"] is True and sink["has_ssl_ca_pem"] is True
    assert (sink["topic"], sink["key"], sink["committed_offset"], sink["head"], sink["lag"]) == (
        "shop.events",
        "session_id",
        2,
        5,
        3,
    )
    assert (sink["status"], sink["runner"], sink["published"]) == ("starting", None, 0)
    url = f"{SINKS}/{sink['id']}"
    group = ConsumerGroup.objects.get(kafka_sink__pk=sink["id"])
    assert (group.kind, group.name) == (GroupKind.KAFKA, f"kafka:{sink['id']}")
    # The client's settings carry the secrets the API never shows.
    config = kafka_client_config(KafkaSink.objects.get(pk=sink["id"]))
    assert config["sasl.password"] == "s3cret-pw" and config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config["ssl.ca.pem"].startswith("-----BEGIN")

    listed = admin_api.get(SINKS).json()["results"]
    assert [s["id"] for s in listed] == [sink["id"]]
    assert b"s3cret-pw" not in admin_api.get(url).content

    changed = patch(admin_api, url, {"is_active": False, "key": "none", "batch_size": 50})
    assert changed.status_code == 200
    assert (changed.json()["is_active"], changed.json()["status"], changed.json()["key"]) == (False, "stopped", "none")

    assert admin_api.delete(url).status_code == 204
    assert admin_api.get(url).status_code == 404
    assert not ConsumerGroup.objects.filter(pk=group.pk).exists()


def test_source_create_show_and_delete(shop: Stream, admin_api: Any) -> None:
    answer = post(admin_api, SOURCES, {"topic": "incoming", "bootstrap_servers": "kafka:9092", "start": "latest"})
    assert answer.status_code == 201, answer.content
    source = answer.json()
    assert source["consumer_group"] == f"eventflow-shop-{source['id']}"
    assert (source["start"], source["consumed"], source["rejected"], source["recent_rejections"]) == (
        "latest",
        0,
        0,
        [],
    )
    same_group = post(
        admin_api,
        SOURCES,
        {"topic": "incoming", "bootstrap_servers": "kafka:9092", "consumer_group": source["consumer_group"]},
    )
    assert same_group.status_code == 409
    assert same_group.json()["error"]["code"] == "kafka_source_exists"
    url = f"{SOURCES}/{source['id']}"
    assert admin_api.get(url).json()["topic"] == "incoming"
    assert admin_api.delete(url).status_code == 204
    assert not KafkaSource.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"topic": "bad topic!", "bootstrap_servers": "k:9092"}, "topic"),
        ({"topic": "t", "bootstrap_servers": "k:9092", "key": "email"}, "key"),
        ({"topic": "t", "bootstrap_servers": "k:9092", "start": "offset"}, "offset"),
        ({"topic": "t", "bootstrap_servers": "k:9092", "batch_size": 0}, "batch_size"),
        ({"topic": "t", "bootstrap_servers": "k:9092", "security_protocol": "TLS"}, "security_protocol"),
        ({"topic": "t", "bootstrap_servers": 9092}, "bootstrap_servers"),
    ],
)
def test_bad_sink_input_is_a_400_and_writes_nothing(
    shop: Stream, admin_api: Any, body: dict[str, Any], field: str
) -> None:
    answer = post(admin_api, SINKS, body)
    assert answer.status_code == 400
    assert field in str(answer.json()["error"])
    assert not KafkaSink.objects.exists() and not ConsumerGroup.objects.exists()


def test_without_a_broker_address_anywhere_a_sink_is_refused(shop: Stream, admin_api: Any, settings: Any) -> None:
    conf_override(settings, kafka_bootstrap_servers="")
    answer = post(admin_api, SINKS, {"topic": "t"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "kafka_unconfigured"
    conf_override(settings, kafka_bootstrap_servers="kafka:9092")
    assert post(admin_api, SINKS, {"topic": "t"}).status_code == 201
    assert kafka_client_config(KafkaSink.objects.get())["bootstrap.servers"] == "kafka:9092"


def test_an_offset_beyond_the_head_is_refused(shop: Stream, admin_api: Any) -> None:
    answer = post(admin_api, SINKS, {"topic": "t", "bootstrap_servers": "k:9092", "start": "offset", "offset": 10})
    assert answer.status_code == 422
    assert not KafkaSink.objects.exists()


def test_source_event_ids_stay_within_the_limit() -> None:
    assert source_event_id(topic="orders", partition=2, offset=41) == "kafka:orders:2:41"
    long_topic = "t" * 249
    derived = source_event_id(topic=long_topic, partition=0, offset=2**62)
    assert len(derived) <= 128 and derived.startswith("kafka:")
    assert derived == source_event_id(topic=long_topic, partition=0, offset=2**62)
    assert derived != source_event_id(topic="u" * 249, partition=0, offset=2**62)


# The bridge closes stale connections between scans, as a long-running process must: outside a test transaction.
@pytest.mark.django_db(transaction=True)
def test_two_bridges_never_run_the_same_sink_and_one_takes_over_when_the_other_stops(
    shop: Stream, settings: Any
) -> None:
    conf_override(settings, kafka_runner_lease_seconds=30.0)
    sinks = [
        kafka_sink_create(
            stream_id=shop.pk, topic=f"t{n}", key="none", start=Position("latest"), bootstrap_servers=NOWHERE
        )
        for n in range(3)
    ]
    first, second = Bridge("first"), Bridge("second")
    first.scan()
    second.scan()
    assert set(first.sinks) == {s.pk for s in sinks} and second.sinks == {}
    assert set(KafkaSink.objects.values_list("runner", flat=True)) == {"first"}
    first.close()
    second.scan()
    assert set(second.sinks) == {s.pk for s in sinks}
    # A deactivated sink is let go at the next scan; its status says it is stopped.
    KafkaSink.objects.filter(pk=sinks[0].pk).update(is_active=False, status=KafkaBridgeStatus.STOPPED)
    second.scan()
    assert set(second.sinks) == {s.pk for s in sinks[1:]}
    second.close()
    assert not KafkaSink.objects.exclude(runner="").exists()


@pytest.mark.django_db(transaction=True)
def test_a_bridge_with_nothing_configured_does_nothing() -> None:
    bridge = Bridge()
    assert bridge.run_once() == 0
    assert bridge.sinks == {} and bridge.sources == {}
    bridge.close()


@pytest.mark.django_db(transaction=True)
def test_a_failed_scan_never_stops_the_bridge(shop: Stream, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import OperationalError

    import consumers.kafka_bridge as kafka_bridge

    sink = kafka_sink_create(
        stream_id=shop.pk, topic="t", key="none", start=Position("latest"), bootstrap_servers=NOWHERE
    )
    claim = kafka_bridge.kafka_runner_claim

    def database_away(**kwargs: Any) -> Any:
        raise OperationalError("the database went away")

    monkeypatch.setattr(kafka_bridge, "kafka_runner_claim", database_away)
    bridge = Bridge()
    assert bridge.run_once() == 0
    assert bridge.sinks == {}
    monkeypatch.setattr(kafka_bridge, "kafka_runner_claim", claim)
    bridge._next_scan = 0.0
    bridge.scan()
    assert set(bridge.sinks) == {sink.pk}
    bridge.close()


def test_a_settings_change_leaves_what_the_running_bridge_wrote_alone(shop: Stream) -> None:
    """The API's copy of a sink was read before the bridge counted and renewed its hold: a change of
    settings writes the changed settings, not that copy's counters and runner."""
    from datetime import timedelta

    from django.utils import timezone

    from consumers.kafka_services import kafka_bridge_update

    sink = kafka_sink_create(
        stream_id=shop.pk, topic="t", key="none", start=Position("latest"), bootstrap_servers=NOWHERE
    )
    read_by_the_api = KafkaSink.objects.get(pk=sink.pk)
    held_until = timezone.now() + timedelta(seconds=30)
    KafkaSink.objects.filter(pk=sink.pk).update(
        published=41, runner="bridge-1", runner_expires_at=held_until, status=KafkaBridgeStatus.RUNNING
    )
    kafka_bridge_update(bridge=read_by_the_api, description="orders to the warehouse")
    saved = KafkaSink.objects.get(pk=sink.pk)
    assert saved.description == "orders to the warehouse"
    assert (saved.published, saved.runner, saved.runner_expires_at) == (41, "bridge-1", held_until)
    assert saved.status == KafkaBridgeStatus.RUNNING


@pytest.mark.parametrize(
    "servers",
    ["kafka:9092 kafka2:9092", "http://kafka:9092", "kafka:0", "kafka:70000", "kafka:9092,", "ka fka:9092", "-k:9092"],
)
def test_a_broker_list_the_client_cannot_read_is_refused_when_saved(shop: Stream, admin_api: Any, servers: str) -> None:
    answer = post(admin_api, SINKS, {"topic": "t", "bootstrap_servers": servers})
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"]["code"] == "invalid_bootstrap_servers"
    assert not KafkaSink.objects.exists() and not ConsumerGroup.objects.exists()
    answer = post(admin_api, SOURCES, {"topic": "t", "bootstrap_servers": servers})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_bootstrap_servers"


@pytest.mark.parametrize(
    "servers", ["kafka-1:9092,kafka-2:9092", "10.0.0.5:9092", "[::1]:9092", "SASL_SSL://broker.example.com:9093", "k"]
)
def test_broker_lists_librdkafka_reads_are_taken(shop: Stream, admin_api: Any, servers: str) -> None:
    answer = post(admin_api, SINKS, {"topic": "t", "bootstrap_servers": servers})
    assert answer.status_code == 201, answer.content
    assert answer.json()["bootstrap_servers"] == servers
