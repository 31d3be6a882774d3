"""Review of the dashboard's consumer, webhook, Kafka and stream pages: what a person hit, page by page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone

from consumers.kafka_services import kafka_sink_create
from consumers.models import ConsumerGroup, KafkaSink, WebhookSubscription
from consumers.selectors import Position
from consumers.services import consumer_group_create
from consumers.webhook_services import webhook_create
from streams.dead_letters import DeadLetterIn, dead_letters_record
from streams.models import DeadLetterStage, Stream
from streams.services import stream_create
from tests.fixtures import conf_override

from .conftest import append

pytestmark = [pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _loopback(settings: Any) -> None:
    conf_override(settings, webhook_allow_loopback=True)


@pytest.fixture
def shop(db: Any) -> Stream:
    return stream_create(slug="shop", name="Shop")


@pytest.fixture
def admin(client: Client, django_user_model: Any) -> Client:
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def confirmation(client: Client, url: str) -> dict[str, str]:
    """What the confirmation page's form sends (its hidden fields; the test client skips the CSRF check)."""
    html = client.get(url).content.decode()
    forms = re.findall(r'<form method="post"(?! action)[^>]*>(.*?)</form>', html, re.S)
    assert len(forms) == 1, forms
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', forms[0]))
    fields.pop("csrfmiddlewaretoken", None)
    return fields


def said(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- a confirmation sent twice (a double click, a reload) must not undo itself --------------------


def test_archiving_a_stream_twice_from_its_confirmation_leaves_it_archived(shop: Stream, admin: Client) -> None:
    form = confirmation(admin, "/streams/shop/archive/")
    assert admin.post("/streams/shop/archive/", form).status_code == 302
    again = admin.post("/streams/shop/archive/", form)
    assert again.status_code == 302
    shop.refresh_from_db()
    assert shop.archived_at is not None
    assert not any("takes events again" in m for m in said(again))


def test_disabling_a_webhook_twice_from_its_confirmation_leaves_it_disabled(shop: Stream, admin: Client) -> None:
    hook = webhook_create(stream_id=shop.pk, url="http://127.0.0.1:9/x").webhook
    url = f"/streams/shop/webhooks/{hook.pk}/enable/"
    form = confirmation(admin, url)
    admin.post(url, form)
    again = admin.post(url, form)
    hook.refresh_from_db()
    assert not hook.is_active
    assert not any("Webhook enabled" in m for m in said(again))


def test_stopping_a_kafka_sink_twice_from_its_confirmation_leaves_it_stopped(shop: Stream, admin: Client) -> None:
    sink = kafka_sink_create(
        stream_id=shop.pk, topic="t", key="user_id", start=Position(kind="earliest"), bootstrap_servers="kafka:9092"
    )
    url = f"/streams/shop/kafka/sinks/{sink.pk}/toggle/"
    form = confirmation(admin, url)
    admin.post(url, form)
    again = admin.post(url, form)
    sink = KafkaSink.objects.get(pk=sink.pk)
    assert not sink.is_active
    assert not any("started again" in m for m in said(again))


# --- the groups page's dead letter count links to those letters ---------------------------------


def test_a_groups_dead_letter_count_links_to_that_groups_letters_only(shop: Stream, admin: Client) -> None:
    append(shop, 4)
    for name in ("g", "h"):
        consumer_group_create(stream_id=shop.pk, name=name, start=Position(kind="earliest"))
    groups = {g.name: g.pk for g in ConsumerGroup.objects.filter(stream=shop)}
    letters = [
        DeadLetterIn(
            stream_id=shop.pk,
            event_id=f"{name}-{offset}",
            event={"offset": offset},
            stage=DeadLetterStage.CONSUME,
            error_class="MaxDeliver",
            group_id=groups[name],
            subscriber=name,
            log_offset=offset,
        )
        for name, offset in (("g", 0), ("h", 1), ("h", 2))
    ]
    dead_letters_record(letters=letters, now=timezone.now())
    page = admin.get("/streams/shop/groups/").content.decode()
    link = re.search(r'<a class="badge badge-danger" href="([^"]+group=g)">1</a>', page)
    assert link, page
    listed = admin.get(link.group(1).replace("&amp;", "&")).content.decode()
    assert "g-0" in listed
    assert "h-1" not in listed and "h-2" not in listed


# --- editing a webhook keeps what was not touched -------------------------------------------------


def test_editing_a_webhooks_description_keeps_an_event_type_holding_a_comma(shop: Stream, admin: Client) -> None:
    # The API takes any printable type, commas included; the page shows them comma-separated.
    hook = webhook_create(stream_id=shop.pk, url="http://127.0.0.1:9/x", event_types=["checkout, step 2"]).webhook
    url = f"/streams/shop/webhooks/{hook.pk}/edit/"
    html = admin.get(url).content.decode()
    shown = re.search(r'name="event_types" value="([^"]*)"', html)
    assert shown and shown.group(1) == "checkout, step 2"
    saved = admin.post(
        url, {"url": hook.url, "event_types": shown.group(1), "description": "the shop's checkout", "batch_size": 500}
    )
    assert saved.status_code == 302
    hook = WebhookSubscription.objects.get(pk=hook.pk)
    assert hook.description == "the shop's checkout"
    assert hook.event_types == ["checkout, step 2"]


def test_a_webhook_of_as_many_long_types_as_the_api_takes_is_saved_from_its_edit_page(
    shop: Stream, admin: Client
) -> None:
    # The API takes 100 types of up to 200 characters; the page took 50 types in 5,000 characters,
    # so such a webhook could not be saved at all, whatever was changed.
    types = [f"{i:03d}" + "t" * 197 for i in range(100)]
    hook = webhook_create(stream_id=shop.pk, url="http://127.0.0.1:9/x", event_types=types).webhook
    url = f"/streams/shop/webhooks/{hook.pk}/edit/"
    shown = re.search(r'name="event_types" value="([^"]*)"', admin.get(url).content.decode())
    assert shown is not None
    saved = admin.post(
        url, {"url": hook.url, "event_types": shown.group(1), "description": "all of them", "batch_size": 500}
    )
    assert saved.status_code == 302
    hook = WebhookSubscription.objects.get(pk=hook.pk)
    assert (hook.description, hook.event_types) == ("all of them", types)
    too_many = admin.post(url, {"url": hook.url, "event_types": shown.group(1) + ", one more", "batch_size": 500})
    assert too_many.status_code == 200 and "At most 100 types." in too_many.content.decode()
