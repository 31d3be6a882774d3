"""Review findings on alert rules, segments and journeys, each found by asking the endpoints as a user would."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from analytics.alerts import alert_rule_create, alerts_evaluate
from analytics.models import Alert, AlertRule
from streams.log import LogRecord, log_append_now
from streams.models import Stream
from streams.services import team_create

from .journey_fixtures import BASE, event, log, person_of

pytestmark = pytest.mark.django_db


def _developer_page_client(stream: Stream) -> Client:
    user = User.objects.create_user("developer", password=None)
    user.groups.add(Group.objects.get(name="Developer"))
    team_create(slug="team-developer", members=[user], streams=[stream])
    client = Client()
    client.force_login(user)
    return client


def _form_of(page: Any) -> dict[str, Any]:
    """The edit form's fields as the browser would send them back, unchanged."""
    form = page.context["form"]
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        data[name] = field.prepare_value(value) if value is not None else ""
    if not form["is_active"].value():
        data.pop("is_active")
    return data


def test_a_rule_on_a_property_name_with_a_space_can_be_edited_on_its_page(stream: Stream) -> None:
    """Property names may hold spaces ("Product Name", analytics/filters.py); a rule made through the API on
    such a property was shown on its edit page as written, but any save of that page was refused ("Line 1:
    write property = value"), so the rule could not be edited there at all, nor such a rule be created."""
    rule = alert_rule_create(
        stream_id=stream.pk,
        name="pricey",
        window_seconds=300,
        threshold=5,
        conditions=[
            {"property": "payload.Product Name", "op": "eq", "values": ["Pro Plan"]},
            {"property": "payload.Coupon Code", "op": "exists"},
        ],
    )
    developer = _developer_page_client(stream)
    page = developer.get(f"/streams/shop/alerts/{rule.pk}/edit/")
    assert page.status_code == 200
    data = {**_form_of(page), "threshold": "6"}
    assert data["conditions"] == "payload.Product Name = Pro Plan\npayload.Coupon Code exists"
    saved = developer.post(f"/streams/shop/alerts/{rule.pk}/edit/", data)
    assert saved.status_code == 302, saved.context["form"].errors
    rule.refresh_from_db()
    assert rule.threshold == 6
    assert rule.conditions == [
        {"property": "payload.Product Name", "op": "eq", "values": ["Pro Plan"]},
        {"property": "payload.Coupon Code", "op": "exists", "values": []},
    ]
    created = developer.post("/streams/shop/alerts/new/", {**data, "name": "pricey too"})
    assert created.status_code == 302, created.context["form"].errors
    assert AlertRule.objects.get(name="pricey too").conditions == rule.conditions


def test_a_funnel_breaks_down_by_country_and_page_as_the_breakdown_endpoint_does(stream: Stream) -> None:
    """README (Analytics): ``country`` is ``context.country``, else ``context.location.country``; ``page`` is
    ``payload.page``, else ``context.page.path``, without its query. The funnel's breakdown of the same names
    read ``enrichment.country`` and ``context.location.country`` first, and kept the query: the same people
    were in one country on the breakdown endpoint and another in a funnel."""
    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    context = {"country": "DE", "location": {"country": "FR"}}
    records = []
    for n, page in enumerate(["/pricing?ref=ad", "/pricing", "/docs#top"]):
        records += [
            event("page_view", t0 + timedelta(minutes=n), user=f"u{n}", payload={"page": page}, context=context),
            event("signup", t0 + timedelta(minutes=n, seconds=30), user=f"u{n}"),
        ]
    records.append(
        event("page_view", t0 + timedelta(minutes=5), user="u9", context={"location": {"country": "FR"}}),
    )
    log(stream, records)
    analyst = person_of(stream)
    window = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-09T00:00:00Z"}
    steps = {"steps": [{"type": "page_view"}, {"type": "signup"}], "window": "1h"}
    for dimension in ("country", "page"):
        counted = analyst.get(f"{BASE}/analytics/breakdown", dimension=dimension, type="page_view", **window).json()
        expected = {v["value"]: v["count"] for v in counted["values"]}
        answer = analyst.post(f"{BASE}/analytics/funnel", {**steps, "breakdown": dimension}, **window)
        assert answer.status_code == 200, answer.content
        got = {g["value"]: g["steps"][0]["count"] for g in answer.json()["breakdown"]}
        assert got == expected, dimension


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"from": "2026-11-02T00:00:00"}, "invalid_request"),
        ({"to": "1" * 40}, "invalid_request"),
        ({"from": "0999-12-31T00:00:00Z"}, "invalid_request"),
        ({"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "invalid_filter"),
        ({"from": "2026-11-02T00:00:00Z", "to": "2026-11-02T01:00:00+01:00"}, "invalid_filter"),
    ],
)
def test_the_alerts_list_reads_its_times_as_every_analytics_time_filter(
    stream: Stream, query: dict[str, str], code: str
) -> None:
    """The list's from/to are "ISO 8601 with zone" (its OpenAPI, as the README's analytics): a time without
    a zone was taken as the server's, any run of digits as a date, and from after to answered an empty
    page where every other range of the API answers 400."""
    answer = person_of(stream).get(f"{BASE}/alerts", **query)
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"]["code"] == code
    fine = person_of(stream, username="other").get(
        f"{BASE}/alerts", **{"from": "2026-11-01T00:00:00+01:00", "to": "2026-11-02T00:00:00Z"}
    )
    assert fine.status_code == 200, fine.content


def _login(stream: Stream, n: int, at: datetime) -> list[int]:
    """One login of olga logged at ``at``, evaluated against the stream's rules as the processor would."""
    record = LogRecord(f"review-login-{n}", "login", at, at, user_id="olga", payload={})
    appended = log_append_now(stream_id=stream.pk, records=[record]).appended
    return alerts_evaluate(stream_id=stream.pk, appended=appended, now=at)


def test_a_shorter_cool_down_applies_to_a_group_already_quiet(stream: Stream) -> None:
    """README: after an alert the group "stays quiet for cooldown_seconds". A rule fired with a 30-day
    cool-down and then changed to 60 s stayed quiet for the old 30 days: the cool-down rows kept their
    end, so the change did nothing for every group that had fired."""
    rule = alert_rule_create(
        stream_id=stream.pk,
        name="every login",
        event_types=["login"],
        window_seconds=60,
        threshold=1,
        group_by="user_id",
        cooldown_seconds=30 * 86400,
    )
    now = timezone.now()
    assert len(_login(stream, 1, now)) == 1
    assert _login(stream, 2, now + timedelta(seconds=1)) == []
    developer = person_of(stream, "Developer", username="dev")
    changed = developer.patch(f"{BASE}/alert-rules/{rule.pk}", {"cooldown_seconds": 60})
    assert changed.status_code == 200, changed.content
    assert len(_login(stream, 3, now + timedelta(seconds=61))) == 1
    # And a longer one keeps a group quiet for the longer time.
    developer.patch(f"{BASE}/alert-rules/{rule.pk}", {"cooldown_seconds": 3600})
    assert _login(stream, 4, now + timedelta(seconds=200)) == []
    assert Alert.objects.filter(rule=rule).count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_creates_at_once_cannot_pass_the_rule_limit_together(stream: Stream, monkeypatch: Any) -> None:
    import threading

    from django.db import connection, connections, transaction

    from analytics import alerts
    from eventflow.errors import Conflict

    monkeypatch.setattr(alerts, "MAX_RULES_PER_STREAM", 2)
    alert_rule_create(stream_id=stream.pk, name="first", event_types=["login"], window_seconds=60)
    created, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def first_create() -> None:
        try:
            with transaction.atomic():
                alert_rule_create(stream_id=stream.pk, name="a", event_types=["login"], window_seconds=60)
                created.set()
                release.wait(10)
        finally:
            connections.close_all()

    def second_create() -> None:
        try:
            alert_rule_create(stream_id=stream.pk, name="b", event_types=["login"], window_seconds=60)
            outcome["b"] = "created"
        except Conflict as refused:
            outcome["b"] = refused.code
        finally:
            connections.close_all()

    one = threading.Thread(target=first_create)
    one.start()
    assert created.wait(10)
    two = threading.Thread(target=second_create)
    two.start()
    # The second waits for the first's transaction (a lock), or, unguarded, passes the count at once.
    deadline = time.monotonic() + 10
    with connection.cursor() as cursor:
        while time.monotonic() < deadline and "b" not in outcome:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            if cursor.fetchone()[0]:
                break
            time.sleep(0.02)
    release.set()
    one.join(10)
    two.join(10)

    assert outcome["b"] == "too_many_alert_rules"
    assert AlertRule.objects.filter(stream=stream).count() == 2
