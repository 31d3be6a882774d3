"""Heavy questions (funnels, paths, retention) take one of the installation's slots, or wait for one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from django.db import connection

from analytics.journeys import JOURNEY_LOCK_CLASS
from streams.models import Stream
from tests.fixtures import conf_override

from .journey_fixtures import BASE, event, log, person_of

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RANGE = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-09T00:00:00Z"}
STEPS = {"steps": [{"type": "page_view"}, {"type": "signup"}], "window": "1d"}


@pytest.fixture
def other_session() -> Iterator[psycopg.Connection[Any]]:
    """A second database session, as another web process answering a heavy question would be."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as conn:
        yield conn


def _hold(conn: psycopg.Connection[Any], slots: int) -> None:
    for slot in range(slots):
        conn.execute("SELECT pg_advisory_lock(%s, %s)", [JOURNEY_LOCK_CLASS, slot])


def _seed(stream: Stream) -> None:
    log(stream, [event("page_view", T0, user="a"), event("signup", T0 + timedelta(minutes=5), user="a")])


def test_a_question_with_every_slot_taken_is_told_to_come_back(stream: Stream, settings: Any, other_session: Any):
    _seed(stream)
    analyst = person_of(stream)
    conf_override(settings, journey_concurrency=2, journey_wait_seconds=0.0, analytics_cache_seconds=0)
    _hold(other_session, 2)
    for response in [
        analyst.post(f"{BASE}/analytics/funnel", STEPS, **RANGE),
        analyst.get(f"{BASE}/analytics/retention", period="day", periods=3, **RANGE),
    ]:
        assert response.status_code == 503, response.content
        assert response.json()["error"]["code"] == "analytics_busy"
        assert response["Retry-After"] == "5"
    # One slot of two free again: answered (the test's transaction keeps that slot to its end).
    other_session.execute("SELECT pg_advisory_unlock(%s, 1)", [JOURNEY_LOCK_CLASS])
    answer = analyst.post(f"{BASE}/analytics/funnel", STEPS, **RANGE)
    assert answer.status_code == 200
    assert [step["count"] for step in answer.json()["steps"]] == [1, 1]


def test_a_question_waits_for_a_slot_to_come_free(stream: Stream, settings: Any, other_session: Any):
    _seed(stream)
    analyst = person_of(stream)
    conf_override(settings, journey_concurrency=1, journey_wait_seconds=10.0, analytics_cache_seconds=0)
    _hold(other_session, 1)
    released = threading.Timer(0.5, lambda: other_session.execute("SELECT pg_advisory_unlock_all()"))
    started = time.monotonic()
    released.start()
    try:
        response = analyst.post(f"{BASE}/analytics/funnel", STEPS, **RANGE)
    finally:
        released.join()
    assert response.status_code == 200, response.content
    assert time.monotonic() - started >= 0.5


def test_the_funnel_page_says_to_ask_again_beside_the_form(stream: Stream, settings: Any, other_session: Any):
    from django.contrib.auth.models import User
    from django.test import Client

    _seed(stream)
    person_of(stream)
    page = Client()
    page.force_login(User.objects.get(username="ana"))
    conf_override(settings, journey_concurrency=1, journey_wait_seconds=0.0, analytics_cache_seconds=0)
    _hold(other_session, 1)
    response = page.get(
        f"/streams/{stream.slug}/analytics/funnel/", {"step": ["page_view", "signup"], "window": "1d", "range": "7d"}
    )
    assert response.status_code == 200
    assert "ask again in a few seconds" in response.content.decode()
