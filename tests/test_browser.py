"""The dashboard in a real browser: Debian's chromium driven by Playwright against a live server.

As an Admin: sign in, create a stream and a key (the key is seen once, then only
its prefix), send events over the REST API and watch them arrive in the live
tail without reloading, pause it. As an Analyst: the keys page is refused (403).
As another team's member: the stream is not found (404). Screenshots of every
main page (laptop and phone, light and dark) go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import Group, User
from playwright.sync_api import expect

from ingestion.pipeline import stream_drain
from streams.dead_letters import DeadLetterIn, dead_letters_record
from streams.models import DeadLetterStage, Stream
from streams.services import stream_create, team_create

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_password_hashes"),
]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("chromium is not installed (.ci/run installs it)", allow_module_level=True)

PASSWORD = "a-long-password-1"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
VIEWPORTS = {"laptop": {"width": 1366, "height": 860}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--headless", "--no-sandbox", "--disable-gpu"],
    }


@pytest.fixture(scope="session", autouse=True)
def _sync_orm_beside_playwright() -> Iterator[None]:
    # Playwright's sync API keeps an event loop in this thread; the ORM calls made here (the test
    # database's set-up included, when these tests run first) are plain sync code all the same.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def person(username: str, role: str | None, *, streams: list[Stream] = (), team: str = "") -> User:  # type: ignore[assignment]
    user = User.objects.create_user(username, email=f"{username}@example.com", password=PASSWORD)
    if role:
        user.groups.add(Group.objects.get(name=role))
    if team:
        team_create(slug=team, members=[user], streams=list(streams))
    return user


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def send(base: str, key: str, slug: str, count: int, start: int = 0) -> None:
    batch = {
        "events": [{"type": "page_view", "user_id": f"u{i}", "payload": {"n": i}} for i in range(start, start + count)]
    }
    answer = httpx.post(f"{base}/api/v1/streams/{slug}/events/batch", json=batch, headers={"X-API-Key": key})
    assert answer.status_code == 202, answer.text


def process(slug: str) -> None:
    """What the worker does when the intake's task arrives (the run's broker is in memory)."""
    stream_drain(stream_id=Stream.objects.get(slug=slug).pk)


def test_admin_creates_a_stream_and_a_key_and_watches_events_arrive(live_server: Any, page: Any) -> None:
    base = live_server.url
    person("maria", "Admin", team="growth")
    sign_in(page, base, "maria")

    page.goto(f"{base}/streams/new/")
    page.fill("#id_slug", "checkout")
    page.fill("#id_name", "Checkout")
    page.check("#id_teams_0")
    page.click("button:has-text('Create stream')")
    page.wait_for_url(f"{base}/streams/checkout/")
    assert "Stream “Checkout” created" in page.inner_text(".messages")

    page.click("a:has-text('New key')")
    page.fill("#id_name", "web tracker")
    page.check("input[name=streams][value='{}']".format(Stream.objects.get(slug="checkout").pk))
    page.click("button:has-text('Create key')")
    raw_key = page.inner_text("#new-key").strip()
    assert re.fullmatch(r"ef_ingest_\S{20,}", raw_key)
    assert "will not be shown again" in page.inner_text(".notice")

    page.goto(f"{base}/keys/")
    listing = page.inner_text("main")
    assert "web tracker" in listing and raw_key not in listing
    assert raw_key[:16] in listing  # the prefix, and only the prefix

    page.goto(f"{base}/streams/checkout/")
    page.wait_for_selector("#tail-body >> text=Waiting for the first event")
    send(base, raw_key, "checkout", 3)
    process("checkout")
    # No reload: the tail's own polling brings them (expect() polls from outside the page,
    # since the page's Content-Security-Policy refuses the eval that wait_for_function needs).
    rows = page.locator("#tail-body tr[data-offset]")
    expect(rows).to_have_count(3, timeout=10_000)
    assert rows.first.get_attribute("data-offset") == "2"

    # Paused, the tail holds still while events keep arriving; resumed, it catches up.
    page.click("[data-tail-toggle]")
    assert page.inner_text("[data-tail-status]") == "Paused"
    send(base, raw_key, "checkout", 2, start=3)
    process("checkout")
    page.wait_for_timeout(4_500)
    assert rows.count() == 3
    page.click("[data-tail-toggle]")
    expect(rows).to_have_count(5, timeout=10_000)


def test_an_analyst_cannot_open_the_keys_page(live_server: Any, page: Any) -> None:
    base = live_server.url
    shop = stream_create(slug="shop", name="Shop")
    person("ana", "Analyst", team="growth", streams=[shop])
    sign_in(page, base, "ana")
    assert page.locator("nav.nav >> text=API keys").count() == 0
    response = page.goto(f"{base}/keys/")
    assert response is not None and response.status == 403
    assert "You can't open this page" in page.inner_text("main")
    # The stream itself is theirs to read.
    assert page.goto(f"{base}/streams/shop/").status == 200  # type: ignore[union-attr]


def test_another_teams_member_does_not_find_the_stream(live_server: Any, page: Any) -> None:
    base = live_server.url
    shop = stream_create(slug="shop", name="Shop")
    person("maria", "Admin", team="growth", streams=[shop])
    person("otto", "Developer", team="elsewhere")
    sign_in(page, base, "otto")
    response = page.goto(f"{base}/streams/shop/")
    assert response is not None and response.status == 404
    assert "Page not found" in page.inner_text("main")
    assert "Shop" not in page.inner_text("body")


MAIN_PAGES = [
    ("overview", "/"),
    ("streams", "/streams/"),
    ("stream", "/streams/shop/"),
    ("stream-new", "/streams/new/"),
    ("keys", "/keys/"),
    ("key-new", "/keys/new/"),
    ("dead-letters", "/dead-letters/"),
    ("dead-letter", "/dead-letters/{letter}/"),
    ("people", "/people/"),
    ("person-invite", "/people/invite/"),
    ("teams", "/teams/"),
    ("team", "/teams/growth/"),
    ("audit", "/audit/"),
    ("not-found", "/streams/missing/"),
]


def _console_errors(problems: list[str], showing: dict[str, str]) -> Any:
    """Console errors of the page shown (the 404 page's own status is not one)."""

    def listen(message: Any) -> None:
        if message.type == "error" and showing["name"] != "not-found":
            problems.append(f"{showing['name']}: {message.text}")

    return listen


def test_screenshots_of_every_main_page(live_server: Any, browser: Any) -> None:
    base = live_server.url
    shop = stream_create(slug="shop", name="Web shop", description="Storefront events.", with_starter_schemas=True)
    person("maria", "Admin", team="growth", streams=[shop])
    from streams.services import api_key_create

    key = api_key_create(kind="ingest", streams=[shop], name="web tracker").raw_key
    send(base, key, "shop", 30)
    process("shop")
    dead_letters_record(
        letters=[
            DeadLetterIn(
                stream_id=shop.pk,
                event_id="bad-1",
                event={"event_id": "bad-1", "type": "login", "payload": {"method": None}},
                stage=DeadLetterStage.VALIDATE,
                error_class="SchemaViolation",
                error_message="payload.method: None is not of type 'string'",
                traceback="Traceback (most recent call last):\n  ...\njsonschema.ValidationError",
            )
        ]
    )
    letter = shop.dead_letters.get().pk
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for size, viewport in VIEWPORTS.items():
        for scheme in ("light", "dark"):
            context = browser.new_context(viewport=viewport, color_scheme=scheme)
            page = context.new_page()
            showing = {"name": "login"}
            page.on("console", _console_errors(problems, showing))
            page.goto(f"{base}/login/")
            page.screenshot(path=SCREENSHOTS / f"login-{size}-{scheme}.png", full_page=True)
            sign_in(page, base, "maria")
            for name, path in MAIN_PAGES:
                showing["name"] = name
                page.goto(base + path.format(letter=letter))
                page.wait_for_load_state("networkidle")
                if name == "stream":
                    page.wait_for_selector("#tail-body tr[data-offset]")
                # Nothing may stick out sideways on a phone but tables, which scroll in their own box.
                overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                if overflow > 0:
                    problems.append(f"{name} ({size}) is {overflow}px wider than the screen")
                page.screenshot(path=SCREENSHOTS / f"{name}-{size}-{scheme}.png", full_page=True)
            context.close()
    assert not problems, problems
    assert len(list(SCREENSHOTS.glob("*.png"))) >= (len(MAIN_PAGES) + 1) * 4
