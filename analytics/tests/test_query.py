"""GET /api/v1/streams/{slug}/events: every filter, both orders, cursor pages while events arrive, bad input."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.test import Client

from analytics.models import Segment
from streams.log import LogRecord
from streams.models import ApiKeyKind, Stream
from streams.services import api_key_create

from .query_fixtures import BASE_TIME, EVENTS, analyst_of, append, foreign_analyst, secret_key_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def analyst(stream: Stream) -> Client:
    return analyst_of(stream)


N = 60


def _iso(delta_minutes: int) -> str:
    return (BASE_TIME + timedelta(minutes=delta_minutes)).isoformat()


def _get(client: Client, query: str | list[tuple[str, str]] = "", **extra: Any) -> Any:
    qs = query if isinstance(query, str) else urlencode(query)
    return client.get(f"{EVENTS}?{qs}" if qs else EVENTS, **extra)


def _offsets(client: Client, query: list[tuple[str, str]]) -> list[int]:
    response = _get(client, [*query, ("limit", "1000")])
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["next"] is None
    return [event["offset"] for event in body["results"]]


def _path(record: LogRecord, root: str, dotted: str) -> Any:
    node: Any = getattr(record, root) or {}
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _text(value: Any) -> str | None:
    # The filter compares values as text, as PostgreSQL's #>> gives them.
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


# (query parameters, which records match), each checked against the records themselves.
CASES: list[tuple[str, list[tuple[str, str]], Callable[[LogRecord], bool]]] = [
    ("nothing", [], lambda r: True),
    ("one type", [("type", "login")], lambda r: r.type == "login"),
    (
        "types repeated",
        [("type", "login"), ("type", "Order Completed")],
        lambda r: r.type in ("login", "Order Completed"),
    ),
    ("types comma-separated", [("type", "page_view,button_click")], lambda r: r.type in ("page_view", "button_click")),
    ("user_id", [("user_id", "u3")], lambda r: r.user_id == "u3"),
    ("anonymous_id", [("anonymous_id", "anon-0")], lambda r: r.anonymous_id == "anon-0"),
    ("session_id", [("session_id", "s2")], lambda r: r.session_id == "s2"),
    ("from", [("from", _iso(100))], lambda r: r.event_time >= BASE_TIME + timedelta(minutes=100)),
    ("to", [("to", _iso(100))], lambda r: r.event_time < BASE_TIME + timedelta(minutes=100)),
    (
        "from and to, late events by event time",
        [("from", _iso(30)), ("to", _iso(120))],
        lambda r: BASE_TIME + timedelta(minutes=30) <= r.event_time < BASE_TIME + timedelta(minutes=120),
    ),
    ("offset_from", [("offset_from", "17")], lambda r: int(r.event_id[3:]) >= 17),
    ("offset_to", [("offset_to", "17")], lambda r: int(r.event_id[3:]) < 17),
    ("payload equality", [("payload.page", "/p/2")], lambda r: _path(r, "payload", "page") == "/p/2"),
    (
        "payload equality, any of two values",
        [("payload.page", "/p/1"), ("payload.page", "/p/3")],
        lambda r: _path(r, "payload", "page") in ("/p/1", "/p/3"),
    ),
    ("a number compared as text", [("payload.n", "12")], lambda r: _path(r, "payload", "n") == 12),
    ("nested", [("payload.nested.level", "2")], lambda r: _path(r, "payload", "nested.level") == 2),
    ("inequality", [("payload.plan!", "free")], lambda r: _path(r, "payload", "plan") != "free"),
    ("exists", [("exists", "payload.coupon")], lambda r: _path(r, "payload", "coupon") is not None),
    ("missing", [("missing", "payload.plan")], lambda r: _path(r, "payload", "plan") is None),
    ("context", [("context.library.name", "js")], lambda r: _path(r, "context", "library.name") == "js"),
    ("enrichment", [("enrichment.browser", "Firefox")], lambda r: _path(r, "enrichment", "browser") == "Firefox"),
    (
        "everything at once",
        [
            ("type", "page_view,login,button_click"),
            ("from", _iso(20)),
            ("to", _iso(250)),
            ("offset_from", "3"),
            ("enrichment.device_type", "desktop"),
            ("payload.plan!", "free"),
            ("missing", "payload.coupon"),
        ],
        lambda r: (
            r.type in ("page_view", "login", "button_click")
            and BASE_TIME + timedelta(minutes=20) <= r.event_time < BASE_TIME + timedelta(minutes=250)
            and int(r.event_id[3:]) >= 3
            and _path(r, "enrichment", "device_type") == "desktop"
            and _path(r, "payload", "plan") != "free"
            and _path(r, "payload", "coupon") is None
        ),
    ),
]


@pytest.mark.parametrize(("query", "matches"), [(q, m) for _, q, m in CASES], ids=[name for name, _, _ in CASES])
def test_each_filter_returns_exactly_the_matching_events_newest_first(
    analyst: Client, stream: Stream, query: list[tuple[str, str]], matches: Callable[[LogRecord], bool]
):
    records = append(stream, N)
    expected = [offset for offset, r in enumerate(records) if matches(r)]
    assert expected, "the case must select something"
    if query:
        assert len(expected) < N, "the case must leave something out"
    assert _offsets(analyst, query) == expected[::-1]
    assert _offsets(analyst, [*query, ("order", "oldest")]) == expected


def test_a_segment_filters_by_its_saved_conditions(analyst: Client, stream: Stream):
    records = append(stream, N)
    Segment.objects.create(
        stream=stream,
        name="pro-mobile",
        conditions=[
            {"property": "payload.plan", "op": "eq", "values": ["pro"]},
            {"property": "enrichment.device_type", "op": "eq", "value": "mobile"},
        ],
    )
    expected = [
        i
        for i, r in enumerate(records)
        if _path(r, "payload", "plan") == "pro" and _path(r, "enrichment", "device_type") == "mobile"
    ]
    assert expected
    assert _offsets(analyst, [("segment", "pro-mobile"), ("order", "oldest")]) == expected
    # Combined with a type.
    logins = [i for i in expected if records[i].type == "login"]
    assert _offsets(analyst, [("segment", "pro-mobile"), ("type", "login"), ("order", "oldest")]) == logins
    response = _get(analyst, "segment=no-such-segment")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "segment_not_found"


def test_each_event_carries_every_field(analyst: Client, stream: Stream):
    (record,) = append(stream, 1)
    body = _get(analyst).json()
    (event,) = body["results"]
    logged_at = event.pop("logged_at")
    assert logged_at.endswith("Z")
    assert event == {
        "offset": 0,
        "event_id": "ev-0",
        "type": record.type,
        "timestamp": "2026-11-21T09:00:00Z",
        "received_at": "2026-11-21T09:00:01Z",
        "user_id": None,
        "anonymous_id": "anon-0",
        "session_id": "s0",
        "payload": record.payload,
        "context": record.context,
        "enrichment": record.enrichment,
        "flags": {},
    }
    assert body["previous"] is None


def _walk(client: Client, stream: Stream, order: str, arriving: int) -> list[int]:
    """Page through with ``limit=7``, appending ``arriving`` new events before every next page."""
    seen: list[int] = []
    url = f"{EVENTS}?order={order}&limit=7&type=page_view,login,button_click,Order%20Completed"
    pages = 0
    while url:
        body = client.get(url).json()
        seen.extend(event["offset"] for event in body["results"])
        url = body["next"]
        pages += 1
        append(stream, arriving)
        assert pages < 50
    return seen


def test_newest_first_pages_have_no_gaps_or_repeats_while_events_arrive(analyst: Client, stream: Stream):
    append(stream, 40)
    seen = _walk(analyst, stream, "newest", arriving=3)
    # Everything logged before the first page, newest first; what came later is above the first page.
    assert seen == list(range(39, -1, -1))


def test_oldest_first_pages_have_no_gaps_or_repeats_and_reach_the_events_that_arrive(analyst: Client, stream: Stream):
    append(stream, 40)
    seen = _walk(analyst, stream, "oldest", arriving=2)
    assert seen == list(range(len(seen)))
    assert len(seen) > 40


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_previous_leads_back_to_the_same_pages(analyst: Client, stream: Stream, order: str):
    append(stream, 30)
    first = analyst.get(f"{EVENTS}?order={order}&limit=4").json()
    second = analyst.get(first["next"]).json()
    third = analyst.get(second["next"]).json()
    append(stream, 5)
    back = analyst.get(third["previous"]).json()
    assert back["results"] == second["results"]
    front = analyst.get(back["previous"]).json()
    assert front["results"] == first["results"]
    if order == "newest":
        # Before the first page now lie the events logged since: the page before shows them.
        newer = analyst.get(front["previous"]).json()
        assert [e["offset"] for e in newer["results"]] == [33, 32, 31, 30]
        assert newer["previous"] is not None
    else:
        assert front["previous"] is None


def test_limit_defaults_to_100_and_stops_at_1000(analyst: Client, stream: Stream):
    append(stream, 120)
    assert len(_get(analyst).json()["results"]) == 100
    assert len(_get(analyst, "limit=1000").json()["results"]) == 120
    assert _get(analyst, "limit=1001").status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        "from=2026-11-21T09:00:00",  # no zone
        "from=yesterday",
        "from=2026-11-21T10:00:00Z&to=2026-11-21T09:00:00Z",
        "offset_from=-1",
        "offset_to=ten",
        "type=" + quote("bad\ttype"),
        "colour=red",
        "tz=Europe/Paris",  # an analytics parameter: not the event query's
        "payload.=x",
        "payload." + "a." * 9 + "b=x",
        "exists=payload",
        "missing=nothing.at_all",
        "user_id=" + quote("a\x00b"),
        "payload.page=" + "x" * 1001,
        "order=sideways",
        "limit=0",
        "limit=ten",
        "limit=" + quote("\uff11\uff10"),  # fullwidth digits
        "cursor=not-a-cursor",
        "cursor=" + quote("bjEy!"),
        "cursor=eDEy",  # base64 of "x12": a direction this API never writes
    ],
)
def test_bad_input_is_a_clear_400(analyst: Client, stream: Stream, query: str):
    append(stream, 3)
    response = _get(analyst, query)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] in {
        "invalid_filter",
        "unknown_parameter",
        "invalid_parameter",
        "invalid_cursor",
    }


def test_access(analyst: Client, stream: Stream, client: Client):
    append(stream, 3)
    reader_key = secret_key_of(stream)
    outsider = foreign_analyst()
    assert _get(analyst).status_code == 200
    assert _get(client, HTTP_X_API_KEY=reader_key).status_code == 200
    ingest = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key
    assert _get(client, HTTP_X_API_KEY=ingest).status_code == 403
    assert _get(client).status_code == 401
    foreign = _get(outsider)
    missing = outsider.get("/api/v1/streams/no-such-stream/events")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()


def test_the_intake_keeps_its_post_and_announces_get(client: Client, stream: Stream):
    ingest = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key
    sent = client.post(EVENTS, {"type": "page_view"}, content_type="application/json", HTTP_X_API_KEY=ingest)
    assert sent.status_code == 202
    assert sent["Allow"] == "GET, POST, OPTIONS"
    assert client.put(EVENTS, HTTP_X_API_KEY=ingest).status_code == 405


def test_a_page_is_one_query_whatever_its_size(analyst: Client, stream: Stream, django_assert_num_queries: Any):
    append(stream, 50)
    analyst.get(EVENTS)  # the stream is cached in the process after the first request
    # The person's access takes four (the user, their teams' streams, their permissions); the page one.
    with django_assert_num_queries(5) as small:
        assert len(_get(analyst, "limit=5&payload.page=/p/1").json()["results"]) == 5
    with django_assert_num_queries(5) as large:
        assert len(_get(analyst, "limit=1000&type=login").json()["results"]) == 13
    for captured in (small, large):
        assert "FROM streams_log" in captured.captured_queries[-1]["sql"]
    Segment.objects.create(stream=stream, name="pro", conditions=[{"property": "payload.plan", "value": "pro"}])
    with django_assert_num_queries(6):
        assert _get(analyst, "segment=pro").status_code == 200


def test_the_explorer_page_names_its_stream(client, db):
    from django.contrib.auth.models import User

    from streams.services import stream_create

    stream_create(slug="named", name="The named stream")
    client.force_login(User.objects.create_superuser("root-explorer", password="a-long-password-1"))
    page = client.get("/streams/named/events/")
    assert page.status_code == 200
    assert "Every logged event of The named stream," in page.content.decode()
