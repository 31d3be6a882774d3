"""Funnels against the same funnel computed in Python from the events the test sent."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from analytics import journeys
from analytics.filters import EventFilter
from analytics.segments import segment_create
from streams.log import LogRecord
from streams.models import Stream

from .journey_fixtures import BASE, event, log, person_of

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True, params=["one bigint key", "array key"])
def key_form(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every funnel twice: with the packed key of a range whose times and offsets fit in a bigint, and with
    the array key of one where they don't (``analytics.journeys._packed_key``)."""
    if request.param == "array key":
        monkeypatch.setattr(journeys, "PACKED_KEY_LIMIT", 0)
    return str(request.param)


T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RANGE = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-09T00:00:00Z"}
FUNNEL = f"{BASE}/analytics/funnel"
ALL = "everyone"


def _matches(record: LogRecord, step: dict[str, Any]) -> bool:
    if record.type != step["type"]:
        return False
    for condition in step.get("conditions", []):
        root, key = condition["property"].split(".", 1)
        value = (getattr(record, root) or {}).get(key)
        if (None if value is None else str(value)) not in condition["values"]:
            return False
    return True


def _percentile(values: list[float], q: float) -> float | None:
    """PostgreSQL's percentile_cont: linear between the two nearest ranks."""
    if not values:
        return None
    values = sorted(values)
    position = q * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def reference(
    records: list[LogRecord],
    steps: list[dict[str, Any]],
    window: timedelta,
    start: datetime,
    end: datetime,
    breakdown: str | None = None,
) -> dict[Any, dict[str, list[Any]]]:
    """Per breakdown value (and ``ALL``: everyone): people per step and the seconds between steps."""
    ordered = sorted(enumerate(records), key=lambda item: (item[1].event_time, item[0]))
    people: dict[str, list[LogRecord]] = {}
    for _, record in ordered:
        person = record.user_id or record.anonymous_id
        if person is None or not start <= record.event_time < end:
            continue
        people.setdefault(person, []).append(record)
    out: dict[Any, dict[str, list[Any]]] = {}
    for events in people.values():
        entry_index = next((i for i, r in enumerate(events) if _matches(r, steps[0])), None)
        if entry_index is None:
            continue
        entry = events[entry_index]
        reached = [entry]
        position = entry_index
        for step in steps[1:]:
            found = next(
                (
                    i
                    for i in range(position + 1, len(events))
                    if _matches(events[i], step) and events[i].event_time <= entry.event_time + window
                ),
                None,
            )
            if found is None:
                break
            reached.append(events[found])
            position = found
        keys = [ALL] if breakdown is None else [ALL, (entry.enrichment or {}).get(breakdown)]
        for key in keys:
            group = out.setdefault(key, {"counts": [0] * len(steps), "gaps": [[] for _ in steps]})
            for i, record in enumerate(reached):
                group["counts"][i] += 1
                if i:
                    group["gaps"][i].append((record.event_time - reached[i - 1].event_time).total_seconds())
    return out


def _check(answer: dict[str, Any], expected: dict[str, list[Any]]) -> None:
    counts = expected["counts"]
    for i, step in enumerate(answer["steps"]):
        assert step["count"] == counts[i], (i, answer["steps"])
        if i:
            assert step["drop_off"] == counts[i - 1] - counts[i]
            want = round(counts[i] / counts[i - 1], 4) if counts[i - 1] else None
            assert step["conversion_from_previous"] == want
            assert step["conversion_from_first"] == (round(counts[i] / counts[0], 4) if counts[0] else None)
            median = _percentile(expected["gaps"][i], 0.5)
            p90 = _percentile(expected["gaps"][i], 0.9)
            assert step["median_seconds"] == (None if median is None else pytest.approx(median, abs=0.001))
            assert step["p90_seconds"] == (None if p90 is None else pytest.approx(p90, abs=0.001))


def test_out_of_order_repeated_steps_and_window_edges(stream: Stream):
    m = timedelta(minutes=1)
    records = [
        # u1: A B C, converts.
        event("A", T0, user="u1"),
        event("B", T0 + m, user="u1"),
        event("C", T0 + 2 * m, user="u1"),
        # u2: A C B C: the first C is out of order, the second completes.
        event("A", T0, user="u2"),
        event("C", T0 + m, user="u2"),
        event("B", T0 + 2 * m, user="u2"),
        event("C", T0 + 3 * m, user="u2"),
        # u3: B before A, then C: only the entry.
        event("B", T0, user="u3"),
        event("A", T0 + m, user="u3"),
        event("C", T0 + 2 * m, user="u3"),
        # u4: A A B: enters at the first A, B within the window of it.
        event("A", T0, user="u4"),
        event("A", T0 + 30 * m, user="u4"),
        event("B", T0 + 59 * m, user="u4"),
        # u5: B exactly at the window's end counts; C one second after it does not.
        event("A", T0, user="u5"),
        event("B", T0 + 60 * m, user="u5"),
        event("C", T0 + 60 * m + timedelta(seconds=1), user="u5"),
        # u6: B one second past the window: out, and a later A is no second entry.
        event("A", T0, user="u6"),
        event("B", T0 + 60 * m + timedelta(seconds=1), user="u6"),
        event("A", T0 + 120 * m, user="u6"),
        event("B", T0 + 121 * m, user="u6"),
        # anonymous person, same time for A and B: B after A by log order.
        event("A", T0, anon="a1"),
        event("B", T0, anon="a1"),
        # nobody: no identity.
        event("A", T0),
        event("B", T0 + m),
        # u7: A before the range, B and C in it: enters at nothing (A outside), so absent.
        event("A", datetime(2026, 10, 31, 23, 59, tzinfo=UTC), user="u7"),
        event("B", T0, user="u7"),
        # u8: same-second B before A in log order: not after A.
        event("B", T0 + 5 * m, user="u8"),
        event("A", T0 + 5 * m, user="u8"),
    ]
    log(stream, records)
    steps = [{"type": "A"}, {"type": "B"}, {"type": "C"}]
    answer = person_of(stream).post(FUNNEL, {"steps": steps, "window": "1h"}, **RANGE).json()
    assert [s["count"] for s in answer["steps"]] == [8, 5, 2]  # u1 u2 u3 u4 u5 u6 a1 u8; u1 u2 u4 u5 a1; u1 u2
    expected = reference(
        records, steps, timedelta(hours=1), datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 9, tzinfo=UTC)
    )
    _check(answer, expected[ALL])
    assert answer["steps"][1]["median_seconds"] == 120.0  # gaps 0, 60, 120, 3540, 3600
    assert answer["window_seconds"] == 3600


def test_steps_at_the_same_microsecond_follow_the_log_order(stream: Stream):
    records = [
        event("A", T0, user="p1"),  # A then B, one instant: converts
        event("B", T0, user="p1"),
        event("B", T0, user="p2"),  # B then A, one instant: B is not after A
        event("A", T0, user="p2"),
        event("A", T0, user="p3"),  # A, B, B: converts at the first B
        event("B", T0, user="p3"),
        event("B", T0, user="p3"),
    ]
    log(stream, records)
    steps = [{"type": "A"}, {"type": "B"}]
    answer = person_of(stream).post(FUNNEL, {"steps": steps, "window": "1h"}, **RANGE).json()
    assert [s["count"] for s in answer["steps"]] == [3, 2]
    expected = reference(
        records, steps, timedelta(hours=1), datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 9, tzinfo=UTC)
    )
    _check(answer, expected[ALL])


def test_step_conditions_filters_and_breakdown_match_the_reference(stream: Stream):
    rng = random.Random(8)
    records = []
    for n in range(150):
        user = f"u{n}"
        at = T0 + timedelta(minutes=rng.randrange(0, 5 * 24 * 60))
        browser = rng.choice(["Firefox", "Chrome", "Safari", None])
        for _ in range(rng.randrange(1, 8)):
            kind = rng.choice(["page_view", "button_click", "form_submit", "login"])
            page = rng.choice(["/pricing", "/docs", "/signup"])
            records.append(
                event(
                    kind,
                    at,
                    user=user,
                    session=f"s{n}",
                    payload={"page": page, "plan": rng.choice(["pro", "free"])},
                    enrichment={"browser": browser} if browser else {},
                )
            )
            at += timedelta(minutes=rng.randrange(0, 400))
    rng.shuffle(records)
    log(stream, records)
    steps: list[dict[str, Any]] = [
        {"type": "page_view", "conditions": [{"property": "payload.page", "values": ["/pricing"]}]},
        {"type": "button_click"},
        {
            "type": "form_submit",
            "conditions": [{"property": "payload.page", "op": "eq", "values": ["/signup", "/docs"]}],
        },
    ]
    analyst = person_of(stream)
    answer = analyst.post(FUNNEL, {"steps": steps, "window": "1d", "breakdown": "browser"}, **RANGE)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 9, tzinfo=UTC)
    expected = reference(records, steps, timedelta(days=1), start, end, breakdown="browser")
    _check(body, expected[ALL])
    assert {g["value"] for g in body["breakdown"]} == set(expected) - {ALL}
    for group in body["breakdown"]:
        _check(group, expected[group["value"]])
    # Top 1 keeps the biggest value and folds the rest into $other.
    top = analyst.post(FUNNEL, {"steps": steps, "window": "1d", "breakdown": "browser", "top": 1}, **RANGE).json()
    assert [g["value"] for g in top["breakdown"]][-1] == "$other"
    assert sum(g["steps"][0]["count"] for g in top["breakdown"]) == expected[ALL]["counts"][0]
    # A property filter in the query string and a segment narrow every step alike.
    pro = [r for r in records if (r.payload or {}).get("plan") == "pro"]
    filtered = analyst.post(FUNNEL, {"steps": steps, "window": "1d"}, **RANGE, **{"payload.plan": "pro"}).json()
    _check(filtered, reference(pro, steps, timedelta(days=1), start, end)[ALL])
    segment_create(stream_id=stream.pk, name="pro", conditions=[{"property": "payload.plan", "values": ["pro"]}])
    by_segment = analyst.post(FUNNEL, {"steps": steps, "window": "1d"}, **RANGE, segment="pro").json()
    assert by_segment == filtered


@pytest.mark.parametrize(
    ("body", "query"),
    [
        ({"steps": [{"type": "A"}]}, {}),
        ({"steps": [{"type": "A"}, {"type": "B"}], "window": "91d"}, {}),
        ({"steps": [{"type": "A"}, {"type": "B"}], "window": "soon"}, {}),
        ({"steps": [{"type": "A"}, {"type": "B"}], "breakdown": "shoe_size"}, {}),
        ({"steps": [{"type": "A", "conditions": [{"property": "pay.x", "values": ["1"]}]}, {"type": "B"}]}, {}),
        ({"steps": [{"type": "A", "conditions": [{"property": "payload.x", "op": "eq"}]}, {"type": "B"}]}, {}),
        ({"steps": [{"type": "A"}, {"type": "B"}], "colour": "red"}, {}),
        ({"steps": "A,B"}, {}),
        ({"steps": [{"type": "A"}, {"type": "B"}]}, {"tz": "Mars/Olympus"}),
        ({"steps": [{"type": "A"}, {"type": "B"}]}, {"from": "yesterday"}),
        ({"steps": [{"type": "A"}, {"type": "B"}]}, {"type": "A"}),
        ({"steps": [{"type": "A"}, {"type": "B"}]}, {"depth": "3"}),
    ],
)
def test_bad_input_is_a_400(stream: Stream, body: dict[str, Any], query: dict[str, str]):
    response = person_of(stream).post(FUNNEL, body, **query)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"]


def test_an_unknown_segment_is_a_404_and_a_foreign_stream_is_not_found(stream: Stream):
    analyst = person_of(stream)
    steps = {"steps": [{"type": "A"}, {"type": "B"}]}
    assert analyst.post(FUNNEL, steps, segment="nope").status_code == 404
    assert analyst.post("/api/v1/streams/elsewhere/analytics/funnel", steps).status_code == 404


def test_the_key_is_one_bigint_where_the_range_fits_and_an_array_where_it_does_not(stream: Stream, key_form: str):
    log(stream, [event("signup", T0, user="ann")])
    week = EventFilter(time_from=T0 - timedelta(days=1), time_to=T0 + timedelta(days=6))
    packed = journeys._packed_key(stream_id=stream.pk, event_filter=week)
    assert (packed is not None) == (key_form == "one bigint key")
    if packed is not None:
        lo, base, width, head = packed
        assert (lo, base, width, head) == (round(week.time_from.timestamp() * 1e6), 0, 1, 1)  # type: ignore[union-attr]
    # No range, no packing: the microseconds of the whole log are not bounded.
    assert journeys._packed_key(stream_id=stream.pk, event_filter=EventFilter()) is None
