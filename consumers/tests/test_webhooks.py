"""Webhook subscriptions and delivery to a real local HTTP receiver."""

from __future__ import annotations

import ipaddress
import threading
import time
from typing import Any

import orjson
import pytest
from django.db import connection

from consumers.models import ConsumerGroup, DeliveryAttempt, WebhookSubscription
from consumers.outbound import address_allowed
from consumers.webhook_services import webhook_create, webhook_deliver
from eventflow_client import WebhookSignatureError, verify_signature, verify_webhook_request
from streams.models import DeadLetter, DeadLetterStage
from tests.fixtures import conf_override
from tests.receiver import Answer, receiver

from .conftest import append

WEBHOOKS = "/api/v1/streams/shop/webhooks"


def configure(settings: Any, **values: Any) -> None:
    conf_override(settings, **values)


def deliver_until_idle(webhook_id: int, rounds: int = 50) -> None:
    """Run deliveries as the sweep would (backoff is 0 in these tests) until nothing is left."""
    for _ in range(rounds):
        outcome = webhook_deliver(webhook_id=webhook_id, budget_seconds=5)
        if outcome.stopped_because in ("caught_up", "inactive"):
            return
    raise AssertionError("delivery did not finish")


def assert_signed(secret: str, request: Any) -> None:
    verify_webhook_request(secret=secret, body=request.body, headers=request.headers)


# --- SSRF -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.100.100.200", False),
        ("0.0.0.0", False),
        ("fd00:ec2::254", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("224.0.0.1", False),
    ],
)
def test_address_rules(address, allowed):
    assert address_allowed(ipaddress.ip_address(address), allow_loopback=False) is allowed


def test_loopback_only_with_the_allowance():
    assert address_allowed(ipaddress.ip_address("127.0.0.1"), allow_loopback=True)
    assert address_allowed(ipaddress.ip_address("::ffff:127.0.0.1"), allow_loopback=True)
    assert not address_allowed(ipaddress.ip_address("10.0.0.1"), allow_loopback=True)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.0.0.5/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[fd00:ec2::254]/",
        "http://0.0.0.0/",
        "http://100.100.100.200/",
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://user:pass@93.184.216.34/hook",
        "http:///no-host",
        "http://93.184.216.34:99999/",
        "http://93.184.216.34/a b",
    ],
)
def test_unsafe_urls_are_refused_when_saved(manager, stream, url):
    response = manager.post(WEBHOOKS, {"url": url})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] in ("unsafe_url", "unresolvable_url")
    assert WebhookSubscription.objects.count() == 0


@pytest.mark.django_db
def test_a_receiver_on_a_refused_address_is_never_contacted(settings, stream):
    conf_override(settings, webhook_allow_loopback=True)
    with receiver() as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url)
        # The address becomes refused after the URL was saved (as a DNS change would make it).
        conf_override(settings, webhook_allow_loopback=False)
        append(stream, 3)
        outcome = webhook_deliver(webhook_id=created.webhook.pk)
        assert hook.requests == []
    attempt = DeliveryAttempt.objects.get()
    assert attempt.outcome == "failure" and attempt.status_code is None
    assert attempt.error.startswith("refused:") and "127.0.0.1" in attempt.error
    assert outcome.dead_lettered == 3
    assert set(DeadLetter.objects.values_list("stage", flat=True)) == {DeadLetterStage.DELIVER}


# --- delivery ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_flaky_receiver_ends_with_every_event_in_order_and_signed(webhook_settings, stream):
    failures = [Answer(500), Answer(429, {"Retry-After": "0"}), Answer(503), Answer(502)]

    def script(index: int, body: bytes) -> Answer:
        return failures[index] if index < len(failures) else Answer(200)

    with receiver(script) as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url, batch_size=4)
        append(stream, 10)
        deliver_until_idle(created.webhook.pk)
    # Each failed attempt resent the same first batch; then every event came once, in order.
    assert [r.offsets for r in hook.requests[:5]] == [[0, 1, 2, 3]] * 5
    delivered = [offset for request in hook.delivered for offset in request.offsets]
    assert delivered == list(range(10))
    for request in hook.requests:
        assert_signed(created.secret, request)
        assert request.headers["Content-Type"] == "application/json"
    first = hook.delivered[0].json
    assert first["stream"] == "shop" and first["webhook_id"] == created.webhook.pk
    assert first["events"][0]["event_id"] == "e0" and first["events"][0]["delivery_count"] == 5
    webhook = WebhookSubscription.objects.get()
    assert webhook.consecutive_failures == 0 and webhook.is_active
    attempts = list(DeliveryAttempt.objects.order_by("id").values_list("outcome", "status_code", "attempt"))
    assert attempts[:5] == [
        ("failure", 500, 1),
        ("failure", 429, 2),
        ("failure", 503, 3),
        ("failure", 502, 4),
        ("success", 200, 5),
    ]
    assert DeadLetter.objects.count() == 0
    assert ConsumerGroup.objects.get(pk=webhook.group_id).committed_offset == 10


@pytest.mark.django_db
def test_retry_after_is_honoured(webhook_settings, stream):
    with receiver(lambda index, body: Answer(429, {"Retry-After": "120"}) if index == 0 else Answer()) as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url)
        append(stream, 2)
        outcome = webhook_deliver(webhook_id=created.webhook.pk)
        assert outcome.stopped_because == "backoff"
        webhook = WebhookSubscription.objects.get()
        assert webhook.next_attempt_at is not None
        assert webhook.last_failure_at is not None
        wait = (webhook.next_attempt_at - webhook.last_failure_at).total_seconds()
        assert 119 < wait < 121
        assert webhook_deliver(webhook_id=created.webhook.pk).stopped_because == "backoff"
        assert len(hook.requests) == 1


@pytest.mark.django_db
def test_exhausted_attempts_dead_letter_the_batch_and_delivery_goes_on(webhook_settings, stream):
    configure(webhook_settings, webhook_max_attempts=3)

    def script(index: int, body: bytes) -> Answer:
        return Answer(500) if orjson.loads(body)["events"][0]["offset"] == 0 else Answer(200)

    with receiver(script) as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url, batch_size=2)
        append(stream, 5)
        deliver_until_idle(created.webhook.pk)
    assert [r.offsets for r in hook.requests] == [[0, 1], [0, 1], [0, 1], [2, 3], [4]]
    letters = DeadLetter.objects.order_by("log_offset")
    assert [(d.log_offset, d.stage, d.subscriber, d.attempts) for d in letters] == [
        (0, DeadLetterStage.DELIVER, f"webhook:{created.webhook.pk}", 3),
        (1, DeadLetterStage.DELIVER, f"webhook:{created.webhook.pk}", 3),
    ]
    assert "HTTP 500" in letters[0].error_message


@pytest.mark.django_db
def test_client_errors_are_not_retried(webhook_settings, stream):
    with receiver(lambda index, body: Answer(400, body=b"bad payload") if index == 0 else Answer()) as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url, batch_size=2)
        append(stream, 3)
        deliver_until_idle(created.webhook.pk)
    assert [r.offsets for r in hook.requests] == [[0, 1], [2]]
    assert DeadLetter.objects.count() == 2
    assert DeliveryAttempt.objects.order_by("id")[0].error == "HTTP 400: bad payload"


@pytest.mark.django_db
def test_event_type_filter(webhook_settings, stream):
    with receiver() as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url, event_types=["login"], batch_size=3)
        append(stream, 9, types=["page_view", "login", "logout"])
        deliver_until_idle(created.webhook.pk)
    delivered = [event for r in hook.delivered for event in r.json["events"]]
    assert [(e["offset"], e["type"]) for e in delivered] == [(1, "login"), (4, "login"), (7, "login")]
    assert ConsumerGroup.objects.get(pk=created.webhook.group_id).committed_offset == 9


@pytest.mark.django_db
def test_timeouts_are_retried(webhook_settings, stream):
    configure(webhook_settings, webhook_total_timeout_seconds=0.3)
    with receiver(lambda index, body: Answer(delay=3.0) if index == 0 else Answer()) as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url)
        append(stream, 2)
        started = time.monotonic()
        deliver_until_idle(created.webhook.pk)
        assert time.monotonic() - started < 3.0
    first, second = DeliveryAttempt.objects.order_by("id")
    assert first.error == "timed out" and 250 <= first.latency_ms < 2000
    assert second.outcome == "success"
    assert [r.offsets for r in hook.requests] == [[0, 1], [0, 1]]


@pytest.mark.django_db
def test_redirects_are_not_followed_and_answers_are_capped(webhook_settings, stream):
    with receiver() as elsewhere:
        big = b"x" * (2 * 1024 * 1024)

        def script(index: int, body: bytes) -> Answer:
            if index == 0:
                return Answer(302, {"Location": elsewhere.url})
            return Answer(200, body=big)

        with receiver(script) as hook:
            created = webhook_create(stream_id=stream.pk, url=hook.url)
            append(stream, 1)
            webhook_deliver(webhook_id=created.webhook.pk)
            append(stream, 1)
            webhook_deliver(webhook_id=created.webhook.pk)
        assert elsewhere.requests == []
    redirect, capped = DeliveryAttempt.objects.order_by("id")
    assert redirect.status_code == 302 and "not followed" in redirect.error
    assert capped.outcome == "success"


@pytest.mark.django_db
def test_a_run_of_failures_disables_and_the_api_re_enables(webhook_settings, manager, stream):
    configure(webhook_settings, webhook_disable_after_failures=3)
    healthy = threading.Event()

    def script(index: int, body: bytes) -> Answer:
        return Answer(200) if healthy.is_set() else Answer(503)

    with receiver(script) as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url)
        append(stream, 4)
        deliver_until_idle(created.webhook.pk)
        shown = manager.get(f"{WEBHOOKS}/{created.webhook.pk}").json()
        assert shown["is_active"] is False
        assert shown["disabled_reason"].startswith("Disabled after 3 failed deliveries in a row")
        assert "HTTP 503" in shown["disabled_reason"]
        assert shown["lag"] == 4
        assert len(hook.requests) == 3
        healthy.set()
        assert webhook_deliver(webhook_id=created.webhook.pk).stopped_because == "inactive"
        enabled = manager.post(f"{WEBHOOKS}/{created.webhook.pk}/enable").json()
        assert enabled["is_active"] is True and enabled["consecutive_failures"] == 0
        deliver_until_idle(created.webhook.pk)
    assert [offset for r in hook.delivered for offset in r.offsets] == [0, 1, 2, 3]
    assert DeadLetter.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_two_deliveries_at_once_send_each_batch_once(webhook_settings, stream):
    with receiver(lambda index, body: Answer(delay=0.02)) as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url, batch_size=5)
        append(stream, 60)

        def run() -> None:
            try:
                webhook_deliver(webhook_id=created.webhook.pk)
            finally:
                connection.close()

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        deliver_until_idle(created.webhook.pk)
    offsets = [offset for r in hook.requests for offset in r.offsets]
    assert offsets == list(range(60))


# --- the API -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_webhook_crud_test_event_and_delivery_log(webhook_settings, manager, stream):
    with receiver() as hook:
        created = manager.post(
            WEBHOOKS, {"url": hook.url, "event_types": ["login", "login"], "description": "billing", "batch_size": 50}
        )
        assert created.status_code == 201, created.content
        body = created.json()
        secret = body["secret"]
        assert secret.startswith("whsec_") and body["secret_hint"] == secret[:10] + "…"
        assert body["event_types"] == ["login"] and body["is_active"] and body["subscriber"] == f"webhook:{body['id']}"
        url = f"{WEBHOOKS}/{body['id']}"
        shown = manager.get(url).json()
        assert "secret" not in shown and shown["url"] == hook.url
        assert [w["id"] for w in manager.get(WEBHOOKS).json()["results"]] == [body["id"]]

        tested = manager.post(f"{url}/test")
        assert tested.status_code == 200
        assert tested.json()["outcome"] == "success" and tested.json()["is_test"] is True
        (request,) = hook.requests
        assert_signed(secret, request)
        assert request.json["test"] is True and request.json["events"][0]["type"] == "eventflow.test"

        patched = manager.patch(url, {"event_types": [], "batch_size": 10, "description": ""})
        assert patched.status_code == 200 and patched.json()["event_types"] == []
        refused = manager.patch(url, {"url": "http://10.0.0.1/hook"})
        assert refused.status_code == 400
        disabled = manager.patch(url, {"is_active": False}).json()
        assert disabled["is_active"] is False and disabled["disabled_reason"] == "Disabled by a user."

        log = manager.get(f"{url}/deliveries").json()
        assert [a["is_test"] for a in log["results"]] == [True]
        assert set(log["results"][0]) >= {"created_at", "outcome", "status_code", "latency_ms", "error"}

        assert manager.delete(url).status_code == 204
        assert manager.get(url).status_code == 404
        assert not ConsumerGroup.objects.filter(kind="webhook").exists()


@pytest.mark.django_db
def test_delivery_log_keeps_the_most_recent(webhook_settings, manager, stream):
    configure(webhook_settings, webhook_keep_attempts=3)
    with receiver() as hook:
        created = webhook_create(stream_id=stream.pk, url=hook.url, batch_size=1)
        append(stream, 5)
        deliver_until_idle(created.webhook.pk)
    log = manager.get(f"{WEBHOOKS}/{created.webhook.pk}/deliveries").json()["results"]
    assert [a["first_offset"] for a in log] == [4, 3, 2]


def test_signature_verification():
    body = b'{"events":[]}'
    import hashlib
    import hmac

    now = 1_800_000_000
    signature = "v1=" + hmac.new(b"whsec_x", f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    verify_signature(secret="whsec_x", body=body, signature=signature, timestamp=str(now), now=now + 10)
    verify_signature(secret="whsec_x", body=body, signature=f"v1=00, {signature}", timestamp=str(now), now=now)
    changes: tuple[dict[str, Any], ...] = (
        {"body": body + b" "},
        {"secret": "whsec_y"},
        {"timestamp": str(now + 1)},
        {"now": now + 301},
        {"signature": signature[3:]},
        {"timestamp": "soon"},
    )
    for kwargs in changes:
        arguments: dict[str, Any] = {
            "secret": "whsec_x",
            "body": body,
            "signature": signature,
            "timestamp": str(now),
            "now": now,
        }
        arguments.update(kwargs)
        with pytest.raises(WebhookSignatureError):
            verify_signature(**arguments)


@pytest.mark.django_db
def test_webhook_list_query_count(webhook_settings, manager, stream, django_assert_num_queries):
    webhook_create(stream_id=stream.pk, url="http://127.0.0.1:9/hook")
    manager.get(WEBHOOKS)
    for _ in range(4):
        webhook_create(stream_id=stream.pk, url="http://127.0.0.1:9/hook")
    # A person by JWT: the user, their two kinds of permissions, their teams' streams; then the list.
    with django_assert_num_queries(5):
        listed = manager.get(WEBHOOKS).json()
    assert len(listed["results"]) == 5
