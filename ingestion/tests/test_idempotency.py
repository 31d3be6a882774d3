"""An event is identified by (stream, event_id): sending it again never makes a second row."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime

import orjson
import pytest

from ingestion.models import InboxEvent
from streams.log import LogRecord, log_append_now
from streams.services import api_key_create, stream_create
from tests.intake import events_url, post_batch, post_event, read_http_response

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def test_same_event_id_again_is_a_duplicate_and_keeps_the_first_copy(api, stream, ingest_key):
    first = post_event(
        api, stream.slug, {"event_id": "e1", "type": "page_view", "payload": {"page": "/a"}}, key=ingest_key
    )
    again = post_event(
        api, stream.slug, {"event_id": "e1", "type": "page_view", "payload": {"page": "/b"}}, key=ingest_key
    )

    assert (first.status_code, first.json()) == (202, {"event_id": "e1", "status": "accepted"})
    assert (again.status_code, again.json()) == (202, {"event_id": "e1", "status": "duplicate"})
    assert list(InboxEvent.objects.values_list("event_id", "payload")) == [("e1", {"page": "/a"})]


def test_batch_reports_earlier_sends_and_repeats_within_itself_as_duplicates(api, stream, ingest_key):
    assert post_event(api, stream.slug, {"event_id": "old", "type": "logout"}, key=ingest_key).status_code == 202

    response = post_batch(
        api,
        stream.slug,
        [
            {"event_id": "old", "type": "logout"},
            {"event_id": "new", "type": "logout"},
            {"event_id": "new", "type": "logout"},
        ],
        key=ingest_key,
    )

    assert response.status_code == 202
    body = response.json()
    assert [(r["event_id"], r["status"]) for r in body["results"]] == [
        ("old", "duplicate"),
        ("new", "accepted"),
        ("new", "duplicate"),
    ]
    assert (body["accepted"], body["duplicates"]) == (1, 2)
    assert InboxEvent.objects.filter(stream=stream).count() == 2


def test_a_batch_made_only_of_duplicates_is_still_202(api, stream, ingest_key):
    post_event(api, stream.slug, {"event_id": "d", "type": "logout"}, key=ingest_key)
    response = post_batch(api, stream.slug, [{"event_id": "d", "type": "logout"}], key=ingest_key)
    assert response.status_code == 202
    assert response.json()["results"][0]["status"] == "duplicate"


def test_event_already_in_the_stream_log_is_a_duplicate(api, stream, ingest_key):
    log_append_now(
        stream_id=stream.pk,
        records=[
            LogRecord(event_id="logged", type="page_view", event_time=NOW, received_at=NOW, payload={"page": "/"})
        ],
    )

    single = post_event(api, stream.slug, {"event_id": "logged", "type": "page_view"}, key=ingest_key)
    batch = post_batch(
        api,
        stream.slug,
        [{"event_id": "logged", "type": "page_view"}, {"event_id": "fresh", "type": "x"}],
        key=ingest_key,
    )

    assert single.json() == {"event_id": "logged", "status": "duplicate"}
    assert [r["status"] for r in batch.json()["results"]] == ["duplicate", "accepted"]
    assert list(InboxEvent.objects.values_list("event_id", flat=True)) == ["fresh"]


def test_the_same_event_id_in_two_streams_is_two_events(api, stream, ingest_key):
    other = stream_create(slug="other")
    other_key = api_key_create(kind="ingest", streams=[other]).raw_key

    assert post_event(api, stream.slug, {"event_id": "x", "type": "a"}, key=ingest_key).json()["status"] == "accepted"
    assert post_event(api, other.slug, {"event_id": "x", "type": "a"}, key=other_key).json()["status"] == "accepted"
    assert InboxEvent.objects.filter(event_id="x").count() == 2


CLIENTS = 50


def _request(host: str, path: str, key: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nX-API-Key: {key}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def test_fifty_concurrent_clients_sending_one_event_id_leave_one_row_and_one_accepted(live_server, stream, ingest_key):
    host, port = live_server.thread.host, live_server.thread.port
    path = events_url(stream.slug)
    # Warm the stream and key caches so that the racing requests reach the INSERT together.
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(_request(host, path, ingest_key, orjson.dumps({"event_id": "warm", "type": "a"})))
        assert read_http_response(sock)[0] == 202

    request = _request(
        host,
        path,
        ingest_key,
        orjson.dumps({"event_id": "race", "type": "button_click", "payload": {"button_id": "b"}}),
    )
    # Every client connects first (the server gives each connection a thread of its own,
    # with its own database connection), then all send at the same moment.
    sockets = [socket.create_connection((host, port), timeout=30) for _ in range(CLIENTS)]
    start = threading.Barrier(CLIENTS)
    answers: list[tuple[int, dict[str, str]]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def client(sock: socket.socket) -> None:
        try:
            start.wait()
            sock.sendall(request)
            status, _, body = read_http_response(sock)
            with lock:
                answers.append((status, orjson.loads(body)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            with lock:
                failures.append(exc)
        finally:
            sock.close()

    threads = [threading.Thread(target=client, args=(sock,)) for sock in sockets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert not failures, failures
    assert len(answers) == CLIENTS
    assert [status for status, _ in answers] == [202] * CLIENTS, answers
    statuses = sorted(answer["status"] for _, answer in answers)
    assert statuses == ["accepted"] + ["duplicate"] * (CLIENTS - 1)
    assert InboxEvent.objects.filter(stream=stream, event_id="race").count() == 1
