"""Funnels, paths and retention answered from Redis when asked again, by the API and the pages alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from analytics import journeys, page_selectors
from analytics.aggregates import breakdown
from eventflow import conf
from eventflow import redis as ef_redis
from streams.models import Stream
from tests.fixtures import conf_override

from .journey_fixtures import BASE, event, log, person_of

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RANGE = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-09T00:00:00Z"}
# The same range written in another zone: the same question.
RANGE_BERLIN = {"from": "2026-11-01T01:00:00+01:00", "to": "2026-11-09T01:00:00+01:00"}


@pytest.fixture(autouse=True)
def _kept_answers(settings: Any) -> None:
    """The run's settings keep answers; none is kept from another test."""
    conf_override(settings, analytics_cache_seconds=30)
    client = ef_redis.get_redis()
    keys = list(client.scan_iter(match=f"{conf.get().redis_key_prefix}:analytics:*", count=1000))
    if keys:
        client.delete(*keys)


def _visits(stream: Stream, people: int) -> None:
    records = []
    for n in range(people):
        at = T0 + timedelta(hours=n)
        records.append(event("page_view", at, user=f"u{n}", session=f"s{n}", payload={"page": "/pricing"}))
        if n % 2 == 0:
            records.append(event("signup", at + timedelta(minutes=5), user=f"u{n}", session=f"s{n}"))
    log(stream, records)


def _journey_queries(ask: Any) -> tuple[Any, int]:
    """The answer, and how many statements read the log or the activity rollup to give it."""
    with CaptureQueriesContext(connection) as queries:
        answer = ask()
    read = [q["sql"] for q in queries.captured_queries if "streams_log" in q["sql"] or "analytics_person" in q["sql"]]
    return answer, len(read)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("funnel", {"steps": "page_view,signup"}),
        ("paths", {"start": "page_view", "depth": "2"}),
        ("retention", {"period": "day", "periods": "3"}),
    ],
)
def test_a_question_asked_again_is_answered_from_redis_until_it_expires(
    stream: Stream, settings: Any, path: str, params: dict[str, str]
):
    _visits(stream, 6)
    analyst = person_of(stream)
    url = f"{BASE}/analytics/{path}"

    def ask(rng: dict[str, str]) -> Any:
        if path == "funnel":
            return analyst.post(url, {"steps": [{"type": t} for t in params["steps"].split(",")]}, **rng)
        return analyst.get(url, **params, **rng)

    first, read = _journey_queries(lambda: ask(RANGE))
    assert first.status_code == 200, first.content
    assert read >= 1
    # More events of the range: the answer kept stands for the same question, however it is written …
    _visits(stream, 10)
    again, read = _journey_queries(lambda: ask(RANGE_BERLIN))
    assert read == 0
    assert again.json() == first.json()
    # … and is computed again once nothing is kept (expired, or Redis away), with the new events.
    conf_override(settings, analytics_cache_seconds=0)
    fresh, read = _journey_queries(lambda: ask(RANGE))
    assert read >= 1
    assert fresh.json() != first.json()


def test_the_page_and_the_api_share_a_funnel(stream: Stream, client: Client):
    _visits(stream, 6)
    analyst = person_of(stream)
    client.force_login(User.objects.get(username="ana"))
    api = analyst.post(
        f"{BASE}/analytics/funnel",
        {"steps": [{"type": "page_view"}, {"type": "signup"}], "window": "1d"},
        **RANGE,
    )
    assert api.status_code == 200, api.content
    assert [s["count"] for s in api.json()["steps"]] == [6, 3]
    _visits(stream, 10)
    page, read = _journey_queries(
        lambda: client.get(
            f"/streams/{stream.slug}/analytics/funnel/",
            {
                "step": ["page_view", "signup"],
                "window": "1d",
                "range": "custom",
                "from": "2026-11-01T00:00",
                "to": "2026-11-09T00:00",
                "tz": "UTC",
            },
        )
    )
    assert page.status_code == 200
    assert read == 0
    # The counts of the answer kept (6 entered, 3 converted), not of the 16 people logged since.
    steps = page.context["answer"].steps
    assert [s.count for s in steps] == [6, 3]


def test_retention_keys_its_answer_by_the_periods_begun(stream: Stream):
    _visits(stream, 4)
    kwargs: dict[str, Any] = {
        "stream_id": stream.pk,
        "period": "day",
        "periods": 2,
        "time_from": datetime(2026, 11, 2, tzinfo=UTC),
        "time_to": datetime(2026, 11, 3, tzinfo=UTC),
        "tz": ZoneInfo("UTC"),
        "event": None,
        "returning_event": None,
        "event_filter": journeys.EventFilter(),
    }
    morning = journeys.retention(**kwargs, now=datetime(2026, 11, 3, 8, tzinfo=UTC))
    assert [c.returning for c in morning.cohorts] == [[4, 0, None]]
    # Later the same day: the same periods have begun, the answer kept serves.
    _, read = _journey_queries(lambda: journeys.retention(**kwargs, now=datetime(2026, 11, 3, 20, tzinfo=UTC)))
    assert read == 0
    # The next day has begun: period 2 is known now (0 came back), so the question is a new one.
    later, read = _journey_queries(lambda: journeys.retention(**kwargs, now=datetime(2026, 11, 4, 1, tzinfo=UTC)))
    assert read >= 1
    assert [c.returning for c in later.cohorts] == [[4, 0, 0]]


def test_redis_away_computes_every_answer(stream: Stream, redis_down: None):
    _visits(stream, 4)
    analyst = person_of(stream)
    for _ in range(2):
        response, read = _journey_queries(
            lambda: analyst.get(f"{BASE}/analytics/paths", start="page_view", depth="1", **RANGE)
        )
        assert response.status_code == 200, response.content
        assert response.json()["sessions"] == 4
        assert read >= 1


def test_the_trends_breakdown_is_kept_for_a_reload(stream: Stream, client: Client, monkeypatch: pytest.MonkeyPatch):
    """Users per browser among one type's events are counted from the log once, then read from Redis."""
    computed: list[str] = []

    def counted(**kwargs: Any) -> Any:
        computed.append(kwargs["dimension"])
        return breakdown(**kwargs)

    monkeypatch.setattr(page_selectors, "breakdown", counted)
    records = [
        event("page_view", T0 + timedelta(minutes=n), user=f"u{n % 3}", enrichment={"browser": "Firefox"})
        for n in range(5)
    ]
    log(stream, records)
    person_of(stream)
    client.force_login(User.objects.get(username="ana"))
    url = f"/streams/{stream.slug}/analytics/breakdown/"
    query = {"type": "page_view", "range": "custom", "from": "2026-11-01T00:00", "to": "2026-11-09T00:00"}
    for _ in range(2):
        response = client.get(url, query)
        assert response.status_code == 200
        assert response.context["split"].rows == [("Firefox", 5, 3)]
    assert computed == ["browser"]
    # Another dimension is another question.
    assert client.get(url, {**query, "dimension": "os"}).status_code == 200
    assert computed == ["browser", "os"]


def test_a_range_without_to_is_the_same_question_within_its_minute(stream: Stream, monkeypatch: Any):
    """`to` left out ends the range at the next whole minute: asked again in that minute it is read from Redis,
    and in the next minute it is a new question, with the events that came since."""
    from django.utils import timezone

    _visits(stream, 6)
    analyst = person_of(stream)
    clock = [datetime(2026, 11, 8, 12, 0, 10, tzinfo=UTC)]
    monkeypatch.setattr(timezone, "now", lambda: clock[0])

    def ask() -> Any:
        return analyst.post(
            f"{BASE}/analytics/funnel",
            {"steps": [{"type": "page_view"}, {"type": "signup"}], "window": "1d"},
            **{"from": RANGE["from"]},
        )

    first, read = _journey_queries(ask)
    assert first.status_code == 200, first.content
    assert read >= 1
    assert [s["count"] for s in first.json()["steps"]] == [6, 3]
    _visits(stream, 10)
    clock[0] = datetime(2026, 11, 8, 12, 0, 55, tzinfo=UTC)
    again, read = _journey_queries(ask)
    assert read == 0
    assert again.json() == first.json()
    clock[0] = datetime(2026, 11, 8, 12, 1, 0, 1, tzinfo=UTC)
    fresh, read = _journey_queries(ask)
    assert read >= 1
    assert [s["count"] for s in fresh.json()["steps"]] == [10, 5]
