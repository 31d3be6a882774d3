"""Erasure: a person's events become tombstones, the rollups still equal the log, and only Admins may ask.

Events go through the real intake and processor (the analytics tests' world plus
one person, "jane"); every expectation is computed by the test from the log's
rows or from what was sent, never read back from the rollups.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from analytics.tests.analytics_events import START, World, world_build
from analytics.tests.journey_fixtures import event, log
from analytics.tests.test_activity import _expected as activity_expected
from analytics.tests.test_activity import _stored as activity_stored
from analytics.tests.test_rollups import _expected_from_log, _stored
from consumers.selectors import Position
from consumers.services import consumer_group_create
from eventflow.models import AuditEntry
from ingestion.models import InboxEvent
from ingestion.pipeline import stream_drain
from streams.dead_letters import DeadLetterIn, dead_letters_record
from streams.erasure import STALE_SECONDS, erasure_request, erasure_run, subject_hash
from streams.models import ApiKeyKind, DeadLetter, DeadLetterStage, Erasure, LogEntry, Stream
from streams.services import api_key_create, team_create
from streams.tasks import erasure_run_task, erasures_sweep
from tests.fixtures import conf_override
from tests.intake import post_batch

from .people_fixtures import Api, make_person, signed_in

pytestmark = pytest.mark.django_db(transaction=True)

JANE = "jane-doe-77"
JANE_ANON = "cookie-jane-5f2"
JANE_EMAIL = "jane.doe@example.com"
JANE_WORDS = (JANE, JANE_ANON, JANE_EMAIL, "Jane Doe", "/account/jane")
URL = "/api/v1/streams/shop/erasures"


def _jane_event(i: int, *, user: bool = True, at: datetime | None = None) -> dict[str, Any]:
    at = at or START + timedelta(hours=5 * i, minutes=i)
    body: dict[str, Any] = {
        "event_id": f"evt-{i}-{'u' if user else 'a'}",
        "type": ["page_view", "login", "form_submit"][i % 3],
        "timestamp": at.isoformat(),
        "anonymous_id": JANE_ANON,
        "session_id": f"sess-jane-{i // 4}",
        "payload": {"email": JANE_EMAIL, "name": "Jane Doe", "page": "/account/jane"},
        "context": {
            "ip": "203.0.113.9",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "page": {
                "url": "https://shop.example/account/jane?utm_source=jane-mail",
                "referrer": "https://jane.example/",
            },
            "country": "NL",
        },
    }
    if user:
        body["user_id"] = JANE
    return body


def _send(client: Client, world: World, events: list[dict[str, Any]], *, drain: bool = True) -> None:
    response = post_batch(client, world.stream.slug, events, key=world.keys[0])
    assert response.status_code == 202, response.content
    if drain:
        stream_drain(stream_id=world.stream.pk)


def _rows_json(stream: Stream) -> dict[int, dict[str, Any]]:
    """Each log row of the stream as PostgreSQL renders it, by offset."""
    with connection.cursor() as cursor:
        cursor.execute(
            'SELECT l."offset", row_to_json(l)::text FROM streams_log l WHERE stream_id = %s ORDER BY l."offset"',
            [stream.pk],
        )
        return {offset: orjson.loads(text) for offset, text in cursor.fetchall()}


def _type_counts_of_log(stream: Stream) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT type, count(*) FROM streams_log WHERE stream_id = %s GROUP BY type", [stream.pk])
        return dict(cursor.fetchall())


def _type_counts_of_rollup(stream: Stream) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT type, sum(count)::int FROM analytics_day_count WHERE stream_id = %s GROUP BY type", [stream.pk]
        )
        return dict(cursor.fetchall())


def _mentions_jane(value: Any) -> bool:
    text = orjson.dumps(value).decode()
    return any(word in text for word in JANE_WORDS)


def _day_users(stream: Stream, day: datetime) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT users FROM analytics_user_sketch WHERE stream_id = %s AND grain = 'd' AND dimension = '' "
            "AND start = %s",
            [stream.pk, day],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def _jane_world(client: Client, stream: Stream) -> list[int]:
    """The analytics world, 12 of jane's events over three days in the log, two in the inbox, one dead letter."""
    world = world_build(client, stream)
    _send(client, world, [_jane_event(i) for i in range(12)])
    jane_offsets = sorted(LogEntry.objects.filter(stream=stream, user_id=JANE).values_list("offset", flat=True))
    assert len(jane_offsets) == 12
    # Accepted, and waiting in the inbox to be tried again later (the erasure lets due rows through).
    _send(client, world, [_jane_event(100), _jane_event(101)], drain=False)
    InboxEvent.objects.filter(stream=stream, user_id=JANE).update(next_attempt_at=timezone.now() + timedelta(hours=1))
    dead_letters_record(
        letters=[
            DeadLetterIn(
                stream_id=stream.pk,
                event_id="evt-dead",
                event={**_jane_event(102), "event_time": START.isoformat()},
                stage=DeadLetterStage.VALIDATE,
                error_class="ValueError",
                error_message="a processing failure",
            ),
            DeadLetterIn(
                stream_id=stream.pk,
                event_id="someone-else",
                event={"event_id": "someone-else", "type": "login", "user_id": "user-3"},
                stage=DeadLetterStage.VALIDATE,
                error_class="ValueError",
            ),
        ]
    )
    return jane_offsets


def test_an_erasure_by_user_id_leaves_tombstones_and_rollups_equal_to_the_log(client: Client, stream: Stream) -> None:
    jane_offsets = _jane_world(client, stream)
    before = _rows_json(stream)
    types_before = _type_counts_of_log(stream)
    jane_days = sorted(
        {
            datetime.fromisoformat(before[o]["event_time"])
            .astimezone(UTC)
            .replace(hour=0, minute=0, second=0, microsecond=0)
            for o in jane_offsets
        }
    )
    users_before = {day: _day_users(stream, day) for day in jane_days}
    assert all(_mentions_jane(before[o]) for o in jane_offsets)
    team = team_create(slug="privacy", streams=[stream])
    admin = signed_in("alice", "Admin", team)

    response = admin.post(URL, {"user_id": JANE})
    assert response.status_code == 202, response.content
    body = orjson.loads(response.content)
    assert body["status"] == "pending"
    assert body["subject_sha256"] == subject_hash(by="user_id", subject=JANE)
    assert not _mentions_jane(body)
    # Asked again while unfinished: the same erasure.
    assert orjson.loads(admin.post(URL, {"user_id": JANE}).content)["id"] == body["id"]

    erasure = erasure_run(erasure_id=body["id"])
    assert erasure is not None and erasure.status == "done"

    after = _rows_json(stream)
    # Gapless: every offset is still there, the tombstones in their places.
    assert sorted(after) == list(range(len(before)))
    for offset, row in after.items():
        if offset in jane_offsets:
            assert not _mentions_jane(row), row
            assert row["user_id"] is None and row["anonymous_id"] is None and row["session_id"] is None
            assert row["payload"] == {} and row["context"] == {} and row["enrichment"] == {}
            assert row["flags"] == {"redacted": True, "erasure_id": body["id"]}
            for kept in ("event_id", "type", "event_time", "received_at", "logged_at", "api_key_id"):
                assert row[kept] == before[offset][kept]
        else:
            assert row == before[offset]
    # The counts by type still equal the log (the tombstones keep their type), and every rollup
    # equals what the test recounts from the log's rows: dimensions and the HyperLogLog users too.
    assert _type_counts_of_log(stream) == types_before == _type_counts_of_rollup(stream)
    expected, stored = _expected_from_log(stream), _stored(stream)
    for name in ("minutes", "hours", "days", "hour_dims", "day_dims", "users"):
        assert stored[name] == expected[name], name
    assert not any(_mentions_jane(key) for key in stored["hour_dims"])
    # Jane was one of each of her days' users; those days' sketches were rebuilt without her.
    assert {day: _day_users(stream, day) for day in jane_days} == {day: n - 1 for day, n in users_before.items()}
    entries = list(LogEntry.objects.filter(stream=stream))
    assert activity_stored(stream) == activity_expected(entries)  # type: ignore[arg-type]
    assert not any(JANE in key[2] for key in activity_stored(stream)[0])

    # Inbox, dead letters and the session state: hers are gone, the others' stay.
    assert not InboxEvent.objects.filter(stream=stream, user_id=JANE).exists()
    assert list(DeadLetter.objects.filter(stream=stream).values_list("event_id", flat=True)) == ["someone-else"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT identity FROM ingestion_session_state WHERE stream_id = %s", [stream.pk])
        assert not any(JANE in identity for (identity,) in cursor.fetchall())

    shown = orjson.loads(admin.get(f"{URL}/{body['id']}").content)
    assert shown["status"] == "done"
    assert shown["events_redacted"] == 12
    assert shown["inbox_deleted"] == 2
    assert shown["dead_letters_deleted"] == 1
    assert Erasure.objects.get(pk=body["id"]).subject == ""

    audit = {e.action: e for e in AuditEntry.objects.filter(kind="security", action__startswith="stream.erasure")}
    assert set(audit) == {"stream.erasure_request", "stream.erasure_done"}
    assert audit["stream.erasure_request"].caller == "alice"
    assert audit["stream.erasure_done"].details["events_redacted"] == 12
    assert not any(_mentions_jane(e.details) for e in audit.values())

    # A consumer reading the range again sees the redaction.
    consumer_group_create(stream_id=stream.pk, name="replay", start=Position("earliest"))
    secret = api_key_create(kind=ApiKeyKind.SECRET, streams=[stream]).raw_key
    polled = Client().post(
        "/api/v1/streams/shop/consumer-groups/replay/poll",
        data={"max": 1000},
        content_type="application/json",
        HTTP_X_API_KEY=secret,
    )
    assert polled.status_code == 200, polled.content
    records = {r["offset"]: r for r in orjson.loads(polled.content)["records"]}
    assert {o for o, r in records.items() if r["flags"].get("redacted")} == set(jane_offsets)
    assert not _mentions_jane(list(records.values()))

    # Run again, and a second request: nothing more changes.
    assert erasure_run(erasure_id=body["id"]).events_redacted == 12  # type: ignore[union-attr]
    again = erasure_request(caller=None, stream_id=stream.pk, by="user_id", subject=JANE)
    assert again.pk != body["id"]
    assert erasure_run(erasure_id=again.pk).events_redacted == 0  # type: ignore[union-attr]
    assert _rows_json(stream) == after
    assert _stored(stream) == stored


def test_an_erasure_by_anonymous_id_walks_the_log_and_finds_what_came_in_meanwhile(
    client: Client, stream: Stream
) -> None:
    world = world_build(client, stream)
    # Anonymous events, and events of a signed-in user that carry the same cookie.
    _send(client, world, [_jane_event(i, user=i % 2 == 0) for i in range(10)])
    jane = set(LogEntry.objects.filter(stream=stream, anonymous_id=JANE_ANON).values_list("offset", flat=True))
    assert len(jane) == 10
    erasure = erasure_request(caller=None, stream_id=stream.pk, by="anonymous_id", subject=JANE_ANON)
    # One chunk, then a late event (days before the others) is appended while the erasure runs.
    erasure_run(erasure_id=erasure.pk, budget_seconds=0)
    late = event("login", START - timedelta(days=3), user=None, anon=JANE_ANON, payload={"email": JANE_EMAIL})
    log(stream, [late])
    jane.add(LogEntry.objects.get(stream=stream, event_id=late.event_id).offset)
    done = erasure_run(erasure_id=erasure.pk)
    assert done is not None and done.status == "done" and done.events_redacted == 11

    rows = _rows_json(stream)
    assert sorted(rows) == list(range(len(rows)))
    assert {o for o, row in rows.items() if row["flags"].get("redacted")} == jane
    assert not any(_mentions_jane(row) for row in rows.values())
    expected, stored = _expected_from_log(stream), _stored(stream)
    for name in ("minutes", "hours", "days", "hour_dims", "day_dims", "users"):
        assert stored[name] == expected[name], name
    entries = list(LogEntry.objects.filter(stream=stream))
    assert activity_stored(stream) == activity_expected(entries)  # type: ignore[arg-type]


@pytest.fixture
def callers(stream: Stream, other_stream: Stream) -> dict[str, Api]:
    team = team_create(slug="own", streams=[stream])
    foreign = team_create(slug="foreign", streams=[other_stream])
    return {
        "developer": signed_in("dev", "Developer", team),
        "analyst": signed_in("ana", "Analyst", team),
        "operator": signed_in("op", "Operator", team),
        "foreign admin": signed_in("fa", "Admin", foreign),
        "secret key": Api(HTTP_X_API_KEY=api_key_create(kind=ApiKeyKind.SECRET, streams=[stream]).raw_key),
        "nobody": Api(),
        "admin": signed_in("adm", "Admin", team),
    }


def test_only_admins_of_the_stream_may_erase(stream: Stream, callers: dict[str, Api]) -> None:
    log(stream, [event("login", START, user=JANE, payload={"email": JANE_EMAIL})])
    expected = {
        "developer": 403,
        "analyst": 403,
        "operator": 403,
        "secret key": 403,
        "foreign admin": 404,
        "nobody": 401,
    }
    for name, status in expected.items():
        assert callers[name].post(URL, {"user_id": JANE}).status_code == status, name
        assert callers[name].get(URL).status_code == status, name
    assert not Erasure.objects.exists()
    assert callers["admin"].post(URL, {"user_id": JANE}).status_code == 202
    listed = orjson.loads(callers["admin"].get(URL).content)["results"]
    assert [e["by"] for e in listed] == ["user_id"]
    assert callers["developer"].get(f"{URL}/{listed[0]['id']}").status_code == 403
    assert callers["admin"].get(f"{URL}/999999").status_code == 404


BAD_BODIES = [
    {},
    {"user_id": JANE, "anonymous_id": JANE_ANON},
    {"user_id": ""},
    {"user_id": 7},
    {"email": JANE_EMAIL},
    {"user_id": "x" * 257},
    {"user_id": "a\x00b"},
]


def test_a_bad_request_is_a_400_and_writes_nothing(stream: Stream, callers: dict[str, Api]) -> None:
    for body in BAD_BODIES:
        response = callers["admin"].post(URL, body)
        assert response.status_code == 400, (body, response.content)
        assert "error" in orjson.loads(response.content)
    assert not Erasure.objects.exists()
    assert not AuditEntry.objects.filter(action__startswith="stream.erasure").exists()


def test_the_dashboard_page_erases_after_confirmation(stream: Stream) -> None:
    team = team_create(slug="own", streams=[stream])
    admin = make_person("adm", "Admin", team)
    developer = make_person("dev", "Developer", team)
    browser = Client()
    browser.force_login(developer)
    assert browser.get("/streams/shop/erasures/").status_code == 403
    browser.force_login(admin)
    page = browser.get("/streams/shop/erasures/")
    assert page.status_code == 200
    assert b"Erase this person" in page.content
    # Without the confirmation box: nothing is asked for.
    unconfirmed = browser.post("/streams/shop/erasures/", {"by": "user_id", "subject": JANE})
    assert unconfirmed.status_code == 200
    assert b"Tick the box to confirm." in unconfirmed.content
    assert not Erasure.objects.exists()
    done = browser.post("/streams/shop/erasures/", {"by": "user_id", "subject": JANE, "confirm": "on"})
    assert done.status_code == 302
    erasure = Erasure.objects.get()
    assert (erasure.by, erasure.subject, erasure.requested_by_label) == ("user_id", JANE, "adm")
    listed = browser.get("/streams/shop/erasures/")
    assert erasure.subject_hash[:10].encode() in listed.content
    assert JANE.encode() not in listed.content


def test_the_task_runs_an_erasure_to_the_end_and_the_sweep_queues_a_stale_one(stream: Stream) -> None:
    log(
        stream, [event("login", START + timedelta(hours=i), user=JANE, payload={"email": JANE_EMAIL}) for i in range(3)]
    )
    erasure = erasure_request(caller=None, stream_id=stream.pk, by="user_id", subject=JANE)
    # Nothing has moved it for a while (its message was lost): the sweep queues it again.
    Erasure.objects.filter(pk=erasure.pk).update(updated_at=timezone.now() - timedelta(seconds=STALE_SECONDS + 1))
    assert erasures_sweep.apply().get() == 1
    erasure_run_task.apply(args=[erasure.pk]).get()
    erasure.refresh_from_db()
    assert (erasure.status, erasure.events_redacted, erasure.subject) == ("done", 3, "")
    # Done erasures are not swept, however old.
    Erasure.objects.filter(pk=erasure.pk).update(updated_at=timezone.now() - timedelta(days=1))
    assert erasures_sweep.apply().get() == 0


def test_a_long_erasure_lets_the_stream_s_processing_go_on(client: Client, stream: Stream, settings: Any) -> None:
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key
    # Six of jane's days: six chunks.
    response = post_batch(
        client, stream.slug, [_jane_event(i, at=START + timedelta(days=i)) for i in range(6)], key=key
    )
    assert response.status_code == 202
    stream_drain(stream_id=stream.pk)
    erasure = erasure_request(caller=None, stream_id=stream.pk, by="user_id", subject=JANE)
    # Others' events wait in the inbox, in small batches; no worker runs in this test.
    conf_override(settings, process_batch_size=5)
    others = [{"event_id": f"other-{i}", "type": "login", "user_id": f"user-{i}"} for i in range(20)]
    assert post_batch(client, stream.slug, others, key=key).status_code == 202
    done = erasure_run(erasure_id=erasure.pk)
    assert done is not None and done.events_redacted == 6
    # Between its six chunks the erasure let batches of five through: all four of them.
    logged = set(
        LogEntry.objects.filter(stream=stream, event_id__startswith="other-").values_list("event_id", flat=True)
    )
    assert logged == {e["event_id"] for e in others}


def test_an_erasure_reaches_the_alerts_of_rules_grouped_by_the_person(client: Client, stream: Stream) -> None:
    from analytics.alerts import alert_rule_create, alert_rules_cache_clear
    from analytics.models import Alert, AlertBucket, AlertCooldown

    world = world_build(client, stream)
    rule = alert_rule_create(
        stream_id=stream.pk,
        name="two logins a day",
        window_seconds=86_400,
        event_types=["login"],
        threshold=2,
        group_by="user_id",
    )
    alert_rules_cache_clear()
    # Alerts count recent events only: these happened in the last half hour.
    now = timezone.now()
    bob = [
        {
            "event_id": f"bob-{i}",
            "type": "login",
            "user_id": "bob-other",
            "timestamp": (now - timedelta(minutes=10 + i)).isoformat(),
        }
        for i in range(2)
    ]
    _send(client, world, [_jane_event(i, at=now - timedelta(minutes=30 - i)) for i in range(12)] + bob)
    stream_drain(stream_id=stream.pk)  # the alert events the first drain queued
    alerts = {a.group_value: a for a in Alert.objects.filter(rule=rule)}
    assert {JANE, "bob-other"} <= set(alerts)
    assert AlertBucket.objects.filter(rule_id=rule.pk, group_key=JANE).exists()
    assert AlertCooldown.objects.filter(rule_id=rule.pk, group_key=JANE).exists()
    jane_alert_event = f"alert-{alerts[JANE].pk}"
    assert _mentions_jane(LogEntry.objects.get(stream=stream, event_id=jane_alert_event).payload)

    erasure = erasure_request(caller=None, stream_id=stream.pk, by="user_id", subject=JANE)
    done = erasure_run(erasure_id=erasure.pk)
    assert done is not None and done.status == "done"

    after = _rows_json(stream)
    assert not any(_mentions_jane(row) for row in after.values())
    tombstone = LogEntry.objects.get(stream=stream, event_id=jane_alert_event)
    assert tombstone.payload == {} and tombstone.flags == {"redacted": True, "erasure_id": erasure.pk}
    assert tombstone.type == "alert"
    assert not Alert.objects.filter(rule=rule, group_value=JANE).exists()
    assert Alert.objects.get(pk=alerts[JANE].pk).count == alerts[JANE].count
    assert not AlertBucket.objects.filter(rule_id=rule.pk, group_key=JANE).exists()
    assert not AlertCooldown.objects.filter(rule_id=rule.pk, group_key=JANE).exists()
    # Bob's alert, groups and event stay as they were.
    assert Alert.objects.get(pk=alerts["bob-other"].pk).group_value == "bob-other"
    assert AlertBucket.objects.filter(rule_id=rule.pk, group_key="bob-other").exists()
    assert LogEntry.objects.get(stream=stream, event_id=f"alert-{alerts['bob-other'].pk}").payload["group_value"] == (
        "bob-other"
    )
    # The rollups still equal the log, tombstoned alert events included.
    expected, stored = _expected_from_log(stream), _stored(stream)
    for name in ("minutes", "hours", "days", "hour_dims", "day_dims", "users"):
        assert stored[name] == expected[name], name
