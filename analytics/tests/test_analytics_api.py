"""The analytics endpoints against numbers the test computes from the events it sent."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import Client

from eventflow import conf
from eventflow import redis as ef_redis
from streams.models import Stream

from .analytics_events import Sent, World, json, world_build
from .query_fixtures import analyst_of

pytestmark = pytest.mark.django_db(transaction=True)

A = "/api/v1/streams/shop/analytics"
BERLIN = ZoneInfo("Europe/Berlin")
WHOLE = {"from": "2026-10-24T00:00:00Z", "to": "2026-10-27T00:00:00Z"}


@pytest.fixture(autouse=True)
def _no_cached_answers() -> None:
    client = ef_redis.get_redis()
    keys = list(client.scan_iter(match=f"{conf.get().redis_key_prefix}:analytics:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def world(client: Client, stream: Stream) -> World:
    return world_build(client, stream)


@pytest.fixture
def analyst(stream: Stream) -> Client:
    return analyst_of(stream)


def _in(s: Sent, start: datetime, end: datetime) -> bool:
    return start <= s.at < end


def _users(events: list[Sent]) -> int:
    return len({s.user for s in events if s.user})


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- count-by-type ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "window",
    [
        WHOLE,
        # Not on whole minutes or hours: the edges come from the minute rollup and the log.
        {"from": "2026-10-24T13:03:30Z", "to": "2026-10-25T20:41:10.5Z"},
        {"from": "2026-10-25T02:00:00+01:00", "to": "2026-10-25T02:10:00+01:00"},
    ],
)
def test_count_by_type(world: World, analyst: Client, window: dict[str, str]) -> None:
    answer = json(analyst.get(f"{A}/count-by-type", window))
    start, end = _t(window["from"]), _t(window["to"])
    expected = Counter(s.type for s in world.sent if _in(s, start, end))
    assert answer["source"] == "rollups"
    assert {t["type"]: t["count"] for t in answer["types"]} == dict(expected)
    assert answer["total"] == sum(expected.values())


def test_count_by_type_with_a_property_condition_reads_the_log(world: World, analyst: Client) -> None:
    answer = json(analyst.get(f"{A}/count-by-type", {**WHOLE, "payload.plan": "pro", "type": "login,page_view"}))
    expected = Counter(
        s.type for s in world.sent if s.event["payload"]["plan"] == "pro" and s.type in ("login", "page_view")
    )
    assert answer["source"] == "log"
    assert {t["type"]: t["count"] for t in answer["types"]} == dict(expected)


def test_group_by_key_and_type(world: World, analyst: Client) -> None:
    answer = json(analyst.get(f"{A}/group-by-key-and-type", WHOLE))
    expected: dict[int, Counter[str]] = defaultdict(Counter)
    for s in world.sent:
        expected[s.key_id][s.type] += 1
    got = {k["api_key_id"]: {t["type"]: t["count"] for t in k["types"]} for k in answer["keys"]}
    assert got == {k: dict(v) for k, v in expected.items()}
    assert all(k["prefix"].startswith("ef_ingest_") for k in answer["keys"])
    assert answer["source"] == "rollups"


# --- timeseries ---------------------------------------------------------------------------------


def test_days_in_berlin_across_the_end_of_summer_time(world: World, analyst: Client) -> None:
    window = {"from": "2026-10-24T00:00:00+02:00", "to": "2026-10-27T00:00:00+01:00"}
    answer = json(analyst.get(f"{A}/timeseries", {**window, "tz": "Europe/Berlin", "interval": "day"}))
    assert [b["start"] for b in answer["buckets"]] == [
        "2026-10-24T00:00:00+02:00",
        "2026-10-25T00:00:00+02:00",
        "2026-10-26T00:00:00+01:00",
    ]
    by_day: dict[date, list[Sent]] = defaultdict(list)
    for s in world.sent:
        if _in(s, _t(window["from"]), _t(window["to"])):
            by_day[s.at.astimezone(BERLIN).date()].append(s)
    for bucket in answer["buckets"]:
        day = date.fromisoformat(bucket["start"][:10])
        assert bucket["count"] == len(by_day[day]), day
        assert bucket["unique_users"] == _users(by_day[day]), day
    # The 25th had 25 hours: 01:00-02:00 UTC falls in it, not in the 26th.
    hours = json(
        analyst.get(
            f"{A}/timeseries",
            {
                "from": "2026-10-25T00:00:00+02:00",
                "to": "2026-10-26T00:00:00+01:00",
                "tz": "Europe/Berlin",
                "interval": "hour",
            },
        )
    )
    assert len(hours["buckets"]) == 25
    assert [b["start"] for b in hours["buckets"][2:4]] == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"]
    assert hours["total"] == len(by_day[date(2026, 10, 25)])


@pytest.mark.parametrize(
    ("interval", "tz"),
    [
        ("hour", "UTC"),
        ("minute", "UTC"),
        ("day", "Asia/Kolkata"),
        ("week", "UTC"),
        # Local days and weeks of whole-hour zones, their midnights late in the UTC day (Berlin, DST
        # ending in the range), early in it (New York) and at +14 (Kiritimati), bucketed from UTC hours.
        ("day", "America/New_York"),
        ("day", "Pacific/Kiritimati"),
        ("week", "Europe/Berlin"),
    ],
)
def test_every_bucket_holds_its_events_late_ones_too(world: World, analyst: Client, interval: str, tz: str) -> None:
    window = WHOLE if interval != "minute" else {"from": "2026-10-25T07:30:00Z", "to": "2026-10-25T12:00:00Z"}
    answer = json(analyst.get(f"{A}/timeseries", {**window, "tz": tz, "interval": interval, "per_type": "true"}))
    zone = ZoneInfo(tz)
    starts = [_t(b["start"]) for b in answer["buckets"]] + [_t(window["to"])]
    start, end = _t(window["from"]), _t(window["to"])
    inside = [s for s in world.sent if _in(s, start, end)]
    assert any(s.event["event_id"].startswith("late") for s in inside)
    for i, bucket in enumerate(answer["buckets"]):
        lo, hi = max(starts[i], start), min(starts[i + 1], end)
        mine = [s for s in inside if _in(s, lo, hi)]
        assert bucket["count"] == len(mine), bucket
        assert bucket["unique_users"] == _users(mine), bucket
        for series in answer["series"]:
            typed = [s for s in mine if s.type == series["type"]]
            assert series["buckets"][i]["count"] == len(typed)
            assert series["buckets"][i]["unique_users"] == _users(typed)
    assert answer["total"] == len(inside)
    assert _t(answer["buckets"][0]["start"]).astimezone(zone).tzinfo is not None


def test_timeseries_with_a_filter_reads_the_log(world: World, analyst: Client) -> None:
    answer = json(analyst.get(f"{A}/timeseries", {**WHOLE, "interval": "day", "enrichment.browser": "Firefox"}))
    assert answer["source"] == "log"
    mine = [s for s in world.sent if s.dims["browser"] == "Firefox"]
    assert [b["count"] for b in answer["buckets"]] == [
        len([s for s in mine if s.at.date() == date(2026, 10, d)]) for d in (24, 25, 26)
    ]
    assert [b["unique_users"] for b in answer["buckets"]] == [
        _users([s for s in mine if s.at.date() == date(2026, 10, d)]) for d in (24, 25, 26)
    ]


# --- breakdown ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dimension", ["browser", "page", "country", "utm_campaign", "api_key", "device_type"])
def test_breakdown_top_values_and_other(world: World, analyst: Client, dimension: str) -> None:
    window = {"from": "2026-10-24T12:30:00Z", "to": "2026-10-26T09:00:00Z"}
    answer = json(analyst.get(f"{A}/breakdown", {**window, "dimension": dimension, "top": "2"}))
    inside = [s for s in world.sent if _in(s, _t(window["from"]), _t(window["to"]))]
    per_value = Counter(s.dims[dimension] for s in inside)
    ranked = sorted(per_value.items(), key=lambda kv: (-kv[1], kv[0]))
    assert answer["source"] == "rollups"
    assert answer["unique_users_source"] == "rollups"
    assert [(v["value"] or "", v["count"]) for v in answer["values"]] == ranked[:2]
    for v in answer["values"]:
        assert v["unique_users"] == _users([s for s in inside if s.dims[dimension] == (v["value"] or "")])
    assert answer["other"]["count"] == sum(n for _, n in ranked[2:])
    assert answer["total"] == len(inside)
    assert answer["unique_users"] == _users(inside)


def test_breakdown_with_a_type_counts_users_from_the_log(world: World, analyst: Client) -> None:
    answer = json(analyst.get(f"{A}/breakdown", {**WHOLE, "dimension": "os", "type": "login"}))
    logins = [s for s in world.sent if s.type == "login"]
    assert answer["unique_users_source"] == "log"
    got = {v["value"] or "": (v["count"], v["unique_users"]) for v in answer["values"]}
    expected = {
        os_: (n, _users([s for s in logins if s.dims["os"] == os_]))
        for os_, n in Counter(s.dims["os"] for s in logins).items()
    }
    assert got == expected


def test_breakdown_by_a_payload_property_reads_the_log(world: World, analyst: Client) -> None:
    answer = json(analyst.get(f"{A}/breakdown", {**WHOLE, "dimension": "payload.plan", "top": "1"}))
    plans = Counter(s.event["payload"]["plan"] for s in world.sent)
    (top, n), (rest, m) = sorted(plans.items(), key=lambda kv: -kv[1])
    assert answer["source"] == "log"
    assert answer["values"] == [
        {"value": top, "count": n, "unique_users": _users([s for s in world.sent if s.event["payload"]["plan"] == top])}
    ]
    assert answer["other"] == {
        "count": m,
        "unique_users": _users([s for s in world.sent if s.event["payload"]["plan"] == rest]),
    }


# --- active users -------------------------------------------------------------------------------


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin"])
def test_active_users(world: World, analyst: Client, tz: str) -> None:
    zone = ZoneInfo(tz)
    window = {
        "from": datetime(2026, 10, 24, tzinfo=zone).isoformat(),
        "to": datetime(2026, 10, 27, tzinfo=zone).isoformat(),
    }
    answer = json(analyst.get(f"{A}/active-users", {**window, "tz": tz}))
    per_day: dict[date, set[str]] = defaultdict(set)
    for s in world.sent:
        if s.user:
            per_day[s.at.astimezone(zone).date()].add(s.user)

    def active(day: date, width: int) -> int:
        return len(set().union(*(per_day[day - timedelta(days=k)] for k in range(width))))

    assert answer["source"] == "rollups"
    assert [(d["day"], d["dau"], d["wau"], d["mau"]) for d in answer["days"]] == [
        (day.isoformat(), active(day, 1), active(day, 7), active(day, 30))
        for day in (date(2026, 10, 24), date(2026, 10, 25), date(2026, 10, 26))
    ]


# --- the cache, and Redis down ------------------------------------------------------------------


def _wipe_rollups(stream: Stream) -> None:
    with connection.cursor() as cursor:
        for table in ("minute_count", "hour_count", "day_count", "hour_dimension", "day_dimension", "user_sketch"):
            cursor.execute(f"DELETE FROM analytics_{table} WHERE stream_id = %s", [stream.pk])


def test_a_repeated_question_is_answered_from_redis(world: World, analyst: Client, stream: Stream) -> None:
    first = json(analyst.get(f"{A}/count-by-type", WHOLE))
    _wipe_rollups(stream)
    # The same question in other words (the zone of the range, parameter order): the same answer, kept.
    same = json(
        analyst.get(f"{A}/count-by-type", {"to": "2026-10-27T01:00:00+01:00", "from": "2026-10-24T02:00:00+02:00"})
    )
    assert same["total"] == first["total"] > 0
    keys = list(ef_redis.get_redis().scan_iter(match=f"{conf.get().redis_key_prefix}:analytics:*"))
    assert len(keys) == 1
    assert 0 < ef_redis.get_redis().ttl(keys[0]) <= 60


def test_redis_down_only_makes_answers_slower(world: World, analyst: Client, stream: Stream, redis_down: None) -> None:
    expected = Counter(s.type for s in world.sent)
    for _ in range(2):
        answer = json(analyst.get(f"{A}/count-by-type", WHOLE))
        assert {t["type"]: t["count"] for t in answer["types"]} == dict(expected)
    assert not ef_redis.redis_available()


# --- bad questions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "params", "code"),
    [
        ("count-by-type", {"tz": "Mars/Olympus"}, "invalid_parameter"),
        ("count-by-type", {"from": "yesterday"}, "invalid_filter"),
        ("count-by-type", {"from": "2026-10-25T00:00:00Z", "to": "2026-10-24T00:00:00Z"}, "invalid_filter"),
        ("count-by-type", {"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "invalid_filter"),
        ("count-by-type", {"interval": "day"}, "unknown_parameter"),
        ("timeseries", {"interval": "fortnight"}, "invalid_parameter"),
        ("timeseries", {"per_type": "maybe"}, "invalid_parameter"),
        (
            "timeseries",
            {"interval": "minute", "from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
            "too_many_buckets",
        ),
        ("breakdown", {}, "invalid_parameter"),
        ("breakdown", {"dimension": "shoe_size"}, "invalid_parameter"),
        ("breakdown", {"dimension": "payload.a..b"}, "invalid_filter"),
        ("breakdown", {"dimension": "browser", "top": "0"}, "invalid_parameter"),
        ("breakdown", {"dimension": "browser", "top": "101"}, "invalid_parameter"),
        ("active-users", {"payload.x!": "\x00"}, "invalid_filter"),
        ("group-by-key-and-type", {"segment": "nope"}, "segment_not_found"),
    ],
)
def test_bad_questions_are_400(
    stream: Stream, analyst: Client, endpoint: str, params: dict[str, str], code: str
) -> None:
    response = analyst.get(f"{A}/{endpoint}", params)
    assert response.status_code in (400, 404), response.content
    assert response.json()["error"]["code"] == code


def test_the_default_range_is_the_last_seven_days(stream: Stream, analyst: Client) -> None:
    answer = json(analyst.get(f"{A}/count-by-type"))
    end = _t(answer["to"])
    assert end - _t(answer["from"]) == timedelta(days=7)
    assert end.minute == 0 and end > datetime.now(UTC) - timedelta(seconds=1)
    assert answer == {**answer, "total": 0, "types": [], "source": "rollups"}
