"""Retention of first sightings (analytics_person_first) and the stream pages' counts of the log.

First sightings before the day rollups' boundary move on to the person's first kept day, or go
when none is kept (a person who comes back is then first seen anew); erasure still reaches them.
The pages count what the stream has logged and what its log still holds after retention.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone

from analytics.models import PersonDay, PersonFirst
from analytics.tests.journey_fixtures import event, log
from eventflow.tests.test_pages import person
from streams.erasure import erasure_request, erasure_run
from streams.log import LogRecord, log_append, log_append_now
from streams.log_selectors import LogCounts, log_counts
from streams.models import Stream
from streams.retention import log_partitions_ensure, retention_run, rollup_boundary
from streams.services import stream_create, team_create
from tests.fixtures import conf_override

# DETACH PARTITION CONCURRENTLY cannot run inside the test's transaction.
pytestmark = pytest.mark.django_db(transaction=True)


def _firsts(stream: Stream) -> dict[str, datetime]:
    return dict(PersonFirst.objects.filter(stream=stream).values_list("person", "first_at"))


def _firsts_from_days(stream: Stream) -> dict[str, datetime]:
    """What ``activity_rebuild_first`` counts: each person's least first time of their kept days."""
    out: dict[str, datetime] = {}
    for who, at in PersonDay.objects.filter(stream=stream).values_list("person", "first_at"):
        out[who] = min(at, out.get(who, at))
    return out


@pytest.fixture
def days(stream: Stream, settings):  # type: ignore[no-untyped-def]
    """Alice was seen only on a day past the day rollups' retention, Bob then and on two kept days,
    Carol only on a kept day. Returns (now, old, first kept sighting of Bob, Carol's)."""
    conf_override(settings, rollup_day_retention_days=10)
    now = timezone.now()
    boundary = rollup_boundary(now=now, grain="day")
    old = boundary - timedelta(days=2) + timedelta(hours=9)
    kept1 = boundary + timedelta(days=1, hours=9)
    kept2 = boundary + timedelta(days=3, hours=7)
    log(
        stream,
        [
            event("login", old, user="alice"),
            event("login", old + timedelta(hours=1), user="bob"),
            event("login", kept1, user="bob"),
            event("login", kept2, user="bob"),
            event("login", kept2, user="carol"),
        ],
    )
    assert _firsts(stream) == {"alice": old, "bob": old + timedelta(hours=1), "carol": kept2}
    return now, old, kept1, kept2


def test_first_sightings_before_the_boundary_move_to_the_first_kept_day_or_go(stream: Stream, days) -> None:  # type: ignore[no-untyped-def]
    now, _old, kept1, kept2 = days

    outcome = retention_run(now=now)

    assert not outcome.failed and outcome.finished
    assert _firsts(stream) == {"bob": kept1, "carol": kept2}
    # As a rebuild from the kept day rows would count them.
    assert _firsts(stream) == _firsts_from_days(stream)
    assert outcome.rows_deleted["analytics_person_first"] == 1

    again = retention_run(now=now)

    assert again.rows_deleted["analytics_person_first"] == 0
    assert _firsts(stream) == {"bob": kept1, "carol": kept2}


def test_a_person_whose_days_all_expired_is_first_seen_anew_when_they_come_back(stream: Stream, days) -> None:  # type: ignore[no-untyped-def]
    now, _old, kept1, _kept2 = days
    retention_run(now=now)
    back = now - timedelta(hours=1)

    log(stream, [event("login", back, user="alice"), event("login", back, user="bob")])

    assert _firsts(stream)["alice"] == back
    assert _firsts(stream)["bob"] == kept1
    assert _firsts(stream) == _firsts_from_days(stream)


def test_first_sightings_are_expired_in_chunks(stream: Stream, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    conf_override(settings, rollup_day_retention_days=10)
    now = timezone.now()
    old = rollup_boundary(now=now, grain="day") - timedelta(days=1)
    log(stream, [event("login", old, user=f"u{i}") for i in range(7)] + [event("login", now, user="u0")])
    monkeypatch.setattr("streams.retention._PERSON_FIRST_CHUNK", 3)

    outcome = retention_run(now=now)

    assert outcome.rows_deleted["analytics_person_first"] == 6
    assert set(_firsts(stream)) == {"u0"} and _firsts(stream)["u0"].date() == now.astimezone(UTC).date()


def test_an_erasure_after_retention_removes_the_person_s_first_sighting_and_days(stream: Stream, days) -> None:  # type: ignore[no-untyped-def]
    now, _old, _kept1, kept2 = days
    retention_run(now=now)

    erasure = erasure_request(caller=None, stream_id=stream.pk, by="user_id", subject="bob")
    done = erasure_run(erasure_id=erasure.pk)

    assert done is not None and done.status == "done"
    assert not PersonDay.objects.filter(stream=stream, person="bob").exists()
    assert _firsts(stream) == {"carol": kept2}


# --- the stream pages' counts ------------------------------------------------------------------


def _records(prefix: str, n: int, at: datetime) -> list[LogRecord]:
    return [LogRecord(event_id=f"{prefix}{i}", type="page_view", event_time=at, received_at=at) for i in range(n)]


def test_the_pages_count_what_was_logged_and_what_retention_kept(django_assert_num_queries) -> None:  # type: ignore[no-untyped-def]
    now = timezone.now()
    old = now - timedelta(days=40)
    log_partitions_ensure(now=old, days_ahead=1)
    shop = stream_create(slug="shop", name="Shop", retention_days=30)
    quiet = stream_create(slug="quiet", name="Quiet", retention_days=30)
    with transaction.atomic():
        log_append(stream_id=shop.pk, records=_records("old", 7, old), logged_at=old)
    log_append_now(stream_id=shop.pk, records=_records("new", 3, now))
    assert log_counts(stream_ids=[shop.pk])[shop.pk] == LogCounts(logged=10, kept=10)

    outcome = retention_run(now=now)

    # The old day was the shop's alone: its partition was dropped whole.
    assert f"streams_log_p{old:%Y%m%d}" in outcome.partitions_dropped
    with django_assert_num_queries(1):
        counts = log_counts(stream_ids=[shop.pk, quiet.pk])
    assert counts == {shop.pk: LogCounts(logged=10, kept=3), quiet.pk: LogCounts(logged=0, kept=0)}

    admin = person("maria", "Admin")
    team_create(slug="growth", members=[admin], streams=[shop, quiet])
    browser = Client()
    browser.force_login(admin)
    detail = browser.get("/streams/shop/").content.decode()
    assert '<div class="stat-label">Events logged</div><div class="stat-value">10</div>' in detail
    assert '<div class="stat-label">Kept now</div><div class="stat-value">3</div>' in detail
    listing = browser.get("/streams/").content.decode()
    assert '<td class="num" data-label="Events logged">10</td><td class="num" data-label="Kept now">3</td>' in listing
    assert '<td class="num" data-label="Events logged">0</td><td class="num" data-label="Kept now">0</td>' in listing
