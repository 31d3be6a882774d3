"""The host's lookup counts against a delivery's total timeout: a resolver that hangs costs a webhook (or an
alert's URL) one timed-out attempt, retried as other timeouts are, never a worker held for as long as it hangs.

The resolver is the one thing faked (it lies outside the project): ``hooks.example.test`` answers with the
local receiver's address, after ``delay`` seconds."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from analytics.alerts import alert_deliver
from analytics.models import Alert, DeliveryStatus
from analytics.tests.test_alerts import failed_login_rule, login, process
from consumers.models import ConsumerGroup, DeliveryAttempt, WebhookSubscription
from consumers.outbound import post_json
from consumers.webhook_services import webhook_create, webhook_deliver
from eventflow.errors import Invalid
from streams.models import DeadLetter, Stream
from tests.fixtures import conf_override
from tests.receiver import receiver

from .conftest import append

HOST = "hooks.example.test"
TIMED_OUT = f"timed out resolving {HOST}"
# Far longer than any total timeout here: a delivery that waited for it would show.
HANGS_SECONDS = 10.0


class Resolver:
    """socket.getaddrinfo, except that HOST is 127.0.0.1, answered after ``delay`` seconds (or once released)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.delay = 0.0
        self.released = threading.Event()

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != HOST:
            return self.real(host, port, *args, **kwargs)
        self.released.wait(self.delay)
        return self.real("127.0.0.1", port, *args, **kwargs)


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Resolver]:
    one = Resolver(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", one)
    yield one
    # Lookups given up on end now, not HANGS_SECONDS later.
    one.released.set()


def at_host(url: str) -> str:
    return url.replace("127.0.0.1", HOST)


@pytest.mark.django_db
def test_a_lookup_that_hangs_ends_within_the_total_timeout(webhook_settings: Any, resolver: Resolver) -> None:
    conf_override(webhook_settings, webhook_total_timeout_seconds=0.5)
    resolver.delay = HANGS_SECONDS
    with receiver() as hook:
        started = time.monotonic()
        result = post_json(at_host(hook.url), b"{}", {})
        took = time.monotonic() - started
    assert (result.ok, result.retryable, result.refused, result.status_code) == (False, True, False, None)
    assert result.error == TIMED_OUT
    assert took < 2.0
    assert 400 <= result.latency_ms < 2000
    assert hook.requests == []


@pytest.mark.django_db
def test_the_lookup_and_the_post_share_one_deadline(webhook_settings: Any, resolver: Resolver) -> None:
    # The lookup takes most of the 2 s; the receiver never answers. The POST gets what is left, not 2 s more.
    resolver.delay = 1.5
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        # Connections complete in the backlog and are never answered.
        silent.listen(8)
        started = time.monotonic()
        result = post_json(f"http://{HOST}:{silent.getsockname()[1]}/hook", b"{}", {})
        took = time.monotonic() - started
    assert (result.ok, result.retryable, result.error) == (False, True, "timed out")
    assert took < 2.75


@pytest.mark.django_db
def test_a_delivery_whose_lookup_times_out_is_a_failed_attempt_retried_like_any_timeout(
    webhook_settings: Any, resolver: Resolver, stream: Stream
) -> None:
    with receiver() as hook:
        created = webhook_create(stream_id=stream.pk, url=at_host(hook.url))
        append(stream, 3)
        resolver.delay = HANGS_SECONDS
        started = time.monotonic()
        outcome = webhook_deliver(webhook_id=created.webhook.pk)
        assert time.monotonic() - started < 5.0
        assert (outcome.failed_attempts, outcome.delivered, outcome.dead_lettered) == (1, 0, 0)
        assert outcome.stopped_because == "backoff"
        attempt = DeliveryAttempt.objects.get()
        assert (attempt.outcome, attempt.status_code, attempt.error) == ("failure", None, TIMED_OUT)
        assert (attempt.first_offset, attempt.end_offset, attempt.attempt) == (0, 3, 1)
        webhook = WebhookSubscription.objects.get()
        assert webhook.consecutive_failures == 1 and webhook.is_active
        assert ConsumerGroup.objects.get(pk=created.webhook.group_id).committed_offset == 0

        # The resolver answers again: the same batch goes out on the next run.
        resolver.released.set()
        outcome = webhook_deliver(webhook_id=created.webhook.pk)
    assert outcome.delivered == 3
    assert [request.offsets for request in hook.requests] == [[0, 1, 2]]
    assert ConsumerGroup.objects.get(pk=created.webhook.group_id).committed_offset == 3
    assert DeadLetter.objects.count() == 0


# Committed, as in the alerts' own tests: the evaluator's rules are refreshed after a rule's commit.
@pytest.mark.django_db(transaction=True)
def test_an_alert_whose_lookup_times_out_is_retried(webhook_settings: Any, resolver: Resolver, stream: Stream) -> None:
    # Alerts reuse the webhooks' sender (analytics.alerts.alert_deliver calls post_json): the same bound.
    with receiver() as hook:
        failed_login_rule(stream, threshold=1, url=at_host(hook.url))
        [alert] = process(stream, [login("olga", timezone.now())])
        resolver.delay = HANGS_SECONDS
        started = time.monotonic()
        delay = alert_deliver(alert_id=alert.pk)
        assert time.monotonic() - started < 5.0
        assert delay is not None
        alert.refresh_from_db()
        assert (alert.delivery_status, alert.delivery_attempts, alert.delivery_error) == (
            DeliveryStatus.PENDING,
            1,
            TIMED_OUT,
        )

        resolver.released.set()
        Alert.objects.filter(pk=alert.pk).update(next_attempt_at=timezone.now())
        assert alert_deliver(alert_id=alert.pk) is None
    alert.refresh_from_db()
    assert (alert.delivery_status, alert.delivery_attempts) == (DeliveryStatus.DELIVERED, 2)
    assert len(hook.requests) == 1


@pytest.mark.django_db
def test_saving_a_url_whose_lookup_hangs_is_refused_within_the_total_timeout(
    webhook_settings: Any, resolver: Resolver, stream: Stream
) -> None:
    conf_override(webhook_settings, webhook_total_timeout_seconds=0.5)
    resolver.delay = HANGS_SECONDS
    started = time.monotonic()
    with pytest.raises(Invalid) as refused:
        webhook_create(stream_id=stream.pk, url=f"http://{HOST}:8080/hook")
    assert time.monotonic() - started < 2.5
    assert refused.value.code == "unresolvable_url" and TIMED_OUT in refused.value.message
    assert not WebhookSubscription.objects.filter(stream=stream).exists()
