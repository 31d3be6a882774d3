"""Review findings on alert rules: late events after the periodic clean-up, the signing secret of a URL
added later, and delivery to a URL that is not plain ASCII."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from analytics.alerts import BUCKET_SECONDS, alert_deliver, alerts_check, alerts_evaluate
from analytics.models import Alert, AlertRule, DeliveryStatus
from eventflow import conf
from streams.log import LogRecord, log_append_now
from streams.models import Stream
from tests.fixtures import conf_override
from tests.receiver import receiver

from .test_alert_pages import _signed_in
from .test_alerts import failed_login_rule

pytestmark = pytest.mark.django_db(transaction=True)


def _rule(stream: Stream, **overrides: Any) -> AlertRule:
    """The failed-logins rule of test_alerts, counting every login (the events here carry no outcome)."""
    return failed_login_rule(stream, conditions=(), **overrides)


_ids = itertools.count()


def _evaluate(stream: Stream, times: list[datetime], *, now: datetime, user: str = "olga") -> list[int]:
    """Log one login per event time and evaluate the batch as the processor would at ``now``."""
    records = [LogRecord(f"login-{next(_ids)}", "login", at, now, user_id=user, payload={}) for at in times]
    result = log_append_now(stream_id=stream.pk, records=records)
    return alerts_evaluate(stream_id=stream.pk, appended=result.appended, now=now)


def test_a_late_event_still_completes_its_window_after_the_periodic_clean_up(stream: Stream):
    """An event late by almost the lateness allowance counts with the events before it in its window,
    even though the beat check ran in between (README: late events "count in the window they belong to,
    up to EVENTFLOW_ALERT_LATENESS_SECONDS behind the window")."""
    rule = _rule(stream)
    lateness = conf.get().alert_lateness_seconds
    real_now = timezone.now()
    # Four failed logins on time, at t0; the fifth happened 100 s later but arrives now.
    t0 = datetime.fromtimestamp(
        (int((real_now.timestamp() - lateness - 390) // BUCKET_SECONDS)) * BUCKET_SECONDS, tz=real_now.tzinfo
    )
    assert _evaluate(stream, [t0] * 4, now=t0) == []
    fifth = t0 + timedelta(seconds=100)
    assert fifth.timestamp() >= real_now.timestamp() - rule.window_seconds - lateness, "within the allowance"
    alerts_check(now=real_now)
    fired = _evaluate(stream, [fifth], now=real_now)
    assert len(fired) == 1
    alert = Alert.objects.get(pk=fired[0])
    assert (alert.count, alert.group_value) == (5, "olga")


FORM = {
    "name": "failed logins",
    "kind": "threshold",
    "event_types": "login",
    "conditions": "",
    "threshold": "5",
    "window_seconds": "5m",
    "group_by": "user_id",
    "cooldown_seconds": "15m",
    "url": "",
    "is_active": "on",
}


@pytest.mark.usefixtures("fast_password_hashes")
def test_a_url_added_on_the_edit_page_shows_the_secret_its_alerts_are_signed_with(stream: Stream, settings: Any):
    """A rule made without a URL never showed its secret; once a URL is added, its alerts are signed with it,
    so the page that adds the URL is where the receiver's owner can learn it."""
    conf_override(settings, webhook_allow_loopback=True)
    developer = _signed_in(stream, "Developer")
    created = developer.post(f"/streams/{stream.slug}/alerts/new/", FORM)
    assert created.status_code == 302
    rule = AlertRule.objects.get(stream=stream)
    answer = developer.post(f"/streams/{stream.slug}/alerts/{rule.pk}/edit/", {**FORM, "url": "http://127.0.0.1:9/a"})
    assert answer.status_code == 200, answer
    assert answer["Cache-Control"] == "no-store"
    assert rule.secret in answer.content.decode()
    rule.refresh_from_db()
    assert rule.url == "http://127.0.0.1:9/a"
    # Shown once: an edit that keeps the URL does not show it again.
    again = developer.post(
        f"/streams/{stream.slug}/alerts/{rule.pk}/edit/", {**FORM, "url": "http://127.0.0.1:9/a", "threshold": "6"}
    )
    assert again.status_code == 302
    assert rule.secret not in developer.get(f"/streams/{stream.slug}/alerts/").content.decode()


def test_an_alert_to_a_non_ascii_url_is_delivered_and_its_retries_end(stream: Stream, settings: Any):
    conf_override(settings, webhook_allow_loopback=True)
    with receiver() as hook:
        _rule(stream, threshold=1, url=hook.url + "/ärger")
        [alert_id] = _evaluate(stream, [timezone.now()], now=timezone.now())
        assert alert_deliver(alert_id=alert_id) is None
    alert = Alert.objects.get(pk=alert_id)
    assert (alert.delivery_status, alert.delivery_attempts) == (DeliveryStatus.DELIVERED, 1)
    assert [r.path for r in hook.requests] == ["/hook/%C3%A4rger"]
