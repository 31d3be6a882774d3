"""The stream tab bar's "Dead letters" tab keeps its viewer in the stream, and the Alerts page's crumbs name it.

The tab opens the global dead-letter list filtered to the stream (``?stream=<slug>``). Filtered to one of the
viewer's streams, that list is the stream's page: its tab bar, "Dead letters" active, and the crumbs
Streams / <stream> / Dead letters. Unfiltered it is the global list, without either; filtered to a stream of
another team it shows neither (the filter is refused as before). The bar costs no query.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from streams.dead_letters import DeadLetterIn, dead_letters_record
from streams.models import DeadLetter, DeadLetterStage, Stream
from streams.services import stream_create, team_create
from tests.test_stream_tabs import TabBars, signed_in, tab_bar, team_of_roles

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashes")]

# Those who open the dead letters (operate); the other roles' tab bars have no such tab.
OPERATORS = ("Admin", "Operator")
CRUMBS = re.compile(r'<div class="crumbs">(.*?)</div>', re.S)
# The analytics pages' own row of tabs, whole.
ANALYTICS_ROW = re.compile(r'<nav class="tabs" aria-label="Analytics">(.*?)</nav>', re.S)


def _letters(stream: Stream, count: int) -> None:
    dead_letters_record(
        letters=[
            DeadLetterIn(
                stream_id=stream.pk,
                event_id=f"{stream.slug}-bad-{i}",
                event={"event_id": f"{stream.slug}-bad-{i}", "type": "login", "payload": {}},
                stage=DeadLetterStage.VALIDATE,
                error_class="SchemaViolation",
                error_message="payload.method is required",
            )
            for i in range(count)
        ]
    )


@pytest.fixture
def streams(db: Any) -> dict[str, Stream]:
    shop: Stream = stream_create(slug="shop", name="Shop front")
    other: Stream = stream_create(slug="other", name="Other team's")
    _letters(shop, 2)
    _letters(other, 2)
    # "other" belongs to another team: nobody below reaches it.
    team_create(slug="elsewhere", streams=[other])
    return {"shop": shop, "other": other}


@pytest.fixture
def people(streams: dict[str, Stream]) -> dict[str, User]:
    return team_of_roles(streams["shop"])


def bars(html: str) -> list[list[dict[str, str]]]:
    parser = TabBars()
    parser.feed(html)
    return parser.bars


def crumbs(html: str) -> list[str]:
    """The words of the page's crumbs, "/" between their links."""
    found = CRUMBS.search(html)
    return re.sub(r"<[^>]+>", " ", found.group(1)).split() if found else []


@pytest.mark.parametrize("role", OPERATORS)
def test_the_filtered_list_is_the_streams_dead_letters_tab(role: str, people: dict[str, User]) -> None:
    client = signed_in(people[role])
    response = client.get("/dead-letters/?stream=shop")
    assert response.status_code == 200
    html = response.content.decode()
    tabs = tab_bar(html)
    # The same bar as the stream's other pages draw for this viewer, "Dead letters" marked instead.
    overview = tab_bar(client.get("/streams/shop/").content.decode())
    assert [(t["label"], t["href"]) for t in tabs] == [(t["label"], t["href"]) for t in overview]
    active = [(t["label"], t["href"], t["aria-current"]) for t in tabs if "active" in t["class"].split()]
    assert active == [("Dead letters", "/dead-letters/?stream=shop", "page")]
    assert crumbs(html) == ["Streams", "/", "shop", "/", "Dead", "letters"]
    assert '<a class="mono" href="/streams/shop/">shop</a>' in html
    assert "<title>Dead letters · Shop front" in html
    # Still the list, filtered: the stream's letters only.
    assert "shop-bad-0" in html and "other-bad-0" not in html


@pytest.mark.parametrize("role", OPERATORS)
def test_the_unfiltered_list_stays_the_global_one(role: str, people: dict[str, User]) -> None:
    for path in ("/dead-letters/", "/dead-letters/?stream=", "/dead-letters/?status=replayed"):
        response = signed_in(people[role]).get(path)
        assert response.status_code == 200, path
        html = response.content.decode()
        assert bars(html) == [], path
        assert crumbs(html) == [], path


@pytest.mark.parametrize("role", OPERATORS)
def test_another_teams_stream_shows_no_tabs_and_leaks_nothing(role: str, people: dict[str, User]) -> None:
    for slug in ("other", "no-such-stream"):
        response = signed_in(people[role]).get(f"/dead-letters/?stream={slug}")
        # As before: the filter is refused beside the form, and the list shows only the viewer's letters.
        assert response.status_code == 200, slug
        html = response.content.decode()
        assert bars(html) == [], slug
        assert crumbs(html) == [], slug
        assert "Other team" not in html and "other-bad-0" not in html and "/streams/other/" not in html
        assert "Select a valid choice" in html


def test_those_who_do_not_operate_still_may_not_open_it(people: dict[str, User]) -> None:
    for role in ("Developer", "Analyst", "Consumer"):
        response = signed_in(people[role]).get("/dead-letters/?stream=shop")
        assert response.status_code == 403, role
        assert bars(response.content.decode()) == [], role


def test_a_superuser_outside_every_team_sees_any_streams_bar(streams: dict[str, Stream]) -> None:
    boss = User.objects.create_superuser("boss", email="boss@example.com", password="a-long-password-1")
    html = signed_in(boss).get("/dead-letters/?stream=other").content.decode()
    active = [t["label"] for t in tab_bar(html) if "active" in t["class"].split()]
    assert active == ["Dead letters"]
    assert crumbs(html) == ["Streams", "/", "other", "/", "Dead", "letters"]


def test_the_tab_bar_costs_the_filtered_list_no_query(people: dict[str, User], django_assert_num_queries: Any) -> None:
    """The page's door and its filter have read the caller's streams and roles; the bar reads them for free."""
    client = signed_in(people["Operator"])
    client.get("/dead-letters/")  # the session's first read, the same for both below
    with CaptureQueriesContext(connection) as unfiltered:
        assert client.get("/dead-letters/").status_code == 200
    with django_assert_num_queries(len(unfiltered.captured_queries)):
        response = client.get("/dead-letters/?stream=shop")
    assert len(bars(response.content.decode())) == 1


def test_the_alerts_page_crumbs_name_its_tab(people: dict[str, User]) -> None:
    client = signed_in(people["Analyst"])
    html = client.get("/streams/shop/alerts/").content.decode()
    assert crumbs(html) == ["Streams", "/", "shop", "/", "Alerts"]
    active = [t["label"] for t in tab_bar(html) if "active" in t["class"].split()]
    assert active == ["Alerts"]
    # Alerts are a tab of the stream's row alone: no analytics row below it, and none of its tabs.
    assert ANALYTICS_ROW.findall(html) == []
    rows = ANALYTICS_ROW.findall(client.get("/streams/shop/analytics/").content.decode())
    assert len(rows) == 1
    assert "/streams/shop/analytics/funnel/" in rows[0]
    assert "/streams/shop/alerts/" not in rows[0]
    # The analytics pages keep theirs.
    assert crumbs(client.get("/streams/shop/analytics/").content.decode()) == ["Streams", "/", "shop", "/", "Analytics"]


@pytest.mark.parametrize("role", OPERATORS)
def test_a_letter_is_shown_under_its_stream(role: str, people: dict[str, User]) -> None:
    """A letter's page carries its stream's tab bar (Dead letters active) and crumbs back to the stream's list."""
    client = signed_in(people[role])
    letter = DeadLetter.objects.filter(stream__slug="shop").order_by("pk").first()
    assert letter is not None
    overview = tab_bar(client.get("/streams/shop/").content.decode())
    html = client.get(f"/dead-letters/{letter.pk}/").content.decode()
    found = tab_bar(html)
    assert [t["label"] for t in found] == [t["label"] for t in overview]
    assert [t["label"] for t in found if "active" in t["class"].split()] == ["Dead letters"]
    assert crumbs(html) == ["Streams", "/", "shop", "/", "Dead", "letters"]
    assert 'href="/dead-letters/?stream=shop"' in CRUMBS.search(html).group(1)  # type: ignore[union-attr]
