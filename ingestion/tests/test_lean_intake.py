"""The lean intake path (ingestion/wsgi.py) answers as Django's request cycle does, and group commit (ingestion/group_commit.py)."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import orjson
import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from eventflow.audit import audit_buffer
from eventflow.metrics import HTTP_REQUESTS
from ingestion import services
from ingestion.group_commit import GroupCommit
from ingestion.models import InboxEvent
from ingestion.services import events_ingest
from ingestion.tests.conftest import LeanClient
from ingestion.wsgi import IntakeDispatcher
from streams.selectors import stream_info
from tests.intake import batch_url, events_url, post_raw

pytestmark = pytest.mark.django_db(transaction=True)


def _answer(response: Any) -> tuple[int, dict[str, str], Any]:
    headers = {name: value for name, value in response.items() if name != "X-Request-ID"}
    body = response.json() if response.content else None
    # Event ids made up by the server differ; nothing else may.
    if isinstance(body, dict):
        body.pop("event_id", None)
        for result in body.get("results", []):
            result.pop("event_id", None)
    return response.status_code, headers, body


@pytest.mark.parametrize(
    ("path", "body", "key"),
    [
        ("events", {"type": "page_view", "payload": {"page": "/"}}, "good"),
        ("events", {"type": "Bad Type!"}, "good"),
        ("events", b"{not json", "good"),
        ("events", {"type": "page_view"}, None),
        ("events", {"type": "page_view"}, "wrong"),
        ("batch", {"events": [{"type": "page_view"}, {"type": "Bad Type!"}]}, "good"),
        ("batch", {"events": []}, "good"),
        ("nowhere", {"type": "page_view"}, "good"),
    ],
)
def test_the_lean_path_answers_with_the_status_headers_and_body_of_djangos_cycle(
    client: Client, stream: Any, ingest_key: str, path: str, body: Any, key: str | None
) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    url = {"events": events_url(stream.slug), "batch": batch_url(stream.slug), "nowhere": events_url("nowhere")}[path]
    sent_key = {"good": ingest_key, "wrong": "ef_ingest_not_a_key", None: None}[key]
    full = post_raw(client, url, raw, key=sent_key, HTTP_ORIGIN="https://shop.example")
    lean = post_raw(LeanClient(), url, raw, key=sent_key, HTTP_ORIGIN="https://shop.example")
    assert _answer(lean) == _answer(full)
    assert lean["X-Request-ID"] and lean["X-Request-ID"] != full["X-Request-ID"]
    assert "Content-Security-Policy" in lean and "X-Frame-Options" in lean


def _environ(path: str, body: bytes, key: str, method: str = "POST") -> dict[str, Any]:
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_X_API_KEY": key,
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }


def test_the_wsgi_application_serves_intake_posts_itself_and_hands_everything_else_to_django(
    stream: Any, ingest_key: str, empty_audit_buffer: None
) -> None:
    handed: list[str] = []

    def django_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        handed.append(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
        start_response("200 OK", [])
        return [b""]

    dispatcher = IntakeDispatcher(django_app)
    assert set(dispatcher.routes) == {False, True}
    answered: list[tuple[str, list[tuple[str, str]]]] = []
    route = ("events-send", "POST", "202")
    counted = HTTP_REQUESTS.labels(*route)._value.get()
    body = orjson.dumps({"event_id": "lean-1", "type": "page_view"})
    content = b"".join(
        dispatcher(_environ(events_url(stream.slug), body, ingest_key), lambda s, h: answered.append((s, h)))
    )
    assert answered[0][0] == "202 Accepted"
    assert orjson.loads(content) == {"event_id": "lean-1", "status": "accepted"}
    assert InboxEvent.objects.filter(event_id="lean-1").exists()
    # The metrics and the audit log see it as they see any request.
    assert HTTP_REQUESTS.labels(*route)._value.get() == counted + 1
    rows = [row for row in audit_buffer()._rows if row[5] == events_url(stream.slug)]
    assert rows and rows[-1][6] == 202 and rows[-1][11] == stream.pk
    for method, path in (
        ("GET", events_url(stream.slug)),
        ("OPTIONS", events_url(stream.slug)),
        ("POST", events_url(stream.slug) + "/"),
        ("POST", f"/api/v1/streams/{stream.slug}/events/batch/x"),
        ("GET", "/health"),
    ):
        dispatcher(_environ(path, b"", ingest_key, method), lambda s, h: None)
    assert handed == [
        f"GET {events_url(stream.slug)}",
        f"OPTIONS {events_url(stream.slug)}",
        f"POST {events_url(stream.slug)}/",
        f"POST /api/v1/streams/{stream.slug}/events/batch/x",
        "GET /health",
    ]


def test_a_dispatcher_whose_routes_no_longer_lead_to_the_intake_hands_everything_to_django(settings: Any) -> None:
    settings.ROOT_URLCONF = "bench.minimal_urls"
    assert IntakeDispatcher(lambda environ, start_response: []).routes == {}


# --- group commit ---------------------------------------------------------------------------------


def _send_together(stream: Any, event_ids: list[str], group: GroupCommit) -> tuple[list[str], list[int]]:
    """Each event from its own thread at once; the first statement waits until the rest have queued."""
    info = stream_info(stream.slug)
    statuses: list[str] = [""] * len(event_ids)
    kicked: list[int] = []
    first = threading.Event()

    def write(**kwargs: Any) -> set[str]:
        if not first.is_set():
            first.set()
            deadline = time.monotonic() + 10
            while len(group._queue) < len(event_ids) - 1 and time.monotonic() < deadline:
                time.sleep(0.005)
        return services._insert(**kwargs)

    original = group.insert

    def insert(**kwargs: Any) -> bool:
        return original(**{**kwargs, "write": write, "committed": kicked.append})

    def send(index: int, event_id: str) -> None:
        try:
            result = events_ingest(
                stream=info,  # type: ignore[arg-type]
                raw_events=[{"event_id": event_id, "type": "page_view"}],
                received_at=timezone.now(),
            )
            statuses[index] = result.results[0]["status"]
        finally:
            connection.close()

    group.insert = insert  # type: ignore[method-assign]
    threads = [threading.Thread(target=send, args=(i, event_id)) for i, event_id in enumerate(event_ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return statuses, kicked


def test_single_events_sent_together_are_written_by_one_statement_and_each_answered_after_it(
    stream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = GroupCommit()
    monkeypatch.setattr(services, "group_commit", group)
    # One event sent twice at once: one copy is new, the other a duplicate.
    ids = ["g0", "g1", "g2", "g3", "g4", "g5", "g5"]
    statuses, kicked = _send_together(stream, ids, group)
    assert group.groups == 2 and group.rows == 7  # the first alone, then the six that queued behind it
    assert sorted(statuses) == ["accepted"] * 6 + ["duplicate"]
    assert sorted(InboxEvent.objects.values_list("event_id", flat=True)) == ["g0", "g1", "g2", "g3", "g4", "g5"]
    # Processing is asked for once per statement, not once per event.
    assert kicked == [stream.pk, stream.pk]


def test_an_event_already_in_the_inbox_is_a_duplicate_in_a_group_too(
    stream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = GroupCommit()
    monkeypatch.setattr(services, "group_commit", group)
    _send_together(stream, ["d0"], group)
    statuses, _ = _send_together(stream, ["d1", "d0", "d2"], group)
    assert statuses == ["accepted", "duplicate", "accepted"]
    assert InboxEvent.objects.count() == 3


def test_when_the_groups_statement_fails_every_request_of_the_group_gets_the_error() -> None:
    group = GroupCommit()
    started, release = threading.Event(), threading.Event()
    outcomes: list[object] = []

    def write(**kwargs: Any) -> set[str]:
        if kwargs["rows"] == [b"first"]:
            started.set()
            release.wait(10)
            return {"first"}
        raise RuntimeError("the database went away")

    def send(event_id: str) -> None:
        try:
            outcomes.append(
                group.insert(
                    stream_id=1,
                    event_id=event_id,
                    row=event_id.encode(),
                    received_at=timezone.now(),
                    api_key_id=None,
                    write=write,
                    committed=lambda stream_id: None,
                )
            )
        except RuntimeError as exc:
            outcomes.append(str(exc))

    leader = threading.Thread(target=send, args=("first",))
    leader.start()
    started.wait(10)
    followers = [threading.Thread(target=send, args=(f"e{i}",)) for i in range(3)]
    for thread in followers:
        thread.start()
    while len(group._queue) < 3:
        time.sleep(0.005)
    release.set()
    for thread in [leader, *followers]:
        thread.join(10)
    assert sorted(map(str, outcomes)) == ["True", *["the database went away"] * 3]
    assert not group._leading and not group._queue


# --- the other web server --------------------------------------------------------------------------


@pytest.mark.slow
def test_granian_serves_the_intake_through_the_lean_path_and_the_rest_through_django(
    stream: Any, ingest_key: str
) -> None:
    import subprocess

    import httpx

    from eventflow import conf
    from eventflow.__main__ import web_command
    from tests.subprocesses import BASE_DIR, child_env
    from tests.workers import free_port

    port = free_port()
    command = web_command(port=port, workers=1, bind="127.0.0.1", server="granian")
    assert "--interface=wsgi" in command and "eventflow.wsgi:application" in command
    env = child_env(DEBUG="0", WEB_THREADS="4", CACHE_KEY_PREFIX=conf.get().redis_key_prefix)
    server = subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2, trust_env=False).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "granian did not start"
            time.sleep(0.2)
        sent = httpx.post(
            f"{base}{events_url(stream.slug)}",
            content=orjson.dumps({"event_id": "granian-1", "type": "page_view"}),
            headers={"Content-Type": "application/json", "X-API-Key": ingest_key},
            timeout=10,
            trust_env=False,
        )
        assert sent.status_code == 202, sent.text
        assert sent.json() == {"event_id": "granian-1", "status": "accepted"}
        assert sent.headers["X-Request-ID"] and sent.headers["Content-Security-Policy"]
        assert InboxEvent.objects.filter(event_id="granian-1").exists()
        refused = httpx.post(
            f"{base}{events_url(stream.slug)}",
            content=b"{}",
            headers={"X-API-Key": "nope"},
            timeout=10,
            trust_env=False,
        )
        assert refused.status_code == 401
        assert httpx.get(f"{base}/api/schema/", timeout=30, trust_env=False).status_code in (200, 401, 403)
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
