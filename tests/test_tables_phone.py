"""The list pages' tables on a phone (390 px wide): API keys, streams, people, the audit log, a stream's event
explorer and its schemas, the overview's streams, the dead letters, and a stream page's live tail and keys had
four to nine columns, 520 to 950 px of them in a 356 px wrap, to be scrolled sideways through with the columns
out of sight. Like the alerts page (``test_alerts_phone.py``), each is now a ``table-stack``: below 640 px each
row is a card and each cell says its column (its ``data-label``, written by app.css's "stacked tables on a
phone" rule); a row's buttons take a line of their own, a dead letter's box to select it says "Select". A
laptop keeps the tables.

In Debian's chromium (marked slow like the other browser tests), with a screenshot of each page on a phone in
``artifacts/screenshots/``.
"""

from __future__ import annotations

from typing import Any

import pytest

from streams.dead_letters import DeadLetterIn, dead_letter_discard, dead_letters_record
from streams.models import DeadLetter, DeadLetterStage
from streams.services import api_key_create, stream_create

from .test_browser import (  # noqa: F401  (the fixtures that launch the system's chromium)
    SCREENSHOTS,
    _sync_orm_beside_playwright,
    browser_type_launch_args,
    person,
    process,
    send,
    sign_in,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_password_hashes"),
]

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1280, "height": 800}
# Each page, and its table of many columns (the only table in a wrap on the page when it has no id).
PAGES = {
    "keys": ("/keys/", ".table-wrap > table"),
    "streams": ("/streams/", ".table-wrap > table"),
    "people": ("/people/", ".table-wrap > table"),
    "audit": ("/audit/", ".table-wrap > table"),
    "events": ("/streams/shop/events/", "#events"),
    "schemas": ("/streams/shop/schemas/", "#schema-types"),
    # The first page after signing in.
    "overview": ("/", "#overview-streams"),
    # Every status: the discarded letter has no box to select (an empty cell).
    "dead-letters": ("/dead-letters/?status=", "#bulk table"),
    # The stream's page: its live tail (rendered by the tail's own request, every 2 s) and its keys.
    "stream-tail": ("/streams/shop/", "#tail-body table"),
    "stream-keys": ("/streams/shop/", "#stream-keys"),
}

# The table as the reader sees it: its width against its wrap's, whether its header row is shown, and its
# rows, each with its cells: the column's header, the cell's label, what its ::before shows, its class, whether
# it is empty, its display, its left padding (where the label sits) and its box.
TABLE = """(selector) => {
  const found = document.querySelectorAll(selector);
  if (found.length !== 1) return {count: found.length};
  const table = found[0];
  const headers = Array.from(table.tHead.rows[0].cells).map((th) => th.textContent.trim());
  return {
    count: 1,
    width: table.scrollWidth,
    wrap: table.closest(".table-wrap").clientWidth,
    headShown: table.tHead.getBoundingClientRect().height > 0,
    rows: Array.from(table.tBodies[0].rows).map((row) => Array.from(row.cells).map((cell, i) => ({
      header: headers[i],
      label: cell.dataset.label ?? null,
      shown: getComputedStyle(cell, "::before").content.replace(/^"|"$/g, ""),
      classes: Array.from(cell.classList),
      empty: cell.innerHTML === "",
      display: getComputedStyle(cell).display,
      padLeft: parseFloat(getComputedStyle(cell).paddingLeft),
      box: cell.getBoundingClientRect().toJSON(),
    }))),
  };
}"""


@pytest.fixture
def listed(live_server: Any) -> str:
    """One row at least in each table: a stream with the starter schemas and logged events, a key (whose
    creation writes a row of the audit log), its Admin, and two dead letters: one open (with its box to
    select), one discarded (without)."""
    shop = stream_create(slug="shop", name="Web shop", with_starter_schemas=True)
    person("maria", "Admin", team="growth", streams=[shop])
    key = api_key_create(kind="ingest", streams=[shop], name="web tracker").raw_key
    send(live_server.url, key, "shop", 3)
    process("shop")
    dead_letters_record(
        letters=[
            DeadLetterIn(
                stream_id=shop.pk,
                event_id=f"shop-bad-{i}",
                event={"event_id": f"shop-bad-{i}", "type": "checkout", "payload": {}},
                stage=stage,
                error_class="SchemaViolation" if stage == DeadLetterStage.VALIDATE else "HTTPStatusError",
                error_message="payload.order_id is required; payload.total must be a number, not a string",
                subscriber="" if stage == DeadLetterStage.VALIDATE else "https://hooks.example.com/orders",
                attempts=5,
            )
            for i, stage in enumerate((DeadLetterStage.VALIDATE, DeadLetterStage.DELIVER))
        ]
    )
    dead_letter_discard(letter_id=DeadLetter.objects.get(event_id="shop-bad-1").pk)
    return str(live_server.url)


def _table(page: Any, base: str, name: str) -> dict[str, Any]:
    path, selector = PAGES[name]
    page.goto(base + path)
    page.wait_for_load_state("networkidle")
    page.wait_for_selector(selector)
    table: dict[str, Any] = page.evaluate(TABLE, selector)
    assert table["count"] == 1, (name, table)
    assert table["rows"], (name, "no rows")
    return table


@pytest.mark.parametrize("name", list(PAGES))
def test_each_list_page_fits_a_phone_with_each_row_a_card_of_labelled_values(
    listed: str, browser: Any, name: str
) -> None:
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    sign_in(page, listed, "maria")
    table = _table(page, listed, name)
    page.screenshot(path=SCREENSHOTS / f"table-stack-{name}-phone.png", full_page=True)

    # Nothing scrolls sideways: neither the page nor the table in its wrap.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
    assert table["width"] <= table["wrap"] + 1, (name, table["width"], table["wrap"])
    assert not table["headShown"], name
    for row in table["rows"]:
        # An empty cell (a security event's status) takes no line of the card.
        assert all(cell["display"] == "none" for cell in row if cell["empty"]), (name, row)
        cells = [cell for cell in row if not cell["empty"]]
        for cell in cells:
            assert cell["box"]["left"] >= 0 and cell["box"]["right"] <= PHONE["width"], (name, cell)
            if cell["header"]:
                # Every cell says its column, as the header row (hidden on a phone) would.
                assert cell["label"] == cell["header"], (name, cell)
                assert cell["shown"] == cell["label"], (name, cell)
                # The label sits in the cell's left padding (6.75 rem wide), before the value, not over it or
                # out of the card (as where a page's own rule pads the table's cells less).
                assert cell["padLeft"] >= 108, (name, cell)
            elif "check" in cell["classes"]:
                # A dead letter's box to select it for the bulk replay or discard (its column's header is the
                # box that selects them all, hidden here) says what it is for.
                assert cell["label"] == cell["shown"] == "Select" and cell["padLeft"] >= 108, (name, cell)
            else:
                # The row's buttons say what they are: a line of their own, with no label.
                assert cell["label"] is None and "row-actions" in cell["classes"], (name, cell)
        # Each cell takes the card's width (a cell held narrow for the table, as the tail's payload, would
        # clip its value in a sliver of the card).
        widths = [round(cell["box"]["width"]) for cell in cells]
        assert max(widths) - min(widths) <= 1, (name, widths)
        # Stacked: the cells one under the other, not side by side.
        tops = [cell["box"]["top"] for cell in cells]
        assert tops == sorted(tops) and len(set(tops)) == len(tops), (name, tops)
    if name == "dead-letters":
        # The open letter's box is in sight and takes a tap; the bulk buttons below the table act on it.
        box = page.locator("#bulk input[name=ids]")
        assert box.count() == 1
        box.check()
        assert box.is_checked()
        assert page.locator("#bulk button[value=replay]").is_visible()
    context.close()


def test_a_laptop_keeps_the_tables(listed: str, browser: Any) -> None:
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    sign_in(page, listed, "maria")
    for name in PAGES:
        table = _table(page, listed, name)
        assert table["headShown"], name
        # One line a row: the cells side by side, with no label of their own (the header says it).
        cells = table["rows"][0]
        assert len({round(cell["box"]["top"]) for cell in cells}) == 1, (name, cells)
        assert all(cell["shown"] in ("none", "") for cell in cells), (name, cells)
    context.close()
