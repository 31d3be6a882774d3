"""PostgreSQL away: every kind of endpoint answers 503 with Retry-After, never 500, and comes back on its own.

Real processes on a throw-away PostgreSQL server that the test stops and starts
(README: Outages). Two ways to lose it: the server stops (connections refused),
and the network path goes silent (a proxy that takes connections and never
answers, as a dropped route does): then DB_CONNECT_TIMEOUT bounds each request.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.workers import PostgresCluster, Stack, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


class SilentProxy:
    """A TCP proxy to PostgreSQL that can go silent: it keeps taking connections but passes nothing."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.silent = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            if self.silent.is_set():
                continue  # held open, never answered
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                if self.silent.is_set():
                    return  # the path dropped: nothing more passes, nothing is closed
                target.sendall(data)

    def go_silent(self) -> None:
        self.silent.set()

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            with suppress(OSError):
                sock.close()


@pytest.fixture
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        yield cluster.init()
    finally:
        cluster.close()


@pytest.fixture
def stack(postgres: PostgresCluster, tmp_path: Path) -> Iterator[Stack]:
    url = postgres.create_database("eventflow")
    made = Stack(tmp_path / "stack", database_url=url, env={"DB_CONNECT_TIMEOUT": "2"})
    try:
        made.manage("migrate", "--noinput", "-v", "0")
        yield made
    finally:
        made.close()


def _setup(stack: Stack) -> tuple[str, str, str]:
    slug = stack.manage("create_stream", "outage", "--starter-schemas").strip()
    ingest = stack.manage("create_api_key", "--stream", slug, "--kind", "ingest").strip()
    secret = stack.manage("create_api_key", "--stream", slug, "--kind", "secret").strip()
    return slug, ingest, secret


def _requests(slug: str, ingest: str, secret: str) -> dict[str, tuple[str, str, dict[str, object]]]:
    """One request of each kind: intake, consumer, query, management, a page (name -> method, path, options)."""
    return {
        "intake": (
            "POST",
            f"/api/v1/streams/{slug}/events",
            {"json": {"type": "page_view", "user_id": "u1"}, "headers": {"X-API-Key": ingest}},
        ),
        "consumer": ("GET", f"/api/v1/streams/{slug}/consumer-groups", {"headers": {"X-API-Key": secret}}),
        "query": ("GET", f"/api/v1/streams/{slug}/events", {"headers": {"X-API-Key": secret}}),
        "management": (
            "POST",
            "/api/v1/auth/token",
            {"json": {"username": "nobody", "password": "nothing-at-all"}},
        ),
        "compatible intake": (
            "POST",
            "/v1/track",
            {"json": {"event": "Signed Up", "userId": "u1"}, "auth": (ingest, "")},
        ),
    }


def _page_login(client: httpx.Client) -> httpx.Response:
    """A sign-in POST from a browser: the form's CSRF token first (no database needed), then the POST."""
    form = client.get("/login/", headers={"Accept": "text/html"})
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token, form.text[:500]
    return client.post(
        "/login/",
        data={"csrfmiddlewaretoken": token.group(1), "username": "nobody", "password": "nothing-at-all"},
        headers={"Accept": "text/html", "Referer": f"{client.base_url}/login/"},
    )


def _assert_unavailable(response: httpx.Response, what: str, *, page: bool = False) -> None:
    assert response.status_code == 503, (what, response.status_code, response.text[:300])
    assert int(response.headers["Retry-After"]) > 0, what
    if page:
        assert "text/html" in response.headers["Content-Type"], what
    else:
        assert response.json()["error"]["code"] == "database_unavailable", what


def test_every_endpoint_answers_503_while_postgres_is_down_and_recovers_on_its_own(
    postgres: PostgresCluster, stack: Stack
) -> None:
    slug, ingest, secret = _setup(stack)
    stack.web(workers=1, threads=4)
    stack.wait_ready()
    requests = _requests(slug, ingest, secret)
    with stack.client() as client:
        assert client.request("POST", requests["intake"][1], **requests["intake"][2]).status_code == 202  # type: ignore[arg-type]

        postgres.stop("immediate")
        for name, (method, path, options) in requests.items():
            started = time.monotonic()
            _assert_unavailable(client.request(method, path, **options), name)  # type: ignore[arg-type]
            assert time.monotonic() - started < 5, name
        _assert_unavailable(_page_login(client), "sign-in page", page=True)

        postgres.start()
        # Back on its own: no restart of the web server, broken connections replaced.
        wait_until(
            lambda: client.request("POST", requests["intake"][1], **requests["intake"][2]).status_code == 202,  # type: ignore[arg-type]
            timeout=20,
            what="the intake to accept again after PostgreSQL's return",
            interval=0.5,
        )
        for name in ("consumer", "query"):
            method, path, options = requests[name]
            assert client.request(method, path, **options).status_code == 200, name  # type: ignore[arg-type]
    # What was acknowledged is kept, what was refused was not written: one event before, one after.
    with psycopg.connect(stack.database_url) as db:
        row = db.execute(
            "SELECT (SELECT count(*) FROM ingestion_inbox i JOIN streams_stream s ON s.id = i.stream_id"
            " WHERE s.slug = %(slug)s) + (SELECT count(*) FROM streams_log l JOIN streams_stream s"
            " ON s.id = l.stream_id WHERE s.slug = %(slug)s)",
            {"slug": slug},
        ).fetchone()
    assert row == (2,)


def test_a_silent_network_path_fails_requests_within_the_connect_timeout(
    postgres: PostgresCluster, stack: Stack
) -> None:
    slug, ingest, secret = _setup(stack)
    proxy = SilentProxy(postgres.port)
    try:
        through_proxy = postgres.url("eventflow").replace(f":{postgres.port}/", f":{proxy.port}/")
        # No kept connections: each request connects, as one does after its connection was cut.
        stack.web(workers=1, threads=2, env={"DATABASE_URL": through_proxy, "DB_CONN_MAX_AGE": "0"})
        stack.wait_ready()
        requests = _requests(slug, ingest, secret)
        with stack.client() as client:
            method, path, options = requests["intake"]
            assert client.request(method, path, **options).status_code == 202  # type: ignore[arg-type]
            proxy.go_silent()
            for name in ("intake", "consumer", "query"):
                method, path, options = requests[name]
                started = time.monotonic()
                response = client.request(method, path, **options)  # type: ignore[arg-type]
                took = time.monotonic() - started
                _assert_unavailable(response, name)
                # DB_CONNECT_TIMEOUT=2: the connect gives up after it, not after minutes.
                assert took < 10, (name, took)
    finally:
        proxy.close()
