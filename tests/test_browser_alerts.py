"""Alert rules in a real browser (Debian's chromium, Playwright, a live server).

As a Developer: a rule is created through the form (labels, an inline error
first), listed, muted, edited and deleted after the confirmation page; the rule
is read back from the database at each step. Screenshots of the alerts page and
the rule form (laptop and phone, light and dark) go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from analytics.alerts import alert_rule_create
from analytics.models import Alert, AlertRule
from streams.services import stream_create

from .test_browser import (  # noqa: F401  (the fixtures that launch the system's chromium)
    CHROMIUM,
    SCREENSHOTS,
    VIEWPORTS,
    _sync_orm_beside_playwright,
    browser_type_launch_args,
    person,
    sign_in,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_password_hashes"),
]

if CHROMIUM is None:  # pragma: no cover - test_browser skips the module first
    pytest.skip("chromium is not installed", allow_module_level=True)


def test_a_developer_creates_mutes_edits_and_deletes_an_alert_rule(live_server: Any, page: Any) -> None:
    base = live_server.url
    shop = stream_create(slug="shop", name="Web shop")
    person("dev", "Developer", team="growth", streams=[shop])
    sign_in(page, base, "dev")
    page.goto(f"{base}/streams/shop/alerts/")
    expect(page.locator(".empty").first).to_contain_text("No alert rules yet")
    page.click("#new-rule")
    page.get_by_label("Name", exact=True).fill("failed logins")
    page.get_by_label("Event types").fill("login")
    page.get_by_label("Conditions").fill("payload.success false")
    page.get_by_label("Threshold", exact=True).fill("5")
    page.get_by_label("Window", exact=True).fill("5m")
    page.get_by_label("Count per").fill("user_id")
    page.click("button:has-text('Create rule')")
    # The mistake is shown on its field, and nothing is made.
    expect(page.locator(".field.has-error")).to_contain_text("Line 1: write property = value")
    assert not AlertRule.objects.exists()
    page.get_by_label("Conditions").fill("payload.success = false")
    page.click("button:has-text('Create rule')")
    expect(page.locator(".messages")).to_contain_text("is watching from now on")
    expect(page.locator("#rules tbody tr")).to_have_count(1)
    expect(page.locator("#rules")).to_contain_text("failed logins")
    expect(page.locator("#rules")).to_contain_text("5 within 5 min")
    expect(page.locator("#rules")).to_contain_text("payload.success = false")
    rule = AlertRule.objects.get(stream=shop)
    assert (rule.threshold, rule.window_seconds, rule.group_by) == (5, 300, "user_id")

    page.click("a[aria-label='Mute failed logins']")
    page.get_by_label("8 hours").check()
    page.click("button:has-text('Mute')")
    expect(page.locator("#rules")).to_contain_text("Muted until")
    rule.refresh_from_db()
    assert rule.muted_until is not None
    page.click("button[aria-label='Unmute failed logins']")
    expect(page.locator("#rules")).to_contain_text("Watching")

    page.click("a[aria-label='Edit failed logins']")
    expect(page.get_by_label("Window", exact=True)).to_have_value("5m")
    page.get_by_label("Threshold", exact=True).fill("10")
    page.click("button:has-text('Save')")
    expect(page.locator("#rules")).to_contain_text("10 within 5 min")
    rule.refresh_from_db()
    assert rule.threshold == 10

    page.click("a[aria-label='Delete failed logins']")
    expect(page.locator("h1")).to_contain_text("Delete “failed logins”?")
    assert AlertRule.objects.filter(pk=rule.pk).exists()
    page.click("button:has-text('Delete rule')")
    expect(page.locator(".messages")).to_contain_text("are deleted")
    assert not AlertRule.objects.filter(pk=rule.pk).exists()


def test_screenshots_of_the_alert_pages(live_server: Any, browser: Any) -> None:
    base = live_server.url
    shop = stream_create(slug="shop", name="Web shop")
    person("maria", "Admin", team="growth", streams=[shop])
    rule = alert_rule_create(
        stream_id=shop.pk,
        name="failed logins",
        event_types=["login"],
        conditions=[{"property": "payload.success", "op": "eq", "values": ["false"]}],
        threshold=5,
        window_seconds=300,
        group_by="user_id",
        cooldown_seconds=900,
    )
    alert_rule_create(
        stream_id=shop.pk, name="no page views", kind="absence", event_types=["page_view"], window_seconds=600
    )
    from django.utils import timezone

    now = timezone.now()
    for i in range(3):
        Alert.objects.create(
            rule=rule,
            stream=shop,
            group_value=f"user-{i}",
            count=5 + i,
            threshold=5,
            window_start=now,
            window_end=now,
            fired_at=now,
        )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for size, viewport in VIEWPORTS.items():
        for scheme in ("light", "dark"):
            context = browser.new_context(viewport=viewport, color_scheme=scheme)
            page = context.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            sign_in(page, base, "maria")
            for name, path in [("alerts", "/streams/shop/alerts/"), ("alert-rule-form", "/streams/shop/alerts/new/")]:
                page.goto(base + path)
                page.wait_for_load_state("networkidle")
                overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                if overflow > 0:
                    problems.append(f"{name} ({size}) is {overflow}px wider than the screen")
                page.screenshot(path=SCREENSHOTS / f"{name}-{size}-{scheme}.png", full_page=True)
            context.close()
    assert not problems, problems
