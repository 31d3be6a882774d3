"""Lines of equal values stay in sight: on the processing page accepted/s equals logged/s (and a quiet
minute's p50 its p95 and p99), and uPlot, drawing the series in order at one width, hid the earlier line
exactly under the later one, so a reader took a series for missing. A line that shares points with a line
drawn after it is now drawn wider, and the later one in a casing of the card's colour: the earlier shows as
a rim of its own colour on both sides of the later one (nested where three are equal), and its legend marker
has a bolder ring. Lines that never meet keep their 2 px, and bars are as they were.

In Debian's chromium (marked slow like the other browser tests), light and dark: the widths uPlot drew with
and the canvas's pixels of each series' colour, at two device pixels to a CSS px. Screenshots of the
processing page go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import itertools
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from streams.services import stream_create
from tests.test_dashboard_polish import journeys, send
from tests.test_dashboard_visual_review import admin_of

from .test_browser import (  # noqa: F401  (the fixtures that launch the system's chromium)
    SCREENSHOTS,
    _sync_orm_beside_playwright,
    browser_type_launch_args,
    sign_in,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_password_hashes"),
]

LAPTOP = {"width": 1280, "height": 900}
PROCESSING = "/streams/shop/analytics/processing/"

# Draws a chart of the given series (values and colour variables) under the page's content, as the pages do.
DRAW = """async ([id, kind, series]) => {
  const data = document.createElement("script");
  data.type = "application/json";
  data.id = id;
  data.textContent = JSON.stringify({
    x: series[0].values.map((v, i) => 1796125200 + 60 * i), series, unit: "events/s", tz: "UTC", interval: "minute",
  });
  document.body.appendChild(data);
  const chart = document.createElement("div");
  chart.className = "chart";
  chart.setAttribute("data-chart", id);
  chart.setAttribute("data-kind", kind);
  document.querySelector(".content").appendChild(chart);
  window.EventFlowCharts.draw(chart);
  await new Promise((done) => setTimeout(done, 100));  // uPlot draws after a microtask
}"""

# Each series of a drawn chart: its label, colour, the width uPlot strokes it at, its legend marker's ring,
# and how many of the plot's pixels are its colour (within a small distance: no blend of two colours).
SERIES = """(id) => {
  const u = document.querySelector(`[data-chart=${id}]`).uplot;
  const ratio = uPlot.pxRatio || 1;
  const { left, top, width, height } = u.bbox;
  const pixels = u.ctx.getImageData(left, top, width, height).data;
  const markers = u.root.querySelectorAll(".u-legend .u-series .u-marker");
  return u.series.slice(1).map((s, i) => {
    const [r, g, b] = [1, 3, 5].map((at) => parseInt(s._colour.slice(at, at + 2), 16));
    let count = 0;
    for (let p = 0; p < pixels.length; p += 4) {
      const d = Math.abs(pixels[p] - r) + Math.abs(pixels[p + 1] - g) + Math.abs(pixels[p + 2] - b);
      if (pixels[p + 3] === 255 && d <= 24) count++;
    }
    return {
      label: s.label, colour: s._colour, width: s.width, ratio, pixels: count,
      ring: parseFloat(getComputedStyle(markers[i]).borderTopWidth),
      dash: getComputedStyle(markers[i]).borderTopStyle,
    };
  });
}"""

RISE = [0, 0, 1.2, 3.5, 3.5, 2.0, 0, 0, 4.1, 4.1, 2.2, 0, 0, 1.0, 5.5, 3.3, 0, 0]


@pytest.fixture
def processed(live_server: Any) -> str:
    """A stream whose events were all logged as they were accepted: equal throughput lines."""
    shop = stream_create(slug="shop", name="Shop")
    admin_of(shop)
    # Accepted counts by the minute of receipt, logged by the minute of logging, and ``send`` receives them
    # 30 s in the past: sent between the 31st and the 50th second of a minute, both fall in the same one (a
    # send takes a second or two), so the two lines are equal.
    second = timezone.now().second + timezone.now().microsecond / 1e6
    if not 31 <= second <= 50:
        time.sleep((31.5 - second) % 60)
    send(shop, journeys(6, start=timezone.now() - timedelta(hours=1)))
    return str(live_server.url)


def signed_in_page(browser: Any, base: str, scheme: str) -> tuple[Any, Any]:
    context = browser.new_context(viewport=LAPTOP, color_scheme=scheme, device_scale_factor=2)
    page = context.new_page()
    sign_in(page, base, "maria")
    return context, page


def assert_outlined(drawn: list[dict[str, Any]], what: str) -> None:
    """Each line's colour shows beside the equal ones drawn after it, as it is wider than they are."""
    top = drawn[-1]["pixels"]
    assert top > 200, (what, drawn)
    # A rim on each side of the line over it: about as much of the under colour as of the top one.
    for under in drawn[:-1]:
        assert under["pixels"] >= 0.5 * top, (what, [(s["label"], s["pixels"]) for s in drawn])
    for under, over in itertools.pairwise(drawn):
        assert under["width"] > over["width"], (what, drawn)
        assert under["ring"] > over["ring"] and under["dash"] == "solid", (what, drawn)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_two_equal_lines_show_both_colours_in_both_themes(processed: str, browser: Any, scheme: str) -> None:
    context, page = signed_in_page(browser, processed, scheme)
    page.goto(processed + PROCESSING)
    page.wait_for_selector("[data-chart=chart-throughput][data-drawn=true]")
    series = [
        {"label": "accepted/s", "values": RISE, "colour": "--chart-7"},
        {"label": "logged/s", "values": RISE, "colour": "--chart-6"},
    ]
    page.evaluate(DRAW, ["equal-pair", "line", series])
    assert_outlined(page.evaluate(SERIES, "equal-pair"), f"two equal lines, {scheme}")

    # Three equal (a quiet minute's percentiles): nested, each still in sight.
    three = [
        {"label": name, "values": [v * 40 or None for v in RISE], "colour": colour}
        for name, colour in (("p50", "--chart-1"), ("p95", "--chart-3"), ("p99", "--chart-4"))
    ]
    page.evaluate(DRAW, ["equal-three", "line", three])
    assert_outlined(page.evaluate(SERIES, "equal-three"), f"three equal lines, {scheme}")
    context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_processing_page_shows_accepted_and_logged_when_they_are_equal(
    processed: str, browser: Any, scheme: str
) -> None:
    context, page = signed_in_page(browser, processed, scheme)
    page.goto(processed + PROCESSING)
    page.wait_for_selector("[data-chart=chart-throughput][data-drawn=true]")
    page.wait_for_selector("[data-chart=chart-latency][data-drawn=true]")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"processing-equal-lines-{scheme}.png", full_page=True)
    throughput = page.evaluate(SERIES, "chart-throughput")
    assert [s["label"] for s in throughput] == ["accepted/s", "logged/s"]
    # Every event accepted was logged: one line's values, drawn as two.
    data = page.evaluate("JSON.parse(document.getElementById('chart-throughput').textContent).series")
    assert data[0]["values"] == data[1]["values"] and any(data[0]["values"])
    # A one-minute spike: fewer pixels than a long line, but the accepted rim is there beside the logged line.
    pixels = [(s["label"], s["pixels"]) for s in throughput]
    assert throughput[1]["pixels"] > 20 and throughput[0]["pixels"] >= 0.5 * throughput[1]["pixels"], pixels
    assert throughput[0]["width"] > throughput[1]["width"] == 2, throughput
    context.close()


def test_lines_that_never_meet_and_bars_keep_their_widths(processed: str, browser: Any) -> None:
    context, page = signed_in_page(browser, processed, "light")
    page.goto(processed + PROCESSING)
    page.wait_for_selector("[data-chart=chart-throughput][data-drawn=true]")
    apart = [
        {"label": "page_view", "values": [v * 2 for v in RISE]},
        {"label": "login", "values": RISE},
        {"label": "signup", "values": [v / 2 for v in RISE]},
    ]
    page.evaluate(DRAW, ["apart", "line", apart])
    drawn = page.evaluate(SERIES, "apart")
    # Equal only at zero (the quiet minutes, on the axis): plain 2 px lines with 2 px legend rings.
    assert [(s["width"], s["ring"]) for s in drawn] == [(2, 2)] * 3, drawn
    page.evaluate(DRAW, ["bars", "bars", apart[:2]])
    assert [s["width"] for s in page.evaluate(SERIES, "bars")] == [0, 0]
    context.close()
