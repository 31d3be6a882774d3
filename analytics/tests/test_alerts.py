"""Alert rules in process: matching, windows, edges, absence, mute, cool-down, delivery, query counts.

Events go through the real pipeline (intake into the inbox, then ``stream_process_batch``)
unless a test is about the evaluator alone. Expected alerts are worked out in the test from
the events it sends.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from analytics.alerts import (
    BUCKET_SECONDS,
    alert_deliver,
    alert_rule_create,
    alert_rule_delete,
    alert_rule_mute,
    alert_rule_update,
    alerts_check,
    alerts_evaluate,
    alerts_tally,
    rules_active,
)
from analytics.filters import EventFilter, parse_conditions
from analytics.models import Alert, AlertBucket, AlertRule, DeliveryStatus
from consumers.webhook_services import SIGNATURE_HEADER, TIMESTAMP_HEADER, webhook_sign
from eventflow.errors import Conflict, Invalid
from eventflow.models import AuditEntry
from ingestion.models import InboxEvent
from ingestion.pipeline import stream_process_batch
from ingestion.services import events_ingest
from streams.log import LogRecord, log_append_now
from streams.models import LogEntry, Stream
from streams.selectors import stream_info
from tests.fixtures import conf_override
from tests.receiver import Answer, receiver

pytestmark = pytest.mark.django_db(transaction=True)

FAILED = [{"property": "payload.success", "op": "eq", "values": [False]}]


def failed_login_rule(stream: Stream, **overrides: Any) -> AlertRule:
    fields: dict[str, Any] = {
        "name": "failed logins",
        "event_types": ["login"],
        "conditions": FAILED,
        "threshold": 5,
        "window_seconds": 300,
        "group_by": "user_id",
        "cooldown_seconds": 600,
    }
    fields.update(overrides)
    return alert_rule_create(stream_id=stream.pk, **fields)


_counter = iter(range(10**9))


def login(user: str | None, at: datetime, *, success: Any = False, **extra: Any) -> dict[str, Any]:
    event = {
        "event_id": f"login-{next(_counter)}",
        "type": "login",
        "timestamp": at.isoformat(),
        "payload": {"user_id": user or "x", "success": success},
        **extra,
    }
    if user is not None:
        event["user_id"] = user
    return event


def process(stream: Stream, events: list[dict[str, Any]]) -> list[Alert]:
    """Send ``events`` through the intake and the processor; return the alerts that fired meanwhile."""
    before = set(Alert.objects.filter(stream=stream).values_list("pk", flat=True))
    info = stream_info(stream.slug)
    assert info is not None
    result = events_ingest(stream=info, raw_events=events, received_at=timezone.now())
    assert result.rejected == 0, result.results
    while stream_process_batch(stream_id=stream.pk).fetched:
        pass
    return list(Alert.objects.filter(stream=stream).exclude(pk__in=before).order_by("pk"))


# --- matching --------------------------------------------------------------------------------------------


def test_python_matching_answers_as_the_sql_filter_does(stream: Stream):
    """The evaluator's matcher and the event query's SQL agree on every condition over the same events."""
    payloads: list[dict[str, Any]] = [
        {"success": False},
        {"success": "false"},
        {"success": True},
        {"success": None},
        {},
        {"success": 0},
        {"n": 5, "nested": {"plan": "pro"}},
        {"n": 5.5, "nested": {"plan": "free"}},
        {"nested": "flat"},
        {"list": [1, 2]},
    ]
    records = [
        LogRecord(event_id=f"m{i}", type="login", event_time=timezone.now(), received_at=timezone.now(), payload=p)
        for i, p in enumerate(payloads)
    ]
    log_append_now(stream_id=stream.pk, records=records)
    cases: list[list[dict[str, Any]]] = [
        [{"property": "payload.success", "op": "eq", "values": [False]}],
        [{"property": "payload.success", "op": "ne", "values": ["false"]}],
        [{"property": "payload.success", "op": "exists"}],
        [{"property": "payload.success", "op": "missing"}],
        [{"property": "payload.n", "values": [5, "5.5"]}],
        [{"property": "payload.nested.plan", "op": "ne", "values": ["pro"]}],
        [{"property": "payload.nested.plan", "op": "exists"}],
        [{"property": "payload.list", "values": ["[1, 2]"]}],
    ]
    for raw in cases:
        conditions = parse_conditions(raw)
        where, params = EventFilter(conditions=conditions).to_sql("streams_log")
        by_sql = set(
            LogEntry.objects.filter(stream=stream)
            .extra(where=[where], params=params)
            .values_list("event_id", flat=True)
        )
        by_python = {r.event_id for r in records if all(c.matches(getattr(r, c.root)) for c in conditions)}
        assert by_python == by_sql, raw


def test_events_count_by_type_conditions_and_group(stream: Stream):
    rule = failed_login_rule(stream)
    now = timezone.now()
    records = [
        (0, LogRecord("a", "login", now, now, user_id="u1", payload={"success": False})),
        (1, LogRecord("b", "login", now, now, user_id="u1", payload={"success": True})),
        (2, LogRecord("c", "logout", now, now, user_id="u1", payload={"success": False})),
        (3, LogRecord("d", "login", now, now, user_id=None, payload={"success": False})),
        (4, LogRecord("e", "login", now, now, user_id="u2", payload={"success": "false"})),
        (5, LogRecord("f", "login", now, now, user_id="u1", payload={"success": False})),
    ]
    tally = alerts_tally(rules=rules_active(stream.pk), appended=records, now=now)
    counted = {(key, b.count, b.first_event_id, b.last_event_id) for (_, key, _), b in tally.buckets.items()}
    assert counted == {("u1", 2, "a", "f"), ("u2", 1, "e", "e")}
    assert {rule_id for rule_id, _, _ in tally.buckets} == {rule.pk}


def test_group_by_a_payload_path(stream: Stream):
    alert_rule_create(
        stream_id=stream.pk, name="by plan", event_types=["page_view"], threshold=2, window_seconds=60,
        group_by="payload.account.plan",
    )  # fmt: skip
    now = timezone.now()
    pv = [
        {"type": "page_view", "timestamp": now.isoformat(), "payload": {"account": {"plan": plan}}}
        for plan in ["pro", "free", "pro", None]
    ]
    fired = process(stream, pv)
    assert [(a.group_value, a.count) for a in fired] == [("pro", 2)]


# --- windows and edges -----------------------------------------------------------------------------------


def test_fires_exactly_at_the_threshold_once_and_again_for_another_user(stream: Stream):
    rule = failed_login_rule(stream)
    t0 = timezone.now() - timedelta(minutes=4)
    assert process(stream, [login("alice", t0 + timedelta(seconds=i * 20)) for i in range(4)]) == []
    # A success and another user's failure do not count for alice.
    assert process(stream, [login("alice", t0, success=True), login("bob", t0)]) == []
    fired = process(stream, [login("alice", t0 + timedelta(seconds=100))])
    assert len(fired) == 1
    alert = fired[0]
    assert (alert.rule_id, alert.group_value, alert.count, alert.threshold) == (rule.pk, "alice", 5, 5)
    alice = list(LogEntry.objects.filter(stream=stream, user_id="alice", payload__success=False).order_by("offset"))
    assert (alert.first_offset, alert.first_event_id) == (alice[0].offset, alice[0].event_id)
    assert (alert.last_offset, alert.last_event_id) == (alice[-1].offset, alice[-1].event_id)
    assert alert.window_end - alert.window_start == timedelta(seconds=300)
    assert alert.window_start <= t0 and alert.window_end > t0 + timedelta(seconds=100)
    # Within the cool-down: more failures for alice fire nothing.
    assert process(stream, [login("alice", t0 + timedelta(seconds=110)) for _ in range(6)]) == []
    # Bob is counted on his own.
    fired = process(stream, [login("bob", t0 + timedelta(seconds=i)) for i in range(4)])
    assert [(a.group_value, a.count) for a in fired] == [("bob", 5)]
    assert Alert.objects.filter(rule=rule).count() == 2


def test_events_further_apart_than_the_window_do_not_fire(stream: Stream):
    failed_login_rule(stream, window_seconds=60)
    t0 = timezone.now() - timedelta(minutes=30)
    # Five failures, each 70 s after the last: never five, nor two, within a minute.
    assert process(stream, [login("carol", t0 + timedelta(seconds=70 * i)) for i in range(5)]) == []
    assert not Alert.objects.exists()


def test_late_and_out_of_order_events_complete_their_window(stream: Stream):
    rule = failed_login_rule(stream, window_seconds=120)
    t0 = timezone.now() - timedelta(minutes=40)
    # Four failures at t0+50..t0+80 arrive first, newest first, one per batch.
    for i in (80, 70, 60, 50):
        assert process(stream, [login("dave", t0 + timedelta(seconds=i))]) == []
    # One from ten minutes before is outside their window: nothing.
    assert process(stream, [login("dave", t0 - timedelta(minutes=10))]) == []
    # The fifth arrives late, forty minutes after it happened, and before all the others.
    fired = process(stream, [login("dave", t0)])
    assert len(fired) == 1
    alert = fired[0]
    assert (alert.rule_id, alert.count) == (rule.pk, 5)
    late = LogEntry.objects.get(stream=stream, user_id="dave", event_time=t0)
    assert alert.window_start <= t0 < alert.window_end
    # The first event by offset is the first of the window to be logged, the last the late one.
    assert alert.last_event_id == late.event_id


def test_events_older_than_the_lateness_allowance_are_not_counted(stream: Stream, settings: Any):
    conf_override(settings, alert_lateness_seconds=60)
    failed_login_rule(stream)
    old = timezone.now() - timedelta(hours=2)
    assert process(stream, [login("erin", old + timedelta(seconds=i)) for i in range(6)]) == []
    assert not AlertBucket.objects.exists()


def test_a_window_is_whole_buckets(stream: Stream):
    """A 15-second window is two buckets: events 19 s apart may count together, 21 s never."""
    failed_login_rule(stream, threshold=2, window_seconds=15)
    base = timezone.now().replace(microsecond=0) - timedelta(minutes=20)
    start = base - timedelta(seconds=base.timestamp() % BUCKET_SECONDS)
    assert process(stream, [login("f", start), login("f", start + timedelta(seconds=21))]) == []
    fired = process(stream, [login("g", start), login("g", start + timedelta(seconds=19))])
    assert [a.group_value for a in fired] == ["g"]


def test_an_ungrouped_rule_counts_the_whole_stream(stream: Stream):
    alert_rule_create(stream_id=stream.pk, name="busy", event_types=["page_view"], threshold=3, window_seconds=60)
    now = timezone.now()
    fired = process(stream, [{"type": "page_view", "user_id": f"u{i}", "timestamp": now.isoformat()} for i in range(3)])
    assert [(a.group_value, a.count) for a in fired] == [(None, 3)]


def test_cooldown_ends_and_the_rule_fires_again(stream: Stream):
    rule = failed_login_rule(stream, threshold=2, cooldown_seconds=0)
    now = timezone.now()
    assert len(process(stream, [login("h", now), login("h", now)])) == 1
    # With no cool-down every batch that completes a window fires.
    assert len(process(stream, [login("h", now)])) == 1
    assert Alert.objects.filter(rule=rule).count() == 2


# --- alert events, mute, changes --------------------------------------------------------------------------


def test_an_alert_is_appended_to_the_log_as_an_alert_event(stream: Stream):
    failed_login_rule(stream, threshold=1)
    fired = process(stream, [login("ivan", timezone.now())])
    assert len(fired) == 1
    event = LogEntry.objects.get(stream=stream, type="alert")
    assert event.event_id == f"alert-{fired[0].pk}"
    assert event.payload["rule"] == "failed logins"
    assert event.payload["group_value"] == "ivan"
    assert event.payload["count"] == 1
    assert event.offset > LogEntry.objects.get(stream=stream, type="login").offset
    # The alert event itself is never counted by a rule.
    assert Alert.objects.count() == 1


def test_a_muted_rule_counts_but_does_not_fire_and_fires_after_unmute(stream: Stream):
    rule = failed_login_rule(stream, threshold=3)
    alert_rule_mute(stream_id=stream.pk, rule_id=rule.pk, minutes=30)
    now = timezone.now()
    assert process(stream, [login("judy", now) for _ in range(3)]) == []
    alert_rule_mute(stream_id=stream.pk, rule_id=rule.pk, minutes=None)
    fired = process(stream, [login("judy", now)])
    assert [(a.group_value, a.count) for a in fired] == [("judy", 4)]
    actions = list(AuditEntry.objects.filter(stream_id=stream.pk).values_list("action", flat=True))
    assert {"alert_rule.create", "alert_rule.mute", "alert_rule.unmute"} <= set(actions)


def test_an_inactive_rule_counts_nothing(stream: Stream):
    rule = failed_login_rule(stream, threshold=1, is_active=False)
    assert process(stream, [login("k", timezone.now())]) == []
    alert_rule_update(stream_id=stream.pk, rule_id=rule.pk, is_active=True)
    assert len(process(stream, [login("k", timezone.now())])) == 1


def test_changing_what_a_rule_counts_starts_it_afresh(stream: Stream):
    rule = failed_login_rule(stream, threshold=3)
    now = timezone.now()
    process(stream, [login("l", now), login("l", now)])
    assert AlertBucket.objects.filter(rule_id=rule.pk).exists()
    alert_rule_update(stream_id=stream.pk, rule_id=rule.pk, threshold=2)
    assert not AlertBucket.objects.filter(rule_id=rule.pk).exists()
    # A name change keeps the counts.
    process(stream, [login("l", now)])
    alert_rule_update(stream_id=stream.pk, rule_id=rule.pk, name="renamed")
    assert len(process(stream, [login("l", now)])) == 1


def test_a_deleted_rule_still_in_a_workers_cache_never_fails_a_batch(stream: Stream):
    rule = failed_login_rule(stream, threshold=1)
    assert rules_active(stream.pk)
    AlertRule.objects.filter(pk=rule.pk).delete()  # behind the cache's back
    assert process(stream, [login("m", timezone.now())]) == []
    assert LogEntry.objects.filter(stream=stream, type="login").count() == 1
    # Its stray counts are cleaned by the periodic check.
    assert AlertBucket.objects.filter(rule_id=rule.pk).exists()
    alerts_check()
    assert not AlertBucket.objects.filter(rule_id=rule.pk).exists()


# --- absence ---------------------------------------------------------------------------------------------


def test_absence_fires_after_a_silent_window_and_not_while_events_arrive(stream: Stream):
    rule = alert_rule_create(
        stream_id=stream.pk, name="no page views", kind="absence", event_types=["page_view"], window_seconds=600,
        cooldown_seconds=3600,
    )  # fmt: skip
    # The rule has watched since half an hour ago; the page view came at its fifth minute (logged late).
    start = timezone.now() - timedelta(minutes=30)
    AlertRule.objects.filter(pk=rule.pk).update(active_since=start)
    # Not before the rule has watched a whole window.
    assert alerts_check(now=start + timedelta(minutes=9)).absence_fired == 0
    process(stream, [{"type": "page_view", "timestamp": (start + timedelta(minutes=5)).isoformat()}])
    # Ten minutes after the start, but only five after the page view.
    assert alerts_check(now=start + timedelta(minutes=10)).absence_fired == 0
    assert alerts_check(now=start + timedelta(minutes=16)).absence_fired == 1
    alert = Alert.objects.get(rule=rule)
    last = LogEntry.objects.get(stream=stream, type="page_view")
    assert alert.count == 0 and alert.group_value is None
    assert alert.last_event_id == last.event_id
    assert start + timedelta(minutes=5) <= alert.window_start <= start + timedelta(minutes=5, seconds=10)
    # The cool-down holds the silence to one alert an hour.
    assert alerts_check(now=start + timedelta(minutes=30)).absence_fired == 0
    assert alerts_check(now=start + timedelta(minutes=80)).absence_fired == 1
    # Each went into the inbox as an `alert` event (received at the check's time, here ahead of the clock).
    assert sorted(InboxEvent.objects.filter(stream=stream, type="alert").values_list("event_id", flat=True)) == sorted(
        f"alert-{pk}" for pk in Alert.objects.filter(rule=rule).values_list("pk", flat=True)
    )


def test_an_event_stamped_ahead_of_the_clock_counts_when_it_arrives(stream: Stream):
    """A device whose clock runs two hours fast does not keep an absence rule quiet for two hours."""
    rule = alert_rule_create(
        stream_id=stream.pk, name="no page views", kind="absence", event_types=["page_view"], window_seconds=600
    )
    arrived = timezone.now()
    AlertRule.objects.filter(pk=rule.pk).update(active_since=arrived - timedelta(hours=1))
    process(stream, [{"type": "page_view", "timestamp": (arrived + timedelta(hours=2)).isoformat()}])
    assert alerts_check(now=arrived + timedelta(minutes=5)).absence_fired == 0
    assert alerts_check(now=arrived + timedelta(minutes=12)).absence_fired == 1
    alert = Alert.objects.get(rule=rule)
    assert arrived - timedelta(seconds=10) <= alert.window_start <= arrived + timedelta(seconds=10)


def test_a_muted_absence_rule_does_not_fire(stream: Stream):
    rule = alert_rule_create(
        stream_id=stream.pk, name="quiet", kind="absence", event_types=["page_view"], window_seconds=60
    )
    alert_rule_mute(stream_id=stream.pk, rule_id=rule.pk, minutes=60)
    assert alerts_check(now=timezone.now() + timedelta(minutes=5)).absence_fired == 0


def test_two_checks_at_once_fire_one_absence_alert(stream: Stream):
    rule = alert_rule_create(stream_id=stream.pk, name="q", kind="absence", window_seconds=60)
    later = rule.active_since + timedelta(minutes=5)
    assert alerts_check(now=later).absence_fired == 1
    assert alerts_check(now=later).absence_fired == 0


# --- validation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"event_types": ["alert"]}, "invalid_alert_rule"),
        ({"event_types": ["bad\x01type"]}, "invalid_alert_rule"),
        ({"conditions": [{"property": "nope.x", "values": ["1"]}]}, "invalid_filter"),
        ({"conditions": [{"property": "payload.x", "op": "eq"}]}, "invalid_filter"),
        ({"group_by": "email"}, "invalid_alert_rule"),
        ({"threshold": 0}, "invalid_alert_rule"),
        ({"window_seconds": 5}, "invalid_alert_rule"),
        ({"window_seconds": 8 * 86400}, "invalid_alert_rule"),
        ({"kind": "sometimes"}, "invalid_alert_rule"),
        ({"kind": "absence", "group_by": "user_id"}, "invalid_alert_rule"),
        ({"url": "http://169.254.169.254/latest"}, "unsafe_url"),
        ({"url": "ftp://example.com/"}, "unsafe_url"),
        ({"name": ""}, "invalid_alert_rule"),
    ],
)
def test_a_bad_rule_is_refused_with_a_domain_error(stream: Stream, fields: dict[str, Any], code: str):
    with pytest.raises(Invalid) as caught:
        failed_login_rule(stream, **fields)
    assert caught.value.code == code
    assert not AlertRule.objects.exists()


def test_names_are_unique_per_stream(stream: Stream):
    failed_login_rule(stream)
    with pytest.raises(Conflict):
        failed_login_rule(stream)


def test_delete_is_audited_and_takes_the_alerts(stream: Stream):
    rule = failed_login_rule(stream, threshold=1)
    process(stream, [login("n", timezone.now())])
    alert_rule_delete(stream_id=stream.pk, rule_id=rule.pk)
    assert not Alert.objects.exists() and not AlertBucket.objects.exists()
    assert AuditEntry.objects.filter(action="alert_rule.delete", target=str(rule.pk)).exists()


# --- cost ------------------------------------------------------------------------------------------------


def _batch(n: int, *, users: int, start: int) -> list[tuple[int, LogRecord]]:
    now = timezone.now()
    return [
        (
            start + i,
            LogRecord(
                f"q{start + i}", "login", now - timedelta(seconds=i % 200), now, user_id=f"u{i % users}",
                payload={"success": False},
            ),
        )
        for i in range(n)
    ]  # fmt: skip


def test_evaluation_costs_the_same_queries_for_any_batch(stream: Stream, django_assert_num_queries: Any):
    failed_login_rule(stream, threshold=10**6)
    failed_login_rule(stream, name="by session", group_by="session_id", threshold=10**6)
    alert_rule_create(stream_id=stream.pk, name="none", kind="absence", event_types=["page_view"], window_seconds=60)
    rules_active(stream.pk)  # cached, as a worker holds it
    now = timezone.now()
    # A savepoint, the bucket upsert, the window check, the savepoint's release.
    with django_assert_num_queries(4):
        alerts_evaluate(stream_id=stream.pk, appended=_batch(10, users=3, start=0), now=now)
    with django_assert_num_queries(4):
        alerts_evaluate(stream_id=stream.pk, appended=_batch(1000, users=400, start=10), now=now)
    # Nothing matches: no query at all.
    with django_assert_num_queries(0):
        alerts_evaluate(
            stream_id=stream.pk,
            appended=[(5000, LogRecord("pv", "logout", now, now, user_id="u1"))],
            now=now,
        )


def test_a_batch_that_fires_many_groups_costs_a_constant_few_more(stream: Stream, django_assert_num_queries: Any):
    failed_login_rule(stream, threshold=2)
    rules_active(stream.pk)
    stream_info(stream.slug)
    now = timezone.now()
    # + the fire statement, reading the alerts back, and the alert events' insert into the inbox.
    with django_assert_num_queries(7):
        fired = alerts_evaluate(stream_id=stream.pk, appended=_batch(10, users=3, start=0), now=now)
    assert len(fired) == 3
    with django_assert_num_queries(7):
        fired = alerts_evaluate(stream_id=stream.pk, appended=_batch(600, users=300, start=10), now=now)
    assert len(fired) == 297  # three are cooling down


def test_no_rules_cost_no_query_once_cached(stream: Stream, django_assert_num_queries: Any):
    now = timezone.now()
    rules_active(stream.pk)
    with django_assert_num_queries(0):
        alerts_evaluate(stream_id=stream.pk, appended=_batch(100, users=10, start=0), now=now)


# --- delivery to the rule's URL -----------------------------------------------------------------------------


def test_delivery_to_the_rules_url_is_signed_and_retried(stream: Stream, settings: Any):
    conf_override(settings, webhook_allow_loopback=True)
    answers = [Answer(status=503), Answer(status=200)]
    with receiver(lambda index, body: answers[min(index, 1)]) as hook:
        rule = failed_login_rule(stream, threshold=1, url=hook.url)
        [alert] = process(stream, [login("olga", timezone.now())])
        assert alert.delivery_status == DeliveryStatus.PENDING
        delay = alert_deliver(alert_id=alert.pk)
        assert delay is not None and delay > 0
        alert.refresh_from_db()
        assert (alert.delivery_status, alert.delivery_attempts) == (DeliveryStatus.PENDING, 1)
        assert "503" in alert.delivery_error
        # Not due yet: a second run sends nothing.
        assert alert_deliver(alert_id=alert.pk) is None
        assert len(hook.requests) == 1
        Alert.objects.filter(pk=alert.pk).update(next_attempt_at=timezone.now())
        assert alert_deliver(alert_id=alert.pk) is None
        alert.refresh_from_db()
        assert (alert.delivery_status, alert.delivery_attempts) == (DeliveryStatus.DELIVERED, 2)
        request = hook.requests[-1]
        timestamp = int(request.headers[TIMESTAMP_HEADER])
        assert request.headers[SIGNATURE_HEADER] == webhook_sign(
            secret=rule.secret, timestamp=timestamp, body=request.body
        )
        [event] = request.json["events"]
        assert (event["type"], event["event_id"], event["payload"]["group_value"]) == (
            "alert",
            f"alert-{alert.pk}",
            "olga",
        )
        # Delivered: never sent again.
        Alert.objects.filter(pk=alert.pk).update(next_attempt_at=timezone.now())
        assert alert_deliver(alert_id=alert.pk) is None
        assert len(hook.requests) == 2


def test_a_refused_address_fails_the_delivery_without_sending(stream: Stream, settings: Any):
    conf_override(settings, webhook_allow_loopback=True)
    with receiver() as hook:
        failed_login_rule(stream, threshold=1, url=hook.url)
        [alert] = process(stream, [login("pat", timezone.now())])
        conf_override(settings, webhook_allow_loopback=False)
        assert alert_deliver(alert_id=alert.pk) is None
        alert.refresh_from_db()
        assert alert.delivery_status == DeliveryStatus.FAILED
        assert "refused" in alert.delivery_error
        assert hook.requests == []


# --- the starter rule -------------------------------------------------------------------------------------


def test_bootstrap_gives_the_demo_stream_the_failed_login_rule_once(tmp_path: Any, monkeypatch: Any):
    from eventflow.management.commands import bootstrap as command

    monkeypatch.setattr(command, "DEMO_KEY_FILE", tmp_path / "demo-ingest-key")
    assert command.bootstrap().demo_alert_rule_created is True
    assert command.bootstrap().demo_alert_rule_created is False
    demo = Stream.objects.get(slug=command.DEMO_SLUG)
    [rule] = AlertRule.objects.filter(stream=demo)
    assert (rule.event_types, rule.threshold, rule.window_seconds, rule.group_by) == (["login"], 5, 300, "user_id")
    # It does what it says: five failed logins of one user fire, four of another do not.
    now = timezone.now()
    fired = process(demo, [login("mallory", now) for _ in range(5)] + [login("trent", now) for _ in range(4)])
    assert [(a.rule_id, a.group_value, a.count) for a in fired] == [(rule.pk, "mallory", 5)]
