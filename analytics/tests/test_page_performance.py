"""The page-performance endpoint: percentiles checked against figures computed here, filters, bad input, contract."""

from __future__ import annotations

import statistics
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from streams.log import LogRecord, log_append_now
from tests import test_openapi_contract as checked
from tests.access_matrix import OWN, World

# The contract's fixtures: the generated document, the world of tests/access_matrix.py, callers.
generated, contract, world, as_ = checked.generated, checked.contract, checked.world, checked.as_

pytestmark = pytest.mark.django_db
S = "/api/v1/streams/own"
URL = f"{S}/analytics/page-performance"


def percentile(values: list[float], q: float) -> float:
    """percentile_cont: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _log(world: World, events: list[tuple[str, dict[str, Any]]], *, start: Any = None) -> None:
    at = start or timezone.now() - timedelta(hours=1)
    records = [
        LogRecord(
            event_id=f"perf-{i}",
            type=kind,
            event_time=at + timedelta(seconds=i),
            received_at=at + timedelta(seconds=i),
            anonymous_id=f"v{i % 3}",
            payload=payload,
            enrichment={"device_type": "mobile" if i % 2 else "desktop"},
        )
        for i, (kind, payload) in enumerate(events)
    ]
    log_append_now(stream_id=world.streams[OWN].pk, records=records)


def _measured(page: str, n: int) -> dict[str, Any]:
    return {"page": page, "ttfb": 50 + n * 7, "lcp": 900 + n * 113, "cls": round(n * 0.013, 4), "load": 1000 + n}


def test_percentiles_per_page_and_over_all(as_: Any, world: World):
    pricing = [_measured("/pricing", n) for n in range(11)]
    home = [_measured("/?ref=x", n * 3) for n in range(4)]
    odd = [
        {"page": "/odd", "ttfb": "fast", "lcp": -1, "cls": True, "load": 1e12, "inp": 80},
        {"page": "/odd", "ttfb": 10, "inp": {"nested": 1}},
    ]
    other_types = [("page_view", {"page": "/pricing", "ttfb": 1})]
    _log(world, [("page_performance", p) for p in pricing + home + odd] + other_types)

    body = as_("Analyst").get(URL)

    pages = {row["page"]: row for row in body["pages"]}
    assert [row["page"] for row in body["pages"]] == ["/pricing", "/", "/odd"]
    assert pages["/pricing"]["views"] == 11
    for name in ("ttfb", "lcp", "load"):
        values = [float(p[name]) for p in pricing]
        metric = pages["/pricing"]["metrics"][name]
        assert metric["count"] == 11
        for q, field in ((0.5, "p50"), (0.75, "p75"), (0.95, "p95")):
            assert metric[field] == pytest.approx(round(percentile(values, q), 1)), (name, field)
    cls = pages["/pricing"]["metrics"]["cls"]
    assert cls["p75"] == pytest.approx(round(percentile([p["cls"] for p in pricing], 0.75), 4))
    assert pages["/pricing"]["metrics"]["inp"] == {"count": 0, "p50": None, "p75": None, "p95": None}
    # The query string is not part of the page.
    assert pages["/"]["views"] == 4
    # Strings, negatives, booleans, objects and absurd numbers are not measurements.
    odd_metrics = pages["/odd"]["metrics"]
    assert {name: odd_metrics[name]["count"] for name in ("ttfb", "lcp", "cls", "load", "inp")} == {
        "ttfb": 1,
        "lcp": 0,
        "cls": 0,
        "load": 0,
        "inp": 1,
    }
    assert body["all"]["page"] is None
    assert body["all"]["views"] == 17
    every_ttfb = [float(p["ttfb"]) for p in pricing + home] + [10.0]
    assert body["all"]["metrics"]["ttfb"]["p50"] == pytest.approx(statistics.median(every_ttfb))


def test_filters_top_and_range(as_: Any, world: World):
    _log(world, [("page_performance", _measured(f"/p{n % 3}", n)) for n in range(12)])
    analyst = as_("Analyst")
    assert [row["page"] for row in analyst.get(f"{URL}?top=2")["pages"]] == ["/p0", "/p1"]
    mobile = analyst.get(f"{URL}?enrichment.device_type=mobile")
    assert mobile["all"]["views"] == 6
    assert analyst.get(f"{URL}?payload.page=/p2")["all"]["views"] == 4
    later = (timezone.now() + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    backwards = analyst.get(f"{URL}?from={later}&to={later}", status=400)
    assert backwards["error"]["code"] == "invalid_filter"
    nothing = analyst.get(f"{URL}?payload.page=/none")
    assert nothing["pages"] == [] and nothing["all"]["views"] == 0
    assert nothing["all"]["metrics"]["lcp"] == {"count": 0, "p50": None, "p75": None, "p95": None}


@pytest.mark.parametrize(
    "query",
    ["top=0", "top=101", "top=x", "type=page_view", "from=yesterday", "tz=Europe/Berlin", "plan=pro"],
)
def test_bad_questions_are_a_400(as_: Any, world: World, query: str):
    answer = as_("Analyst").get(f"{URL}?{query}", status=400)
    assert answer["error"]["code"] in ("invalid_parameter", "invalid_filter", "unknown_parameter")


def test_access(as_: Any, world: World):
    as_("secret key").get(URL)
    as_("Operator").get(URL, status=403)
    as_("ingest key").get(URL, status=403)
    as_("nobody").get(URL, status=401)
    as_("Analyst").get("/api/v1/streams/foreign/analytics/page-performance", status=404)
