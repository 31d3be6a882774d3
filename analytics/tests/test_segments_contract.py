"""Real answers of the funnel, paths, retention, processing and segment endpoints against the OpenAPI document."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from streams.log import LogRecord
from tests import test_openapi_contract as checked
from tests.access_matrix import OWN, World

from .journey_fixtures import log

# The contract's fixtures: the generated document, the world of tests/access_matrix.py, callers.
generated, contract, world, as_ = checked.generated, checked.contract, checked.world, checked.as_

pytestmark = pytest.mark.django_db
S = "/api/v1/streams/own"


def _events(world: World) -> None:
    now = timezone.now() - timedelta(hours=1)
    records = [
        LogRecord(
            event_id=f"c{i}",
            type=["page_view", "button_click", "form_submit"][i % 3],
            event_time=now + timedelta(seconds=i),
            received_at=now + timedelta(seconds=i),
            user_id=f"u{i // 3}",
            session_id=f"s{i // 3}",
            payload={"page": "/pricing", "plan": "pro"},
            enrichment={"browser": "Firefox", "device_type": "mobile"},
        )
        for i in range(12)
    ]
    # As the processor appends: the log and its rollups in one transaction.
    log(world.streams[OWN], records)


def test_journeys_and_segments(as_: Any, world: World):
    _events(world)
    analyst = as_("Analyst")
    steps = {"steps": [{"type": "page_view"}, {"type": "button_click"}, {"type": "form_submit"}], "window": "1h"}
    body = analyst.post(f"{S}/analytics/funnel", {**steps, "breakdown": "browser"})
    assert body["steps"][2]["count"] == 4
    analyst.post(f"{S}/analytics/funnel?segment=mobile", steps)
    analyst.post(f"{S}/analytics/funnel", {"steps": [{"type": "a"}]}, status=400)
    analyst.post(f"{S}/analytics/funnel?segment=absent", steps, status=404)
    assert analyst.get(f"{S}/analytics/paths?start=page_view:/pricing")["sessions"] == 4
    analyst.get(f"{S}/analytics/paths?start=page_view&direction=previous&depth=5", status=200)
    analyst.get(f"{S}/analytics/paths", status=400)
    retention = analyst.get(f"{S}/analytics/retention?period=day&periods=2&tz=Europe/Berlin")
    assert sum(c["people"] for c in retention["cohorts"]) == 4
    analyst.get(f"{S}/analytics/retention?period=fortnight", status=400)
    processing = as_("secret key").get(f"{S}/analytics/processing?interval=hour")
    assert processing["consumer_lag"][0]["group"] == "billing"
    analyst.get(f"{S}/analytics/processing?interval=year", status=400)
    segments = f"{S}/segments"
    assert [s["name"] for s in analyst.get(segments)] == ["mobile"]
    analyst.post(segments, {"name": "pro", "conditions": [{"property": "payload.plan", "values": ["pro"]}]}, status=201)
    analyst.post(segments, {"name": "pro", "conditions": [{"property": "payload.plan", "values": ["pro"]}]}, status=409)
    analyst.post(segments, {"name": "bad", "conditions": []}, status=400)
    analyst.get(f"{segments}/pro")
    analyst.patch(f"{segments}/pro", {"description": "Pro plan"})
    analyst.delete(f"{segments}/pro", status=204)
    analyst.get(f"{segments}/pro", status=404)
    as_("Consumer").get(segments, status=403)
    as_("Analyst").get("/api/v1/streams/foreign/segments", status=404)
    as_("nobody").get(f"{S}/analytics/retention", status=401)
