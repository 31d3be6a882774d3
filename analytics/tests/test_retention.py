"""Retention cohorts against the same cohorts computed in Python, with local periods across a DST change."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from analytics.segments import segment_create
from streams.log import LogRecord
from streams.models import Stream

from .journey_fixtures import BASE, event, log, person_of

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
RETENTION = f"{BASE}/analytics/retention"


def _period_start(at: datetime, period: str, tz: ZoneInfo) -> date:
    day = at.astimezone(tz).date()
    return day - timedelta(days=day.weekday()) if period == "week" else day


def reference(
    records: list[LogRecord],
    *,
    period: str,
    periods: int,
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
    event: str | None = None,
    returning: str | None = None,
    keep: Any = lambda r: True,
) -> list[tuple[date, int, list[int | None]]]:
    step = 7 if period == "week" else 1
    now = timezone.now()
    first: dict[str, datetime] = {}
    for r in records:
        person = r.user_id or r.anonymous_id
        if person and keep(r) and (event is None or r.type == event):
            first[person] = min(first.get(person, r.event_time), r.event_time)
    low = _period_start(start, period, tz)
    cohorts: dict[date, set[str]] = {}
    for person, at in first.items():
        if at < end and _period_start(at, period, tz) >= low:
            cohorts.setdefault(_period_start(at, period, tz), set()).add(person)
    last = _period_start(end - timedelta(microseconds=1), period, tz)
    out = []
    day = low
    while day <= last:
        members = cohorts.get(day, set())
        back: list[int | None] = []
        for k in range(periods + 1):
            begins = day + timedelta(days=k * step)
            if datetime(begins.year, begins.month, begins.day, tzinfo=tz) > now:
                back.append(None)
                continue
            if k == 0 and returning is None:
                back.append(len(members))
                continue
            came = {
                r.user_id or r.anonymous_id
                for r in records
                if (r.user_id or r.anonymous_id) in members
                and keep(r)
                and (returning is None or r.type == returning)
                and r.event_time >= first[r.user_id or r.anonymous_id or ""]
                and _period_start(r.event_time, period, tz) == begins
            }
            back.append(len(came))
        out.append((day, len(members), back))
        day += timedelta(days=step)
    return out


def _check(body: dict[str, Any], expected: list[tuple[date, int, list[int | None]]], tz: ZoneInfo) -> None:
    got = [
        (datetime.fromisoformat(c["start"]).astimezone(tz).date(), c["people"], c["returning"]) for c in body["cohorts"]
    ]
    assert got == expected
    for cohort in body["cohorts"]:
        for count, share in zip(cohort["returning"], cohort["percentages"], strict=True):
            assert share == (None if count is None or not cohort["people"] else round(count / cohort["people"], 4))


def test_days_across_the_berlin_dst_change(stream: Stream):
    # 2026-10-25: Berlin goes from +02:00 to +01:00 at 03:00 local; that day is 25 hours long.
    records = [
        # 00:30 local on the 25th is 22:30 UTC on the 24th: a cohort of the 25th, not the 24th.
        event("login", datetime(2026, 10, 24, 22, 30, tzinfo=UTC), user="early"),
        event("login", datetime(2026, 10, 25, 22, 30, tzinfo=UTC), user="early"),  # 23:30 local, 25th: period 0
        event("login", datetime(2026, 10, 25, 23, 30, tzinfo=UTC), user="early"),  # 00:30 local, 26th: period 1
        # 23:30 local on the 25th (+01:00) is 22:30 UTC: still the 25th.
        event("page_view", datetime(2026, 10, 25, 22, 30, tzinfo=UTC), user="late"),
        event("page_view", datetime(2026, 10, 27, 12, 0, tzinfo=UTC), user="late"),  # period 2
        # 00:30 local on the 26th is 23:30 UTC on the 25th: a cohort of the 26th.
        event("login", datetime(2026, 10, 25, 23, 30, tzinfo=UTC), anon="a-26"),
        event("login", datetime(2026, 10, 26, 23, 0, tzinfo=UTC), anon="a-26"),  # 00:00 local 27th: period 1
        # Seen before the range: in no cohort.
        event("login", datetime(2026, 10, 1, tzinfo=UTC), user="old"),
        event("login", datetime(2026, 10, 25, 12, 0, tzinfo=UTC), user="old"),
    ]
    log(stream, records)
    start, end = datetime(2026, 10, 24, 22, 0, tzinfo=UTC), datetime(2026, 10, 27, 23, 0, tzinfo=UTC)
    analyst = person_of(stream)
    body = analyst.get(
        RETENTION, period="day", periods=3, tz="Europe/Berlin", **{"from": start.isoformat(), "to": end.isoformat()}
    ).json()
    expected = reference(records, period="day", periods=3, start=start, end=end, tz=BERLIN)
    _check(body, expected, BERLIN)
    by_day = {day: (people, back) for day, people, back in expected}
    assert by_day[date(2026, 10, 25)] == (2, [2, 1, 1, 0])
    assert by_day[date(2026, 10, 26)] == (1, [1, 1, 0, 0])
    assert [c["start"] for c in body["cohorts"]][:3] == [
        "2026-10-25T00:00:00+02:00",
        "2026-10-26T00:00:00+01:00",
        "2026-10-27T00:00:00+01:00",
    ]
    # In UTC the same events make other cohorts: "early" and "a-26" move a day.
    utc = analyst.get(
        RETENTION, period="day", periods=3, tz="UTC", **{"from": start.isoformat(), "to": end.isoformat()}
    ).json()
    _check(utc, reference(records, period="day", periods=3, start=start, end=end, tz=ZoneInfo("UTC")), ZoneInfo("UTC"))


def test_weeks_with_chosen_events_and_a_segment(stream: Stream):
    rng = random.Random(3)
    records = []
    for n in range(120):
        at = datetime(2026, 9, 1, tzinfo=UTC) + timedelta(hours=rng.randrange(0, 24 * 70))
        plan = rng.choice(["pro", "free"])
        for _ in range(rng.randrange(1, 12)):
            records.append(
                event(rng.choice(["signup", "login", "page_view"]), at, user=f"u{n}", payload={"plan": plan})
            )
            at += timedelta(hours=rng.randrange(1, 24 * 14))
    rng.shuffle(records)
    log(stream, records)
    start, end = datetime(2026, 9, 7, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    span = {"from": start.isoformat(), "to": end.isoformat()}
    analyst = person_of(stream)
    plain = analyst.get(RETENTION, period="week", periods=8, tz="Europe/Berlin", **span).json()
    _check(plain, reference(records, period="week", periods=8, start=start, end=end, tz=BERLIN), BERLIN)
    chosen = analyst.get(
        RETENTION, period="week", periods=4, tz="Europe/Berlin", event="signup", returning_event="login", **span
    ).json()
    _check(
        chosen,
        reference(
            records, period="week", periods=4, start=start, end=end, tz=BERLIN, event="signup", returning="login"
        ),
        BERLIN,
    )
    # One of the two chosen: the log is read in part (first events) or whole (any returning event).
    for chosen_one in ({"event": "signup"}, {"returning_event": "login"}):
        answer = analyst.get(RETENTION, period="week", periods=4, tz="Europe/Berlin", **chosen_one, **span).json()
        expected = reference(
            records,
            period="week",
            periods=4,
            start=start,
            end=end,
            tz=BERLIN,
            event=chosen_one.get("event"),
            returning=chosen_one.get("returning_event"),
        )
        _check(answer, expected, BERLIN)
    segment_create(stream_id=stream.pk, name="pro", conditions=[{"property": "payload.plan", "values": ["pro"]}])
    pro = analyst.get(RETENTION, period="week", periods=8, tz="Europe/Berlin", segment="pro", **span).json()
    _check(
        pro,
        reference(
            records,
            period="week",
            periods=8,
            start=start,
            end=end,
            tz=BERLIN,
            keep=lambda r: r.payload["plan"] == "pro",
        ),
        BERLIN,
    )
    # The average is weighted by the cohorts' people.
    k = 1
    known = [
        (c["returning"][k], c["people"]) for c in plain["cohorts"] if c["returning"][k] is not None and c["people"]
    ]
    assert plain["average"][k] == round(sum(r for r, _ in known) / sum(p for _, p in known), 4)


@pytest.mark.parametrize(
    "query",
    [
        {"period": "month"},
        {"periods": "13"},
        {"periods": "0"},
        {"tz": "Europe/Nowhere"},
        {"event": ""},
        {"from": "2026-10-01"},
        {"from": "2026-10-02T00:00:00Z", "to": "2026-10-01T00:00:00Z"},
        {"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        {"start": "page_view"},
    ],
)
def test_bad_input_is_a_400(stream: Stream, query: dict[str, str]):
    response = person_of(stream).get(RETENTION, **query)
    assert response.status_code == 400, response.content
