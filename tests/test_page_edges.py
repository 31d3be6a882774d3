"""The dashboard's pages on odd input: a clear 4xx or the form again with what was typed, never a 500.

Each test names the address a person could type or follow; the test client re-raises
a view's exception, so a 500 fails the test with its traceback.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from eventflow.tests.test_pages import person
from streams.models import Stream
from streams.services import stream_create, team_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashes", "fresh_rate_counters")]


@pytest.fixture
def shop(db: Any) -> Stream:
    return stream_create(slug="shop", name="Shop", with_starter_schemas=True)


@pytest.fixture
def browser(shop: Stream) -> Client:
    admin = person("maria", "Admin")
    team_create(slug="growth", members=[admin], streams=[shop])
    client = Client()
    client.force_login(admin)
    return client


# --- a NUL character in the address -----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/keys/new/?stream=%00",
        "/people/%00/",
        "/people/%00/active/",
        "/teams/growth/members/%00/remove/",
        "/streams/shop/schemas/%00/",
        "/streams/shop/schemas/%00/new/",
        "/streams/shop/analytics/?dimension=payload.%00",
        "/streams/shop/analytics/funnel/?step=login&step=%00",
        "/streams/shop/analytics/retention/?event=%00",
        "/streams/shop/analytics/paths/?start=%00",
    ],
)
def test_a_nul_character_in_the_address_is_the_400_page(browser: Client, path: str) -> None:
    response = browser.get(path)
    assert response.status_code == 400
    assert b"NUL" in response.content and b'class="sidebar"' in response.content


def test_a_nul_character_still_sends_a_signed_out_person_to_sign_in(client: Client, shop: Stream) -> None:
    response = client.get("/people/%00/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


# --- numbers that str.isdigit() takes and int() refuses ------------------------------------------------


@pytest.mark.parametrize("raw", ["%C2%B2", "9" * 5000])
def test_an_odd_version_number_shows_the_newest_version(browser: Client, raw: str) -> None:
    page = browser.get(f"/streams/shop/schemas/login/?version={raw}")
    assert page.status_code == 200 and b"v1" in page.content
    tried = browser.post("/streams/shop/schemas/login/try/", {"payload": '{"method": "password"}', "version": raw})
    assert tried.status_code == 200


@pytest.mark.parametrize("raw", ["%C2%B2", "9" * 5000])
def test_odd_periods_and_depths_are_errors_beside_the_form(browser: Client, raw: str) -> None:
    retention = browser.get(f"/streams/shop/analytics/retention/?periods={raw}")
    assert retention.status_code == 200 and b"Periods is a whole number" in retention.content
    paths = browser.get(f"/streams/shop/analytics/paths/?start=login&depth={raw}")
    assert paths.status_code == 200 and b"Depth is from 1" in paths.content


# --- times at the ends of the calendar -----------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "range=custom&to=0001-01-01T00:00",
        "range=custom&from=0001-01-01T00:00&to=0001-01-02T00:00&tz=Asia/Tokyo",
        "range=custom&from=9999-12-30T00:00&to=9999-12-31T23:59&tz=America/New_York",
    ],
)
@pytest.mark.parametrize("page", ["analytics/", "analytics/funnel/", "analytics/paths/", "analytics/processing/"])
def test_a_time_outside_the_calendar_is_an_error_beside_the_form(
    browser: Client,
    page: str,
    query: str,
) -> None:
    response = browser.get(f"/streams/shop/{page}?{query}")
    assert response.status_code == 200
    assert b"must lie between the years 1000 and 9000" in response.content


# --- the range picker keeps what was typed ---------------------------------------------------------------


@pytest.mark.parametrize("page", ["analytics/", "analytics/funnel/", "analytics/paths/", "analytics/processing/"])
def test_a_refused_range_keeps_what_was_typed(browser: Client, page: str) -> None:
    response = browser.get(f"/streams/shop/{page}?range=custom&from=2026-11-22T09:00&to=2026-11-21T09:00&tz=Asia/Tokyo")
    html = response.content.decode()
    assert response.status_code == 200 and "from must be before to" in html
    assert '<option value="custom" selected>' in html
    assert 'name="from" value="2026-11-22T09:00"' in html and 'name="to" value="2026-11-21T09:00"' in html
    assert 'name="tz" value="Asia/Tokyo"' in html


def test_a_refused_retention_question_keeps_the_time_zone(browser: Client) -> None:
    response = browser.get("/streams/shop/analytics/retention/?periods=0&tz=Asia/Tokyo")
    html = response.content.decode()
    assert response.status_code == 200 and "Periods is a whole number" in html
    assert 'name="tz" value="Asia/Tokyo"' in html


def test_an_analyst_reaches_the_range_error_too(shop: Stream) -> None:
    analyst = person("ana", "Analyst")
    team_create(slug="t", members=[analyst], streams=[shop])
    client = Client()
    client.force_login(analyst)
    response = client.get("/streams/shop/analytics/?range=custom&to=0001-01-01T00:00")
    assert response.status_code == 200 and b"between the years 1000 and 9000" in response.content
