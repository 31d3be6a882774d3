"""A cursor of the event query serves only the question it was given out for: stream, filters, order.

Brought to another stream, filter or order, its offset would silently give a page
of a different list; it is a 400 ``cursor_mismatch`` at the API and a message on
the explorer. The limit may change from page to page, and the same question
spelled another way (types reordered, a time in another zone) keeps its cursor.
"""

from __future__ import annotations

import base64
import re
import string
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from analytics.filters import EventFilter
from analytics.query import Cursor, events_page
from analytics.segments import segment_create
from eventflow.errors import Invalid
from streams.models import Stream
from streams.services import stream_create, team_create

from .query_fixtures import EVENTS, analyst_of, append

pytestmark = pytest.mark.django_db

N = 40
# Every event type of the test log but one, so "type" questions have a next page.
TYPES = "page_view,login,button_click"


@pytest.fixture
def analyst(stream: Stream) -> Client:
    client = analyst_of(stream)
    append(stream, N)
    return client


@pytest.fixture
def other_stream(analyst: Client) -> Stream:
    """A second stream the analyst also reads, with as many events."""
    other = stream_create(slug="other", name="Other")
    team_create(slug="other-analysts", members=[User.objects.get(username="analyst")], streams=[other])
    append(other, N)
    return other


def _cursor(url: str) -> str:
    (value,) = parse_qs(urlsplit(url).query)["cursor"]
    return value


def _page(client: Client, path: str, params: list[tuple[str, str]]) -> Any:
    return client.get(f"{path}?{urlencode(params)}")


def _first_next_cursor(client: Client, params: list[tuple[str, str]]) -> str:
    response = _page(client, EVENTS, [*params, ("limit", "2")])
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["next"] is not None
    return _cursor(body["next"])


def _assert_mismatch(response: Any) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == "cursor_mismatch"
    assert "another question" in body["error"]["message"]
    assert body["error"]["details"] == {}


# (the question the cursor was given out for, the question it is brought to)
OTHER_QUESTIONS = [
    ("another order", [], [("order", "oldest")]),
    ("the other order back", [("order", "oldest")], []),
    ("a type added", [], [("type", "login")]),
    ("another type", [("type", "login")], [("type", "page_view")]),
    ("one type fewer", [("type", "login,page_view")], [("type", "login")]),
    ("a filter dropped", [("type", "login")], []),
    ("another user", [("user_id", "u1")], [("user_id", "u2")]),
    ("a session", [], [("session_id", "s1")]),
    ("a time range", [], [("from", "2026-11-21T10:00:00Z")]),
    ("another time", [("from", "2026-11-21T10:00:00Z")], [("from", "2026-11-21T10:00:01Z")]),
    ("an offset bound", [], [("offset_to", "30")]),
    ("a property", [], [("payload.plan", "pro")]),
    ("another value", [("payload.plan", "pro")], [("payload.plan", "free")]),
    ("equality turned to inequality", [("payload.plan", "pro")], [("payload.plan!", "pro")]),
    ("exists turned to missing", [("exists", "payload.coupon")], [("missing", "payload.coupon")]),
]


@pytest.mark.parametrize(
    ("given", "brought"), [(g, b) for _, g, b in OTHER_QUESTIONS], ids=[n for n, *_ in OTHER_QUESTIONS]
)
def test_a_cursor_brought_to_another_filter_or_order_is_a_400(
    analyst: Client, given: list[tuple[str, str]], brought: list[tuple[str, str]]
) -> None:
    cursor = _first_next_cursor(analyst, given)
    # Still good for its own question...
    assert _page(analyst, EVENTS, [*given, ("cursor", cursor)]).status_code == 200
    # ...and refused, not misread, for another.
    _assert_mismatch(_page(analyst, EVENTS, [*brought, ("cursor", cursor)]))


def test_a_cursor_brought_to_another_stream_is_a_400(analyst: Client, other_stream: Stream) -> None:
    cursor = _first_next_cursor(analyst, [("type", "login")])
    ours = _page(analyst, EVENTS, [("type", "login"), ("cursor", cursor)])
    assert ours.status_code == 200
    _assert_mismatch(_page(analyst, "/api/v1/streams/other/events", [("type", "login"), ("cursor", cursor)]))


def test_a_previous_cursor_is_bound_as_well(analyst: Client) -> None:
    first = _page(analyst, EVENTS, [("type", TYPES), ("limit", "5")]).json()
    second = analyst.get(first["next"]).json()
    previous = _cursor(second["previous"])
    back = _page(analyst, EVENTS, [("type", TYPES), ("limit", "5"), ("cursor", previous)])
    assert back.json()["results"] == first["results"]
    _assert_mismatch(_page(analyst, EVENTS, [("type", "login"), ("limit", "5"), ("cursor", previous)]))
    _assert_mismatch(_page(analyst, EVENTS, [("type", TYPES), ("order", "oldest"), ("cursor", previous)]))


def test_the_limit_may_change_from_page_to_page(analyst: Client) -> None:
    everything = [e["offset"] for e in _page(analyst, EVENTS, [("type", TYPES), ("limit", "1000")]).json()["results"]]
    cursor = _first_next_cursor(analyst, [("type", TYPES)])
    body = _page(analyst, EVENTS, [("type", TYPES), ("limit", "7"), ("cursor", cursor)]).json()
    assert [e["offset"] for e in body["results"]] == everything[2:9]
    body = analyst.get(body["next"].replace("limit=7", "limit=3")).json()
    assert [e["offset"] for e in body["results"]] == everything[9:12]


@pytest.mark.parametrize(
    ("given", "brought"),
    [
        ([("type", "login,page_view")], [("type", "page_view"), ("type", "login")]),
        ([("type", "login,login")], [("type", "login")]),
        ([("from", "2026-11-21T10:00:00Z")], [("from", "2026-11-21T11:00:00+01:00")]),
        (
            [("payload.plan", "pro"), ("exists", "payload.coupon")],
            [("exists", "payload.coupon"), ("payload.plan", "pro")],
        ),
        ([("payload.page", "/p/1"), ("payload.page", "/p/2")], [("payload.page", "/p/2"), ("payload.page", "/p/1")]),
        ([("order", "newest")], []),
    ],
    ids=[
        "types reordered",
        "a type repeated",
        "a time in another zone",
        "conditions reordered",
        "values reordered",
        "the default order named",
    ],
)
def test_the_same_question_spelled_another_way_keeps_its_cursor(
    analyst: Client, given: list[tuple[str, str]], brought: list[tuple[str, str]]
) -> None:
    cursor = _first_next_cursor(analyst, given)
    expected = _page(analyst, EVENTS, [*given, ("limit", "5"), ("cursor", cursor)]).json()
    response = _page(analyst, EVENTS, [*brought, ("limit", "5"), ("cursor", cursor)])
    assert response.status_code == 200, response.content
    assert response.json()["results"] == expected["results"]
    assert expected["results"]


def test_a_segment_and_its_conditions_are_one_question(analyst: Client, stream: Stream) -> None:
    segment_create(
        stream_id=stream.pk, name="pro", conditions=[{"property": "payload.plan", "op": "eq", "values": ["pro"]}]
    )
    cursor = _first_next_cursor(analyst, [("segment", "pro")])
    assert _page(analyst, EVENTS, [("payload.plan", "pro"), ("cursor", cursor)]).status_code == 200
    _assert_mismatch(_page(analyst, EVENTS, [("payload.plan", "free"), ("cursor", cursor)]))


def test_cursors_stay_opaque_url_safe_and_short(analyst: Client) -> None:
    long_question = [("user_id", "u1"), ("payload.plan", "pro"), ("payload.context_of_a_long_name", "x" * 200)]
    plain = _first_next_cursor(analyst, [])
    first = _page(analyst, EVENTS, [("user_id", "u1"), ("payload.plan", "pro"), ("limit", "1")]).json()
    second = analyst.get(first["next"]).json()
    cursors = [plain, _cursor(first["next"]), _cursor(second["next"]), _cursor(second["previous"])]
    for cursor in cursors:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", cursor), cursor
    # A digest, not the question: however long the question, the cursor's size is the same.
    assert {len(c) for c in cursors} == {len(plain)}
    response = _page(analyst, EVENTS, [*long_question[:2], ("cursor", _cursor(first["next"]))])
    assert response.status_code == 200
    _assert_mismatch(_page(analyst, EVENTS, [*long_question, ("cursor", _cursor(first["next"]))]))


def _changed(cursor: str, at: int) -> str:
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"  # base64url's
    return cursor[:at] + alphabet[(alphabet.index(cursor[at]) + 1) % 64] + cursor[at + 1 :]


def test_malformed_and_tampered_cursors_are_still_a_400(analyst: Client) -> None:
    cursor = _first_next_cursor(analyst, [("type", TYPES)])
    old_style = base64.urlsafe_b64encode(b"n30").decode().rstrip("=")  # the offset alone, as cursors once were
    for bad in [cursor[:-1], cursor[:-4], cursor + "AAAA", cursor[:-1] + "!", old_style, "x" * 41]:
        response = _page(analyst, EVENTS, [("type", TYPES), ("cursor", bad)])
        assert response.status_code == 400, (bad, response.content)
        assert response.json()["error"]["code"] == "invalid_cursor", bad
    # The digest's characters changed: the cursor names no question it was given out for.
    response = _page(analyst, EVENTS, [("type", TYPES), ("cursor", _changed(cursor, len(cursor) - 3))])
    _assert_mismatch(response)


def test_the_selector_refuses_a_cursor_of_another_stream(stream: Stream) -> None:
    other = stream_create(slug="other", name="Other")
    append(stream, 10)
    append(other, 10)
    page = events_page(stream_id=stream.pk, event_filter=EventFilter(), limit=3)
    assert page.next is not None
    cursor = Cursor.decode(page.next.encode())
    assert cursor == page.next
    with pytest.raises(Invalid) as refused:
        events_page(stream_id=other.pk, event_filter=EventFilter(), limit=3, cursor=cursor)
    assert refused.value.code == "cursor_mismatch"
    again = events_page(stream_id=stream.pk, event_filter=EventFilter(), limit=3, cursor=cursor)
    assert [e["offset"] for e in again.events] == [6, 5, 4]


# --- the explorer page ------------------------------------------------------------------------------


@pytest.fixture
def signed_in(stream: Stream, fast_password_hashes: None) -> Client:
    user = User.objects.create_user("explorer", password="a-long-password-1")
    user.groups.add(Group.objects.get(name="Analyst"))
    team_create(slug="explorers", members=[user], streams=[stream])
    append(stream, 100)
    client = Client()
    client.force_login(user)
    return client


def _next_link(html: str) -> str:
    found = re.search(r'href="(\?[^"]*cursor=[^"]*)"[^>]*rel="next"', html)
    assert found, html
    return unescape(found.group(1))


def test_the_explorer_says_when_a_page_link_belongs_to_another_search(signed_in: Client) -> None:
    first = signed_in.get("/streams/shop/events/", {"type": TYPES}).content.decode()
    cursor = _cursor(_next_link(first))
    own = signed_in.get("/streams/shop/events/", {"type": TYPES, "cursor": cursor})
    assert own.status_code == 200
    assert "belongs to another search" not in own.content.decode()
    assert 'id="events"' in own.content.decode()
    for other in ({"type": "login"}, {"type": TYPES, "order": "oldest"}, {"type": TYPES, "user_id": "u1"}):
        response = signed_in.get("/streams/shop/events/", {**other, "cursor": cursor})
        assert response.status_code == 200
        html = response.content.decode()
        assert "belongs to another search" in html, other
        # No page of another list is shown as if it were the next one.
        assert 'id="events"' not in html


def test_the_explorer_refuses_a_link_of_another_stream(signed_in: Client, stream: Stream) -> None:
    other = stream_create(slug="other", name="Other")
    team_create(slug="other-explorers", members=[User.objects.get(username="explorer")], streams=[other])
    append(other, 60)
    cursor = _cursor(_next_link(signed_in.get("/streams/other/events/").content.decode()))
    html = signed_in.get("/streams/shop/events/", {"cursor": cursor}).content.decode()
    assert "belongs to another search" in html
    assert 'id="events"' not in html


def test_an_api_cursor_serves_the_explorer_for_the_same_question(analyst: Client, signed_in: Client) -> None:
    # The page and the API read one question the same way: a link of either continues in the other.
    cursor = _first_next_cursor(analyst, [("type", TYPES)])
    html = signed_in.get("/streams/shop/events/", {"type": TYPES, "cursor": cursor}).content.decode()
    assert "belongs to another search" not in html
    assert 'id="events"' in html
