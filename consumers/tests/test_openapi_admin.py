"""The API documents the consumer endpoints; admin shows groups, subscriptions and attempts."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from consumers.models import ConsumerGroup, WebhookSubscription
from consumers.selectors import Position
from consumers.services import consumer_group_create
from consumers.webhook_services import webhook_create, webhook_disable
from streams.models import Stream
from tests.fixtures import conf_override

from .conftest import append

pytestmark = pytest.mark.django_db

GROUP = "/api/v1/streams/{slug}/consumer-groups/{group}"


@pytest.fixture
def schema(client: Any) -> dict[str, Any]:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return dict(response.json())


def _ref(content: dict[str, Any]) -> str:
    return str(content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1])


@pytest.mark.parametrize(
    ("path", "method", "ok", "errors"),
    [
        (f"{GROUP}/poll", "post", "200", ("400", "401", "404")),
        (f"{GROUP}/commit", "post", "200", ("400", "401", "404", "409", "422")),
        (f"{GROUP}/seek", "post", "200", ("400", "404", "422")),
        ("/api/v1/streams/{slug}/consumer-groups", "post", "201", ("400", "401", "409")),
        ("/api/v1/streams/{slug}/webhooks", "post", "201", ("400", "401", "404")),
        ("/api/v1/streams/{slug}/webhooks/{webhook_id}/test", "post", "200", ("401", "404")),
    ],
)
def test_consumer_endpoints_are_documented(schema, path, method, ok, errors):
    operation = schema["paths"][path][method]
    assert operation["responses"][ok]["content"]
    for status in errors:
        assert _ref(operation["responses"][status]["content"]) == "Error", status
    assert operation["summary"]


def test_poll_documents_records_and_lease(schema):
    components = schema["components"]["schemas"]
    poll = schema["paths"][f"{GROUP}/poll"]["post"]
    body = components[_ref(poll["requestBody"]["content"])]["properties"]
    assert {"max", "lease_seconds", "wait_ms"} <= set(body)
    assert body["max"]["maximum"] == 1000 and body["wait_ms"]["maximum"] == 30000
    out = components[_ref(poll["responses"]["200"]["content"])]["properties"]
    assert {"records", "next_offset", "lease", "lag", "idle_reason"} <= set(out)


def test_admin_pages_and_re_enable_action(client, settings, stream):
    conf_override(settings, webhook_allow_loopback=True)
    admin = User.objects.create_superuser("root", password="a-long-password-1")
    client.force_login(admin)
    consumer_group_create(stream_id=stream.pk, name="billing", start=Position("earliest"))
    webhook = webhook_create(stream_id=stream.pk, url="http://127.0.0.1:9/hook").webhook
    webhook_disable(webhook=webhook, reason="Disabled after 50 failed deliveries in a row")
    for url in (
        "/admin/consumers/consumergroup/",
        f"/admin/consumers/consumergroup/{ConsumerGroup.objects.get(name='billing').pk}/change/",
        "/admin/consumers/webhooksubscription/",
        f"/admin/consumers/webhooksubscription/{webhook.pk}/change/",
        "/admin/consumers/deliveryattempt/",
    ):
        assert client.get(url).status_code == 200, url
    page = client.get("/admin/consumers/webhooksubscription/").content.decode()
    assert "Disabled after 50 failed deliveries" in page
    response = client.post(
        "/admin/consumers/webhooksubscription/",
        {"action": "enable", "_selected_action": [webhook.pk]},
        follow=True,
    )
    assert response.status_code == 200
    webhook.refresh_from_db()
    assert webhook.is_active and webhook.disabled_reason == "" and webhook.consecutive_failures == 0

    # Editing a group's policy writes the policy alone, never the position.
    group = ConsumerGroup.objects.get(name="billing")
    ConsumerGroup.objects.filter(pk=group.pk).update(committed_offset=0)
    stale_form = client.get(f"/admin/consumers/consumergroup/{group.pk}/change/")
    assert stale_form.status_code == 200
    append(stream, 3)
    ConsumerGroup.objects.filter(pk=group.pk).update(committed_offset=3)
    saved = client.post(
        f"/admin/consumers/consumergroup/{group.pk}/change/",
        {"max_deliver": 7, "on_max_deliver": "stop", "_save": "Save"},
    )
    assert saved.status_code == 302
    group.refresh_from_db()
    assert (group.max_deliver, group.on_max_deliver, group.committed_offset) == (7, "stop", 3)


def test_a_stream_goes_with_its_groups_and_subscriptions(settings, stream):
    conf_override(settings, webhook_allow_loopback=True)
    consumer_group_create(stream_id=stream.pk, name="billing", start=Position("earliest"))
    webhook_create(stream_id=stream.pk, url="http://127.0.0.1:9/hook")
    Stream.objects.filter(pk=stream.pk).delete()
    assert not ConsumerGroup.objects.exists() and not WebhookSubscription.objects.exists()
