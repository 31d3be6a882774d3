"""The stream's tab bar on a phone (375 px wide): eight tabs do not fit, so the bar scrolls sideways inside
itself and the page does not widen. Also on pages without charts.css (an event's page), where the bar's
look comes from app.css alone. In Debian's chromium, marked slow like the other browser tests.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from consumers.webhook_services import webhook_create
from streams.log import LogRecord, log_append_now
from streams.services import stream_create
from tests.fixtures import conf_override

from .test_browser import (  # noqa: F401  (the fixtures that launch the system's chromium)
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
MEASURE = """() => {
  const bar = document.querySelector('nav[aria-label="This stream"]');
  const box = bar.getBoundingClientRect();
  return {
    page: document.documentElement.scrollWidth,
    viewport: window.innerWidth,
    left: box.left,
    right: box.right,
    inner: bar.scrollWidth,
    shown: bar.clientWidth,
    rows: new Set([...bar.querySelectorAll("a")].map((a) => Math.round(a.getBoundingClientRect().top))).size,
    tabs: bar.querySelectorAll("a").length,
  };
}"""


def test_the_tab_bar_scrolls_inside_itself_on_a_phone(live_server: Any, page: Any, settings: Any) -> None:
    conf_override(settings, webhook_allow_loopback=True)
    base = live_server.url
    shop = stream_create(slug="shop", name="Shop", with_starter_schemas=True)
    now = timezone.now()
    log_append_now(
        stream_id=shop.pk,
        records=[LogRecord(event_id="e1", type="page_view", event_time=now, received_at=now, payload={"page": "/"})],
    )
    hook = webhook_create(stream_id=shop.pk, url="http://127.0.0.1:9/hook").webhook
    person("dev", "Developer", streams=[shop], team="growth")
    page.set_viewport_size(PHONE)
    sign_in(page, base, "dev")
    for path in (
        "/streams/shop/",
        "/streams/shop/events/",
        "/streams/shop/events/e1/",
        "/streams/shop/analytics/funnel/",
        "/streams/shop/schemas/",
        f"/streams/shop/webhooks/{hook.pk}/",
        "/streams/shop/kafka/",
    ):
        page.goto(f"{base}{path}")
        found = page.evaluate(MEASURE)
        assert found["tabs"] == 8, (path, found)
        assert found["page"] <= found["viewport"], (path, found)
        assert 0 <= found["left"] and found["right"] <= found["viewport"], (path, found)
        assert found["inner"] > found["shown"], (path, found)  # more than fits: it scrolls
        assert found["rows"] == 1, (path, found)  # never wraps
