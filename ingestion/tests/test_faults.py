"""The processing pipeline under real faults, with real processes.

gunicorn, Celery workers and beat run as child processes against the test
database and a throw-away redis-server (never the shared one), and the tests
kill, stop, freeze or flush them. What must hold afterwards (DESIGN,
invariants 3, 4, 5 and 9): every accepted event is in its stream's log exactly
once, at gapless offsets, or in the dead letter table; a bad event costs only
itself; ingestion keeps answering while Redis is away.
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.db.models import Max, Sum

from analytics.models import MinuteCount
from eventflow.roles import roles_sync
from ingestion.models import InboxEvent
from ingestion.pipeline import PROCESS_LOCK_CLASS
from ingestion.processing import kick_marker
from streams.log import log_head
from streams.models import ApiKeyKind, DeadLetter, DeadLetterStage, DeadLetterStatus, LogEntry, SchemaMode, Stream
from streams.services import api_key_create, schema_register, stream_create, team_create
from tests.workers import PostgresCluster, Stack, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

PROCESS_SECONDS = 30.0


@pytest.fixture
def new_stack(transactional_db: Any, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    # Requesting transactional_db first means the processes are gone before the
    # test database is flushed.
    made: list[Stack] = []

    def make(**kwargs: Any) -> Stack:
        made.append(Stack(tmp_path / f"stack-{len(made)}", **kwargs))
        return made[-1]

    try:
        yield make
    finally:
        with ExitStack() as cleanup:
            for stack in made:
                # Shown by pytest only when the test failed; printed after the close.
                cleanup.callback(print_logs, stack)
                cleanup.callback(stack.close)


def print_logs(stack: Stack) -> None:
    print(stack.log_tails())


@pytest.fixture
def stack(new_stack: Callable[..., Stack]) -> Stack:
    return new_stack()


@pytest.fixture
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        yield cluster.init()
    finally:
        cluster.close()


def make_stream(slug: str, mode: str = SchemaMode.WARN) -> tuple[Stream, str]:
    stream = stream_create(slug=slug, name=slug.title(), schema_mode=mode, with_starter_schemas=True)
    return stream, api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key


def page_views(prefix: str, count: int) -> list[dict[str, Any]]:
    return [
        {"event_id": f"{prefix}-{i}", "type": "page_view", "user_id": f"u{i % 7}", "payload": {"page": f"/p/{i}"}}
        for i in range(count)
    ]


def send(client: httpx.Client, stream: Stream, key: str, events: list[dict[str, Any]]) -> list[str]:
    """POST one batch; it must be accepted whole. Returns the accepted event ids."""
    response = client.post(
        f"/api/v1/streams/{stream.slug}/events/batch",
        content=orjson.dumps({"events": events}),
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == len(events), body
    return [result["event_id"] for result in body["results"]]


def send_all(
    client: httpx.Client, stream: Stream, key: str, events: list[dict[str, Any]], size: int = 500
) -> list[str]:
    accepted: list[str] = []
    for start in range(0, len(events), size):
        accepted += send(client, stream, key, events[start : start + size])
    return accepted


def logged_count(stream: Stream) -> int:
    return LogEntry.objects.filter(stream=stream).count()


def inbox_count(stream: Stream) -> int:
    return InboxEvent.objects.filter(stream=stream).count()


def accounted_for(stream: Stream) -> int:
    """Events in the log plus events in the inbox, in one snapshot."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM streams_log WHERE stream_id = %s)"
            " + (SELECT count(*) FROM ingestion_inbox WHERE stream_id = %s)",
            [stream.pk, stream.pk],
        )
        return int(cursor.fetchone()[0])


def wait_logged(stream: Stream, count: int, timeout: float = PROCESS_SECONDS) -> None:
    wait_until(
        lambda: logged_count(stream) >= count, timeout=timeout, what=f"{count} events in the log of {stream.slug}"
    )


def assert_logged_exactly_once(stream: Stream, accepted: list[str]) -> None:
    """The log holds each accepted event once, at offsets 0..n-1, and nothing waits or died."""
    rows = list(LogEntry.objects.filter(stream=stream).order_by("offset").values_list("offset", "event_id"))
    offsets = [offset for offset, _ in rows]
    event_ids = [event_id for _, event_id in rows]
    assert offsets == list(range(len(accepted))), "offsets are not 0..n-1"
    assert len(set(event_ids)) == len(event_ids), "an event is in the log twice"
    assert set(event_ids) == set(accepted)
    assert log_head(stream.pk) == len(accepted)
    assert inbox_count(stream) == 0
    assert not DeadLetter.objects.filter(stream=stream).exists()
    # Rollups move in the log's transactions, so a crash can't make them drift.
    assert MinuteCount.objects.filter(stream=stream).aggregate(n=Sum("count"))["n"] == len(accepted)


def processor_in_batch(stream: Stream) -> bool:
    """Some session holds the stream's processing lock: a batch transaction is open."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s AND objid = %s AND objsubid = 2)",
            [PROCESS_LOCK_CLASS, stream.pk],
        )
        return bool(cursor.fetchone()[0])


# --- 1. A worker killed in the middle of a batch ---------------------------------------------


@pytest.mark.parametrize("victim", ["whole-worker", "pool-process"])
def test_worker_killed_mid_batch_loses_and_duplicates_nothing(stack: Stack, victim: str) -> None:
    total, batch = 3000, 100
    stream, key = make_stream("crash")
    worker_env = {"EVENTFLOW_PROCESS_BATCH_SIZE": str(batch)}
    stack.web()
    stack.beat()
    stack.wait_ready()
    with stack.client() as client:
        accepted = send_all(client, stream, key, page_views("k", total))
    assert inbox_count(stream) == total

    worker = stack.worker(env=worker_env)
    worker.wait_ready()
    # Inside a batch transaction, with at least one batch already committed.
    wait_until(
        lambda: processor_in_batch(stream) and log_head(stream.pk) >= batch,
        timeout=PROCESS_SECONDS,
        what="the worker to be in the middle of a batch",
        interval=0.002,
    )
    if victim == "whole-worker":
        worker.kill()
    else:
        (pool_process,) = worker.pool_processes()
        os.kill(pool_process, signal.SIGKILL)
    # PostgreSQL rolls the open batch back when the dead session's socket closes.
    wait_until(lambda: not processor_in_batch(stream), timeout=10, what="the killed batch to roll back")

    logged = log_head(stream.pk)
    assert 0 < logged < total, "the kill did not land in the middle of the work"
    # At every moment each accepted event is in exactly one of the inbox and the log.
    assert accounted_for(stream) == total
    assert logged_count(stream) == logged

    if victim == "whole-worker":
        # Its message stays unacked in Redis for the visibility timeout (many minutes):
        # only the sweep can hand the work to the new worker in time.
        stack.worker(env=worker_env).wait_ready()
    wait_logged(stream, total)
    assert_logged_exactly_once(stream, accepted)


# --- 2. Redis loses its state while events wait in the inbox ---------------------------------


def processing_queued(stack: Stack) -> bool:
    """A processing task waits in Redis: in the queue, or taken by the worker that was killed before it
    acknowledged it (Kombu keeps those in its ``unacked`` hash until the visibility timeout)."""
    waiting = [*stack.redis.lrange("celery", 0, -1), *stack.redis.hvals("unacked")]
    return any(b'"ingestion.process_stream"' in message for message in waiting)


@pytest.mark.parametrize("fault", ["restart", "flushall"])
def test_events_waiting_in_the_inbox_survive_redis_losing_everything(stack: Stack, fault: str) -> None:
    stream, key = make_stream("redis-loss")
    stack.web()
    worker = stack.worker()
    stack.beat()
    stack.wait_ready()
    with stack.client() as client:
        # Every process has talked to this Redis: connections made, queues declared.
        accepted = send(client, stream, key, page_views("warm", 20))
        wait_logged(stream, 20)

        # No worker: the task asked for these events waits in Redis and nowhere else.
        worker.kill()
        queued = send_all(client, stream, key, page_views("queued", 300))
        # The web process sends its kicks from a background thread, just after the answers.
        wait_until(
            lambda: stack.redis.exists(kick_marker(stream.pk)) and processing_queued(stack),
            timeout=10,
            what="the kick for the queued events",
        )
        time.sleep(0.5)  # kicks noted by the last answers are sent within milliseconds: none may land after the fault
        if fault == "restart":
            stack.redis_stop()
            # Accepted while Redis is down: no task can be asked for them at all.
            queued += send(client, stream, key, page_views("during", 100))
            time.sleep(1.0)  # an outage spanning a couple of sweeps
            stack.redis_start()
        else:
            stack.redis.flushall()
        # Beat may queue a sweep already, but nothing else can ask for processing.
        assert not stack.redis.exists(kick_marker(stream.pk)) and not processing_queued(stack)
        accepted += queued

        # Only the sweep knows about these events now.
        stack.worker().wait_ready()
        wait_logged(stream, len(accepted))
        # And new events are asked for as usual.
        accepted += send(client, stream, key, page_views("after", 100))
    wait_logged(stream, len(accepted))
    assert_logged_exactly_once(stream, accepted)


# --- 3. Ingestion while Redis is down ----------------------------------------------------------


@pytest.mark.parametrize("outage", ["stopped", "frozen"])
def test_ingestion_answers_fast_while_redis_is_down_and_processing_catches_up(stack: Stack, outage: str) -> None:
    stream, key = make_stream("no-redis")
    # The rate limiter is on: its counters live in Redis.
    stack.web(env={"EVENTFLOW_RATE_LIMIT_PER_MINUTE": "1000000"})
    stack.worker()
    stack.beat()
    stack.wait_ready()
    with stack.client() as client:
        accepted = send(client, stream, key, page_views("before", 5))
        assert any(b":rl:" in name for name in stack.redis.keys("*")), "the rate limiter did not count in Redis"
        wait_logged(stream, 5)

        if outage == "stopped":
            stack.redis_stop()
        else:
            stack.redis_freeze()
        durations = []
        for i in range(40):
            started = time.monotonic()
            if i % 2:
                accepted += send(client, stream, key, page_views(f"down{i}", 10))
            else:
                event = page_views(f"one{i}", 1)[0]
                response = client.post(
                    f"/api/v1/streams/{stream.slug}/events",
                    content=orjson.dumps(event),
                    headers={"X-API-Key": key, "Content-Type": "application/json"},
                )
                assert response.status_code == 202, response.text
                accepted.append(event["event_id"])
            durations.append(time.monotonic() - started)
        # Committed before the 202, whether or not a task could be queued.
        assert accounted_for(stream) == len(accepted)

        # A request may pay one Redis timeout before the breaker opens; none may hang.
        assert max(durations) < 2.0, durations
        assert statistics.median(durations) < 0.4, durations

        if outage == "stopped":
            stack.redis_start()
        else:
            stack.redis_thaw()
    wait_logged(stream, len(accepted))
    assert_logged_exactly_once(stream, accepted)


# --- 4. One poison event among a thousand --------------------------------------------------------


def test_poison_event_is_dead_lettered_after_its_attempts_without_blocking_the_stream(stack: Stack) -> None:
    # Each retry waits retry_seconds times a jitter of 0.5 to 1.
    max_attempts, retry_seconds = 3, 4.0
    stack.extra_env.update(
        EVENTFLOW_MAX_ATTEMPTS=str(max_attempts),
        EVENTFLOW_RETRY_BASE_SECONDS=str(retry_seconds),
        EVENTFLOW_RETRY_MAX_SECONDS=str(retry_seconds),
    )
    stream, key = make_stream("poison", SchemaMode.QUARANTINE)
    events = [{"event_id": f"ok-{i}", "type": "button_click", "payload": {"button_id": f"b{i}"}} for i in range(999)]
    # The starter schema wants a string button_id.
    events.insert(3, {"event_id": "poison", "type": "button_click", "payload": {"button_id": 5}})
    stack.web()
    stack.worker()
    stack.beat()
    stack.wait_ready()
    with stack.client() as client:
        accepted = send(client, stream, key, events[:500])
        # The poison failed once and waits for its retry; the rest of its batch went on.
        wait_until(
            lambda: InboxEvent.objects.filter(stream=stream, event_id="poison", attempts=1).exists(),
            timeout=PROCESS_SECONDS,
            what="the first failure of the poison event",
        )
        assert logged_count(stream) == 499
        # Events that arrive behind it are logged at once, not after its retry (due
        # in retry_seconds / 2 at the earliest).
        accepted += send(client, stream, key, events[500:])
        wait_logged(stream, 999)
        poison = InboxEvent.objects.get(stream=stream, event_id="poison")
        assert poison.attempts == 1, "the events behind the poison event waited for its retry"
        last_logged = LogEntry.objects.filter(stream=stream).aggregate(at=Max("logged_at"))["at"]
        assert last_logged < poison.next_attempt_at

    letter = wait_until(
        lambda: DeadLetter.objects.filter(stream=stream).first(), timeout=PROCESS_SECONDS, what="the dead letter"
    )
    assert (letter.event_id, letter.stage, letter.status) == ("poison", DeadLetterStage.VALIDATE, DeadLetterStatus.OPEN)
    assert letter.attempts == max_attempts
    assert letter.error_class == "SchemaViolation" and "button_id" in letter.error_message
    assert "SchemaViolation" in letter.traceback
    assert letter.event["payload"] == {"button_id": 5}
    # With backoff: two waits of at least retry_seconds / 2 each.
    assert (letter.last_failed_at - letter.first_failed_at).total_seconds() >= retry_seconds
    good = [event_id for event_id in accepted if event_id != "poison"]
    rows = list(LogEntry.objects.filter(stream=stream).order_by("offset").values_list("offset", "event_id"))
    assert [offset for offset, _ in rows] == list(range(len(good)))
    assert {event_id for _, event_id in rows} == set(good)
    assert inbox_count(stream) == 0
    assert DeadLetter.objects.filter(stream=stream).count() == 1


# --- 5. Replay after the schema is fixed -----------------------------------------------------------


class AdminSession:
    """A staff member working Django admin over HTTP against the live web process."""

    def __init__(self, client: httpx.Client, username: str, password: str) -> None:
        self.client = client
        client.get("/admin/login/")
        response = client.post(
            "/admin/login/?next=/admin/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": self.csrf, "next": "/admin/"},
        )
        assert response.status_code == 302 and response.headers["location"] == "/admin/", response.text

    @property
    def csrf(self) -> str:
        return str(self.client.cookies["csrftoken"])

    def action(self, action: str, ids: list[int]) -> str:
        url = "/admin/streams/deadletter/"
        response = self.client.post(
            url,
            data={
                "action": action,
                "index": "0",
                "_selected_action": [str(pk) for pk in ids],
                "csrfmiddlewaretoken": self.csrf,
            },
        )
        assert response.status_code == 302, response.text
        return self.client.get(url).text


def operator_user(username: str, password: str, stream: Stream) -> User:
    """A staff Operator in a team with ``stream``: admin shows the dead letters of their teams' streams."""
    roles_sync()
    user = User.objects.create_user(username=username, password=password, is_staff=True)
    user.groups.add(Group.objects.get(name="Operator"))
    team_create(slug=f"{username}-team", members=[user], streams=[stream])
    return user


def test_replayed_event_reaches_the_log_once_and_a_second_replay_changes_nothing(stack: Stack) -> None:
    stack.extra_env.update(EVENTFLOW_MAX_ATTEMPTS="2", EVENTFLOW_RETRY_BASE_SECONDS="0.2")
    stream, key = make_stream("replay", SchemaMode.QUARANTINE)
    operator = operator_user("olga", "a-long-operator-password", stream)
    stack.web()
    stack.worker()
    stack.beat()
    stack.wait_ready()
    with stack.client() as client:
        accepted = send(
            client,
            stream,
            key,
            [
                {"event_id": "good-1", "type": "button_click", "payload": {"button_id": "b1"}},
                {"event_id": "bad", "type": "button_click", "payload": {"button_id": 7}},
                {"event_id": "good-2", "type": "button_click", "payload": {"button_id": "b2"}},
            ],
        )
        letter = wait_until(
            lambda: DeadLetter.objects.filter(stream=stream).first(), timeout=PROCESS_SECONDS, what="the dead letter"
        )
        assert letter.event_id == "bad"
        assert logged_count(stream) == 2

        schema_register(
            stream=stream,
            event_type="button_click",
            schema={
                "type": "object",
                "properties": {"button_id": {"type": ["string", "integer"]}},
                "required": ["button_id"],
            },
        )
        admin = AdminSession(stack.client(), "olga", "a-long-operator-password")
        try:
            assert "Replayed 1 dead letter" in admin.action("replay", [letter.pk])
            # Again at once, most likely before the worker got to the event, and again after.
            assert "No dead letter replayed. Skipped 1: already replayed or discarded (1)." in admin.action(
                "replay", [letter.pk]
            )
            wait_logged(stream, 3)
            assert "No dead letter replayed. Skipped 1" in admin.action("replay", [letter.pk])
        finally:
            admin.client.close()
    # Nothing is left that could reach the log a second time.
    assert inbox_count(stream) == 0

    rows = list(LogEntry.objects.filter(stream=stream).order_by("offset").values_list("offset", "event_id", "flags"))
    assert [(offset, event_id) for offset, event_id, _ in rows] == [(0, "good-1"), (1, "good-2"), (2, "bad")]
    assert rows[2][2]["replayed_from"] == letter.pk
    assert set(accepted) == {event_id for _, event_id, _ in rows}
    letter.refresh_from_db()
    assert (letter.status, letter.acted_by_id) == (DeadLetterStatus.REPLAYED, operator.pk)
    assert DeadLetter.objects.filter(stream=stream).count() == 1


# --- 6. Heavy concurrent ingestion while a reader follows the log ----------------------------------


def test_reader_following_the_log_sees_every_offset_once_in_order_under_concurrent_ingestion(stack: Stack) -> None:
    batch_senders, batches, batch_size = 4, 15, 50
    single_senders, singles = 2, 100
    stream, key = make_stream("busy")
    stack.web(workers=2, threads=4)
    # Two worker processes: two processors contend for the one stream.
    stack.worker()
    stack.worker()
    stack.beat()
    stack.wait_ready()

    sending_done = threading.Event()
    total: list[int] = []
    read: list[str] = []
    read_while_sending: list[int] = []
    problems: list[str] = []

    def follow_log() -> None:
        """Poll the log by offset as a consumer does, checking each offset is the next one."""
        next_offset = 0
        deadline = time.monotonic() + 90
        try:
            with connection.cursor() as cursor:
                while time.monotonic() < deadline:
                    sent_all = sending_done.is_set()
                    if sent_all and not read_while_sending:
                        read_while_sending.append(next_offset)
                    cursor.execute(
                        'SELECT "offset", event_id FROM streams_log WHERE stream_id = %s AND "offset" >= %s'
                        ' ORDER BY "offset" LIMIT 500',
                        [stream.pk, next_offset],
                    )
                    rows = cursor.fetchall()
                    for offset, event_id in rows:
                        if offset != next_offset:
                            problems.append(f"expected offset {next_offset}, read {offset}")
                            return
                        read.append(event_id)
                        next_offset += 1
                    if sent_all and next_offset >= total[0]:
                        return
                    if not rows:
                        time.sleep(0.005)
                problems.append(f"the reader stopped at offset {next_offset}")
        finally:
            connection.close()

    def send_batches(sender: int) -> list[str]:
        with stack.client() as client:
            return [
                event_id
                for batch in range(batches)
                for event_id in send(client, stream, key, page_views(f"b{sender}-{batch}", batch_size))
            ]

    def send_singles(sender: int) -> list[str]:
        ids = []
        with stack.client() as client:
            for event in page_views(f"s{sender}", singles):
                response = client.post(
                    f"/api/v1/streams/{stream.slug}/events",
                    content=orjson.dumps(event),
                    headers={"X-API-Key": key, "Content-Type": "application/json"},
                )
                assert response.status_code == 202, response.text
                assert response.json()["status"] == "accepted"
                ids.append(event["event_id"])
        return ids

    reader = threading.Thread(target=follow_log)
    reader.start()
    accepted: list[str] = []
    try:
        with ThreadPoolExecutor(batch_senders + single_senders) as pool:
            futures = [pool.submit(send_batches, n) for n in range(batch_senders)]
            futures += [pool.submit(send_singles, n) for n in range(single_senders)]
            for future in futures:
                accepted += future.result()
    finally:
        total.append(len(accepted))
        sending_done.set()
        reader.join()

    assert not problems, problems
    assert len(accepted) == batch_senders * batches * batch_size + single_senders * singles
    assert read_while_sending[0] > 0, "the reader read nothing while events were being sent"
    assert len(read) == len(set(read)) == len(accepted)
    assert set(read) == set(accepted)
    assert_logged_exactly_once(stream, accepted)


# --- 7. PostgreSQL restarts in the middle of a batch -------------------------------------------


def test_postgres_crash_restart_mid_batch_loses_and_duplicates_nothing(
    postgres: PostgresCluster, new_stack: Callable[..., Stack]
) -> None:
    total, batch = 2000, 100
    # The processes use a server of their own, which the test may restart.
    url = postgres.create_database("eventflow")
    stack = new_stack(database_url=url)
    stack.manage("migrate", "--noinput", "-v", "0")
    slug = stack.manage("create_stream", "pg-restart", "--starter-schemas").strip()
    key = stack.manage("create_api_key", "--stream", slug, "--kind", "ingest").strip()
    with psycopg.connect(url) as db:
        row = db.execute("SELECT id FROM streams_stream WHERE slug = %s", [slug]).fetchone()
        assert row is not None
        stream = Stream(pk=row[0], slug=slug)
    stack.web()
    stack.beat()
    stack.wait_ready()

    def query(sql: str) -> Any:
        with psycopg.connect(url, autocommit=True) as db:
            row = db.execute(sql, {"stream": stream.pk, "lock": PROCESS_LOCK_CLASS}).fetchone()
            assert row is not None
            return row[0]

    head = "SELECT next_offset FROM streams_streamhead WHERE stream_id = %(stream)s"
    in_batch = (
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid = %(lock)s AND objid = %(stream)s AND objsubid = 2)"
    )
    with stack.client() as client:
        accepted = send_all(client, stream, key, page_views("before", total))
        stack.worker(env={"EVENTFLOW_PROCESS_BATCH_SIZE": str(batch)}).wait_ready()
        wait_until(
            lambda: query(in_batch) and query(head) >= batch,
            timeout=PROCESS_SECONDS,
            what="the worker to be in the middle of a batch",
            interval=0.002,
        )
        # As a crash would: no shutdown checkpoint, every session cut, recovery on start.
        postgres.restart("immediate")
        logged = query(head)
        assert 0 < logged < total, "the restart did not land in the middle of the work"
        assert (
            query(
                "SELECT (SELECT count(*) FROM streams_log WHERE stream_id = %(stream)s)"
                " + (SELECT count(*) FROM ingestion_inbox WHERE stream_id = %(stream)s)"
            )
            == total
        ), "an acknowledged event was lost"

        # The web process finds its connections dead and opens new ones.
        accepted += send_all(client, stream, key, page_views("after", 500))

    wait_until(
        lambda: query("SELECT count(*) FROM streams_log WHERE stream_id = %(stream)s") >= len(accepted),
        timeout=PROCESS_SECONDS,
        what="every event in the log",
    )
    with psycopg.connect(url, autocommit=True) as db:
        rows = db.execute(
            'SELECT "offset", event_id FROM streams_log WHERE stream_id = %s ORDER BY "offset"', [stream.pk]
        ).fetchall()
        assert [offset for offset, _ in rows] == list(range(len(accepted)))
        assert sorted(event_id for _, event_id in rows) == sorted(accepted)
        counts = db.execute(
            "SELECT (SELECT count(*) FROM ingestion_inbox WHERE stream_id = %(s)s),"
            " (SELECT count(*) FROM ingestion_deadletter WHERE stream_id = %(s)s),"
            " (SELECT sum(count) FROM analytics_minute_count WHERE stream_id = %(s)s)",
            {"s": stream.pk},
        ).fetchone()
        assert counts == (0, 0, len(accepted))
