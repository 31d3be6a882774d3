"""GET /api/v1/streams/{slug}/events/export: CSV and NDJSON, exact, streamed, filtered like the query."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from django.http import StreamingHttpResponse
from django.test import Client
from django.utils import timezone

from analytics import query
from streams.log import LogRecord, log_append_now
from streams.models import Stream

from .query_fixtures import BASE_TIME, EVENTS, analyst_of, append, foreign_analyst, secret_key_of

pytestmark = pytest.mark.django_db

EXPORT = f"{EVENTS}/export"


@pytest.fixture
def analyst(stream: Stream) -> Client:
    return analyst_of(stream)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _expected(offset: int, record: LogRecord) -> dict[str, Any]:
    return {
        "offset": offset,
        "event_id": record.event_id,
        "type": record.type,
        "timestamp": _iso(record.event_time),
        "received_at": _iso(record.received_at),
        "user_id": record.user_id,
        "anonymous_id": record.anonymous_id,
        "session_id": record.session_id,
        "payload": record.payload or {},
        "context": record.context or {},
        "enrichment": record.enrichment or {},
    }


def _chunks(response: Any) -> list[bytes]:
    assert isinstance(response, StreamingHttpResponse)
    return list(response.streaming_content)  # type: ignore[arg-type]


def _body(response: Any) -> bytes:
    return b"".join(_chunks(response))


def _csv_rows(data: bytes) -> list[dict[str, Any]]:
    rows = []
    reader = csv.DictReader(io.StringIO(data.decode()))
    assert tuple(reader.fieldnames or ()) == query.CSV_COLUMNS
    for row in reader:
        out: dict[str, Any] = dict(row)
        out["offset"] = int(row["offset"])
        for name in ("payload", "context", "enrichment"):
            out[name] = orjson.loads(row[name])
        for name in ("user_id", "anonymous_id", "session_id"):
            # CSV has no null: an absent value is an empty field.
            out[name] = row[name] or None
        rows.append(out)
    return rows


# Text that needs CSV quoting and JSON escaping, and some that COPY's text format escapes.
AWKWARD = {
    "quote": 'say "hi", then\nleave',
    "backslash": "C:\\path\\to\\file \\n not a newline",
    "tab": "a\tb",
    "unicode": "naïve ✓ 日本",
    "empty": "",
}


def _awkward(stream: Stream) -> LogRecord:
    at = BASE_TIME + timedelta(days=1)
    record = LogRecord(
        event_id='odd,"id"\\',
        type="Order Completed",
        event_time=at,
        received_at=at,
        user_id="user, with comma",
        payload=dict(AWKWARD),
        context={"nested": [AWKWARD, 1.5, None, True]},
    )
    log_append_now(stream_id=stream.pk, records=[record])
    return record


def test_csv_is_exact(analyst: Client, stream: Stream):
    records = [*append(stream, 30), _awkward(stream)]
    response = analyst.get(EXPORT)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert _csv_rows(_body(response)) == [_expected(i, r) for i, r in enumerate(records)]


def test_ndjson_is_exact(analyst: Client, stream: Stream):
    records = [*append(stream, 30), _awkward(stream)]
    response = analyst.get(f"{EXPORT}?format=ndjson")
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    data = _body(response)
    assert data.endswith(b"\n")
    lines = data.decode().split("\n")[:-1]
    assert [orjson.loads(line) for line in lines] == [_expected(i, r) for i, r in enumerate(records)]


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_the_filters_of_the_query_apply(analyst: Client, stream: Stream, fmt: str):
    records = append(stream, 80)
    start, end = BASE_TIME + timedelta(minutes=60), BASE_TIME + timedelta(minutes=300)
    params = f"format={fmt}&type=login,page_view&enrichment.browser!=Safari&from={start:%Y-%m-%dT%H:%M:%SZ}"
    params += f"&to={end:%Y-%m-%dT%H:%M:%SZ}"
    expected = [
        _expected(i, r)
        for i, r in enumerate(records)
        if r.type in ("login", "page_view")
        and (r.enrichment or {}).get("browser") != "Safari"
        and start <= r.event_time < end
    ]
    assert 0 < len(expected) < 80
    response = analyst.get(f"{EXPORT}?{params}")
    data = _body(response)
    got = _csv_rows(data) if fmt == "csv" else [orjson.loads(line) for line in data.splitlines()]
    assert got == expected
    assert response["Content-Disposition"] == (
        f'attachment; filename="shop-events-20261121T100000Z-20261121T140000Z.{fmt}"'
    )


def test_it_streams_in_chunks_with_every_row_whole(analyst: Client, stream: Stream, monkeypatch: Any):
    monkeypatch.setattr(query, "EXPORT_CHUNK_BYTES", 2000)
    records = append(stream, 200)
    response = analyst.get(f"{EXPORT}?format=ndjson")
    chunks = _chunks(response)
    assert len(chunks) > 10
    assert all(chunk.endswith(b"\n") for chunk in chunks)
    assert [orjson.loads(line)["event_id"] for line in b"".join(chunks).splitlines()] == [r.event_id for r in records]


def test_an_open_range_is_named_from_start_to_the_time_of_asking(analyst: Client, stream: Stream):
    before = timezone.now().replace(microsecond=0)
    disposition = analyst.get(EXPORT)["Content-Disposition"]
    after = timezone.now()
    prefix = 'attachment; filename="shop-events-start-'
    assert disposition.startswith(prefix) and disposition.endswith('.csv"')
    named = datetime.strptime(disposition[len(prefix) : -len('.csv"')], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= named <= after


def test_an_empty_export_has_the_header_only(analyst: Client, stream: Stream):
    assert _body(analyst.get(EXPORT)) == (",".join(query.CSV_COLUMNS) + "\n").encode()
    assert _body(analyst.get(f"{EXPORT}?format=ndjson")) == b""


@pytest.mark.parametrize(
    "params", ["format=xml", "format=json", "from=today", "colour=red", "cursor=abc", "limit=5", "segment=nope"]
)
def test_bad_input_is_a_json_error_before_any_row(analyst: Client, stream: Stream, params: str):
    append(stream, 3)
    response = analyst.get(f"{EXPORT}?{params}")
    assert response.status_code in (400, 404), response.content
    assert response["Content-Type"] == "application/json"
    assert "error" in response.json()


def test_access(analyst: Client, stream: Stream, client: Client):
    append(stream, 2)
    assert client.get(EXPORT, HTTP_X_API_KEY=secret_key_of(stream)).status_code == 200
    assert client.get(EXPORT).status_code == 401
    outsider = foreign_analyst()
    assert outsider.get(EXPORT).status_code == 404


def test_the_response_is_made_with_the_access_queries_only(
    analyst: Client, stream: Stream, django_assert_num_queries: Any
):
    append(stream, 20)
    analyst.get(EVENTS)
    # The person's access takes four; the rows are read while the response is sent, by one COPY.
    with django_assert_num_queries(4):
        response = analyst.get(f"{EXPORT}?type=login")
    assert len(_body(response).splitlines()) == 1 + 5
