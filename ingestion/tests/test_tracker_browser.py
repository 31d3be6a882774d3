"""The browser tracker in Chromium: a page of another origin, served by the test, loads /t.{version}.js with its
integrity hash from a live EventFlow and sends to it.

Page views (the first, single-page-app navigation by pushState and back by popstate), a marked click with its
data-ef-* properties, an outbound link, a download, a form submission without its values and the page's
performance arrive in the inbox, all of one visitor; nothing is left in cookies or storage. With
data-respect-dnt, Do-Not-Track or Global Privacy Control keeps the script from sending anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from ingestion.models import InboxEvent
from ingestion.tracker import tracker_script
from ingestion.visitors import visitor_salts_forget
from streams.models import ApiKeyKind, Stream
from streams.services import api_key_create, stream_create
from tests.test_browser import _sync_orm_beside_playwright, browser_type_launch_args  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PAGE = """<!doctype html>
<html><head><title>Shop</title>
<script defer src="{eventflow}/t.{version}.js" integrity="{integrity}" crossorigin="anonymous"
        data-key="{key}" data-endpoint="{eventflow}"{extra}></script>
</head><body>
<h1 id="headline">Pricing</h1>
<div id="late"></div>
<button id="signup" data-ef-event="signup_clicked" data-ef-plan="pro" data-ef-place="hero">Sign up</button>
<button id="next" onclick="history.pushState({{}}, '', '/spa/step-2?tab=b')">Next step</button>
<a id="out" href="http://localhost:{port}/outside?token=abc" onclick="event.preventDefault()">Partner</a>
<a id="pdf" href="/files/price-list.pdf" onclick="event.preventDefault()">Price list</a>
<form id="contact" name="contact-form" action="/thanks?from=form" method="post">
  <input name="email" value=""><button id="send" type="submit">Send</button>
</form>
<script>
  // An interaction that takes a while (INP) and a late block that shifts the page (CLS).
  document.getElementById("signup").addEventListener("click", function () {{
    var until = performance.now() + 120; while (performance.now() < until) {{}}
  }});
  setTimeout(function () {{
    var block = document.createElement("p"); block.style.height = "300px"; block.textContent = "Offer";
    document.getElementById("late").appendChild(block);
  }}, 100);
</script>
</body></html>
"""


class _Site:
    """Another origin than EventFlow's: the shop's pages, on 127.0.0.1 (EventFlow's live server is on localhost)."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                path = self.path.split("?", 1)[0]
                body = site.pages.get(path, site.pages.get("*", "<!doctype html><p>elsewhere</p>")).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[_Site]:
    served = _Site()
    yield served
    served.close()


@pytest.fixture
def shop(db: Any) -> tuple[Stream, str]:
    visitor_salts_forget()
    stream = stream_create(slug="shop", name="Shop")
    return stream, api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key


def page_html(live_server: Any, site: _Site, key: str, extra: str = "") -> str:
    script = tracker_script()
    return PAGE.format(
        eventflow=live_server.url,
        version=script.version,
        integrity=script.integrity,
        key=key,
        port=site.port,
        extra=extra,
    )


def wait_for(condition: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def inbox(stream: Stream) -> list[InboxEvent]:
    return list(InboxEvent.objects.filter(stream=stream).order_by("id"))


def test_the_tracker_sends_views_navigation_clicks_forms_and_performance(
    live_server: Any, site: _Site, shop: tuple[Stream, str], page: Any
) -> None:
    stream, key = shop
    site.pages["/"] = page_html(live_server, site, key)
    site.pages["/thanks"] = "<!doctype html><p>Thank you</p>"
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)

    page.goto(f"{site.url}/?utm_source=newsletter")
    page.wait_for_function("typeof window.eventflow === 'function'")
    page.wait_for_timeout(300)  # the late block has shifted the page
    page.click("#signup")
    page.click("#out")
    page.click("#pdf")
    page.click("#next")
    assert page.evaluate("location.pathname") == "/spa/step-2"
    page.go_back()
    page.wait_for_function("location.pathname === '/'")
    page.evaluate("window.eventflow('coupon_applied', {code: 'SPRING'})")
    state = page.evaluate("({cookie: document.cookie, local: localStorage.length, session: sessionStorage.length})")
    assert state == {"cookie": "", "local": 0, "session": 0}
    page.fill("input[name=email]", "ada@example.com")
    page.click("#send")
    page.wait_for_url(f"{site.url}/thanks?from=form")
    # Nothing kept for any origin, EventFlow's included.
    assert page.context.cookies() == []

    expected = {"page_view": 3, "page_performance": 3, "signup_clicked": 1, "outbound_click": 1}
    expected |= {"file_download": 1, "form_submit": 1, "coupon_applied": 1}

    def arrived() -> list[InboxEvent] | None:
        rows = inbox(stream)
        counts: dict[str, int] = {}
        for row in rows:
            counts[row.type] = counts.get(row.type, 0) + 1
        return rows if all(counts.get(kind, 0) >= n for kind, n in expected.items()) else None

    rows = wait_for(arrived)
    assert rows, f"arrived: {[row.type for row in inbox(stream)]}"
    assert problems == []
    by_type: dict[str, list[InboxEvent]] = {}
    for row in rows:
        by_type.setdefault(row.type, []).append(row)
    assert {kind: len(found) for kind, found in by_type.items()} == expected

    views = by_type["page_view"]
    assert [view.payload["page"] for view in views] == ["/", "/spa/step-2", "/"]
    assert views[0].context["page"]["url"] == f"{site.url}/?utm_source=newsletter"
    assert views[1].payload["referrer"] == f"{site.url}/?utm_source=newsletter"
    assert views[1].context["page"]["url"] == f"{site.url}/spa/step-2?tab=b"
    assert views[2].payload["referrer"] == f"{site.url}/spa/step-2?tab=b"
    assert len({view.context["page_view_id"] for view in views}) == 3

    [click] = by_type["signup_clicked"]
    assert click.payload == {"plan": "pro", "place": "hero", "page": "/"}
    assert click.context["page_view_id"] == views[0].context["page_view_id"]
    assert by_type["outbound_click"][0].payload["url"] == f"http://localhost:{site.port}/outside"
    assert by_type["file_download"][0].payload["url"] == f"{site.url}/files/price-list.pdf"
    [form] = by_type["form_submit"]
    assert form.payload == {
        "form_id": "contact",
        "form_name": "contact-form",
        "action": f"{site.url}/thanks",
        "page": "/",
    }
    assert by_type["coupon_applied"][0].payload == {"code": "SPRING", "page": "/"}

    # One per view: the first two sent as the app navigated away from them, the last as the form left the page.
    measured = by_type["page_performance"]
    assert [row.context["page_view_id"] for row in measured] == [view.context["page_view_id"] for view in views]
    assert [row.payload["page"] for row in measured] == ["/", "/spa/step-2", "/"]
    first, last = measured[0], measured[2]
    assert first.payload["page"] == "/"
    assert set(first.payload) == {"page", "ttfb", "dom_content_loaded", "load", "lcp", "cls", "inp"}
    assert 0 < first.payload["ttfb"] <= first.payload["dom_content_loaded"] <= first.payload["load"]
    assert first.payload["lcp"] > 0
    assert first.payload["cls"] > 0
    assert first.payload["inp"] >= 100
    # A view of a single-page app has no navigation of its own: only what it measured itself.
    assert "ttfb" not in last.payload and "lcp" not in last.payload
    assert last.payload["cls"] == 0

    # One visitor throughout, named by the server; no field's value left the page.
    assert len({row.anonymous_id for row in rows}) == 1
    assert rows[0].anonymous_id.startswith("v_")
    stored = orjson.dumps([[row.payload, row.context] for row in rows]).decode()
    assert "ada@example.com" not in stored and "token=abc" not in stored


@pytest.mark.parametrize(
    ("respect", "signal", "sends"),
    [
        (True, "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})", False),
        (True, "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})", False),
        (True, "", True),
        (False, "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})", True),
    ],
    ids=["gpc-respected", "dnt-respected", "no-signal", "site-did-not-ask"],
)
def test_do_not_track_and_global_privacy_control_when_the_site_asks(
    live_server: Any, site: _Site, shop: tuple[Stream, str], browser: Any, respect: bool, signal: str, sends: bool
) -> None:
    stream, key = shop
    site.pages["/"] = page_html(live_server, site, key, extra=" data-respect-dnt" if respect else "")
    context = browser.new_context()
    if signal:
        context.add_init_script(signal)
    page = context.new_page()
    page.goto(f"{site.url}/")
    page.wait_for_load_state("load")
    # The script was fetched and ran (its integrity held) either way.
    assert page.evaluate("performance.getEntriesByType('resource').some(e => e.name.includes('/t.'))")
    page.click("#signup")
    page.click("#next")
    if sends:
        assert wait_for(lambda: len(inbox(stream)) >= 3), [row.type for row in inbox(stream)]
        assert page.evaluate("typeof window.eventflow") == "function"
    else:
        page.wait_for_timeout(1500)
        assert page.evaluate("typeof window.eventflow") == "undefined"
        assert inbox(stream) == []
    context.close()


def test_a_form_whose_action_is_no_url_is_still_sent(
    live_server: Any, site: _Site, shop: tuple[Stream, str], page: Any
) -> None:
    stream, key = shop
    # The form posts nowhere the page could name as a URL; the submit is still the page's event.
    broken = '<form id="odd" action="http://[?q=1" onsubmit="event.preventDefault()"><button id="go">Go</button></form>'
    site.pages["/"] = page_html(live_server, site, key).replace("</body>", broken + "</body>")
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    page.goto(f"{site.url}/")
    page.wait_for_function("typeof window.eventflow === 'function'")
    page.click("#go")

    forms = wait_for(lambda: [row for row in inbox(stream) if row.type == "form_submit"])
    assert forms, [row.type for row in inbox(stream)]
    assert forms[0].payload == {"form_id": "odd", "action": "http://[", "page": "/"}
    assert problems == []
