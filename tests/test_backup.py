"""Backups as docs/operations.md tells them: `pg_dump` of a running installation, `pg_restore`
into a new database, and EventFlow pointed at that database serves the same data.

The data is made the way production makes it: events through the HTTP intake of a real
gunicorn, processed into the log by a real Celery worker.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from eventflow.models import AuditEntry
from streams.models import ApiKeyKind, LogEntry
from streams.services import api_key_create, stream_create
from tests.subprocesses import current_database_url
from tests.workers import Stack, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

EVENTS = 120


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def table_counts(url: str) -> dict[str, int]:
    """Rows in every table of the public schema."""
    with psycopg.connect(url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            ).fetchall()
        ]
        return {
            table: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]  # type: ignore[index]
            for table in tables
        }


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (PostgreSQL's client programs)")
    return found


@pytest.fixture
def restored_url() -> Iterator[str]:
    """A new, empty database on the same server, dropped afterwards."""
    live = current_database_url()
    name = f"{urlsplit(live).path.lstrip('/')}_restored"[:63]
    admin = with_database(live, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(live, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_a_dump_restored_into_a_new_database_serves_the_same_events(
    transactional_db: Any, tmp_path: Path, restored_url: str
) -> None:
    pg_dump, pg_restore = tool("pg_dump"), tool("pg_restore")
    stream = stream_create(slug="shop", name="Shop", with_starter_schemas=True)
    ingest_key = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key
    secret_key = api_key_create(kind=ApiKeyKind.SECRET, streams=[stream]).raw_key

    live = Stack(tmp_path / "live")
    try:
        live.web()
        live.worker()
        live.wait_ready()
        with live.client(headers={"X-API-Key": ingest_key}) as client:
            for start in range(0, EVENTS, 40):
                events = [
                    {"event_id": f"e-{i}", "type": "page_view", "user_id": f"u{i % 7}", "payload": {"page": f"/p/{i}"}}
                    for i in range(start, start + 40)
                ]
                response = client.post("/api/v1/streams/shop/events/batch", json={"events": events})
                assert response.status_code == 202, response.text
        wait_until(
            lambda: LogEntry.objects.filter(stream=stream).count() == EVENTS, timeout=60, what="every event logged"
        )
        # The web server writes its requests' audit rows from a buffer, every few seconds and at exit: the
        # backup is compared with the database after the stack stops, so it is taken once they are written.
        wait_until(
            lambda: AuditEntry.objects.filter(path="/api/v1/streams/shop/events/batch").count() == EVENTS // 40,
            timeout=60,
            what="the batches' audit rows written",
        )

        # The backup, taken while the installation runs (pg_dump reads one consistent snapshot).
        dump = tmp_path / "eventflow.dump"
        subprocess.run(
            [pg_dump, "--format=custom", "--no-owner", "--no-privileges", f"--file={dump}", current_database_url()],
            check=True,
            timeout=120,
        )
    finally:
        live.close()

    subprocess.run(
        [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error", f"--dbname={restored_url}", str(dump)],
        check=True,
        timeout=120,
    )
    before, after = table_counts(current_database_url()), table_counts(restored_url)
    assert before == after
    assert after["streams_log"] == EVENTS

    # EventFlow against the restored database: the same events, and it takes new ones.
    restored = Stack(tmp_path / "restored", database_url=restored_url)
    try:
        restored.web()
        restored.wait_ready()
        with restored.client(headers={"X-API-Key": secret_key}) as client:
            response = client.get("/api/v1/streams/shop/events", params={"order": "oldest", "limit": 1000})
            assert response.status_code == 200, response.text
            assert [e["event_id"] for e in response.json()["results"]] == [f"e-{i}" for i in range(EVENTS)]
        with restored.client(headers={"X-API-Key": ingest_key}) as client:
            response = client.post("/api/v1/streams/shop/events", json={"type": "page_view", "event_id": "after"})
            assert response.status_code == 202, response.text
            # The intake's duplicate check came along: an event of the backup is a duplicate.
            again = client.post("/api/v1/streams/shop/events", json={"type": "page_view", "event_id": "e-0"})
            assert again.status_code == 202, again.text
            assert "duplicate" in again.text, again.text
        with psycopg.connect(restored_url) as conn:
            inbox = conn.execute("SELECT count(*) FROM ingestion_inbox").fetchone()
        assert inbox is not None and inbox[0] >= 1
    finally:
        restored.close()
        print(live.log_tails(), restored.log_tails())
