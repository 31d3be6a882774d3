"""The dashboard's pages of events, analytics, schemas, consumer groups and webhooks, through the test client.

Events go through the real intake and processor (so the rollups and processing
figures the pages chart are the ones the API reads); each test checks what the
page shows against what it sent. Who may open each page is walked in
test_pages_access.py (tests/page_matrix.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from consumers.models import ConsumerGroup
from consumers.selectors import Position
from consumers.services import consumer_group_create
from consumers.webhook_services import webhook_create
from ingestion.pipeline import stream_process_batch
from ingestion.services import events_ingest
from streams.log import LogRecord, log_append_now
from streams.models import EventSchema, Stream
from streams.selectors import stream_info
from streams.services import schema_version_add, stream_create, team_create
from tests.fixtures import conf_override

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashes")]

PASSWORD = "a-long-password-1"


@pytest.fixture(autouse=True)
def _local_webhooks(settings: Any) -> None:
    conf_override(settings, webhook_allow_loopback=True)


def person(username: str, role: str) -> User:
    user = User.objects.create_user(username, email=f"{username}@example.com", password=PASSWORD)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def shop(db: Any) -> Stream:
    return stream_create(slug="shop", name="Shop", with_starter_schemas=True)


@pytest.fixture
def people(shop: Stream) -> dict[str, User]:
    found = {role: person(role.lower(), role) for role in ("Admin", "Developer", "Analyst", "Operator")}
    team_create(slug="growth", members=list(found.values()), streams=[shop])
    return found


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def analyst(people: dict[str, User]) -> Client:
    return signed_in(people["Analyst"])


@pytest.fixture
def developer(people: dict[str, User]) -> Client:
    return signed_in(people["Developer"])


def send(shop: Stream, events: list[dict[str, Any]]) -> None:
    """Through the intake's service and the processor: rollups and processing figures written as in production."""
    info = stream_info(shop.slug)
    assert info is not None
    # Received a moment ago: the processor takes rows due by the database's now(), the test transaction's start.
    received = timezone.now() - timedelta(seconds=30)
    for start in range(0, len(events), 500):
        events_ingest(stream=info, raw_events=events[start : start + 500], received_at=received)
    while stream_process_batch(stream_id=shop.pk).fetched:
        pass


def event(i: int, type: str = "page_view", *, at: datetime | None = None, **payload: Any) -> dict[str, Any]:
    return {
        "event_id": f"ev-{type}-{i}",
        "type": type,
        "timestamp": (at or timezone.now()).isoformat(),
        "user_id": f"u{i % 5}",
        "session_id": f"s{i % 5}",
        "payload": payload or {"page": f"/p{i % 3}"},
    }


def chart_data(html: str, chart_id: str) -> dict[str, Any]:
    found = re.search(rf'<script id="{chart_id}" type="application/json">(.*?)</script>', html, re.S)
    assert found, f"no data block {chart_id}"
    return orjson.loads(found.group(1))  # type: ignore[no-any-return]


# --- charts --------------------------------------------------------------------------------------


def test_uplot_is_vendored_with_its_licence_and_pinned(client: Client) -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "static" / "vendor" / "uplot"
    assert (root / "uPlot-1.6.32.iife.min.js").stat().st_size > 40_000
    assert "MIT License" in (root / "LICENSE").read_text()
    assert "sha256" in (root / "SOURCE").read_text()


def test_the_overview_counts_accepted_and_logged_and_charts_the_day(people: dict[str, User], shop: Stream) -> None:
    send(shop, [event(i) for i in range(7)])
    html = signed_in(people["Admin"]).get("/").content.decode()
    data = chart_data(html, "chart-24h")
    assert [s["label"] for s in data["series"]] == ["accepted", "logged"]
    assert len(data["x"]) == 24
    assert sum(data["series"][0]["values"]) == 7 and sum(data["series"][1]["values"]) == 7
    assert re.search(r'id="accepted-1h">7<', html) and re.search(r'id="logged-1h">7<', html)
    assert "Worker" in html and "Consumer lag" in html
    # Charts are data, not code: no inline script runs.
    assert '<script id="spark-shop" type="application/json">' in html
    assert not re.search(r"<script(?![^>]*(src=|application/json))", html)


def test_the_overview_shows_lag_and_webhook_health(people: dict[str, User], shop: Stream) -> None:
    send(shop, [event(i) for i in range(3)])
    consumer_group_create(stream_id=shop.pk, name="billing", start=Position("earliest"))
    hook = webhook_create(stream_id=shop.pk, url="http://127.0.0.1:9/hook").webhook
    type(hook).objects.filter(pk=hook.pk).update(is_active=False)
    html = signed_in(people["Admin"]).get("/").content.decode()
    assert "Consumer lag 3" in html
    assert "1 disabled" in html


def test_a_stream_page_charts_events_per_minute_by_type_and_top_types(analyst: Client, shop: Stream) -> None:
    send(shop, [event(i) for i in range(5)] + [event(i, "login") for i in range(2)])
    html = analyst.get("/streams/shop/").content.decode()
    data = chart_data(html, "chart-per-minute")
    totals = {s["label"]: sum(s["values"]) for s in data["series"]}
    assert totals == {"page_view": 5, "login": 2}
    assert data["interval"] == "minute" and len(data["x"]) == 60
    top = re.search(r'id="top-types">(.*?)</table>', html, re.S)
    assert top and top.group(1).index("page_view") < top.group(1).index("login")


# --- the explorer and one event ------------------------------------------------------------------


def test_the_explorer_filters_by_type_and_payload_property(analyst: Client, shop: Stream) -> None:
    send(shop, [event(i, plan="pro" if i % 2 else "free") for i in range(6)] + [event(9, "login", plan="pro")])
    html = analyst.get("/streams/shop/events/", {"type": "page_view", "p": "plan", "op": "eq", "v": "pro"}).content
    rows = re.findall(r"ev-page_view-(\d+)", html.decode())
    assert sorted(set(rows)) == ["1", "3", "5"]
    assert "ev-login-9" not in html.decode()
    # The export link carries the same question to the export endpoint.
    assert "/api/v1/streams/shop/events/export?format=csv&amp;type=page_view&amp;payload.plan=pro" in html.decode()


def test_the_explorer_ops_and_a_bad_filter_is_said_on_the_page(analyst: Client, shop: Stream) -> None:
    send(shop, [event(0, coupon="x"), event(1)])
    html = analyst.get("/streams/shop/events/", {"p": "payload.coupon", "op": "exists"}).content.decode()
    assert "ev-page_view-0" in html and "ev-page_view-1" not in html
    response = analyst.get("/streams/shop/events/", {"from": "yesterday"})
    assert response.status_code == 200
    assert "e.g. 2026-11-21T09:00" in response.content.decode()
    assert analyst.get("/streams/shop/events/", {"cursor": "nonsense!"}).status_code == 200


def test_the_explorer_pages_by_cursor(analyst: Client, shop: Stream) -> None:
    now = timezone.now()
    log_append_now(
        stream_id=shop.pk,
        records=[LogRecord(event_id=f"e{i}", type="t", event_time=now, received_at=now) for i in range(60)],
    )
    first = analyst.get("/streams/shop/events/").content.decode()
    assert first.count('class="badge badge-accent">t<') == 50
    next_url = re.search(r'href="(\?[^"]*cursor=[^"]*)"[^>]*rel="next"', first)
    assert next_url
    second = analyst.get("/streams/shop/events/" + next_url.group(1).replace("&amp;", "&")).content.decode()
    assert second.count('class="badge badge-accent">t<') == 10


def test_an_event_page_shows_payload_enrichment_status_and_deliveries(analyst: Client, shop: Stream) -> None:
    send(shop, [{**event(1), "context": {"user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0"}}])
    html = analyst.get("/streams/shop/events/ev-page_view-1/").content.decode()
    assert "Logged at offset 0" in html
    assert "&quot;page&quot;: &quot;/p1&quot;" in html
    assert "Enrichment" in html and "Firefox" in html
    assert analyst.get("/streams/shop/events/no-such-event/").status_code == 404


# --- analytics -----------------------------------------------------------------------------------


def test_trends_chart_by_type_with_a_breakdown(analyst: Client, shop: Stream) -> None:
    send(shop, [event(i) for i in range(4)] + [event(i, "login") for i in range(3)])
    response = analyst.get("/streams/shop/analytics/", {"range": "24h", "dimension": "page"})
    html = response.content.decode()
    data = chart_data(html, "chart-events")
    assert {s["label"]: sum(s["values"]) for s in data["series"]} == {"page_view": 4, "login": 3}
    assert "7 events" in html
    table = re.search(r'id="breakdown">(.*?)</table>', html, re.S)
    assert table and "/p0" in table.group(1)
    typed = analyst.get("/streams/shop/analytics/", {"range": "24h", "type": "login"}).content.decode()
    assert {s["label"] for s in chart_data(typed, "chart-events")["series"]} == {"login"}


def breakdown_users(html: str) -> dict[str, str]:
    """The breakdown table's users cell of each value, as shown."""
    table = re.search(r'id="breakdown">(.*?)</table>', html, re.S)
    assert table
    rows = re.findall(
        r'<td class="cell-clip">(.*?)</td>\s*<td class="num">.*?</td><td class="num">(.*?)</td>', table.group(1), re.S
    )
    return {value: re.sub(r"<.*?>", "", users) for value, users in rows}


def test_trends_for_one_type_count_users_per_value_after_the_page(analyst: Client, shop: Stream) -> None:
    # Users per page among page views (user i % 5, page i % 3 of i < 7): /p0 has u0, u3 and u1, /p1 u1 and
    # u4, /p2 u2 and u0. The logins put u0, u1 and u2 on /p0 too: u2 must not count for page views there.
    send(shop, [event(i) for i in range(7)] + [event(i, "login", page="/p0") for i in range(10, 13)])
    query = {"range": "24h", "type": "page_view", "dimension": "page"}
    html = analyst.get("/streams/shop/analytics/", query).content.decode()
    # The page answers with events per value and leaves the log's count of users to its breakdown request.
    assert set(breakdown_users(html).values()) == {"…"}
    fetch = re.search(r'id="breakdown-card" hx-get="([^"]+)" hx-trigger="load"', html)
    assert fetch and fetch.group(1).startswith("/streams/shop/analytics/breakdown/?")
    card = analyst.get(fetch.group(1).replace("&amp;", "&"))
    assert card.status_code == 200
    fragment = card.content.decode()
    assert "hx-get" not in fragment and "<html" not in fragment
    assert breakdown_users(fragment) == {"/p0": "3", "/p1": "2", "/p2": "2"}
    # Without a type filter the sketches answer at once, on the page itself.
    whole = analyst.get("/streams/shop/analytics/", {"range": "24h", "dimension": "page"}).content.decode()
    assert 'hx-get="/streams/shop/analytics/breakdown/' not in whole
    assert breakdown_users(whole)["/p0"] == "4"


def test_trends_breakdown_refuses_a_bad_question(analyst: Client, shop: Stream) -> None:
    assert analyst.get("/streams/shop/analytics/breakdown/", {"dimension": "nope"}).status_code == 400
    shown = analyst.get("/streams/shop/analytics/breakdown/", {"dimension": "nope"}, headers={"HX-Request": "true"})
    assert shown.status_code == 200 and "Choose a dimension" in shown.content.decode()


def test_trends_refuse_a_bad_zone_on_the_page(analyst: Client, shop: Stream) -> None:
    response = analyst.get("/streams/shop/analytics/", {"tz": "Mars/Olympus"})
    assert response.status_code == 200 and "IANA" in response.content.decode()


def test_a_two_step_funnel(analyst: Client, shop: Stream) -> None:
    now = timezone.now() - timedelta(minutes=30)
    events = [event(i, "page_view", at=now) for i in range(4)]
    events += [event(i, "form_submit", at=now + timedelta(minutes=2)) for i in range(2)]
    send(shop, events)
    html = analyst.get(
        "/streams/shop/analytics/funnel/", {"step": ["page_view", "form_submit"], "window": "1d", "range": "24h"}
    ).content.decode()
    table = re.search(r'id="funnel-table">(.*?)</table>', html, re.S)
    assert table, html
    cells = re.findall(r'<td class="num">([^<]*)</td>', table.group(1))
    # four people entered (u0..u3); two of them submitted, two minutes later
    assert cells[0] == "4" and cells[6] == "2" and cells[7] == "50.0%" and cells[10] == "2 min"
    assert analyst.get("/streams/shop/analytics/funnel/", {"step": ["page_view"]}).status_code == 200


def test_retention_grid_and_paths_tree(analyst: Client, shop: Stream) -> None:
    now = timezone.now() - timedelta(hours=1)
    send(
        shop,
        [event(i, at=now) for i in range(3)] + [event(i, "login", at=now + timedelta(minutes=1)) for i in range(3)],
    )
    html = analyst.get("/streams/shop/analytics/retention/", {"period": "day", "periods": "3"}).content.decode()
    assert 'id="retention"' in html and "100%" in html and 'class="cell h10"' in html
    html = analyst.get("/streams/shop/analytics/paths/", {"start": "page_view", "range": "24h"}).content.decode()
    assert 'id="paths"' in html and "login" in html


def test_processing_page_charts_throughput_and_latency(analyst: Client, shop: Stream) -> None:
    send(shop, [event(i) for i in range(5)])
    html = analyst.get("/streams/shop/analytics/processing/").content.decode()
    data = chart_data(html, "chart-throughput")
    assert data["unit"] == "events/s" and any(v for v in data["series"][1]["values"])


def test_alerts_page_lists_rules(analyst: Client, shop: Stream) -> None:
    from analytics.alerts import alert_rule_create

    alert_rule_create(stream_id=shop.pk, name="many logins", event_types=["login"], threshold=5, window_seconds=300)
    html = analyst.get("/streams/shop/alerts/").content.decode()
    assert "many logins" in html and "5 within 5 min" in html


# --- schemas ------------------------------------------------------------------------------------


def test_schema_versions_diff_and_try_an_event(developer: Client, shop: Stream) -> None:
    schema = {"type": "object", "required": ["method"], "properties": {"method": {"type": "string"}}}
    schema_version_add(stream=shop, event_type="login", schema=schema)
    html = developer.get("/streams/shop/schemas/login/").content.decode()
    assert 'class="add">+' in html and "method" in html
    tried = developer.post("/streams/shop/schemas/login/try/", {"payload": '{"method": 3}'}).content.decode()
    assert "1 problem" in tried
    tried = developer.post("/streams/shop/schemas/login/try/", {"payload": '{"method": "sso"}'}).content.decode()
    assert "Valid" in tried
    bad = developer.post("/streams/shop/schemas/login/try/", {"payload": "{not json"})
    assert bad.status_code == 200 and "Not valid JSON" in bad.content.decode()


def test_a_new_version_is_dry_run_and_saved_anyway_only_when_asked(developer: Client, shop: Stream) -> None:
    send(shop, [{**event(i, "login"), "payload": {"method": "password"}} for i in range(3)])
    strict = orjson.dumps({"type": "object", "required": ["sso"]}).decode()
    versions = EventSchema.objects.filter(stream=shop, event_type="login").count()
    checked = developer.post("/streams/shop/schemas/login/new/", {"schema": strict, "action": "check"})
    assert "3 would be rejected" in checked.content.decode()
    refused = developer.post("/streams/shop/schemas/login/new/", {"schema": strict, "action": "save"})
    assert "Save anyway" in refused.content.decode()
    assert EventSchema.objects.filter(stream=shop, event_type="login").count() == versions
    saved = developer.post("/streams/shop/schemas/login/new/", {"schema": strict, "action": "save", "force": "on"})
    assert saved.status_code == 302
    assert EventSchema.objects.filter(stream=shop, event_type="login").count() == versions + 1
    broken = developer.post("/streams/shop/schemas/login/new/", {"schema": "[1,", "action": "check"})
    assert "Not valid JSON" in broken.content.decode()
    invalid = developer.post("/streams/shop/schemas/login/new/", {"schema": '{"type": 5}', "action": "save"})
    assert "not a valid JSON Schema" in invalid.content.decode()


def test_a_new_event_type_from_the_registry(developer: Client, shop: Stream) -> None:
    response = developer.get("/streams/shop/schemas/", {"event_type": "checkout"})
    assert response.status_code == 302 and response["Location"] == "/streams/shop/schemas/checkout/new/"
    schema = orjson.dumps({"type": "object"}).decode()
    assert (
        developer.post("/streams/shop/schemas/checkout/new/", {"schema": schema, "action": "save"}).status_code == 302
    )
    assert EventSchema.objects.filter(stream=shop, event_type="checkout", version=1).exists()


# --- consumer groups and webhooks -------------------------------------------------------------------


def test_groups_seek_pause_resume_after_confirming(developer: Client, shop: Stream) -> None:
    send(shop, [event(i) for i in range(4)])
    consumer_group_create(stream_id=shop.pk, name="billing", start=Position("earliest"))
    html = developer.get("/streams/shop/groups/").content.decode()
    assert "billing" in html and 'badge badge-warn">4<' in html
    assert developer.get("/streams/shop/groups/billing/seek/").status_code == 200
    assert ConsumerGroup.objects.get(name="billing").committed_offset == 0
    assert developer.post("/streams/shop/groups/billing/seek/", {"to": "latest"}).status_code == 302
    assert ConsumerGroup.objects.get(name="billing").committed_offset == 4
    form = developer.post("/streams/shop/groups/billing/seek/", {"to": "offset"})
    assert "Give the offset" in form.content.decode()
    beyond = developer.post("/streams/shop/groups/billing/seek/", {"to": "offset", "offset": "99"})
    assert "beyond the head" in beyond.content.decode()
    developer.post("/streams/shop/groups/billing/pause/")
    assert ConsumerGroup.objects.get(name="billing").paused
    developer.post("/streams/shop/groups/billing/resume/")
    assert not ConsumerGroup.objects.get(name="billing").paused
    assert developer.get("/streams/shop/groups/nope/seek/").status_code == 404


def test_webhook_created_with_its_secret_once_then_edited_and_reenabled(developer: Client, shop: Stream) -> None:
    created = developer.post(
        "/streams/shop/webhooks/new/",
        {"url": "http://127.0.0.1:9/in", "event_types": "login, page_view", "batch_size": 100},
    )
    assert created.status_code == 200 and created["Cache-Control"] == "no-store"
    secret = re.search(r'id="webhook-secret">([^<]+)<', created.content.decode())
    assert secret
    hook = shop.webhooks.get()  # type: ignore[attr-defined]
    page = developer.get(f"/streams/shop/webhooks/{hook.pk}/").content.decode()
    assert secret.group(1) not in page and "login" in page
    edited = developer.post(
        f"/streams/shop/webhooks/{hook.pk}/edit/", {"url": "http://127.0.0.1:9/two", "event_types": "", "batch_size": 5}
    )
    assert edited.status_code == 302
    hook.refresh_from_db()
    assert hook.url.endswith("/two") and hook.event_types == [] and hook.batch_size == 5
    bad = developer.post(f"/streams/shop/webhooks/{hook.pk}/edit/", {"url": "not a url", "batch_size": 5})
    assert "Enter a valid URL" in bad.content.decode()
    developer.post(f"/streams/shop/webhooks/{hook.pk}/enable/")
    hook.refresh_from_db()
    assert not hook.is_active
    developer.post(f"/streams/shop/webhooks/{hook.pk}/enable/")
    hook.refresh_from_db()
    assert hook.is_active


def test_a_failed_test_event_is_said_and_logged(developer: Client, shop: Stream) -> None:
    hook = webhook_create(stream_id=shop.pk, url="http://127.0.0.1:9/nothing-listens").webhook
    response = developer.post(f"/streams/shop/webhooks/{hook.pk}/test/", follow=True)
    html = response.content.decode()
    assert "was not delivered" in html
    assert 'badge badge-accent">test<' in html


# --- query counts --------------------------------------------------------------------------------


LISTS = [
    "/",
    "/streams/shop/events/",
    "/streams/shop/groups/",
    "/streams/shop/webhooks/",
    "/streams/shop/schemas/",
    "/streams/shop/alerts/",
]


def _count(client: Client, path: str, django_assert_num_queries: Any) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert client.get(path).status_code == 200
    return len(captured)


@pytest.mark.parametrize("path", LISTS)
def test_list_pages_cost_the_same_queries_for_few_and_many_rows(
    people: dict[str, User], shop: Stream, path: str, django_assert_num_queries: Any
) -> None:
    client = signed_in(people["Admin"])

    def more(n: int, start: int) -> None:
        for i in range(start, start + n):
            other = stream_create(slug=f"more-{i}", name=f"More {i}")
            other.teams.add(*shop.teams.all())
            consumer_group_create(stream_id=shop.pk, name=f"g{i}", start=Position("earliest"))
            consumer_group_create(stream_id=other.pk, name=f"g{i}", start=Position("earliest"))
            webhook_create(stream_id=shop.pk, url=f"http://127.0.0.1:9/{i}")
            webhook_create(stream_id=other.pk, url=f"http://127.0.0.1:9/{i}")
            schema_version_add(stream=shop, event_type=f"type-{i}", schema={"type": "object"})
        send(shop, [event(i + start * 100, f"kind-{i % 3}", plan="pro") for i in range(n * 3)])

    more(2, 0)
    client.get(path)  # caches warmed (stream info, content types)
    few = _count(client, path, django_assert_num_queries)
    more(4, 10)
    client.get(path)
    many = _count(client, path, django_assert_num_queries)
    assert few == many, f"{path}: {few} queries with few rows, {many} with more"
    with django_assert_num_queries(few):
        client.get(path)


def test_a_day_of_utc_buckets(analyst: Client, shop: Stream) -> None:
    at = datetime(2026, 1, 5, 12, tzinfo=UTC)
    send(shop, [event(i, at=at) for i in range(3)])
    html = analyst.get(
        "/streams/shop/analytics/", {"range": "custom", "from": "2026-01-05T00:00", "to": "2026-01-06T00:00"}
    ).content.decode()
    data = chart_data(html, "chart-events")
    assert data["interval"] == "hour" and len(data["x"]) == 24
    assert data["series"][0]["values"][12] == 3
