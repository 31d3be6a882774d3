"""Edges of the event query and export: times at the calendar's ends, huge limits, numbers read as text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client

from analytics.filters import parse_conditions
from analytics.segments import segment_create
from streams.log import LogRecord, log_append_now
from streams.models import Stream

from .query_fixtures import EVENTS, analyst_of, append

pytestmark = pytest.mark.django_db


@pytest.fixture
def analyst(stream: Stream) -> Client:
    return analyst_of(stream)


def _answer(client: Client, url: str) -> Any:
    response = client.get(url)
    if hasattr(response, "streaming_content"):
        b"".join(response.streaming_content)
    return response


@pytest.mark.parametrize(
    "query",
    [
        # .NET's DateTime.MinValue and MaxValue, as clients send them for "no bound".
        "from=0001-01-01T00:00:00Z",
        "from=" + quote("0001-01-01T00:00:00+01:00"),
        "to=9999-12-31T23:59:59Z",
        "to=9999-12-31T23:59:59-01:00",
    ],
)
@pytest.mark.parametrize("path", [EVENTS, f"{EVENTS}/export"])
def test_a_time_at_the_calendars_end_is_a_400_not_a_500(analyst: Client, stream: Stream, query: str, path: str):
    append(stream, 3)
    response = _answer(analyst, f"{path}?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_filter"


def test_far_but_usable_times_still_answer(analyst: Client, stream: Stream):
    append(stream, 3)
    response = analyst.get(f"{EVENTS}?from=1000-01-01T00:00:00Z&to=8999-12-31T00:00:00Z")
    assert response.status_code == 200, response.content
    assert len(response.json()["results"]) == 3


def test_a_limit_of_thousands_of_digits_is_a_400(analyst: Client, stream: Stream):
    response = analyst.get(f"{EVENTS}?limit={'9' * 5000}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_parameter"


@pytest.mark.parametrize(
    "path",
    [
        "analytics/breakdown?dimension=browser&top={n}",
        "analytics/retention?periods={n}",
        "analytics/paths?start=login&depth={n}",
    ],
)
@pytest.mark.parametrize("number", ["9" * 5000, "\u00b2", "0"])
def test_a_whole_number_parameter_refuses_what_int_cannot_read(analyst: Client, stream: Stream, path: str, number: str):
    base = EVENTS.rsplit("/events", 1)[0]
    response = analyst.get(f"{base}/{path.format(n=quote(number))}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_parameter"


# Floats whose shortest repr has an exponent, which PostgreSQL's numeric text never has, and the text an
# analyst writes for each.
AMOUNTS = {0.00001: "0.00001", 1.5e-7: "0.00000015", 1e16: "10000000000000000", 2.0: "2.0", 0.5: "0.5"}


def test_a_condition_matches_numbers_in_python_as_the_query_does_in_sql(analyst: Client, stream: Stream):
    at = datetime(2026, 11, 21, 9, tzinfo=UTC)
    records = [
        LogRecord(event_id=f"n-{i}", type="paid", event_time=at, received_at=at, payload={"amount": amount})
        for i, amount in enumerate(AMOUNTS)
    ]
    log_append_now(stream_id=stream.pk, records=records)
    for offset, (amount, text) in enumerate(AMOUNTS.items()):
        found = analyst.get(f"{EVENTS}?payload.amount={text}").json()["results"]
        assert [event["offset"] for event in found] == [offset], (amount, text)
        # The evaluators that see events before any query (alert rules) give the same answer.
        (condition,) = parse_conditions([{"property": "payload.amount", "value": text}])
        assert [r.event_id for r in records if condition.matches(r.payload)] == [f"n-{offset}"], (amount, text)
        # A saved condition written as a JSON number matches the same event.
        (saved,) = parse_conditions([{"property": "payload.amount", "value": amount}])
        assert [r.event_id for r in records if saved.matches(r.payload)] == [f"n-{offset}"], amount
        segment_create(
            stream_id=stream.pk, name=f"amount-{offset}", conditions=[saved.as_dict() | {"values": [amount]}]
        )
        found = analyst.get(f"{EVENTS}?segment=amount-{offset}").json()["results"]
        assert [event["offset"] for event in found] == [offset], amount
