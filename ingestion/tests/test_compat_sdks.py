"""The real SDKs, unchanged, pointed at a live EventFlow by their host setting.

Each SDK sends through ``LosingProxy``, which loses EventFlow's answer to the
first request (503 after the events were committed): the SDK retries the same
messages, and every message must still arrive exactly once. The Node SDKs are
installed from the npm registry at pinned versions into a cache directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingestion.models import InboxEvent
from streams.models import ApiKeyKind, Stream
from streams.services import api_key_create, stream_create

from .compat_proxy import LosingProxy

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

NPM_PACKAGES = {"@segment/analytics-node": "3.1.0", "posthog-node": "5.70.0"}
NPM_CACHE = Path(os.environ.get("EVENTFLOW_NPM_CACHE", Path.home() / ".cache" / "eventflow-test-npm"))
NETWORK_ERRORS = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT", "ECONNRESET", "ENETUNREACH")


@pytest.fixture
def sdk_stream(transactional_db: Any) -> tuple[Stream, str]:
    stream = stream_create(slug="sdk", name="SDK")
    return stream, api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key


@pytest.fixture
def losing_proxy(live_server: Any) -> Iterator[LosingProxy]:
    proxy = LosingProxy(live_server.url, failures=1)
    yield proxy
    proxy.close()


def arrived(stream: Stream) -> list[InboxEvent]:
    return list(InboxEvent.objects.filter(stream=stream).order_by("id"))


def assert_once_after_a_retry(proxy: LosingProxy, rows: list[InboxEvent], expected: int) -> None:
    posts = [seen for seen in proxy.seen if seen.method in ("POST", "GET")]
    assert posts[0].status == 503, "the first answer was lost"
    assert len(posts) >= 2, "the SDK retried"
    # The retry carried events that were already committed: still one row each.
    assert len(rows) == expected, [(row.type, row.event_id) for row in rows]
    assert len({row.event_id for row in rows}) == expected


# --- Python SDKs ---------------------------------------------------------------------------------


def test_segment_analytics_python(sdk_stream, losing_proxy):
    from segment.analytics import Client

    stream, key = sdk_stream
    client = Client(write_key=key, host=losing_proxy.url, gzip=True, max_retries=3)
    client.track("u1", "Order Completed", {"total": 12.5}, message_id="seg-track")
    client.identify("u1", {"plan": "pro"}, message_id="seg-identify")
    client.page("u1", "Docs", "Install", {"path": "/docs"}, message_id="seg-page")
    client.screen("u1", "App", "Home", message_id="seg-screen")
    client.group("u1", "g1", {"size": 3}, message_id="seg-group")
    client.alias("a1", "u1", message_id="seg-alias")
    client.flush()
    client.join()

    rows = arrived(stream)
    assert_once_after_a_retry(losing_proxy, rows, 6)
    assert all(seen.headers.get("content-encoding") == "gzip" for seen in losing_proxy.seen)
    types = {row.event_id: row.type for row in rows}
    assert types == {
        "seg-track": "Order Completed",
        "seg-identify": "identify",
        "seg-page": "page_view",
        "seg-screen": "screen_view",
        "seg-group": "group",
        "seg-alias": "alias",
    }
    by_id = {row.event_id: row for row in rows}
    assert by_id["seg-track"].payload == {"total": 12.5} and by_id["seg-track"].user_id == "u1"
    assert by_id["seg-identify"].payload == {"traits": {"plan": "pro"}}
    assert by_id["seg-page"].payload == {"path": "/docs", "name": "Install", "category": "Docs"}
    assert by_id["seg-group"].payload == {"group_id": "g1", "traits": {"size": 3}}
    assert by_id["seg-alias"].payload == {"previous_id": "a1"}
    assert by_id["seg-track"].context["library"]["name"] == "analytics-python"


def test_rudder_sdk_python_gzips_by_default(sdk_stream, losing_proxy):
    from rudderstack.analytics import Client

    stream, key = sdk_stream
    client = Client(write_key=key, host=losing_proxy.url, max_retries=3)
    client.track(user_id="u1", event="Order Completed", properties={"total": 3}, message_id="rs-track")
    client.identify(user_id="u1", traits={"plan": "pro"}, message_id="rs-identify")
    client.page(user_id="u1", name="Home", properties={"path": "/"}, message_id="rs-page")
    client.screen(user_id="u1", name="Main", message_id="rs-screen")
    client.group(user_id="u1", group_id="g1", traits={"size": 1}, message_id="rs-group")
    client.alias(previous_id="a1", user_id="u1", message_id="rs-alias")
    client.flush()
    client.join()

    rows = arrived(stream)
    assert_once_after_a_retry(losing_proxy, rows, 6)
    assert losing_proxy.seen[0].headers.get("content-encoding") == "gzip"
    assert losing_proxy.seen[0].headers.get("authorization", "").startswith("Basic ")
    assert sorted(row.type for row in rows) == sorted(
        ["Order Completed", "identify", "page_view", "screen_view", "group", "alias"]
    )


def test_posthog_python(sdk_stream, losing_proxy):
    from posthog import Posthog

    stream, key = sdk_stream
    client = Posthog(key, host=losing_proxy.url, gzip=True, flush_interval=60, max_retries=3)
    client.capture("Order Completed", distinct_id="d1", properties={"total": 4}, uuid=_uuid(1))
    client.capture("$pageview", distinct_id="d1", properties={"$current_url": "https://x.example/"}, uuid=_uuid(2))
    client.set(distinct_id="d1", properties={"email": "d1@example.com"}, uuid=_uuid(3))
    client.alias("d0", "d1", uuid=_uuid(4))
    client.group_identify("company", "c1", {"name": "Acme"}, uuid=_uuid(5))
    client.flush()
    client.shutdown()

    rows = arrived(stream)
    assert_once_after_a_retry(losing_proxy, rows, 5)
    assert losing_proxy.seen[0].path == "/batch/"
    assert losing_proxy.seen[0].headers.get("content-encoding") == "gzip"
    by_id = {row.event_id: row for row in rows}
    assert by_id[_uuid(1)].type == "Order Completed" and by_id[_uuid(1)].user_id == "d1"
    assert by_id[_uuid(1)].payload["total"] == 4
    assert by_id[_uuid(2)].type == "page_view"
    assert by_id[_uuid(2)].context["page"]["url"] == "https://x.example/"
    assert by_id[_uuid(3)].type == "identify" and by_id[_uuid(3)].payload["traits"] == {"email": "d1@example.com"}
    assert by_id[_uuid(4)].type == "alias"
    assert by_id[_uuid(5)].type == "group"


def _uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def test_mixpanel_python(sdk_stream, losing_proxy):
    from mixpanel import Consumer, Mixpanel

    stream, key = sdk_stream
    consumer = Consumer(
        events_url=f"{losing_proxy.url}/track", people_url=f"{losing_proxy.url}/engage", retry_backoff_factor=0.01
    )
    # The client mounts its retrying adapter for https:// only; the test server speaks plain HTTP, so the
    # same adapter is mounted for it, as a production installation behind TLS would have it.
    consumer._session.mount("http://", consumer._session.get_adapter("https://"))
    client = Mixpanel(key, consumer=consumer)
    client.track("u1", "Order Completed", {"total": 5})
    client.track("u1", "Signed Up")
    client.people_set("u1", {"$email": "u1@example.com"})

    rows = arrived(stream)
    assert_once_after_a_retry(losing_proxy, rows, 3)
    assert sorted(row.type for row in rows) == ["Order Completed", "Signed Up", "identify"]
    profile = next(row for row in rows if row.type == "identify")
    assert profile.user_id == "u1" and profile.payload == {"traits": {"$email": "u1@example.com"}}


def test_snowplow_python_tracker_post_and_get(sdk_stream, live_server):
    from snowplow_tracker import Emitter, PageView, SelfDescribing, SelfDescribingJson, StructuredEvent, Tracker

    stream, key = sdk_stream
    proxy = LosingProxy(live_server.url, failures=1)
    try:
        endpoint = f"{proxy.url}/s/sdk/k/{key}"
        post = Emitter(endpoint, method="post", batch_size=3)
        tracker = Tracker(namespace="test", emitters=post, app_id="shop")
        tracker.track(PageView(page_url="https://x.example/", page_title="Home"))
        tracker.track(StructuredEvent(category="shop", action="add-to-basket", value=2))
        tracker.track(SelfDescribing(SelfDescribingJson("iglu:com.acme/checkout/jsonschema/1-0-0", {"total": 9})))
        tracker.flush()
        # The tracker retries a lost answer from a timer of its own, about a second later.
        deadline = time.monotonic() + 20
        while len([seen for seen in proxy.seen if seen.method == "POST"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        get = Emitter(endpoint, method="get", batch_size=1)
        Tracker(namespace="pixel", emitters=get).track(PageView(page_url="https://x.example/b"))
        get.flush()
    finally:
        proxy.close()

    rows = arrived(stream)
    posted = [seen for seen in proxy.seen if seen.method == "POST"]
    assert posted[0].status == 503 and len(posted) >= 2
    assert len(rows) == 4 and len({row.event_id for row in rows}) == 4
    types = sorted(row.type for row in rows)
    assert types == ["add-to-basket", "checkout", "page_view", "page_view"]
    checkout = next(row for row in rows if row.type == "checkout")
    assert checkout.payload == {"total": 9}
    assert checkout.context["schema"] == "iglu:com.acme/checkout/jsonschema/1-0-0"


# --- Node SDKs -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The pinned Node SDKs, installed once from the npm registry into a cache directory."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed")
    prefix = NPM_CACHE / "-".join(f"{name.replace('/', '+')}@{version}" for name, version in NPM_PACKAGES.items())
    installed = all(
        (prefix / "node_modules" / name / "package.json").exists()
        and json.loads((prefix / "node_modules" / name / "package.json").read_text())["version"] == version
        for name, version in NPM_PACKAGES.items()
    )
    if not installed:
        prefix.mkdir(parents=True, exist_ok=True)
        specs = [f"{name}@{version}" for name, version in NPM_PACKAGES.items()]
        done = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--no-save", *specs],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode != 0:
            if any(code in done.stderr for code in NETWORK_ERRORS):
                pytest.skip(f"the npm registry is unreachable: {done.stderr.strip()[-300:]}")
            raise AssertionError(f"npm install failed:\n{done.stderr}")
    return prefix / "node_modules"


def run_node(node_modules: Path, script: str, **env: str) -> None:
    done = subprocess.run(
        ["node", "-e", script],
        env={**os.environ, "NODE_PATH": str(node_modules), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"node failed:\n{done.stdout}\n{done.stderr}"


SEGMENT_NODE = """
const { Analytics } = require('@segment/analytics-node');
const analytics = new Analytics({ writeKey: process.env.KEY, host: process.env.HOST, flushInterval: 50 });
analytics.on('error', (err) => console.error('sdk error', err));
analytics.track({ userId: 'n1', event: 'Order Completed', properties: { total: 7 }, messageId: 'sn-track' });
analytics.identify({ userId: 'n1', traits: { plan: 'pro' }, messageId: 'sn-identify' });
analytics.page({ userId: 'n1', name: 'Home', properties: { path: '/' }, messageId: 'sn-page' });
analytics.screen({ userId: 'n1', name: 'Main', messageId: 'sn-screen' });
analytics.group({ userId: 'n1', groupId: 'g1', traits: { size: 2 }, messageId: 'sn-group' });
analytics.alias({ userId: 'n1', previousId: 'a1', messageId: 'sn-alias' });
analytics.closeAndFlush({ timeout: 60000 }).then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
"""

POSTHOG_NODE = """
const { PostHog } = require('posthog-node');
const client = new PostHog(process.env.KEY, { host: process.env.HOST, flushAt: 10, flushInterval: 0, fetchRetryDelay: 100 });
client.on('error', (err) => console.error('sdk error', err));
client.capture({ distinctId: 'n1', event: 'Order Completed', properties: { total: 8 }, uuid: '00000000-0000-4000-8000-000000000011' });
client.capture({ distinctId: 'n1', event: '$pageview', properties: { $current_url: 'https://x.example/' }, uuid: '00000000-0000-4000-8000-000000000012' });
client.identify({ distinctId: 'n1', properties: { email: 'n1@example.com' } });
client.alias({ distinctId: 'n1', alias: 'a1' });
client.groupIdentify({ groupType: 'company', groupKey: 'c1', properties: { name: 'Acme' } });
client.shutdown(60000).then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
"""


def test_segment_analytics_node(sdk_stream, losing_proxy, node_modules):
    stream, key = sdk_stream
    run_node(node_modules, SEGMENT_NODE, KEY=key, HOST=losing_proxy.url)

    rows = arrived(stream)
    assert_once_after_a_retry(losing_proxy, rows, 6)
    assert {row.event_id: row.type for row in rows} == {
        "sn-track": "Order Completed",
        "sn-identify": "identify",
        "sn-page": "page_view",
        "sn-screen": "screen_view",
        "sn-group": "group",
        "sn-alias": "alias",
    }


def test_posthog_node_gzips(sdk_stream, losing_proxy, node_modules):
    stream, key = sdk_stream
    run_node(node_modules, POSTHOG_NODE, KEY=key, HOST=losing_proxy.url)

    rows = arrived(stream)
    assert_once_after_a_retry(losing_proxy, rows, 5)
    assert losing_proxy.seen[0].headers.get("content-encoding") == "gzip"
    types = sorted(row.type for row in rows)
    assert types == sorted(["Order Completed", "page_view", "identify", "alias", "group"])
