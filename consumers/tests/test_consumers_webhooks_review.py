"""Review findings on consumer groups, webhooks and the Kafka bridge's configuration API."""

from __future__ import annotations

import ipaddress
import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction

from consumers.kafka_services import kafka_sink_create, kafka_sink_take_over
from consumers.models import ConsumerGroup, WebhookSubscription
from consumers.outbound import address_allowed
from consumers.selectors import Position
from consumers.services import consumer_group_commit, consumer_group_poll_once
from consumers.webhook_services import webhook_sign
from eventflow_client import WebhookSignatureError, verify_webhook_request
from streams.models import Stream

from .conftest import append

WEBHOOKS = "/api/v1/streams/shop/webhooks"


# --- SSRF: IPv4-translated IPv6 addresses -------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:0:7f00:1",  # 127.0.0.1
        "::ffff:0:a9fe:a9fe",  # 169.254.169.254, the metadata service
        "::ffff:0:a00:5",  # 10.0.0.5
    ],
)
def test_ipv4_translated_addresses_are_judged_by_the_ipv4_address_they_carry(address: str) -> None:
    # SIIT (RFC 6145) translators deliver ::ffff:0:a.b.c.d to a.b.c.d, as NAT64 does for its prefix.
    assert not address_allowed(ipaddress.ip_address(address), allow_loopback=False)


def test_a_public_ipv4_translated_address_stays_allowed() -> None:
    assert address_allowed(ipaddress.ip_address("::ffff:0:5db8:d822"), allow_loopback=False)


@pytest.mark.django_db
def test_a_webhook_on_an_ipv4_translated_metadata_address_is_refused_and_not_saved(manager: Any, stream: Stream):
    response = manager.post(WEBHOOKS, {"url": "http://[::ffff:0:a9fe:a9fe]/latest/meta-data"})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "unsafe_url"
    assert not WebhookSubscription.objects.exists()


@pytest.mark.django_db
def test_a_webhook_on_port_0_is_refused_when_saved(manager: Any, stream: Stream):
    response = manager.post(WEBHOOKS, {"url": "https://1.1.1.1:0/hook"})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "unsafe_url"
    assert not WebhookSubscription.objects.exists()


# --- the receiver's check of a signature --------------------------------------------------------------


@pytest.mark.parametrize(
    ("signature", "timestamp"),
    [
        ("v1=\u00e9t\u00e9", "now"),  # a header with non-ASCII text (Django decodes headers as latin-1)
        ("v1=abc", "9" * 400),  # a timestamp too large for the float comparison
        ("v1=abc", "\u0661\u0667"),  # digits of another script
    ],
)
def test_a_forged_signature_header_is_refused_not_a_crash_of_the_receiver(signature: str, timestamp: str) -> None:
    if timestamp == "now":
        timestamp = str(int(time.time()))
    with pytest.raises(WebhookSignatureError):
        verify_webhook_request(
            secret="whsec_x",
            body=b"{}",
            headers={"X-EventFlow-Signature": signature, "X-EventFlow-Timestamp": timestamp},
        )


def test_a_genuine_signature_still_checks_out() -> None:
    timestamp = int(time.time())
    body = b'{"events": []}'
    signature = webhook_sign(secret="whsec_x", timestamp=timestamp, body=body)
    verify_webhook_request(
        secret="whsec_x",
        body=body,
        headers={"x-eventflow-signature": f"v1=other, {signature}", "x-eventflow-timestamp": str(timestamp)},
    )


# --- a sink's take-over never moves its position back ----------------------------------------------


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        row = cursor.fetchone()
    return bool(row and row[0])


@pytest.mark.django_db(transaction=True)
def test_a_take_over_during_the_previous_runners_commit_keeps_that_commit(stream: Stream):
    """The runner that lost its hold commits its batch while a new runner takes the sink over.

    The take-over ends the old lease where the position stands; it must not put back the
    position it read before that commit landed: the batch would be published again and the
    group's offset would go backwards.
    """
    sink = kafka_sink_create(
        stream_id=stream.pk,
        topic="shop.events",
        key="user_id",
        start=Position(kind="earliest"),
        bootstrap_servers="127.0.0.1:9",
    )
    append(stream, 10)
    lookup = {"pk": sink.group_id}
    poll = consumer_group_poll_once(lookup=lookup, max_records=10, lease_seconds=60)
    assert poll.lease is not None and poll.lease.end_offset == 10
    errors: list[BaseException] = []

    def take_over() -> None:
        try:
            kafka_sink_take_over(group_id=sink.group_id)
        except BaseException as exc:  # noqa: BLE001 (reported by the test below)
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=take_over)
    with transaction.atomic():
        # The previous runner's commit, not yet committed: it holds the group's row.
        consumer_group_commit(lookup=lookup, lease_id=poll.lease.id, offset=poll.lease.end_offset)
        thread.start()
        deadline = time.monotonic() + 10
        while not _waiting_on_a_lock():
            assert time.monotonic() < deadline, "the take-over never waited for the group's row"
            time.sleep(0.02)
    thread.join(10)
    assert not thread.is_alive()
    assert not errors, errors
    group = ConsumerGroup.objects.get(pk=sink.group_id)
    assert group.committed_offset == 10
    assert group.lease_id is None
