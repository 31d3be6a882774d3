"""What a look at every dashboard page (laptop and phone, light and dark) found unfinished, kept fixed.

Through the test client: the rendered pages and the style sheets they load. In a real
browser (Debian's chromium, marked slow like the other browser tests): the layouts that
only a browser can measure, at 1280x800.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.staticfiles import finders
from django.test import Client
from django.utils import timezone

from consumers.webhook_services import webhook_create
from ingestion.pipeline import stream_process_batch
from ingestion.services import events_ingest
from streams.dead_letters import DeadLetterIn, dead_letters_record
from streams.models import DeadLetterStage, Stream
from streams.selectors import stream_info
from streams.services import stream_create, team_create
from tests.fixtures import conf_override

pytestmark = [pytest.mark.usefixtures("fast_password_hashes")]

PASSWORD = "a-long-password-1"
LONG_NAME = "Web shop (production storefront, EU)"


def sheet(name: str) -> str:
    found = finders.find(f"eventflow/{name}")
    assert found, name
    return Path(str(found)).read_text()


def admin_of(*streams: Stream) -> User:
    user = User.objects.create_user("maria", email="maria@example.com", password=PASSWORD)
    user.groups.add(Group.objects.get(name="Admin"))
    team_create(slug="growth", members=[user], streams=list(streams))
    return user


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def send(stream: Stream, count: int) -> None:
    """Through the intake and the processor, so the log, rollups and processing figures are as in production."""
    info = stream_info(stream.slug)
    assert info is not None
    events = [
        {"type": "page_view", "user_id": f"customer-{i:05d}", "payload": {"page": "/docs/" + "long-path-" * 8}}
        for i in range(count)
    ]
    # Received a moment ago: the processor takes rows due by the database's now(), the test transaction's start.
    events_ingest(stream=info, raw_events=events, received_at=timezone.now() - timedelta(seconds=30))
    while stream_process_batch(stream_id=stream.pk).fetched:
        pass


def letter(stream: Stream, message: str) -> int:
    dead_letters_record(
        letters=[
            DeadLetterIn(
                stream_id=stream.pk,
                event_id="bad-1",
                event={"event_id": "bad-1", "type": "login", "payload": {"method": None}},
                stage=DeadLetterStage.VALIDATE,
                error_class="SchemaViolation",
                error_message=message,
            )
        ]
    )
    return stream.dead_letters.get().pk


# --- rendered pages and style sheets ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_long_error_message_wraps_on_the_dead_letter_page() -> None:
    shop = stream_create(slug="shop", name="Shop")
    long_message = "payload.method: None is not of type 'string' " + "and more detail " * 20
    pk = letter(shop, long_message)
    html = signed_in(admin_of(shop)).get(f"/dead-letters/{pk}/").content.decode()
    # The error is prose: a box that wraps it, not one line to scroll along for a screen and a half.
    assert re.search(r'<pre class="wrap">SchemaViolation: payload\.method', html)
    assert re.search(r"pre\.wrap\s*\{[^}]*white-space:\s*pre-wrap", sheet("app.css"))


@pytest.mark.django_db
def test_the_live_tail_keeps_a_user_id_on_one_line_and_gives_the_payload_the_rest() -> None:
    shop = stream_create(slug="shop", name="Shop")
    send(shop, 3)
    html = signed_in(admin_of(shop)).get("/streams/shop/tail/").content.decode()
    assert 'class="mono small tail-user" data-label="User" title="customer-00002">customer-00002</td>' in html
    css = sheet("app.css")
    assert re.search(r"\.tail \.tail-user\s*\{[^}]*white-space:\s*nowrap", css)
    # The payload cell shrinks to the room left (max-width: 0 in an auto table) instead of a fixed 34rem
    # that pushed the table past its card at 1280 px and squeezed the user column into two lines.
    payload = re.search(r"\.tail \.payload\s*\{([^}]*)\}", css)
    assert payload and "max-width: 0" in payload.group(1) and "34rem" not in payload.group(1)


@pytest.mark.django_db
def test_processing_without_events_says_so_instead_of_a_dash_in_milliseconds() -> None:
    quiet = stream_create(slug="quiet", name="Quiet")
    html = signed_in(admin_of(quiet)).get("/streams/quiet/analytics/processing/").content.decode()
    assert "— ms" not in html
    assert "nothing logged in this range" in html


def test_five_figures_share_one_row_rather_than_leaving_one_alone_below() -> None:
    css = sheet("app.css")
    stats = re.search(r"^\.stats\s*\{([^}]*)\}", css, re.MULTILINE)
    assert stats and "auto-fit" in stats.group(1)


def _hex(colour: str) -> tuple[int, int, int]:
    colour = colour.strip().lstrip("#")
    if len(colour) == 3:
        colour = "".join(c * 2 for c in colour)
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def _luminance(rgb: tuple[float, float, float]) -> float:
    def channel(c: float) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _variables(css: str) -> tuple[dict[str, str], dict[str, str]]:
    """The custom properties of :root, light and dark (inside prefers-color-scheme: dark)."""
    dark_at = css.index("prefers-color-scheme: dark")
    light: dict[str, str] = {}
    dark: dict[str, str] = {}
    for match in re.finditer(r"(--[\w-]+):\s*([^;]+);", css):
        (dark if match.start() > dark_at else light)[match.group(1)] = match.group(2).strip()
    return light, dark


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_retention_heat_map_numbers_are_readable_on_every_shade(theme: str) -> None:
    app_light, app_dark = _variables(sheet("app.css").split("/* --- shell")[0])
    charts = re.sub(r"/\*.*?\*/", "", sheet("charts.css"), flags=re.DOTALL)
    charts_light, charts_dark = _variables(charts.split(".chart {")[0])
    variables = {**app_light, **charts_light}
    if theme == "dark":
        variables.update({**app_dark, **charts_dark})

    def resolve(value: str) -> str:
        while value.startswith("var("):
            value = variables[value[4:-1].strip()]
        return value

    hr, hg, hb = (int(part) for part in resolve("var(--heat)").split(","))
    surface = _hex(resolve("var(--surface)"))
    for shade in range(6, 11):
        rules = [
            body
            for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", charts)
            if f".heat td.h{shade}" in [s.strip() for s in selectors.split(",")]
        ]
        alpha = float(re.findall(r"rgba\(var\(--heat\),\s*([\d.]+)\)", "".join(rules))[-1])
        ink = _hex(resolve(re.findall(r"(?<![-\w])color:\s*([^;]+);", "".join(rules))[-1].strip()))
        sr, sg, sb = surface
        cell = (alpha * hr + (1 - alpha) * sr, alpha * hg + (1 - alpha) * sg, alpha * hb + (1 - alpha) * sb)
        assert _contrast(ink, cell) >= 4.5, f"h{shade} in the {theme} theme: {_contrast(ink, cell):.1f}:1"


# --- in a real browser ---------------------------------------------------------------------------------

try:
    from .test_browser import (  # noqa: F401  (the fixtures that launch the system's chromium)
        CHROMIUM,
        _sync_orm_beside_playwright,
        browser_type_launch_args,
        sign_in,
    )
except pytest.skip.Exception:  # chromium missing: the client tests above still run
    CHROMIUM = None


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_the_pages_fit_a_laptop_and_a_lone_bucket_is_charted(live_server: Any, browser: Any, settings: Any) -> None:
    conf_override(settings, webhook_allow_loopback=True)
    base = live_server.url
    shop = stream_create(slug="shop", name=LONG_NAME, description="Storefront events.")
    stream_create(slug="fresh", name="Fresh stream")
    admin_of(shop, Stream.objects.get(slug="fresh"))
    send(shop, 25)
    letter(shop, "payload.method: None is not of type 'string' " + "and more detail " * 10)

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, base, "maria")

    def overflow(selector: str) -> int:
        return int(
            page.evaluate(
                f"(() => {{ const e = document.querySelector('{selector}'); return e.scrollWidth - e.clientWidth; }})()"
            )
        )

    # Overview: nine columns fit beside the sidebar, the last ones (lag, webhooks, state) in sight.
    page.goto(f"{base}/")
    assert overflow("#overview-streams") <= 0 and overflow(".table-wrap:has(#overview-streams)") <= 0

    # A stream: the five figures in one row; the live tail within its card, a user id on one line.
    page.goto(f"{base}/streams/shop/")
    page.wait_for_selector("#tail-body tr[data-offset]")
    tops = page.evaluate("Array.from(document.querySelectorAll('.stats .stat')).map(e => e.offsetTop)")
    assert len(tops) == 5 and len(set(tops)) == 1, tops
    assert overflow("#tail-body .table-wrap") <= 0
    user_cell = page.locator("#tail-body td.tail-user").first
    line = float(
        page.evaluate("parseFloat(getComputedStyle(document.querySelector('#tail-body td.tail-user')).lineHeight)")
    )
    box = user_cell.bounding_box()
    assert box is not None and box["height"] < 2 * line + 20

    # Dead letters: every column in sight at 1280 px.
    page.goto(f"{base}/dead-letters/")
    assert overflow("#bulk .table-wrap") <= 0

    # Explorer: the order picker on its own line is a picker's width, not the form's.
    page.goto(f"{base}/streams/shop/events/")
    width = page.evaluate("document.getElementById('f-order').getBoundingClientRect().width")
    assert width < 400, width

    # A chart of a single bucket (the processing page of a stream that processed everything in one minute) is
    # drawn in a window of minutes: uPlot alone spreads one time over years and draws nothing to see.
    page.goto(f"{base}/streams/shop/analytics/processing/")
    page.wait_for_selector("[data-chart=chart-throughput][data-drawn=true]")
    span = page.evaluate(
        """(async () => {
          const data = document.createElement("script");
          data.type = "application/json";
          data.id = "lone-bucket";
          data.textContent = JSON.stringify({x: [1796125200], series: [{label: "logged/s", values: [66.7]}],
                                             unit: "events/s", tz: "UTC", interval: "minute"});
          document.body.appendChild(data);
          const chart = document.createElement("div");
          chart.className = "chart";
          chart.setAttribute("data-chart", "lone-bucket");
          chart.setAttribute("data-kind", "line");
          document.querySelector(".content").appendChild(chart);
          window.EventFlowCharts.draw(chart);
          await new Promise((done) => setTimeout(done, 100));  // uPlot sets its scales after a microtask
          const x = chart.uplot.scales.x;
          return x.max - x.min;
        })()"""
    )
    assert 0 < span <= 3600, span
    context.close()

    # On a phone, a webhook's long URL as the page title is clipped at the screen's edge.
    hook = webhook_create(stream_id=shop.pk, url="http://127.0.0.1:9/hooks/" + "order-pipeline-" * 6)
    phone = browser.new_context(viewport={"width": 390, "height": 844})
    page = phone.new_page()
    sign_in(page, base, "maria")
    page.goto(f"{base}/streams/shop/webhooks/{hook.webhook.pk}/")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    phone.close()


def test_funnel_columns_line_up_at_the_top() -> None:
    funnel = re.search(r"^\.funnel\s*\{([^}]*)\}", sheet("charts.css"), re.MULTILINE)
    # "end" aligned each column's bottom: a step name on two lines lifted that column's bar above the others.
    assert funnel and "align-items: start" in funnel.group(1)


def test_a_title_clipped_with_an_ellipsis_ends_at_the_screen_edge() -> None:
    css = sheet("app.css")
    # .cell-clip alone is 28rem wide: a webhook's URL as its page's title ran 74 px past a phone's screen.
    assert re.search(r"\.title-row > \.cell-clip\s*\{[^}]*max-width:\s*100%", css)
    assert re.search(r"\.page-head > :first-child\s*\{[^}]*min-width:\s*0", css)
