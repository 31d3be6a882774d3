"""The dashboard's alert rule pages: create, edit, mute, unmute and delete through the forms, as the API's services do.

Each test reads the rule back from the database (or the API's selector) rather than
from the page, and checks what the page says when the services refuse a rule.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from analytics.alert_views import ConditionsField, duration_text
from analytics.alerts import alert_rule_create
from analytics.models import Alert, AlertRule
from streams.models import Stream
from streams.services import stream_create, team_create
from tests.fixtures import conf_override

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashes")]


@pytest.fixture
def shop(db: Any) -> Stream:
    return stream_create(slug="shop", name="Shop")


def _signed_in(shop: Stream, role: str) -> Client:
    user = User.objects.create_user(role.lower(), email=f"{role.lower()}@example.com", password="a-long-password-1")
    user.groups.add(Group.objects.get(name=role))
    team_create(slug=f"team-{role.lower()}", members=[user], streams=[shop])
    client = Client()
    client.force_login(user)
    return client


FAILED_LOGINS = {
    "name": "failed logins",
    "kind": "threshold",
    "event_types": "login",
    "conditions": "payload.success = false\npayload.method != sso\npayload.method != magic-link\npayload.bot missing",
    "threshold": "5",
    "window_seconds": "5m",
    "group_by": "user_id",
    "cooldown_seconds": "15m",
    "url": "",
    "is_active": "on",
}


def test_a_developer_creates_a_rule_and_sees_it_listed(shop: Stream) -> None:
    developer = _signed_in(shop, "Developer")
    assert 'id="new-rule"' in developer.get("/streams/shop/alerts/").content.decode()
    answer = developer.post("/streams/shop/alerts/new/", FAILED_LOGINS)
    assert answer.status_code == 302 and answer["Location"] == "/streams/shop/alerts/"
    rule = AlertRule.objects.get(stream=shop)
    assert rule.event_types == ["login"] and rule.threshold == 5 and rule.group_by == "user_id"
    assert (rule.window_seconds, rule.cooldown_seconds) == (300, 900)
    assert sorted(rule.conditions, key=lambda c: (c["property"], c["op"])) == [
        {"property": "payload.bot", "op": "missing", "values": []},
        {"property": "payload.method", "op": "ne", "values": ["sso", "magic-link"]},
        {"property": "payload.success", "op": "eq", "values": ["false"]},
    ]
    assert rule.created_by is not None and rule.created_by.username == "developer"
    html = developer.get("/streams/shop/alerts/").content.decode()
    assert "failed logins" in html and "5 within 5 min" in html and "payload.method != magic-link" in html
    assert "is watching from now on" in html


def test_a_rule_with_a_url_shows_its_secret_once(shop: Stream, settings: Any) -> None:
    conf_override(settings, webhook_allow_loopback=True)
    developer = _signed_in(shop, "Developer")
    answer = developer.post("/streams/shop/alerts/new/", {**FAILED_LOGINS, "url": "http://127.0.0.1:9/alerts"})
    assert answer.status_code == 200 and "form" not in (answer.context or {}), answer.context["form"].errors
    rule = AlertRule.objects.get(stream=shop)
    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
    assert rule.secret in answer.content.decode()
    assert rule.secret not in developer.get("/streams/shop/alerts/").content.decode()


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"conditions": "payload.success false"}, "conditions", "Line 1: write property = value"),
        ({"conditions": "page = /x"}, None, "payload"),
        ({"window_seconds": "5 minutes"}, "window_seconds", "A number and a unit"),
        ({"window_seconds": "5s"}, "window_seconds", "From 10s to 7d"),
        ({"threshold": ""}, "threshold", "How many events fire the rule?"),
        ({"event_types": "alert"}, None, "Rules cannot count `alert` events"),
        ({"kind": "absence"}, None, "An absence rule watches the whole stream"),
        ({"url": "https://10.0.0.1/hook"}, None, None),
    ],
)
def test_what_the_services_refuse_is_shown_on_the_form_and_nothing_is_written(
    shop: Stream, change: dict[str, str], field: str | None, message: str | None
) -> None:
    developer = _signed_in(shop, "Developer")
    answer = developer.post("/streams/shop/alerts/new/", {**FAILED_LOGINS, **change})
    assert answer.status_code == 200
    assert not AlertRule.objects.filter(stream=shop).exists()
    form = answer.context["form"]
    errors = form.errors.get(field or "__all__")
    assert errors, form.errors
    if message is not None:
        assert any(message in e for e in errors), errors
    assert 'class="errorlist' in answer.content.decode()


def test_a_second_rule_of_the_same_name_is_refused(shop: Stream) -> None:
    developer = _signed_in(shop, "Developer")
    developer.post("/streams/shop/alerts/new/", FAILED_LOGINS)
    answer = developer.post("/streams/shop/alerts/new/", FAILED_LOGINS)
    assert answer.status_code == 200 and "already has an alert rule" in answer.content.decode()
    assert AlertRule.objects.filter(stream=shop).count() == 1


def test_edit_shows_the_rule_as_written_and_saves_a_change(shop: Stream) -> None:
    rule = alert_rule_create(
        stream_id=shop.pk,
        name="failed logins",
        event_types=["login"],
        conditions=[{"property": "payload.success", "op": "eq", "values": ["false"]}],
        threshold=5,
        window_seconds=300,
        group_by="user_id",
    )
    developer = _signed_in(shop, "Developer")
    form = developer.get(f"/streams/shop/alerts/{rule.pk}/edit/").context["form"]
    assert form["conditions"].value() == "payload.success = false"
    assert form["window_seconds"].value() == "5m" and form["cooldown_seconds"].value() == "10m"
    answer = developer.post(
        f"/streams/shop/alerts/{rule.pk}/edit/", {**FAILED_LOGINS, "threshold": "10", "window_seconds": "1h"}
    )
    assert answer.status_code == 302
    rule.refresh_from_db()
    assert (rule.threshold, rule.window_seconds) == (10, 3600)


def test_mute_and_unmute(shop: Stream) -> None:
    rule = alert_rule_create(
        stream_id=shop.pk, name="quiet", event_types=["page_view"], kind="absence", window_seconds=600
    )
    developer = _signed_in(shop, "Developer")
    assert "Mute “quiet”?" in developer.get(f"/streams/shop/alerts/{rule.pk}/mute/").content.decode()
    assert developer.post(f"/streams/shop/alerts/{rule.pk}/mute/", {"minutes": "480"}).status_code == 302
    rule.refresh_from_db()
    assert rule.muted_until is not None
    left = (rule.muted_until - timezone.now()).total_seconds()
    assert 8 * 3600 - 60 < left <= 8 * 3600
    html = developer.get("/streams/shop/alerts/").content.decode()
    assert "Muted until" in html and "Unmute quiet" in html
    assert developer.post(f"/streams/shop/alerts/{rule.pk}/mute/", {"minutes": "5"}).status_code == 200
    assert developer.post(f"/streams/shop/alerts/{rule.pk}/unmute/").status_code == 302
    rule.refresh_from_db()
    assert rule.muted_until is None


def test_delete_asks_first_then_deletes_the_rule_and_its_alerts(shop: Stream) -> None:
    rule = alert_rule_create(stream_id=shop.pk, name="failed logins", event_types=["login"], window_seconds=300)
    now = timezone.now()
    Alert.objects.create(rule=rule, stream=shop, count=5, threshold=5, window_start=now, window_end=now, fired_at=now)
    developer = _signed_in(shop, "Developer")
    html = developer.get(f"/streams/shop/alerts/{rule.pk}/delete/").content.decode()
    assert "Delete “failed logins”?" in html and "The 1 alert it raised is deleted with it" in html
    assert AlertRule.objects.filter(pk=rule.pk).exists()
    assert developer.post(f"/streams/shop/alerts/{rule.pk}/delete/").status_code == 302
    assert not AlertRule.objects.filter(pk=rule.pk).exists() and not Alert.objects.filter(rule_id=rule.pk).exists()
    assert developer.get(f"/streams/shop/alerts/{rule.pk}/edit/").status_code == 404


def test_an_analyst_sees_the_rules_but_not_the_buttons_and_cannot_change_them(shop: Stream) -> None:
    rule = alert_rule_create(stream_id=shop.pk, name="failed logins", event_types=["login"], window_seconds=300)
    analyst = _signed_in(shop, "Analyst")
    html = analyst.get("/streams/shop/alerts/").content.decode()
    assert "failed logins" in html and 'id="new-rule"' not in html and "/delete/" not in html
    assert analyst.post("/streams/shop/alerts/new/", FAILED_LOGINS).status_code == 403
    assert analyst.post(f"/streams/shop/alerts/{rule.pk}/delete/").status_code == 403
    assert AlertRule.objects.filter(pk=rule.pk).exists()


def test_condition_lines_and_durations_read_back_as_written() -> None:
    field = ConditionsField(required=False)
    text = "payload.a = 1\npayload.a = 2\nenrichment.browser != Firefox\ncontext.ip exists"
    assert field.prepare_value(field.clean(text)) == text
    assert [duration_text(s) for s in (10, 90, 300, 7200, 86400, 0)] == ["10s", "90s", "5m", "2h", "1d", "0s"]
