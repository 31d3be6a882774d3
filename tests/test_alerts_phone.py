"""The alerts page on a phone: its two tables (the rules, the alerts raised) have six columns each, about
1,200 px of them at 375 px, to be scrolled sideways through (in their wraps) with the page. Below 640 px each
row is now a card and each cell says its column (its ``data-label``, written by app.css's "stacked tables on
a phone" rule), so the page and its tables fit the screen and every value is read beside its name; a laptop
keeps the tables.

In Debian's chromium (marked slow like the other browser tests), light and dark, with a screenshot of each
in ``artifacts/screenshots/``.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from analytics.alerts import alert_rule_create
from analytics.models import Alert, AlertRule
from streams.services import stream_create

from .test_browser import (  # noqa: F401  (the fixtures that launch the system's chromium)
    SCREENSHOTS,
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

PHONE = {"width": 375, "height": 812}
LAPTOP = {"width": 1280, "height": 800}
ALERTS = "/streams/shop/alerts/"
# The rules' last cell holds the buttons (Edit, Mute, Delete), which say what they are: it takes a whole line.
RULE_COLUMNS = ["Rule", "Counts", "Fires when", "Delivered to", "State", ""]
ALERT_COLUMNS = ["Fired", "Rule", "Group", "Count", "Window", "Delivery"]

# Each table's rows as the reader sees them: the row's box, and each cell's label (the ::before text of its
# data-label), its box, and whether it is shown.
ROWS = """(id) => Array.from(document.querySelectorAll(`#${id} tbody tr`)).map((row) => ({
  box: row.getBoundingClientRect().toJSON(),
  cells: Array.from(row.cells).map((cell) => ({
    label: cell.dataset.label || "",
    shown: getComputedStyle(cell, "::before").content.replace(/^"|"$/g, ""),
    display: getComputedStyle(cell).display,
    box: cell.getBoundingClientRect().toJSON(),
  })),
}))"""


@pytest.fixture
def alerts_page(live_server: Any) -> str:
    """A stream with a rule of every column filled (a long URL, conditions, a group) and an alert it raised."""
    shop = stream_create(slug="shop", name="Web shop")
    person("maria", "Admin", team="growth", streams=[shop])
    rule = alert_rule_create(
        stream_id=shop.pk,
        name="failed logins from one customer",
        event_types=["login", "password_reset"],
        conditions=[{"property": "payload.success", "op": "eq", "values": ["false"]}],
        threshold=5,
        window_seconds=300,
        group_by="user_id",
    )
    # A long URL in "Delivered to", set past the service's look-up of its host (the tests are offline).
    AlertRule.objects.filter(pk=rule.pk).update(
        url="https://hooks.example.com/eventflow/alerts/" + "security-team-" * 4
    )
    now = timezone.now()
    Alert.objects.create(
        rule=rule,
        stream=shop,
        group_value="customer-00042-with-a-long-id",
        count=7,
        threshold=5,
        window_start=now,
        window_end=now,
        fired_at=now,
    )
    return str(live_server.url)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_alerts_page_fits_a_phone_with_each_row_a_card_of_labelled_values(
    alerts_page: str, browser: Any, scheme: str
) -> None:
    context = browser.new_context(viewport=PHONE, color_scheme=scheme)
    page = context.new_page()
    sign_in(page, alerts_page, "maria")
    page.goto(alerts_page + ALERTS)
    page.wait_for_load_state("networkidle")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"alerts-phone-375-{scheme}.png", full_page=True)

    # No page-level sideways scrolling, and nothing in the tables scrolls sideways either.
    assert page.evaluate("document.documentElement.scrollWidth") <= page.evaluate("window.innerWidth")
    for wrap in page.evaluate(
        "Array.from(document.querySelectorAll('.table-wrap')).map((w) => w.scrollWidth - w.clientWidth)"
    ):
        assert wrap <= 0, wrap

    for table, columns in (("rules", RULE_COLUMNS), ("alerts", ALERT_COLUMNS)):
        rows = page.evaluate(ROWS, table)
        assert len(rows) == 1, (table, rows)
        cells = rows[0]["cells"]
        # Every cell says its column, as the header row (hidden on a phone) would.
        assert [cell["label"] for cell in cells] == columns, (table, cells)
        for cell in cells:
            assert cell["box"]["right"] <= PHONE["width"] and cell["box"]["left"] >= 0, (table, cell)
            assert cell["shown"] == (cell["label"] or "none"), (table, cell)
        # Stacked: the cells are one under the other, not side by side.
        tops = [cell["box"]["top"] for cell in cells]
        assert tops == sorted(tops) and len(set(tops)) == len(tops), (table, tops)
    assert page.locator("#rules thead").is_hidden() and page.locator("#alerts thead").is_hidden()
    context.close()


def test_a_laptop_keeps_the_alert_tables(alerts_page: str, browser: Any) -> None:
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    sign_in(page, alerts_page, "maria")
    page.goto(alerts_page + ALERTS)
    assert page.evaluate("document.documentElement.scrollWidth") <= page.evaluate("window.innerWidth")
    for table, columns in (("rules", RULE_COLUMNS), ("alerts", ALERT_COLUMNS)):
        assert page.locator(f"#{table} thead").is_visible()
        cells = page.evaluate(ROWS, table)[0]["cells"]
        assert len(cells) == len(columns)
        # One row: the cells side by side, with no label of their own (the header says it).
        assert len({round(cell["box"]["top"]) for cell in cells}) == 1, (table, cells)
        assert all(cell["display"] == "table-cell" and cell["shown"] in ("none", "") for cell in cells), cells
    context.close()
