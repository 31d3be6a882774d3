"""An erasure reaches the alerts raised for the person while their rule was grouped by the erased id,
whatever the rule is grouped by since (analytics.models.Alert.group_by)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from analytics.alerts import alert_rule_create, alert_rule_update, alert_rules_cache_clear
from analytics.models import Alert
from analytics.tests.analytics_events import world_build
from ingestion.pipeline import stream_drain
from streams.erasure import erasure_request, erasure_run
from streams.models import LogEntry, Stream

from .test_erasure import JANE, _jane_event, _mentions_jane, _send

pytestmark = pytest.mark.django_db(transaction=True)


def _two_logins_rule(stream: Stream, *, group_by: str) -> int:
    rule = alert_rule_create(
        stream_id=stream.pk,
        name="two logins a day",
        window_seconds=86_400,
        event_types=["login"],
        threshold=2,
        group_by=group_by,
    )
    alert_rules_cache_clear()
    return rule.pk


def _jane_logins() -> list[dict[str, Any]]:
    """Jane's events of the last half hour: four logins among them."""
    now = timezone.now()
    return [_jane_event(i, at=now - timedelta(minutes=30 - i)) for i in range(12)]


def _logins_fire(client: Client, stream: Stream, *, group_by: str) -> tuple[Client, Alert]:
    world = world_build(client, stream)
    rule_id = _two_logins_rule(stream, group_by=group_by)
    _send(client, world, _jane_logins())
    stream_drain(stream_id=stream.pk)  # the alert events the first drain queued
    return client, Alert.objects.get(rule_id=rule_id, group_value=JANE)


def test_an_alert_records_what_its_rule_grouped_by_when_it_fired(client: Client, stream: Stream) -> None:
    _, alert = _logins_fire(client, stream, group_by="user_id")
    assert alert.group_by == "user_id"
    event = LogEntry.objects.get(stream=stream, event_id=f"alert-{alert.pk}")
    assert event.payload["group_by"] == "user_id" and event.payload["group_value"] == JANE


def test_an_erasure_reaches_the_alerts_of_a_rule_regrouped_since(client: Client, stream: Stream) -> None:
    _, alert = _logins_fire(client, stream, group_by="user_id")
    # The rule now groups by something else: its old alerts still name Jane by her user id.
    alert_rule_update(stream_id=stream.pk, rule_id=alert.rule_id, group_by="session_id")
    assert Alert.objects.get(pk=alert.pk).group_by == "user_id"

    erasure = erasure_request(caller=None, stream_id=stream.pk, by="user_id", subject=JANE)
    done = erasure_run(erasure_id=erasure.pk)
    assert done is not None and done.status == "done"

    erased = Alert.objects.get(pk=alert.pk)
    assert erased.group_value is None and erased.count == alert.count
    tombstone = LogEntry.objects.get(stream=stream, event_id=f"alert-{alert.pk}")
    assert tombstone.payload == {} and not _mentions_jane(tombstone.payload)


def test_an_erasure_by_the_other_id_leaves_an_alert_grouped_by_user_id(client: Client, stream: Stream) -> None:
    _, alert = _logins_fire(client, stream, group_by="user_id")
    # The same text as an anonymous id is someone else's name in another namespace.
    erasure = erasure_request(caller=None, stream_id=stream.pk, by="anonymous_id", subject=JANE)
    done = erasure_run(erasure_id=erasure.pk)
    assert done is not None and done.status == "done"
    assert Alert.objects.get(pk=alert.pk).group_value == JANE


def test_an_alert_records_the_grouping_its_value_was_taken_by_even_from_a_stale_rule_cache(
    client: Client, stream: Stream
) -> None:
    from analytics.models import AlertRule

    world = world_build(client, stream)
    rule_id = _two_logins_rule(stream, group_by="user_id")
    logins = [event for event in _jane_logins() if event["type"] == "login"]
    _send(client, world, logins[:1])  # this process now holds the rule, grouped by user_id, in its cache
    # Regrouped by another process: this one's cache still groups by user_id for a few seconds.
    AlertRule.objects.filter(pk=rule_id).update(group_by="session_id")
    _send(client, world, logins[1:])
    stream_drain(stream_id=stream.pk)
    alert = Alert.objects.get(rule_id=rule_id)
    assert (alert.group_by, alert.group_value) == ("user_id", JANE)
