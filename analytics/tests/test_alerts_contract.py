"""Real answers of the alert rule and alert endpoints against the OpenAPI document, and their refusals."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from analytics.alerts import alert_rule_create, alerts_evaluate
from analytics.models import Alert, AlertRule
from eventflow.models import AuditEntry
from streams.log import LogRecord, log_append_now
from tests import test_openapi_contract as checked
from tests.access_matrix import FOREIGN, OWN, World

generated, contract, world, as_ = checked.generated, checked.contract, checked.world, checked.as_

pytestmark = pytest.mark.django_db
S = "/api/v1/streams/own"
RULES = f"{S}/alert-rules"


def _fire(world: World, rule: AlertRule, users: list[str]) -> list[int]:
    """Log one failed login per user and evaluate the batch as the processor would."""
    now = timezone.now()
    result = log_append_now(
        stream_id=world.streams[OWN].pk,
        records=[
            LogRecord(f"l-{rule.pk}-{u}", "login", now, now, user_id=u, payload={"success": False}) for u in users
        ],
    )
    return alerts_evaluate(stream_id=world.streams[OWN].pk, appended=result.appended, now=now)


def test_rules_are_created_shown_changed_muted_and_deleted(as_: Any, world: World):
    developer, analyst = as_("Developer"), as_("Analyst")
    body = {
        "name": "five failed logins",
        "event_types": ["login"],
        "conditions": [{"property": "payload.success", "values": [False]}],
        "threshold": 5,
        "window_seconds": 300,
        "group_by": "user_id",
        "cooldown_seconds": 900,
    }
    created = developer.post(RULES, body, status=201)
    assert created["secret"].startswith("whsec_")
    assert created["conditions"] == [{"property": "payload.success", "op": "eq", "values": ["false"]}]
    assert created["created_by"] == "developer"
    rule_id = created["id"]
    developer.post(RULES, body, status=409)
    listed = analyst.get(RULES)
    assert [r["name"] for r in listed] == ["failed logins", "five failed logins"]
    assert all("secret" not in r for r in listed)
    assert analyst.get(f"{RULES}/{rule_id}")["group_by"] == "user_id"
    changed = developer.patch(f"{RULES}/{rule_id}", {"threshold": 3, "url": ""})
    assert changed["threshold"] == 3
    muted = developer.post(f"{RULES}/{rule_id}/mute", {"minutes": 30})
    assert muted["muted"] is True
    until = AlertRule.objects.get(pk=rule_id).muted_until
    assert until is not None and timezone.now() + timedelta(minutes=29) < until
    assert developer.post(f"{RULES}/{rule_id}/unmute")["muted"] is False
    developer.delete(f"{RULES}/{rule_id}", status=204)
    analyst.get(f"{RULES}/{rule_id}", status=404)
    actions = set(AuditEntry.objects.filter(target=str(rule_id)).values_list("action", flat=True))
    assert actions == {
        "alert_rule.create",
        "alert_rule.update",
        "alert_rule.mute",
        "alert_rule.unmute",
        "alert_rule.delete",
    }


def test_bad_rules_are_a_400(as_: Any):
    developer = as_("Developer")
    good = {"name": "x", "event_types": ["login"], "window_seconds": 60}
    bad = [
        {**good, "window_seconds": 1},
        {**good, "threshold": 0},
        {**good, "kind": "often"},
        {**good, "group_by": "email"},
        {**good, "kind": "absence", "group_by": "user_id"},
        {**good, "event_types": ["alert"]},
        {**good, "conditions": [{"property": "payload.x", "op": "eq"}]},
        {**good, "conditions": [{"property": "body.x", "values": ["1"]}]},
        {**good, "url": "http://10.0.0.1/hook"},
        {**good, "url": "file:///etc/passwd"},
        {**good, "surprise": 1},
        {"name": "no window"},
        {**good, "name": "nul\x00"},
    ]
    for body in bad:
        developer.post(RULES, body, status=400)
    developer.post(f"{RULES}/{2**31 - 1}/mute", {"minutes": 10}, status=404)
    rule_id = developer.get(RULES)[0]["id"]
    developer.post(f"{RULES}/{rule_id}/mute", {"minutes": 0}, status=400)
    developer.post(f"{RULES}/{rule_id}/mute", {"minutes": "soon"}, status=400)
    developer.patch(f"{RULES}/{rule_id}", {"window_seconds": 10**9}, status=400)
    assert AlertRule.objects.filter(stream__slug="own").count() == 1


def test_who_may_read_and_who_may_change(as_: Any, world: World):
    rule_id = world.values[OWN]["rule_id"]
    as_("Analyst").get(RULES)
    as_("secret key").get(f"{S}/alerts")
    as_("Analyst").post(RULES, {"name": "x", "window_seconds": 60}, status=403)
    as_("Analyst").patch(f"{RULES}/{rule_id}", {"threshold": 2}, status=403)
    as_("secret key").post(f"{RULES}/{rule_id}/mute", {"minutes": 5}, status=403)
    as_("Consumer").get(f"{S}/alerts", status=403)
    foreign = world.values[FOREIGN]["rule_id"]
    as_("Developer").get(f"/api/v1/streams/foreign/alert-rules/{foreign}", status=404)
    # Another stream's rule through this stream's URL is not found either.
    as_("Developer").get(f"{RULES}/{foreign}", status=404)
    as_("Developer").delete(f"{RULES}/{foreign}", status=404)
    assert AlertRule.objects.filter(pk=foreign).exists()


def test_alerts_are_listed_newest_first_by_page_with_filters(as_: Any, world: World, django_assert_num_queries: Any):
    stream = world.streams[OWN]
    rule = alert_rule_create(
        stream_id=stream.pk, name="any failure", event_types=["login"], conditions=[
            {"property": "payload.success", "values": ["false"]}], threshold=1, window_seconds=60, group_by="user_id",
    )  # fmt: skip
    other = alert_rule_create(stream_id=stream.pk, name="logins", event_types=["login"], window_seconds=60)
    fired = _fire(world, rule, [f"u{i}" for i in range(5)])
    # Five users; the ungrouped rule once; the world's own rule (five logins in five minutes) once.
    assert len(fired) == 7
    analyst = as_("Analyst")
    page = analyst.get(f"{S}/alerts?limit=2")
    assert [a["id"] for a in page["results"]] == sorted(fired, reverse=True)[:2]
    assert page["next"]
    seen = [a["id"] for a in page["results"]]
    while page["next"]:
        page = analyst.get(page["next"].split("testserver", 1)[-1])
        seen += [a["id"] for a in page["results"]]
    assert seen == sorted(fired, reverse=True)
    only = analyst.get(f"{S}/alerts?rule={rule.pk}")["results"]
    assert {a["group_value"] for a in only} == {f"u{i}" for i in range(5)}
    alert = only[0]
    assert (alert["rule"], alert["count"], alert["threshold"], alert["kind"]) == ("any failure", 1, 1, "threshold")
    assert alert["event_id"] == f"alert-{alert['id']}"
    assert alert["delivery"]["status"] == "none"
    assert [a["rule_id"] for a in analyst.get(f"{S}/alerts?rule={other.pk}")["results"]] == [other.pk]
    later = (timezone.now() + timedelta(minutes=1)).isoformat().replace("+", "%2B")
    assert analyst.get(f"{S}/alerts?from={later}")["results"] == []
    assert len(analyst.get(f"{S}/alerts?to={later}")["results"]) == 7
    analyst.get(f"{S}/alerts?from=yesterday", status=400)
    analyst.get(f"{S}/alerts?rule=abc", status=400)
    # A page costs the same queries for two alerts or fifty.
    with django_assert_num_queries(5) as few:
        analyst.get(f"{S}/alerts?limit=2")
    with django_assert_num_queries(len(few.captured_queries)):
        analyst.get(f"{S}/alerts?limit=50")
    assert Alert.objects.filter(stream=stream).count() == 7
