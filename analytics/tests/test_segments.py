"""Saved segments: validated, audited changes by Analysts, and used by name by the endpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from eventflow.models import AuditEntry
from streams.models import Stream

from .journey_fixtures import BASE, event, log, person_of

pytestmark = pytest.mark.django_db
SEGMENTS = f"{BASE}/segments"
MOBILE = {
    "name": "mobile-pro",
    "description": "Pro plan on phones",
    "conditions": [
        {"property": "payload.plan", "values": ["pro"]},
        {"property": "enrichment.device_type", "op": "eq", "values": ["mobile"]},
    ],
}


def test_an_analyst_creates_lists_changes_and_deletes_a_segment_each_change_audited(stream: Stream):
    analyst = person_of(stream)
    created = analyst.post(SEGMENTS, MOBILE)
    assert created.status_code == 201, created.content
    assert created.json()["conditions"] == [
        {"property": "payload.plan", "op": "eq", "values": ["pro"]},
        {"property": "enrichment.device_type", "op": "eq", "values": ["mobile"]},
    ]
    assert [s["name"] for s in analyst.get(SEGMENTS).json()] == ["mobile-pro"]
    changed = analyst.patch(
        f"{SEGMENTS}/mobile-pro", {"conditions": [{"property": "payload.plan", "op": "ne", "values": ["free"]}]}
    )
    assert changed.status_code == 200
    assert analyst.get(f"{SEGMENTS}/mobile-pro").json()["conditions"][0]["op"] == "ne"
    assert analyst.delete(f"{SEGMENTS}/mobile-pro").status_code == 204
    assert analyst.get(f"{SEGMENTS}/mobile-pro").status_code == 404
    actions = list(
        AuditEntry.objects.filter(kind="security", action__startswith="segment.")
        .order_by("id")
        .values_list("action", "target", "stream_id")
    )
    assert actions == [(a, "mobile-pro", stream.pk) for a in ("segment.create", "segment.update", "segment.delete")]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({**MOBILE, "name": "has space"}, 400),
        ({**MOBILE, "conditions": []}, 400),
        ({**MOBILE, "conditions": [{"property": "plan", "values": ["pro"]}]}, 400),
        ({**MOBILE, "conditions": [{"property": "payload.plan", "op": "like", "values": ["pro"]}]}, 400),
        ({**MOBILE, "conditions": [{"property": "payload.plan", "op": "eq"}]}, 400),
        ({**MOBILE, "conditions": [{"property": "payload.plan", "values": [{"nested": 1}]}]}, 400),
        ({**MOBILE, "owner": "me"}, 400),
        ({**MOBILE, "name": "x\x00"}, 400),
    ],
)
def test_bad_segments_are_refused(stream: Stream, body: dict[str, Any], status: int):
    response = person_of(stream).post(SEGMENTS, body)
    assert response.status_code == status, response.content
    assert not AuditEntry.objects.filter(action="segment.create").exists()


def test_a_second_segment_of_a_name_conflicts_and_another_stream_is_not_found(stream: Stream):
    analyst = person_of(stream)
    assert analyst.post(SEGMENTS, MOBILE).status_code == 201
    assert analyst.post(SEGMENTS, MOBILE).status_code == 409
    assert analyst.patch(f"{SEGMENTS}/nope", {"description": "x"}).status_code == 404
    assert analyst.get("/api/v1/streams/elsewhere/segments").status_code == 404
    assert person_of(stream, role="Consumer", username="con").get(SEGMENTS).status_code == 403


def test_the_event_query_and_every_journey_endpoint_take_a_segment(stream: Stream):
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
    records = []
    for n, (plan, device) in enumerate([("pro", "mobile"), ("pro", "desktop"), ("free", "mobile"), ("pro", "mobile")]):
        for k, kind in enumerate(["page_view", "button_click", "form_submit"]):
            records.append(
                event(
                    kind,
                    t0 + timedelta(minutes=k),
                    user=f"u{n}",
                    session=f"s{n}",
                    payload={"plan": plan},
                    enrichment={"device_type": device},
                )
            )
    log(stream, records)
    analyst = person_of(stream)
    assert analyst.post(SEGMENTS, MOBILE).status_code == 201
    span = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-09T00:00:00Z"}
    members = 2  # u0 and u3: pro on mobile
    events = analyst.get(f"{BASE}/events", segment="mobile-pro", limit=100, **span).json()
    assert len(events["results"]) == 3 * members
    steps = {"steps": [{"type": "page_view"}, {"type": "button_click"}, {"type": "form_submit"}], "window": "1h"}
    funnel = analyst.post(f"{BASE}/analytics/funnel", steps, segment="mobile-pro", **span).json()
    assert [s["count"] for s in funnel["steps"]] == [members] * 3
    paths = analyst.get(f"{BASE}/analytics/paths", start="page_view", segment="mobile-pro", **span).json()
    assert paths["sessions"] == members
    retention = analyst.get(f"{BASE}/analytics/retention", period="day", periods=1, segment="mobile-pro", **span).json()
    assert sum(c["people"] for c in retention["cohorts"]) == members
    assert analyst.get(f"{BASE}/analytics/paths", start="page_view", segment="absent").status_code == 404
    assert analyst.get(f"{BASE}/analytics/retention", segment="absent").status_code == 404
    assert analyst.get(f"{BASE}/events", segment="absent").status_code == 404


def test_the_counting_endpoints_take_a_segment_too(stream: Stream):
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
    plans = [("pro", "mobile"), ("pro", "desktop"), ("free", "mobile"), ("pro", "mobile")]
    log(
        stream,
        [
            event(
                "page_view",
                t0 + timedelta(minutes=n),
                user=f"u{n}",
                payload={"plan": plan},
                enrichment={"device_type": device, "browser": "Firefox"},
            )
            for n, (plan, device) in enumerate(plans)
        ],
    )
    analyst = person_of(stream)
    assert analyst.post(SEGMENTS, MOBILE).status_code == 201
    span = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-09T00:00:00Z"}
    counted = analyst.get(f"{BASE}/analytics/count-by-type", segment="mobile-pro", **span)
    assert counted.status_code == 200, counted.content
    assert counted.json()["total"] == 2  # u0 and u3
    for name, extra in (
        ("timeseries", {"interval": "day"}),
        ("breakdown", {"dimension": "browser"}),
        ("active-users", {}),
    ):
        assert analyst.get(f"{BASE}/analytics/{name}", segment="mobile-pro", **extra, **span).status_code == 200, name
        assert analyst.get(f"{BASE}/analytics/{name}", segment="absent", **extra, **span).status_code == 404, name
