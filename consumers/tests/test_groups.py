"""Consumer groups over HTTP: positions, leases, commits, seeks, lag and dead letters."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from consumers.models import ConsumerGroup
from ingestion.models import InboxEvent
from streams.models import DeadLetter, DeadLetterStage

from .conftest import BASE_TIME, GROUPS, append

pytestmark = pytest.mark.django_db


def create(consumer, name="billing", **body):
    response = consumer.post(GROUPS, {"name": name, **body})
    assert response.status_code == 201, response.content
    return response.json()


def poll(consumer, name="billing", **body):
    response = consumer.post(f"{GROUPS}/{name}/poll", body)
    assert response.status_code == 200, response.content
    return response.json()


def commit(consumer, name="billing", **body):
    return consumer.post(f"{GROUPS}/{name}/commit", body)


def show(consumer, name="billing"):
    response = consumer.get(f"{GROUPS}/{name}")
    assert response.status_code == 200, response.content
    return response.json()


def test_create_list_show_delete(consumer, stream):
    append(stream, 5)
    created = create(consumer, start="latest", max_deliver=3, on_max_deliver="stop")
    assert created["committed_offset"] == 5
    assert created["head"] == 5 and created["lag"] == 0
    assert created["max_deliver"] == 3 and created["on_max_deliver"] == "stop"
    assert created["lease"] is None and created["paused"] is False and created["dead_letters"] == []
    create(consumer, name="analytics")  # earliest by default
    listed = consumer.get(GROUPS).json()
    assert [g["name"] for g in listed["results"]] == ["analytics", "billing"]
    assert [g["committed_offset"] for g in listed["results"]] == [0, 5]
    assert consumer.post(GROUPS, {"name": "billing"}).status_code == 409
    assert consumer.delete(f"{GROUPS}/billing").status_code == 204
    assert consumer.get(f"{GROUPS}/billing").status_code == 404


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, 0),
        ({"start": "earliest"}, 0),
        ({"start": "latest"}, 10),
        ({"start": "offset", "offset": 4}, 4),
        ({"offset": 7}, 7),
        ({"start": "offset", "offset": 10}, 10),
        ({"timestamp": (BASE_TIME + timedelta(seconds=150)).isoformat()}, 3),
        ({"start": "timestamp", "timestamp": "2030-01-01T00:00:00Z"}, 10),
        ({"start": "timestamp", "timestamp": "2000-01-01T00:00:00+02:00"}, 0),
    ],
)
def test_start_positions(consumer, stream, body, expected):
    append(stream, 10)  # one event a minute from BASE_TIME
    assert create(consumer, **body)["committed_offset"] == expected


def test_start_beyond_head_is_422(consumer, stream):
    append(stream, 3)
    response = consumer.post(GROUPS, {"name": "billing", "offset": 4})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "offset_beyond_head"


def test_poll_commit_drain(consumer, stream):
    append(stream, 25)
    create(consumer)
    seen = []
    while True:
        batch = poll(consumer, max=10)
        if batch["lease"] is None:
            assert batch["idle_reason"] == "caught_up"
            break
        assert [r["delivery_count"] for r in batch["records"]] == [1] * len(batch["records"])
        seen += [r["offset"] for r in batch["records"]]
        done = commit(consumer, lease_id=batch["lease"]["id"], offset=batch["next_offset"])
        assert done.status_code == 200, done.content
        assert done.json()["lease"] is None
    assert seen == list(range(25))
    state = show(consumer)
    assert (state["committed_offset"], state["head"], state["lag"]) == (25, 25, 0)
    append(stream, 1)
    record = poll(consumer)["records"][0]
    assert record["offset"] == 25 and record["event_id"] == "e25" and record["type"] == "page_view"
    assert record["payload"] == {"page": "/p/25", "n": 25}
    assert record["timestamp"].startswith("2026-11-21T09:25:00")
    assert set(record) >= {"received_at", "user_id", "anonymous_id", "session_id", "context", "enrichment", "flags"}


def test_lag_counts_only_the_log_not_the_inbox(consumer, stream):
    append(stream, 4)
    create(consumer)
    for i in range(3):
        InboxEvent.objects.create(stream=stream, event_id=f"waiting{i}", type="page_view", event_time=BASE_TIME)
    assert show(consumer)["lag"] == 4
    batch = poll(consumer, max=1000)
    assert len(batch["records"]) == 4
    commit(consumer, lease_id=batch["lease"]["id"], offset=batch["next_offset"])
    state = show(consumer)
    assert state["lag"] == 0 and state["head"] == 4


def test_a_second_member_gets_nothing_while_the_lease_lives(consumer, stream):
    append(stream, 10)
    create(consumer)
    first = poll(consumer, max=4, lease_seconds=60)
    second = poll(consumer, max=4)
    assert [r["offset"] for r in first["records"]] == [0, 1, 2, 3]
    assert second["records"] == [] and second["lease"] is None and second["idle_reason"] == "lease_held"
    assert show(consumer)["lease"]["id"] == first["lease"]["id"]
    commit(consumer, lease_id=first["lease"]["id"], offset=4)
    third = poll(consumer, max=4)
    assert [r["offset"] for r in third["records"]] == [4, 5, 6, 7]


def test_partial_commit_keeps_the_lease(consumer, stream):
    append(stream, 10)
    create(consumer)
    batch = poll(consumer, max=6)
    lease_id = batch["lease"]["id"]
    partial = commit(consumer, lease_id=lease_id, offset=2).json()
    assert partial["committed_offset"] == 2 and partial["lease"]["id"] == lease_id
    assert poll(consumer)["idle_reason"] == "lease_held"
    assert commit(consumer, lease_id=lease_id, offset=6).json()["lease"] is None
    # Repeating the final commit (an answer lost on the way) is harmless.
    again = commit(consumer, lease_id=lease_id, offset=6)
    assert again.status_code == 200 and again.json()["committed_offset"] == 6


def test_commit_fencing(consumer, stream):
    append(stream, 10)
    create(consumer)
    batch = poll(consumer, max=5, lease_seconds=1)
    lease_id = batch["lease"]["id"]

    beyond_head = commit(consumer, lease_id=lease_id, offset=11)
    assert beyond_head.status_code == 422
    assert beyond_head.json()["error"]["code"] == "offset_beyond_head"
    beyond_lease = commit(consumer, lease_id=lease_id, offset=7)
    assert beyond_lease.status_code == 422
    assert beyond_lease.json()["error"]["code"] == "offset_beyond_lease"
    assert commit(consumer, lease_id=lease_id, offset=3).status_code == 200
    backwards = commit(consumer, lease_id=lease_id, offset=2)
    assert backwards.status_code == 409
    assert backwards.json()["error"]["code"] == "offset_backwards"
    foreign = commit(consumer, lease_id="00000000-0000-4000-8000-000000000000", offset=4)
    assert foreign.status_code == 409 and foreign.json()["error"]["code"] == "lease_not_held"

    time.sleep(1.05)
    expired = commit(consumer, lease_id=lease_id, offset=5)
    assert expired.status_code == 409
    assert expired.json()["error"]["code"] == "lease_expired"
    # Another member takes the range over; the old lease can no longer commit.
    taken = poll(consumer, max=5)
    assert [r["offset"] for r in taken["records"]] == [3, 4, 5, 6, 7]
    assert [r["delivery_count"] for r in taken["records"]] == [2, 2, 1, 1, 1]
    stale = commit(consumer, lease_id=lease_id, offset=5)
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "lease_not_held"
    assert show(consumer)["committed_offset"] == 3


def test_expired_lease_redelivers_with_a_higher_count(consumer, stream):
    append(stream, 3)
    create(consumer)
    first = poll(consumer, lease_seconds=1)
    assert [r["delivery_count"] for r in first["records"]] == [1, 1, 1]
    time.sleep(1.05)
    second = poll(consumer, lease_seconds=60)
    assert [r["offset"] for r in second["records"]] == [0, 1, 2]
    assert [r["delivery_count"] for r in second["records"]] == [2, 2, 2]
    assert second["lease"]["id"] != first["lease"]["id"]


def test_released_lease_is_delivered_again_at_once(consumer, stream):
    append(stream, 4)
    create(consumer)
    batch = poll(consumer, max=4)
    assert commit(consumer, lease_id=batch["lease"]["id"], offset=1, release=True).status_code == 200
    again = poll(consumer, max=4)
    assert [(r["offset"], r["delivery_count"]) for r in again["records"]] == [(1, 2), (2, 2), (3, 2)]


def _fail(consumer, max_records=100):
    """Poll and give the lease back uncommitted, as a consumer whose handler failed."""
    batch = poll(consumer, max=max_records)
    if batch["lease"] is not None:
        commit(consumer, lease_id=batch["lease"]["id"], offset=batch["lease"]["start_offset"], release=True)
    return batch


def test_max_deliver_dead_letters_only_the_failing_record_and_moves_on(consumer, stream):
    append(stream, 5)
    create(consumer, max_deliver=3)
    # The consumer handles offsets 0 and 1, then fails on 2, every time.
    first = poll(consumer)
    commit(consumer, lease_id=first["lease"]["id"], offset=2, release=True)
    second = poll(consumer)
    assert [(r["offset"], r["delivery_count"]) for r in second["records"]] == [(2, 2), (3, 2), (4, 2)]
    commit(consumer, lease_id=second["lease"]["id"], offset=2, release=True)
    # The last delivery of a record comes alone, so a dead letter holds only the failing one.
    last = _fail(consumer)
    assert [(r["offset"], r["delivery_count"]) for r in last["records"]] == [(2, 3)]
    assert DeadLetter.objects.count() == 0
    after = poll(consumer)
    assert [(r["offset"], r["delivery_count"]) for r in after["records"]] == [(3, 3)]
    letter = DeadLetter.objects.get()
    assert (letter.stage, letter.subscriber, letter.log_offset, letter.event_id) == (
        DeadLetterStage.CONSUME,
        "billing",
        2,
        "e2",
    )
    assert letter.attempts == 3 and letter.event["payload"] == {"page": "/p/2", "n": 2}
    commit(consumer, lease_id=after["lease"]["id"], offset=4)
    rest = poll(consumer)
    assert [(r["offset"], r["delivery_count"]) for r in rest["records"]] == [(4, 3)]
    commit(consumer, lease_id=rest["lease"]["id"], offset=5)
    state = show(consumer)
    assert (state["committed_offset"], state["lag"]) == (5, 0)
    assert state["open_dead_letters"] == 1 and state["dead_letters"][0]["offset"] == 2


def test_max_deliver_with_stop_policy_stops_the_group(consumer, stream):
    append(stream, 3)
    create(consumer, max_deliver=2, on_max_deliver="stop")
    _fail(consumer)
    assert [r["offset"] for r in _fail(consumer)["records"]] == [0]
    stopped = poll(consumer)
    assert stopped["lease"] is None and stopped["idle_reason"] == "paused"
    state = show(consumer)
    assert state["paused"] and "offsets 0..0" in state["paused_reason"]
    assert DeadLetter.objects.count() == 0
    # Pausing it again (the dashboard's button, a script) keeps the reason it stopped for.
    assert consumer.post(f"{GROUPS}/billing/pause").json()["paused"] is True
    assert "offsets 0..0" in show(consumer)["paused_reason"]
    # Resuming gives the record a fresh set of attempts.
    resumed = consumer.post(f"{GROUPS}/billing/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    batch = poll(consumer)
    assert (batch["records"][0]["offset"], batch["records"][0]["delivery_count"]) == (0, 1)


def test_pause_and_resume(consumer, stream):
    append(stream, 2)
    create(consumer)
    assert consumer.post(f"{GROUPS}/billing/pause").json()["paused"] is True
    assert poll(consumer)["idle_reason"] == "paused"
    consumer.post(f"{GROUPS}/billing/resume")
    assert len(poll(consumer)["records"]) == 2


def test_seek(consumer, stream):
    append(stream, 10)
    create(consumer)
    held = poll(consumer, max=5)
    target = (BASE_TIME + timedelta(seconds=6 * 60 - 1)).isoformat()
    sought = consumer.post(f"{GROUPS}/billing/seek", {"to": "timestamp", "timestamp": target})
    assert sought.status_code == 200 and sought.json()["committed_offset"] == 6
    # The lease held before the seek is fenced off.
    assert commit(consumer, lease_id=held["lease"]["id"], offset=5).status_code == 409
    exact = consumer.post(f"{GROUPS}/billing/seek", {"timestamp": (BASE_TIME + timedelta(minutes=2)).isoformat()})
    assert exact.json()["committed_offset"] == 2
    assert consumer.post(f"{GROUPS}/billing/seek", {"to": "latest"}).json()["committed_offset"] == 10
    assert consumer.post(f"{GROUPS}/billing/seek", {"to": "earliest"}).json()["committed_offset"] == 0
    assert consumer.post(f"{GROUPS}/billing/seek", {"offset": 9}).json()["committed_offset"] == 9
    assert [r["offset"] for r in poll(consumer)["records"]] == [9]
    beyond = consumer.post(f"{GROUPS}/billing/seek", {"offset": 11})
    assert beyond.status_code == 422


def test_seek_timestamp_follows_log_order_not_event_time(consumer, stream):
    # Event times out of order: the first event *in the log* at or after the time wins.
    from streams.log import LogRecord, log_append_now

    times = [0, 30, 10, 40, 20]
    log_append_now(
        stream_id=stream.pk,
        records=[
            LogRecord(
                event_id=f"t{i}",
                type="page_view",
                event_time=BASE_TIME + timedelta(minutes=m),
                received_at=BASE_TIME,
            )
            for i, m in enumerate(times)
        ],
    )
    create(consumer)
    at = consumer.post(f"{GROUPS}/billing/seek", {"timestamp": (BASE_TIME + timedelta(minutes=15)).isoformat()})
    assert at.json()["committed_offset"] == 1


def test_poll_path_query_count(consumer, stream, django_assert_num_queries):
    append(stream, 50)
    create(consumer)
    poll(consumer, max=1)  # warms the per-process stream cache and the key's last-used write
    commit(consumer, lease_id=show(consumer)["lease"]["id"], offset=1)
    # Savepoint + lock the group (with its head and retention) + the days that hold the offsets (so the read
    # plans only their partitions) + update the lease + release savepoint + the records as JSON. A position
    # this far from the retention edge is not probed (test_group_behind_retention).
    with django_assert_num_queries(6):
        batch = poll(consumer, max=20)
    assert len(batch["records"]) == 20
    # Savepoint + lock + update + notify + release.
    with django_assert_num_queries(5):
        assert commit(consumer, lease_id=batch["lease"]["id"], offset=batch["next_offset"]).status_code == 200
    # Another member holds the lease: savepoint + lock + release, no records query.
    poll(consumer, max=1000)
    with django_assert_num_queries(3):
        assert poll(consumer)["idle_reason"] == "lease_held"


def test_webhook_groups_are_not_pull_groups(consumer, stream):
    from consumers.models import GroupKind

    ConsumerGroup.objects.create(stream=stream, name="webhook-x", kind=GroupKind.WEBHOOK)
    assert consumer.get(f"{GROUPS}/webhook-x").status_code == 404
    assert consumer.post(f"{GROUPS}/webhook-x/poll").status_code == 404
    assert consumer.get(GROUPS).json()["results"] == []


def test_list_query_count_does_not_grow_with_groups(consumer, stream, django_assert_num_queries):
    append(stream, 3)
    create(consumer, name="g0")
    consumer.get(GROUPS)  # warms the per-process caches
    for i in range(1, 6):
        create(consumer, name=f"g{i}")
    # One query for the page: groups with their head and open dead letters.
    with django_assert_num_queries(1):
        listed = consumer.get(GROUPS).json()
    assert len(listed["results"]) == 6 and {g["lag"] for g in listed["results"]} == {3}
