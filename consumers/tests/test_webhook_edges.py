"""Review findings on webhook delivery: addresses that carry a refused IPv4 address, and what a URL or a
receiver's answer may hold without breaking a delivery."""

from __future__ import annotations

import ipaddress

import pytest

from consumers.models import DeliveryAttempt, WebhookSubscription
from consumers.outbound import address_allowed
from consumers.webhook_services import webhook_create, webhook_deliver
from tests.receiver import Answer, receiver

from .conftest import append

WEBHOOKS = "/api/v1/streams/shop/webhooks"


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        # NAT64 (RFC 6052): a DNS64/NAT64 gateway delivers to the IPv4 address in the last 32 bits.
        ("64:ff9b::a9fe:a9fe", False),  # 169.254.169.254, the metadata service
        ("64:ff9b::a00:5", False),  # 10.0.0.5
        ("64:ff9b::7f00:1", False),  # 127.0.0.1
        ("64:ff9b::5db8:d822", True),  # 93.184.216.34, public
        ("64:ff9b:1::a00:5", False),  # local-use NAT64 prefix (RFC 8215)
        # 6to4 (RFC 3056): the IPv4 address is bits 16-48.
        ("2002:a00:5::1", False),
        ("2002:a9fe:a9fe::1", False),
        # IPv4-compatible (deprecated, RFC 4291).
        ("::a00:5", False),
        ("::7f00:1", False),
        # Site-local (deprecated, RFC 3879): private in all but name.
        ("fec0::1", False),
    ],
)
def test_ipv6_addresses_that_carry_an_ipv4_address_are_judged_by_it(address: str, allowed: bool):
    assert address_allowed(ipaddress.ip_address(address), allow_loopback=False) is allowed


def test_ipv6_loopback_still_follows_the_allowance():
    assert address_allowed(ipaddress.ip_address("::1"), allow_loopback=True)
    assert not address_allowed(ipaddress.ip_address("::1"), allow_loopback=False)
    assert not address_allowed(ipaddress.ip_address("64:ff9b::7f00:1"), allow_loopback=False)


@pytest.mark.django_db
def test_a_url_with_non_ascii_characters_is_delivered_percent_encoded(webhook_settings, stream):
    with receiver() as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url + "/größe?team=zürich")
        append(stream, 2)
        outcome = webhook_deliver(webhook_id=created.webhook.pk)
    assert outcome.delivered == 2
    assert [r.path for r in hook.requests] == ["/hook/gr%C3%B6%C3%9Fe?team=z%C3%BCrich"]


@pytest.mark.django_db
def test_the_test_event_to_a_non_ascii_url_is_answered_not_a_500(webhook_settings, manager, stream):
    with receiver() as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url + "/é")
        response = manager.post(f"{WEBHOOKS}/{created.webhook.pk}/test")
    assert response.status_code == 200, response.content
    assert response.json()["outcome"] == "success"
    assert [r.path for r in hook.requests] == ["/hook/%C3%A9"]


@pytest.mark.django_db
def test_a_retry_after_that_is_not_a_number_is_ignored_not_a_crash(webhook_settings, stream):
    # "²" is a digit to str.isdigit() but not a number to float(); a receiver's header is outside input.
    answers = [Answer(503, {"Retry-After": "\u00b2"}), Answer(200)]
    with receiver(lambda index, body: answers[min(index, 1)]) as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url)
        append(stream, 1)
        outcome = webhook_deliver(webhook_id=created.webhook.pk)
        assert outcome.stopped_because == "backoff"
        attempt = DeliveryAttempt.objects.get()
        assert (attempt.outcome, attempt.status_code) == ("failure", 503)
        WebhookSubscription.objects.filter(pk=created.webhook.pk).update(next_attempt_at=None)
        assert webhook_deliver(webhook_id=created.webhook.pk).delivered == 1
    assert len(hook.requests) == 2
