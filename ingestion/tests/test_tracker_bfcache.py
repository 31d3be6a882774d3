"""The browser tracker and the back-forward cache, in Chromium: a page the browser shows again from its
back-forward cache (Back after leaving it) is not loaded again, so the script does not start again; it
counts the view on ``pageshow`` with ``event.persisted``. A first load is still one page_view.

Playwright starts Chromium with ``--disable-back-forward-cache``; this test launches its own Chromium
without that switch, so Back really restores the page from the cache (the test checks that it did).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ingestion.models import InboxEvent
from streams.models import Stream

from .test_tracker_browser import (  # noqa: F401  (fixtures)
    _Site,
    _sync_orm_beside_playwright,
    browser_type_launch_args,
    inbox,
    page_html,
    shop,
    site,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Each pageshow's `persisted`, kept in the page's own memory: a page restored from the cache keeps its
# scripts' state, so a restored page holds [false, true] and a page loaded again a fresh [false].
SHOWS = "window.shows = []; addEventListener('pageshow', (event) => window.shows.push(event.persisted));"


@pytest.fixture
def cached_page(browser_type: Any, browser_type_launch_args: dict[str, Any]) -> Iterator[Any]:  # noqa: F811
    browser = browser_type.launch(**browser_type_launch_args, ignore_default_args=["--disable-back-forward-cache"])
    context = browser.new_context()
    context.add_init_script(SHOWS)
    yield context.new_page()
    context.close()
    browser.close()


def views(stream: Stream) -> list[InboxEvent]:
    return [row for row in inbox(stream) if row.type == "page_view"]


def test_a_page_restored_from_the_back_forward_cache_is_a_new_page_view(
    live_server: Any,
    site: _Site,  # noqa: F811
    shop: tuple[Stream, str],  # noqa: F811
    cached_page: Any,
) -> None:
    stream, key = shop
    site.pages["/"] = page_html(live_server, site, key)
    site.pages["/elsewhere"] = "<!doctype html><title>Elsewhere</title><p>Another page of the shop, untracked.</p>"
    page = cached_page
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)

    page.goto(f"{site.url}/?from=ad")
    page.wait_for_function("typeof window.eventflow === 'function'")
    # The first load is one view, though its pageshow (not persisted) has come too.
    page.wait_for_function("window.shows.length === 1")
    assert wait_for(lambda: views(stream)), [row.type for row in inbox(stream)]
    page.wait_for_timeout(500)
    assert len(views(stream)) == 1

    page.goto(f"{site.url}/elsewhere")
    # A restored page fires no load event: wait only for the navigation to be committed.
    page.go_back(wait_until="commit")
    page.wait_for_function("location.pathname === '/'")
    page.wait_for_function("window.shows.length === 2")
    assert page.evaluate("window.shows") == [False, True], "Back loaded the page again instead of restoring it"

    assert wait_for(lambda: len(views(stream)) >= 2), [row.type for row in inbox(stream)]
    page.wait_for_timeout(500)
    first, again = views(stream)
    assert [first.payload["page"], again.payload["page"]] == ["/", "/"]
    assert again.context["page"]["url"] == f"{site.url}/?from=ad"
    # A new view of the same page: its own id, the page's referrer (none here), not itself.
    assert first.context["page_view_id"] != again.context["page_view_id"]
    assert "referrer" not in again.payload and again.payload.get("referrer") == first.payload.get("referrer")
    # The first view was measured as the page was left; clicks after the restore belong to the new view.
    page.click("#signup")
    clicks = wait_for(lambda: [row for row in inbox(stream) if row.type == "signup_clicked"])
    assert clicks and clicks[0].context["page_view_id"] == again.context["page_view_id"]
    measured = [row for row in inbox(stream) if row.type == "page_performance"]
    assert [row.context["page_view_id"] for row in measured] == [first.context["page_view_id"]]
    assert problems == []
