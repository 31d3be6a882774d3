"""The analytics and management pages in a real browser (Debian's chromium, Playwright, a live server).

As an Analyst: events sent over the REST API are found in the explorer by a
payload property, the charts hold the data (the drawn uPlot series have points,
not only a canvas), and a two-step funnel is built. As a Developer: a webhook is
created (its secret seen once) and sends a test event to a local receiver. As an
Operator: a dead letter is replayed and its event is then logged. Screenshots of
every new page (laptop and phone, light and dark) go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from consumers.selectors import Position
from consumers.services import consumer_group_create
from streams.dead_letters import DeadLetterIn, dead_letters_record
from streams.models import DeadLetterStage, LogEntry, Stream
from streams.services import api_key_create, schema_version_add, stream_create
from tests.fixtures import conf_override
from tests.receiver import receiver

from .test_browser import (  # noqa: F401  (the fixtures that launch the system's chromium)
    CHROMIUM,
    SCREENSHOTS,
    VIEWPORTS,
    _sync_orm_beside_playwright,
    browser_type_launch_args,
    person,
    process,
    sign_in,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_password_hashes"),
]

if CHROMIUM is None:  # pragma: no cover - test_browser skips the module first
    pytest.skip("chromium is not installed", allow_module_level=True)

import httpx  # noqa: E402


@pytest.fixture(autouse=True)
def _local_webhooks(settings: Any) -> None:
    conf_override(settings, webhook_allow_loopback=True)


def send(base: str, key: str, slug: str, events: list[dict[str, Any]]) -> None:
    answer = httpx.post(
        f"{base}/api/v1/streams/{slug}/events/batch", json={"events": events}, headers={"X-API-Key": key}
    )
    assert answer.status_code == 202, answer.text


def shop_with_events(base: str, count: int = 40) -> Stream:
    shop = stream_create(slug="shop", name="Web shop", description="Storefront events.", with_starter_schemas=True)
    key = api_key_create(kind="ingest", streams=[shop], name="web tracker").raw_key
    events = [
        {
            "type": ["page_view", "page_view", "button_click", "form_submit"][i % 4],
            "user_id": f"u{i % 9}",
            "session_id": f"s{i % 9}",
            "payload": {"page": ["/", "/pricing", "/docs"][i % 3], "plan": "pro" if i % 5 == 0 else "free", "n": i},
            "context": {"user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"},
        }
        for i in range(count)
    ]
    send(base, key, "shop", events)
    process("shop")
    return shop


def drawn_points(page: Any, chart: str) -> int:
    """Points with a value in the series uPlot drew (its own data, read from the chart object)."""
    return int(
        page.evaluate(
            """(id) => {
                const el = document.querySelector(`[data-chart="${id}"]`);
                if (!el || !el.uplot || !el.querySelector("canvas")) return -1;
                return el.uplot.data.slice(1).reduce((n, s) => n + s.filter((v) => v).length, 0);
            }""",
            chart,
        )
    )


def test_an_analyst_finds_an_event_by_a_payload_property_and_sees_the_charts(live_server: Any, page: Any) -> None:
    base = live_server.url
    shop = shop_with_events(base)
    person("ana", "Analyst", team="growth", streams=[shop])
    sign_in(page, base, "ana")

    page.goto(f"{base}/streams/shop/events/")
    rows = page.locator("#events tbody tr")
    expect(rows).to_have_count(40)
    page.fill("#conditions input[name=p]", "payload.n")
    page.fill("#conditions input[name=v]", "17")
    page.click("button:has-text('Search')")
    expect(rows).to_have_count(1)
    assert "17" in rows.first.inner_text() and "page_view" in rows.first.inner_text()
    export = page.get_attribute("a:has-text('Export CSV')", "href") or ""
    assert "payload.n=17" in export
    # The session authenticates the export link.
    csv = page.request.get(base + export)
    assert csv.status == 200 and csv.text().count("\n") == 2

    rows.first.locator("a").first.click()
    expect(page.locator("h1")).to_be_visible()
    body = page.inner_text("main")
    assert "Logged at offset" in body and "Firefox" in body

    page.goto(f"{base}/streams/shop/")
    page.wait_for_selector("[data-chart=chart-per-minute][data-drawn=true]")
    assert drawn_points(page, "chart-per-minute") >= 1
    assert int(page.get_attribute("[data-chart=chart-per-minute]", "data-points") or 0) >= 1

    page.goto(f"{base}/streams/shop/analytics/?range=24h&dimension=page")
    page.wait_for_selector("[data-chart=chart-events][data-drawn=true]")
    assert drawn_points(page, "chart-events") >= 3  # page_view, button_click and form_submit this minute
    table = page.inner_text("#breakdown")
    assert "/pricing" in table and "/docs" in table
    # The tooltip follows the cursor with the bucket's numbers (the chart scrolled into sight first: the mouse
    # moves within the window).
    page.locator("[data-chart=chart-events] .u-over").scroll_into_view_if_needed()
    box = page.locator("[data-chart=chart-events] .u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] - 3, box["y"] + box["height"] / 2)
    expect(page.locator("[data-chart=chart-events] .chart-tip")).to_be_visible()

    # One type: the users per page are counted from the log after the page, and fill the table in.
    page.goto(f"{base}/streams/shop/analytics/?range=24h&dimension=page&type=page_view")
    expect(page.locator("#breakdown-card:not([aria-busy])")).to_be_visible()
    users = page.locator("#breakdown tbody tr").first.locator("td").nth(2).inner_text()
    assert users.isdigit() and int(users) >= 1


def test_an_analyst_builds_a_two_step_funnel(live_server: Any, page: Any) -> None:
    base = live_server.url
    shop = shop_with_events(base)
    person("ana", "Analyst", team="growth", streams=[shop])
    sign_in(page, base, "ana")
    page.goto(f"{base}/streams/shop/analytics/funnel/")
    steps = page.locator("#steps input[name=step]")
    steps.nth(0).fill("page_view")
    steps.nth(1).fill("form_submit")
    page.click("#run-funnel")
    result = page.locator("#funnel-table")
    expect(result).to_be_visible()
    cells = result.locator("tbody tr").nth(0).locator("td")
    assert cells.nth(1).inner_text() == "9"  # u0 … u8 all viewed a page
    assert int(result.locator("tbody tr").nth(1).locator("td").nth(1).inner_text()) > 0
    assert page.locator(".funnel-step").count() == 2


def test_a_developer_creates_a_webhook_and_sends_a_test_event(live_server: Any, page: Any) -> None:
    base = live_server.url
    shop = stream_create(slug="shop", name="Web shop")
    person("dev", "Developer", team="growth", streams=[shop])
    sign_in(page, base, "dev")
    with receiver() as local:
        url = f"http://127.0.0.1:{local.server.server_address[1]}/hook"
        page.goto(f"{base}/streams/shop/webhooks/new/")
        page.fill("#id_url", url)
        page.fill("#id_event_types", "login, page_view")
        page.click("button:has-text('Create webhook')")
        secret = page.inner_text("#webhook-secret").strip()
        assert secret and "will not be shown again" in page.inner_text(".notice")
        page.click("a:has-text('open the webhook')")
        assert secret not in page.content()
        page.click("#send-test")
        expect(page.locator(".messages")).to_contain_text("Test event delivered: HTTP 200")
        assert len(local.requests) == 1 and local.requests[0].path == "/hook"
        assert (
            "X-Eventflow-Signature" in local.requests[0].headers or "X-EventFlow-Signature" in local.requests[0].headers
        )
        expect(page.locator("#deliveries tbody tr")).to_have_count(1)
        assert "200" in page.inner_text("#deliveries")


def test_an_operator_replays_a_dead_letter_and_sees_it_logged(live_server: Any, page: Any) -> None:
    base = live_server.url
    shop = stream_create(slug="shop", name="Web shop")
    person("olga", "Operator", team="growth", streams=[shop])
    person("ana", "Analyst", team="growth-read", streams=[shop])
    dead_letters_record(
        letters=[
            DeadLetterIn(
                stream_id=shop.pk,
                event_id="late-1",
                event={
                    "event_id": "late-1",
                    "type": "login",
                    "event_time": "2026-11-21T09:00:00+00:00",
                    "payload": {"method": "password"},
                },
                stage=DeadLetterStage.VALIDATE,
                error_class="SchemaViolation",
                error_message="payload.method: a bad schema at the time",
            )
        ]
    )
    letter = shop.dead_letters.get()
    sign_in(page, base, "olga")
    page.goto(f"{base}/dead-letters/{letter.pk}/")
    page.click("a:has-text('Replay')")
    page.click("button:has-text('Replay 1')")
    expect(page.locator(".messages")).to_be_visible()
    process("shop")
    page.goto(f"{base}/dead-letters/{letter.pk}/")
    assert re.search(r"[Rr]eplayed", page.inner_text("main"))
    # The analyst's event page: logged now, with the letter it came back from.
    page.context.clear_cookies()
    sign_in(page, base, "ana")
    page.goto(f"{base}/streams/shop/events/late-1/")
    assert "Logged at offset 0" in page.inner_text("main")


NEW_PAGES = [
    ("explorer", "/streams/shop/events/"),
    ("event", "/streams/shop/events/{event}/"),
    ("trends", "/streams/shop/analytics/?range=24h"),
    ("funnel", "/streams/shop/analytics/funnel/?step=page_view&step=button_click&step=form_submit&range=24h"),
    ("retention", "/streams/shop/analytics/retention/?period=day&periods=7"),
    ("paths", "/streams/shop/analytics/paths/?start=page_view&range=24h"),
    ("processing", "/streams/shop/analytics/processing/"),
    ("alerts", "/streams/shop/alerts/"),
    ("schemas", "/streams/shop/schemas/"),
    ("schema-type", "/streams/shop/schemas/login/"),
    ("schema-new", "/streams/shop/schemas/login/new/"),
    ("groups", "/streams/shop/groups/"),
    ("group-seek", "/streams/shop/groups/billing/seek/"),
    ("webhooks", "/streams/shop/webhooks/"),
    ("webhook", "/streams/shop/webhooks/{webhook}/"),
    ("webhook-new", "/streams/shop/webhooks/new/"),
]


def test_screenshots_of_the_analytics_and_management_pages(live_server: Any, browser: Any) -> None:
    from consumers.webhook_services import webhook_create

    base = live_server.url
    shop = shop_with_events(base, 120)
    person("maria", "Admin", team="growth", streams=[shop])
    schema_version_add(
        stream=shop,
        event_type="login",
        schema={"type": "object", "required": ["method"], "properties": {"method": {"type": "string"}}},
    )
    consumer_group_create(stream_id=shop.pk, name="billing", start=Position("earliest"))
    hook = webhook_create(stream_id=shop.pk, url="http://127.0.0.1:9/eventflow", event_types=["login"]).webhook
    event_id = LogEntry.objects.filter(stream=shop).order_by("offset").values_list("event_id", flat=True).first()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for size, viewport in VIEWPORTS.items():
        for scheme in ("light", "dark"):
            context = browser.new_context(viewport=viewport, color_scheme=scheme)
            page = context.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            sign_in(page, base, "maria")
            for name, path in [("overview", "/"), *NEW_PAGES]:
                page.goto(base + path.format(event=event_id, webhook=hook.pk))
                page.wait_for_load_state("networkidle")
                for chart in page.locator("[data-chart]").all():
                    expect(chart).to_have_attribute("data-drawn", "true")
                overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                if overflow > 0:
                    problems.append(f"{name} ({size}) is {overflow}px wider than the screen")
                # Named apart from tests/test_browser.py's and test_browser_alerts.py's shots of the same pages,
                # which hold other data (an overview of several streams, alerts that fired).
                page.screenshot(path=SCREENSHOTS / f"analytics-{name}-{size}-{scheme}.png", full_page=True)
            context.close()
    assert not problems, problems
