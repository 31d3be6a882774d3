"""The browser tracker's server side: the script as served, its intake, visitors and their salts, countries.

The script itself runs in Chromium in test_tracker_browser.py.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.models import HourDimension
from ingestion import tracker
from ingestion.geo import country_of
from ingestion.models import InboxEvent, VisitorSalt
from ingestion.pipeline import stream_drain
from ingestion.tasks import visitor_salts_prune as visitor_salts_prune_task
from ingestion.visitors import visitor_id, visitor_salt, visitor_salts_forget, visitor_salts_prune
from streams.models import ApiKeyKind, LogEntry, Stream
from streams.selectors import stream_cache_clear
from streams.services import api_key_create, stream_create, stream_update

pytestmark = pytest.mark.django_db

TRACKER_DIR = Path(settings.BASE_DIR) / "static" / "tracker"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0"
# Addresses the registries' data places in a country (the RIPE NCC's own, one of Google's).
GB_IP, US_IP = "81.2.69.142", "8.8.8.8"


@pytest.fixture(autouse=True)
def _fresh_salts() -> Any:
    # Each test's database starts without salts; this process's copies must not outlive it.
    visitor_salts_forget()
    yield
    visitor_salts_forget()


def send(client: Any, key: str, body: Any, *, prefix: str = "", ip: str = GB_IP, ua: str = CHROME, **extra: Any) -> Any:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.generic(
        "POST",
        f"{prefix}/k/{key}/tracker",
        data,
        content_type="text/plain;charset=UTF-8",
        REMOTE_ADDR=ip,
        HTTP_USER_AGENT=ua,
        **extra,
    )


def page_view(path: str = "/pricing?utm_source=news", **fields: Any) -> dict[str, Any]:
    return {
        "type": "page_view",
        "event_id": fields.pop("event_id", f"pv-{path}"),
        "view": "view-1",
        "url": f"https://shop.example.com{path}",
        "referrer": "https://news.example.org/today",
        **fields,
    }


def rows(stream: Stream) -> list[InboxEvent]:
    return list(InboxEvent.objects.filter(stream=stream).order_by("id"))


# --- the script ----------------------------------------------------------------------------------


def test_the_script_is_under_2_kb_gzipped_and_built_from_its_source():
    served = (TRACKER_DIR / "t.min.js").read_bytes()
    gzipped = len(gzip.compress(served, compresslevel=9))
    assert gzipped < 2048, f"t.min.js is {gzipped} bytes gzipped"
    # t.min.js names the t.js it was made from (static/tracker/build.sh): an edit of t.js without a rebuild fails.
    source_hash = hashlib.sha256((TRACKER_DIR / "t.js").read_bytes()).hexdigest()[:16]
    assert f"built from t.js sha256:{source_hash}." in served.splitlines()[0].decode()
    # Nothing that keeps state in the browser, in the source or in what is served.
    for text in ((TRACKER_DIR / "t.js").read_text(), served.decode()):
        for word in ("cookie", "localStorage", "sessionStorage", "indexedDB", "canvas", "userAgentData"):
            assert word not in text.split("*/", 1)[1], word


def test_t_js_is_served_with_an_etag_cors_and_gzip(client):
    script = tracker.tracker_script()
    response = client.get("/t.js")
    assert response.status_code == 200
    assert response.content == (TRACKER_DIR / "t.min.js").read_bytes()
    assert response["Content-Type"] == "text/javascript; charset=utf-8"
    assert response["Cache-Control"] == "public, max-age=86400"
    assert response["ETag"] == f'"{script.version}"'
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response["Cross-Origin-Resource-Policy"] == "cross-origin"

    again = client.get("/t.js", HTTP_IF_NONE_MATCH=f'"{script.version}"')
    assert again.status_code == 304 and again.content == b""

    zipped = client.get("/t.js", HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert zipped["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped["Vary"]
    assert gzip.decompress(zipped.content) == response.content
    assert len(zipped.content) < 2048

    assert client.head("/t.js").status_code == 200
    assert client.post("/t.js").status_code == 405


def test_the_versioned_url_is_immutable_and_another_version_is_not_found(client):
    script = tracker.tracker_script()
    response = client.get(f"/t.{script.version}.js")
    assert response.status_code == 200
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    digest = base64.b64encode(hashlib.sha384(response.content).digest()).decode()
    assert script.integrity == f"sha384-{digest}"
    assert client.get("/t.0123456789ab.js").status_code == 404


def test_the_readme_snippet_loads_this_version_with_its_integrity_hash():
    readme = (Path(settings.BASE_DIR) / "README.md").read_text()
    section = readme.split("## Browser tracker", 1)[1].split("\n## ", 1)[0]
    tag = re.search(r"<script\b[^>]*\bsrc=\"[^\"]*/t\.[0-9a-f]{12}\.js\"[^>]*>", section, re.S)
    assert tag is not None, "the README's Browser tracker section shows no versioned <script> snippet"
    script = tracker.tracker_script()
    snippet = tag.group(0)
    assert re.search(r'src="[^"]*/t\.' + script.version + r'\.js"', snippet), "the snippet names another version"
    assert f'integrity="{script.integrity}"' in snippet, f"the snippet's integrity is not {script.integrity}"
    assert 'crossorigin="anonymous"' in snippet
    assert "data-key=" in snippet and "data-endpoint=" in snippet


# --- the intake ----------------------------------------------------------------------------------


def test_a_page_view_gets_a_visitor_a_country_and_a_masked_address(client, stream, ingest_key):
    response = send(client, ingest_key, page_view(), HTTP_ORIGIN="https://shop.example.com")

    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == 1
    assert response["Access-Control-Allow-Origin"] == "https://shop.example.com"
    [row] = rows(stream)
    assert row.type == "page_view"
    assert row.event_id == "pv-/pricing?utm_source=news"
    assert re.fullmatch(r"v_[0-9a-f]{32}", row.anonymous_id or "")
    assert row.user_id is None and row.session_id is None
    assert row.payload == {"page": "/pricing", "referrer": "https://news.example.org/today"}
    assert row.context == {
        "library": {"name": "eventflow-tracker", "version": tracker.tracker_script().version},
        "page": {
            "url": "https://shop.example.com/pricing?utm_source=news",
            "path": "/pricing",
            "referrer": "https://news.example.org/today",
        },
        "page_view_id": "view-1",
        "user_agent": CHROME,
        # The stream anonymises (the default): the inbox never holds the full address.
        "ip": "81.2.69.0",
        "country": "GB",
    }
    assert GB_IP not in orjson.dumps(row.context).decode()


def test_a_stream_that_keeps_addresses_gets_the_full_one(client, stream, ingest_key):
    stream_update(stream=stream, anonymize_ip=False)
    stream_cache_clear()
    assert send(client, ingest_key, page_view(), ip=US_IP).status_code == 202
    [row] = rows(stream)
    assert (row.context["ip"], row.context["country"]) == (US_IP, "US")


def test_the_visitor_is_the_same_all_day_and_differs_by_browser_address_and_stream(client, stream, ingest_key):
    other = stream_create(slug="blog", name="Blog")
    other_key = api_key_create(kind=ApiKeyKind.INGEST, streams=[other]).raw_key
    send(client, ingest_key, page_view("/a"))
    send(client, ingest_key, page_view("/b"))
    send(client, ingest_key, page_view("/c"), ua=FIREFOX)
    send(client, ingest_key, page_view("/d"), ip=US_IP)
    send(client, other_key, page_view("/e"))
    visitors = {row.payload["page"]: row.anonymous_id for row in InboxEvent.objects.all()}
    assert visitors["/a"] == visitors["/b"]
    assert len({visitors["/a"], visitors["/c"], visitors["/d"], visitors["/e"]}) == 4


def test_hashes_stay_within_a_day_and_change_across_days():
    stream = stream_create(slug="shop", name="Shop")
    morning = datetime(2026, 11, 20, 0, 0, 1, tzinfo=UTC)
    evening = datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC)
    next_day = datetime(2026, 11, 21, 0, 0, 0, tzinfo=UTC)
    same: dict[str, Any] = {"stream_id": stream.pk, "ip": GB_IP, "user_agent": CHROME}
    assert visitor_id(**same, at=morning) == visitor_id(**same, at=evening)
    assert visitor_id(**same, at=evening) != visitor_id(**same, at=next_day)
    # The UTC day decides, whatever zone the time is written in.
    berlin_evening = datetime.fromisoformat("2026-11-21T00:30:00+01:00")
    assert visitor_id(**same, at=berlin_evening) == visitor_id(**same, at=evening)
    # Another process (no copies of its own) makes the same hashes from the stored salts.
    before = visitor_id(**same, at=evening)
    visitor_salts_forget()
    assert visitor_id(**same, at=evening) == before
    assert VisitorSalt.objects.count() == 2


def test_salts_older_than_yesterday_are_deleted_and_their_visitors_cannot_be_followed():
    stream = stream_create(slug="shop", name="Shop")
    today = date(2026, 11, 20)
    days = [today - timedelta(days=n) for n in range(4)]
    salts = {day: visitor_salt(day) for day in days}
    assert len(set(salts.values())) == 4
    assert all(len(salt) == 32 for salt in salts.values())
    old_day = datetime(2026, 11, 18, 12, tzinfo=UTC)
    old_visitor = visitor_id(stream_id=stream.pk, ip=GB_IP, user_agent=CHROME, at=old_day)

    assert visitor_salts_prune(today=today) == 2
    assert sorted(VisitorSalt.objects.values_list("day", flat=True)) == [today - timedelta(days=1), today]
    assert visitor_salt(today) == salts[today]
    # The day's salt is gone from the database and from this process: the same visitor hashes anew.
    assert visitor_id(stream_id=stream.pk, ip=GB_IP, user_agent=CHROME, at=old_day) != old_visitor
    # Twice is harmless.
    VisitorSalt.objects.filter(day__lt=today - timedelta(days=1)).delete()
    assert visitor_salts_prune(today=today) == 0


def test_the_periodic_task_prunes_by_todays_utc_date():
    today = datetime.now(UTC).date()
    for n in range(4):
        visitor_salt(today - timedelta(days=n))
    assert visitor_salts_prune_task.apply().result == 2
    assert VisitorSalt.objects.filter(day__lt=today - timedelta(days=1)).count() == 0
    from eventflow.celery import app

    assert app.conf.beat_schedule["visitor-salts-prune"]["task"] == "ingestion.visitor_salts_prune"


def test_clicks_forms_and_performance_are_mapped(client, stream, ingest_key):
    events = [
        {
            "type": "signup_clicked",
            "event_id": "c1",
            "view": "v",
            "url": "https://s.example/",
            "props": {"plan": "pro"},
        },
        {
            "type": "form_submit",
            "event_id": "f1",
            "url": "https://s.example/contact",
            "props": {"form_name": "contact", "action": "https://s.example/send?x=1"},
        },
        {
            "type": "form_submit",
            "event_id": "f2",
            "url": "https://s.example/",
            "props": {"action": "https://s.example/go"},
        },
        {
            "type": "outbound_click",
            "event_id": "o1",
            "url": "https://s.example/",
            "props": {"url": "https://other.example/"},
        },
        {
            "type": "page_performance",
            "event_id": "p1",
            "url": "https://s.example/pricing",
            "props": {
                "ttfb": 120,
                "dom_content_loaded": 450.5,
                "load": "900",
                "lcp": -5,
                "cls": 0.0123,
                "inp": 10**9,
                "fps": 60,
                "page": "/elsewhere",
            },
        },
    ]
    response = send(client, ingest_key, events)
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == 5
    by_id = {row.event_id: row for row in rows(stream)}
    assert by_id["c1"].type == "signup_clicked"
    assert by_id["c1"].payload == {"plan": "pro", "page": "/"}
    assert by_id["f1"].payload["form_id"] == "contact"
    assert by_id["f2"].payload["form_id"] == "/go"
    assert by_id["o1"].payload == {"url": "https://other.example/", "page": "/"}
    # Only the known measurements, as numbers in range: the rest is dropped, not stored.
    assert by_id["p1"].payload == {"ttfb": 120, "dom_content_loaded": 450.5, "cls": 0.0123, "page": "/pricing"}
    assert len({row.anonymous_id for row in by_id.values()}) == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"", 400, "empty_body"),
        (b"{not json", 400, "invalid_json"),
        (b"[]", 400, "invalid_payload"),
        (orjson.dumps([page_view(event_id=f"e{i}") for i in range(21)]), 400, "invalid_payload"),
        (orjson.dumps({"type": "page_view", "props": ["a"]}), 400, "all_events_rejected"),
        (orjson.dumps({"type": "bad\ttype"}), 400, "all_events_rejected"),
        (orjson.dumps("page_view"), 400, "all_events_rejected"),
    ],
)
def test_bad_bodies_are_a_clear_400_and_write_nothing(client, stream, ingest_key, body, status, code):
    response = send(client, ingest_key, body)
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert not rows(stream)


def test_keys_origins_and_streams(client, stream, ingest_key):
    assert send(client, "ef_ingest_nonsense", page_view()).status_code == 401
    secret = api_key_create(kind=ApiKeyKind.SECRET, streams=[stream]).raw_key
    assert send(client, secret, page_view()).status_code == 403
    stream_update(stream=stream, allowed_origins=["https://shop.example.com"])
    stream_cache_clear()
    refused = send(client, ingest_key, page_view(), HTTP_ORIGIN="https://copycat.example")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "origin_not_allowed")
    assert send(client, ingest_key, page_view(), HTTP_ORIGIN="https://shop.example.com").status_code == 202
    # A key of two streams names its stream in the URL.
    blog = stream_create(slug="blog", name="Blog")
    both = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream, blog]).raw_key
    assert send(client, both, page_view("/x")).json()["error"]["code"] == "stream_required"
    assert send(client, both, page_view("/x"), prefix="/s/blog").status_code == 202
    assert InboxEvent.objects.filter(stream=blog).count() == 1
    preflight = client.options(f"/k/{ingest_key}/tracker", HTTP_ORIGIN="https://shop.example.com")
    assert preflight.status_code == 204
    assert "POST" in preflight["Access-Control-Allow-Methods"]


def test_a_warm_request_costs_no_query_for_the_salt(client, stream, ingest_key):
    """The visitor's salt is read once per process and day: a tracker event costs what a Plausible event costs."""
    send(client, ingest_key, page_view("/warm"))
    client.post(f"/k/{ingest_key}/api/event", b'{"name":"pageview","url":"https://s.example/w"}', "text/plain")
    with CaptureQueriesContext(connection) as tracked:
        assert send(client, ingest_key, page_view("/one")).status_code == 202
    with CaptureQueriesContext(connection) as plausible:
        answer = client.post(
            f"/k/{ingest_key}/api/event", b'{"name":"pageview","url":"https://s.example/p"}', "text/plain"
        )
        assert answer.status_code == 202
    assert len(tracked) == len(plausible)
    assert not [q for q in tracked.captured_queries if "visitor_salt" in q["sql"]]


@pytest.mark.django_db(transaction=True)
def test_processing_fills_the_country_browser_and_session_of_the_log_and_rollups(client, stream, ingest_key):
    send(client, ingest_key, page_view("/a?utm_source=news"))
    send(client, ingest_key, page_view("/b", event_id="pv-b"), ip=US_IP)
    stream_drain(stream_id=stream.pk)
    logged = {entry.payload["page"]: entry for entry in LogEntry.objects.filter(stream=stream)}
    assert logged["/a"].context["country"] == "GB"
    assert logged["/a"].enrichment["browser"] == "Chrome"
    assert logged["/a"].enrichment["referrer_host"] == "news.example.org"
    assert logged["/a"].enrichment["utm"] == {"utm_source": "news"}
    assert logged["/a"].session_id and logged["/a"].session_id != logged["/b"].session_id
    countries = dict(HourDimension.objects.filter(stream=stream, dimension="country").values_list("value", "count"))
    assert countries == {"GB": 1, "US": 1}


# --- countries -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "country"),
    [
        (US_IP, "US"),
        (GB_IP, "GB"),
        ("::ffff:8.8.8.8", "US"),
        ("2a00:1450:4001::1", "IE"),
        ("127.0.0.1", None),
        ("10.1.2.3", None),
        ("192.168.0.1", None),
        ("2001:db8::1", None),
        ("not an address", None),
        ("::ffff:nonsense", None),
        ("", None),
        (None, None),
    ],
)
def test_country_of(ip, country):
    assert country_of(ip) == country


def test_the_country_lookup_costs_about_a_microsecond():
    addresses = [f"{a}.{b}.{(a * b) % 256}.{b}" for a in range(1, 224, 3) for b in range(0, 256, 2)]
    started = time.perf_counter()
    for address in addresses:
        country_of(address)
    per_lookup = (time.perf_counter() - started) / len(addresses)
    print(f"country_of: {per_lookup * 1e6:.2f} µs a lookup over {len(addresses)} addresses")
    # Generous for a shared machine; measured 0.2-0.4 µs.
    assert per_lookup < 20e-6
