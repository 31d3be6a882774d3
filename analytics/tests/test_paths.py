"""Paths within sessions against the same walk done in Python over the events the test sent."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics import journeys
from analytics.segments import segment_create
from streams.log import LogRecord
from streams.models import Stream
from tests.fixtures import conf_override

from .journey_fixtures import BASE, event, log, person_of

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RANGE = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-09T00:00:00Z"}
PATHS = f"{BASE}/analytics/paths"


def _label(record: LogRecord) -> str:
    page = (record.payload or {}).get("page") or ((record.context or {}).get("page") or {}).get("path")
    return record.type if page is None else f"{record.type}:{page}"


def reference(
    records: list[LogRecord], start: str, direction: str, depth: int, keep: Any = lambda r: True
) -> tuple[int, Counter[tuple[str, ...]]]:
    """Sessions with the start, and how many sessions follow each path prefix."""
    sessions: dict[str, list[LogRecord]] = {}
    for _offset, record in sorted(enumerate(records), key=lambda item: (item[1].event_time, item[0])):
        if (
            record.session_id
            and datetime(2026, 11, 1, tzinfo=UTC) <= record.event_time < datetime(2026, 11, 9, tzinfo=UTC)
            and keep(record)
        ):
            sessions.setdefault(record.session_id, []).append(record)
    kind, _, page = start.partition(":")
    prefixes: Counter[tuple[str, ...]] = Counter()
    count = 0
    for events in sessions.values():
        hits = [i for i, r in enumerate(events) if r.type == kind and (not page or _label(r) == start)]
        if not hits:
            continue
        count += 1
        if direction == "next":
            walk = [_label(r) for r in events[hits[0] + 1 : hits[0] + 1 + depth]]
        else:
            walk = [_label(r) for r in reversed(events[max(0, hits[-1] - depth) : hits[-1]])]
        for n in range(1, len(walk) + 1):
            prefixes[tuple(walk[:n])] += 1
    return count, prefixes


def _random_log(stream: Stream) -> list[LogRecord]:
    rng = random.Random(5)
    records = []
    for n in range(120):
        at = T0 + timedelta(minutes=rng.randrange(0, 6 * 24 * 60))
        plan = rng.choice(["pro", "free"])
        for _ in range(rng.randrange(1, 9)):
            kind = rng.choice(["page_view", "page_view", "button_click", "form_submit"])
            page = rng.choice(["/pricing", "/docs", "/signup"])
            if rng.random() < 0.2:
                record = event(
                    kind, at, user=f"u{n}", session=f"s{n}", context={"page": {"path": page}}, payload={"plan": plan}
                )
            else:
                record = event(kind, at, user=f"u{n}", session=f"s{n}", payload={"page": page, "plan": plan})
            records.append(record)
            at += timedelta(seconds=rng.randrange(0, 300))
    records.append(event("page_view", T0, user="nobody-session", payload={"page": "/pricing"}))
    rng.shuffle(records)
    return log(stream, records)


def _nodes(body: dict[str, Any]) -> dict[tuple[str, ...], int]:
    return {tuple(node["path"]): node["count"] for node in body["nodes"]}


@pytest.mark.parametrize("few_starts", [5000, 0], ids=["sessions-by-name", "one-pass"])
@pytest.mark.parametrize(
    ("start", "direction", "depth"),
    [("page_view:/pricing", "next", 3), ("form_submit", "previous", 2), ("button_click", "next", 5)],
)
def test_paths_match_the_reference(
    stream: Stream, start: str, direction: str, depth: int, few_starts: int, monkeypatch: pytest.MonkeyPatch
):
    # A start with at most FEW_STARTS events reads only its sessions; with 0, every start takes the one pass.
    monkeypatch.setattr(journeys, "FEW_STARTS", few_starts)
    records = _random_log(stream)
    response = person_of(stream).get(PATHS, start=start, direction=direction, depth=depth, top=50, **RANGE)
    assert response.status_code == 200, response.content
    body = response.json()
    sessions, prefixes = reference(records, start, direction, depth)
    assert body["sessions"] == sessions
    nodes = _nodes(body)
    # With top=50 nothing is folded: every prefix is a node with its count, plus $end where sessions stop.
    assert {path: count for path, count in nodes.items() if path[-1] != "$end"} == dict(prefixes)
    for path, count in nodes.items():
        if path[-1] == "$end":
            parent = prefixes[path[:-1]] if len(path) > 1 else sessions
            children = sum(c for p, c in prefixes.items() if len(p) == len(path) and p[:-1] == path[:-1])
            assert count == parent - children


def test_top_folds_the_rest_into_other_and_segments_narrow_the_events(stream: Stream):
    records = _random_log(stream)
    analyst = person_of(stream)
    body = analyst.get(PATHS, start="page_view", depth=1, top=2, **RANGE).json()
    sessions, prefixes = reference(records, "page_view", "next", 1)
    level1 = sorted(((p[0], c) for p, c in prefixes.items()), key=lambda item: (-item[1], item[0]))
    want = [*level1[:2], ("$other", sum(c for _, c in level1[2:]))]
    got = [(n["step"], n["count"]) for n in body["nodes"] if n["step"] != "$end"]
    assert got == want
    segment_create(stream_id=stream.pk, name="pro", conditions=[{"property": "payload.plan", "values": ["pro"]}])
    by_segment = analyst.get(PATHS, start="page_view", depth=2, top=50, segment="pro", **RANGE).json()
    sessions, prefixes = reference(
        records, "page_view", "next", 2, keep=lambda r: (r.payload or {}).get("plan") == "pro"
    )
    assert by_segment["sessions"] == sessions
    assert {p: c for p, c in _nodes(by_segment).items() if p[-1] != "$end"} == dict(prefixes)


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"start": ""},
        {"start": "page_view", "depth": "6"},
        {"start": "page_view", "depth": "x"},
        {"start": "page_view", "direction": "sideways"},
        {"start": "page_view", "top": "0"},
        {"start": "page_view", "tz": "Nowhere/City"},
        {"start": "page_view", "window": "1h"},
        {"start": "page_view", "payload.a..b": "1"},
    ],
)
def test_bad_input_is_a_400(stream: Stream, query: dict[str, str]):
    response = person_of(stream).get(PATHS, **query)
    assert response.status_code == 400, response.content


@pytest.mark.parametrize("few_starts", [5000, 0], ids=["sessions-by-name", "one-pass"])
def test_a_start_no_session_holds_or_ends_on_gives_counts_not_errors(
    stream: Stream, few_starts: int, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(journeys, "FEW_STARTS", few_starts)
    records = _random_log(stream)
    analyst = person_of(stream)
    nowhere = analyst.get(PATHS, start="video_play", **RANGE).json()
    assert (nowhere["sessions"], nowhere["nodes"]) == (0, [])
    # The newest event of any session: its label starts paths that may end at once.
    last = max((r for r in records if r.session_id), key=lambda r: r.event_time)
    ends = analyst.get(PATHS, start=_label(last), top=50, **RANGE).json()
    sessions, prefixes = reference(records, _label(last), "next", 3)
    assert ends["sessions"] == sessions >= 1
    assert {tuple(node["path"]): node["count"] for node in ends["nodes"] if node["step"] != "$end"} == dict(prefixes)


def test_the_journey_work_mem_setting_is_what_the_statement_runs_with(stream: Stream, settings: Any):
    conf_override(settings, journey_work_mem_mb=8)
    records = _random_log(stream)
    with CaptureQueriesContext(connection) as captured:
        body = person_of(stream).get(PATHS, start="page_view", top=50, **RANGE).json()
    assert "SET LOCAL work_mem = '8MB'" in [query["sql"] for query in captured.captured_queries]
    # Spilled to disk or not, the answer is the same.
    sessions, _ = reference(records, "page_view", "next", 3)
    assert body["sessions"] == sessions
