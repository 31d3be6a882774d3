"""Alert rules with real processes: failed logins over HTTP (gunicorn), processed by a Celery worker,
the alert delivered by the delivery worker to a local receiver and to a webhook, and listed by the API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from rest_framework_simplejwt.tokens import RefreshToken

from analytics.alerts import alert_rule_create
from analytics.models import Alert, DeliveryStatus
from consumers.webhook_services import SIGNATURE_HEADER, TIMESTAMP_HEADER, webhook_create, webhook_sign
from streams.models import ApiKeyKind, Stream
from streams.services import api_key_create, team_create
from tests.fixtures import conf_override
from tests.receiver import receiver
from tests.workers import Stack, running_stack, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

ENV = {
    "EVENTFLOW_WEBHOOK_ALLOW_LOOPBACK": "1",
    "EVENTFLOW_WEBHOOK_SWEEP_SECONDS": "0.2",
    "EVENTFLOW_WEBHOOK_BACKOFF_BASE_SECONDS": "0.2",
    "EVENTFLOW_ALERT_CHECK_SECONDS": "1",
}


@pytest.fixture
def stack(transactional_db: Any, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, ENV) as stack:
        yield stack


def _failed_logins(user: str, n: int, start: int) -> list[dict[str, Any]]:
    at = timezone.now()
    return [
        {
            "event_id": f"{user}-{start + i}",
            "type": "login",
            "user_id": user,
            "timestamp": (at - timedelta(seconds=n - i)).isoformat(),
            "payload": {"user_id": user, "success": False, "device": "desktop"},
        }
        for i in range(n)
    ]


def test_failed_logins_fire_once_per_user_and_cooldown_and_are_delivered(settings: Any, stack: Stack, stream: Stream):
    conf_override(settings, webhook_allow_loopback=True)
    ingest = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key
    analyst = User.objects.create(username="ana")
    analyst.groups.add(Group.objects.get(name="Analyst"))
    team_create(slug="shop-team", members=[analyst], streams=[stream])
    bearer = {"Authorization": f"Bearer {RefreshToken.for_user(analyst).access_token}"}
    with receiver() as direct, receiver() as hook:
        rule = alert_rule_create(
            stream_id=stream.pk, name="failed logins", event_types=["login"],
            conditions=[{"property": "payload.success", "values": ["false"]}], threshold=5, window_seconds=300,
            group_by="user_id", cooldown_seconds=600, url=direct.url,
        )  # fmt: skip
        webhook = webhook_create(stream_id=stream.pk, url=hook.url, event_types=["alert"]).webhook
        stack.web()
        stack.worker(concurrency=2)
        stack.webhooks()
        stack.beat()
        stack.wait_ready()

        with stack.client(headers={"X-API-Key": ingest}) as client:

            def send(events: list[dict[str, Any]]) -> None:
                response = client.post(f"/api/v1/streams/{stream.slug}/events/batch", json={"events": events})
                assert response.status_code == 202, response.text

            # Four failures, then a success and the fifth failure one request at a time.
            send(_failed_logins("alice", 4, 0))
            send([{**_failed_logins("alice", 1, 90)[0], "payload": {"user_id": "alice", "success": True}}])
            time.sleep(1)
            assert not Alert.objects.exists()
            send(_failed_logins("alice", 1, 4))
            alert = wait_until(lambda: Alert.objects.filter(rule=rule).first(), timeout=30, what="the alert")
            assert (alert.group_value, alert.count) == ("alice", 5)

            # Delivered to the rule's URL, signed with the rule's secret.
            wait_until(lambda: direct.delivered, timeout=30, what="the delivery to the rule's URL")
            request = direct.delivered[0]
            timestamp = int(request.headers[TIMESTAMP_HEADER])
            assert request.headers[SIGNATURE_HEADER] == webhook_sign(
                secret=rule.secret, timestamp=timestamp, body=request.body
            )
            [event] = request.json["events"]
            assert (event["type"], event["payload"]["group_value"], event["payload"]["count"]) == ("alert", "alice", 5)
            wait_until(
                lambda: Alert.objects.get(pk=alert.pk).delivery_status == DeliveryStatus.DELIVERED,
                timeout=10,
                what="the delivery recorded",
            )
            # And to the stream's webhook, as an `alert` event of the log, signed with its secret.
            wait_until(lambda: hook.delivered, timeout=30, what="the webhook delivery")
            logged = hook.delivered[0]
            assert logged.headers[SIGNATURE_HEADER] == webhook_sign(
                secret=webhook.secret, timestamp=int(logged.headers[TIMESTAMP_HEADER]), body=logged.body
            )
            [alert_event] = logged.json["events"]
            assert (alert_event["type"], alert_event["event_id"]) == ("alert", f"alert-{alert.pk}")
            assert isinstance(alert_event["offset"], int)

            # Within the cool-down, alice's further failures fire nothing; bob's fire for bob.
            send(_failed_logins("alice", 6, 10))
            send(_failed_logins("bob", 5, 0))
            wait_until(
                lambda: Alert.objects.filter(rule=rule, group_value="bob").first(), timeout=30, what="bob's alert"
            )
            time.sleep(2)
            assert sorted(str(v) for v in Alert.objects.filter(rule=rule).values_list("group_value", flat=True)) == [
                "alice",
                "bob",
            ]
            wait_until(lambda: len(direct.delivered) == 2, timeout=30, what="bob's delivery")

        # Shown in the API.
        with stack.client(headers=bearer) as people:
            response = people.get(f"/api/v1/streams/{stream.slug}/alerts")
            assert response.status_code == 200, response.text
            listed = response.json()["results"]
            assert [(a["group_value"], a["count"], a["delivery"]["status"]) for a in listed] == [
                ("bob", 5, "delivered"),
                ("alice", 5, "delivered"),
            ]


def test_absence_is_noticed_by_beat(settings: Any, stack: Stack, stream: Stream):
    rule = alert_rule_create(
        stream_id=stream.pk, name="no page views", kind="absence", event_types=["page_view"], window_seconds=10,
        cooldown_seconds=3600,
    )  # fmt: skip
    stack.worker(concurrency=1)
    stack.beat()
    stack.wait_ready()
    alert = wait_until(lambda: Alert.objects.filter(rule=rule).first(), timeout=40, what="the absence alert")
    assert alert.count == 0
    assert alert.window_end - alert.window_start >= timedelta(seconds=10)
    # Its `alert` event reaches the log through the inbox and the processor.
    from streams.models import LogEntry

    wait_until(
        lambda: LogEntry.objects.filter(stream=stream, type="alert", event_id=f"alert-{alert.pk}").exists(),
        timeout=30,
        what="the alert event in the log",
    )
    time.sleep(2)
    assert Alert.objects.filter(rule=rule).count() == 1
