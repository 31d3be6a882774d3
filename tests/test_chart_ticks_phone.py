"""Day labels of a week's daily chart on a phone: at 390 px wide the trends page's charts showed two (the first
day and the last), as labels were kept 72 px apart and a week's eight days in 220 px of plot only fit two at
every 7 days. They now come every other day where a label and a gap fit; on a narrow phone (320 px, an iPhone
SE) every other or every third day, as densely as the labels fit, never weekly. Laptops keep their ticks, and
the hourly and per-minute charts of the overview and a stream's page stay as they were.

In Debian's chromium (marked slow like the other browser tests): what uPlot drew, read from its axis state
(splits and labels), with each label's box (where uPlot centred it, its widest line measured in the axis
font) in CSS px, so "not overlapping" is measured.
"""

from __future__ import annotations

import itertools
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from streams.services import stream_create
from tests.test_dashboard_polish import journeys, send
from tests.test_dashboard_visual_review import admin_of

from .test_browser import (  # noqa: F401  (the fixtures that launch the system's chromium)
    _sync_orm_beside_playwright,
    browser_type_launch_args,
    sign_in,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_password_hashes"),
]

PHONE = {"width": 390, "height": 844}
NARROW_PHONE = {"width": 320, "height": 568}
LAPTOP = {"width": 1280, "height": 800}
WEEK_BY_DAY = "/streams/shop/analytics/?range=7d&interval=day"
DAY_CHARTS = ("chart-events", "chart-users", "chart-active")
DAY = 86400

# Each x label's text, its bucket, where uPlot centred it (CSS px) and how wide its widest line is in the
# axis's font: the box it takes on the canvas. uPlot keeps that font in device pixels (24px at a ratio of 2),
# so the width is divided by its pixel ratio to be in CSS px like the position.
LABELS = """(id) => {
  const chart = document.querySelector(`[data-chart=${id}]`).uplot;
  const data = JSON.parse(document.getElementById(id).textContent);
  const axis = chart.axes[0];
  const context = document.createElement("canvas").getContext("2d");
  context.font = Array.isArray(axis.font) ? axis.font[0] : axis.font;
  return {
    buckets: chart.data[0].length,
    tz: data.tz,
    labels: axis._splits.map((at, i) => ({
      text: String(axis._values[i]),
      t: at,
      at: chart.valToPos(at, "x"),
      width:
        Math.max(...String(axis._values[i]).split("\\n").map((line) => context.measureText(line).width)) /
        (uPlot.pxRatio || 1),
    })),
  };
}"""


# The range the page answered for, as its picker shows it: typed in (a custom range) or, for a preset, the
# placeholder the page fills in, both to the minute in the page's zone.
SHOWN_RANGE = """() => ["f-from", "f-to"].map((id) => {
  const input = document.getElementById(id);
  return input.value || input.placeholder;
})"""


def drawn_labels(page: Any, chart: str) -> dict[str, Any]:
    page.wait_for_selector(f"[data-chart={chart}][data-drawn=true]")
    return dict(page.evaluate(LABELS, chart))


def local_days_met(page: Any, tz: str) -> int:
    """How many of the zone's days the page's range meets. The range is half-open: one that ends at midnight
    doesn't meet the day that starts there."""
    zone = ZoneInfo(tz)
    start, end = (datetime.fromisoformat(shown).replace(tzinfo=zone) for shown in page.evaluate(SHOWN_RANGE))
    last = (end.astimezone(UTC) - timedelta(microseconds=1)).astimezone(zone)
    return (last.date() - start.date()).days + 1


def assert_apart(labels: list[dict[str, Any]], what: str) -> None:
    """Neighbouring labels leave at least 4 px between them."""
    for left, right in itertools.pairwise(labels):
        gap = (right["at"] - left["at"]) - (left["width"] + right["width"]) / 2
        assert gap >= 4, (what, left, right, gap)


def signed_in_page(browser: Any, base: str, viewport: dict[str, int], scale: float = 1) -> tuple[Any, Any]:
    context = browser.new_context(viewport=viewport, device_scale_factor=scale)
    page = context.new_page()
    sign_in(page, base, "maria")
    return context, page


@pytest.fixture
def week_of_events(live_server: Any) -> str:
    shop = stream_create(slug="shop", name="Shop")
    admin_of(shop)
    now = timezone.now()
    send(shop, [e for day in range(7) for e in journeys(2, start=now - timedelta(days=day, hours=1))])
    return str(live_server.url)


@pytest.mark.parametrize(
    ("viewport", "scale", "at_most_days_apart"),
    [
        pytest.param(PHONE, 1, 2, id="phone-390"),
        # 150 px of plot: too narrow for every other day, so every third one, not the first and the last
        # (weekly, as before). At the iPhone SE's two device pixels to a CSS px, which uPlot's bbox counts in.
        pytest.param(NARROW_PHONE, 2, 3, id="narrow-phone-320"),
    ],
)
def test_a_week_by_day_on_a_phone_labels_days_densely_without_overlap(
    week_of_events: str, browser: Any, viewport: dict[str, int], scale: float, at_most_days_apart: int
) -> None:
    base = week_of_events
    context, page = signed_in_page(browser, base, viewport, scale)
    page.goto(base + WEEK_BY_DAY)
    for chart in DAY_CHARTS:
        drawn = drawn_labels(page, chart)
        labels = drawn["labels"]
        texts = [label["text"] for label in labels]
        # A bucket for each local day the range meets (eight for seven days back, seven when the range ends at
        # midnight): at least every other (third) one is named (two were).
        assert drawn["buckets"] == local_days_met(page, drawn["tz"]), drawn
        assert len(labels) >= math.ceil(drawn["buckets"] / at_most_days_apart), (chart, texts)
        # Never a week apart (the first day and the last) where closer labels fit: a day is 23 to 25 hours.
        for left, right in itertools.pairwise(labels):
            assert right["t"] - left["t"] <= at_most_days_apart * DAY + 3600, (chart, texts)
        assert all(re.fullmatch(r"[A-Z][a-z]{2} \d{1,2}(\n\d{4})?", text) for text in texts), labels
        assert_apart(labels, f"{viewport['width']} px {chart}")
    context.close()


def test_laptop_day_ticks_and_hourly_phone_ticks_are_unchanged(week_of_events: str, browser: Any) -> None:
    base = week_of_events
    laptop, page = signed_in_page(browser, base, LAPTOP)
    page.goto(base + WEEK_BY_DAY)
    # The wide charts name every day, the half-width users chart every other one, as before.
    for chart, every in (("chart-events", 1), ("chart-users", 2), ("chart-active", 1)):
        drawn = drawn_labels(page, chart)
        assert len(drawn["labels"]) == math.ceil(drawn["buckets"] / every), (chart, drawn)
        assert_apart(drawn["labels"], chart)
    laptop.close()

    phone, page = signed_in_page(browser, base, PHONE)
    # uPlot's own steps on the 24-hour clock: four labels six hours (or fifteen minutes) apart at 390 px.
    for url, chart, pattern in (
        ("/", "chart-24h", r"\d{2}:00(\n[A-Z][a-z]{2} \d{1,2})?"),
        ("/streams/shop/", "chart-per-minute", r"\d{2}:\d{2}(\n[A-Z][a-z]{2} \d{1,2})?"),
        ("/streams/shop/analytics/?range=24h", "chart-events", r"\d{2}:00(\n[A-Z][a-z]{2} \d{1,2})?"),
    ):
        page.goto(base + url)
        labels = drawn_labels(page, chart)["labels"]
        assert len(labels) >= 3, (url, labels)
        assert all(re.fullmatch(pattern, label["text"]) for label in labels), (url, labels)
        assert_apart(labels, f"{url} {chart}")
    phone.close()
