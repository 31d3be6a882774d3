"""Django admin for streams, schemas and keys: scoped by the access rule, saved through the services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from eventflow.models import AuditEntry
from streams.log import LogRecord, log_append_now
from streams.models import ApiKey, EventSchema, Stream
from streams.services import stream_create, team_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(db: Any) -> Stream:
    return stream_create(slug="shop", name="Shop", with_starter_schemas=True)


@pytest.fixture
def foreign(db: Any) -> Stream:
    return stream_create(slug="foreign", name="Foreign")


@pytest.fixture
def developer(shop: Stream) -> Client:
    user = User.objects.create_user("dev", password="a-long-password-1", is_staff=True)
    user.groups.add(Group.objects.get(name="Developer"))
    team_create(slug="shop-team", members=[user], streams=[shop])
    client = Client()
    client.force_login(user)
    return client


def test_lists_hold_only_the_streams_and_keys_you_reach(developer, shop, foreign):
    page = developer.get("/admin/streams/stream/").content.decode()
    assert f"/admin/streams/stream/{shop.pk}/change/" in page
    assert f"/admin/streams/stream/{foreign.pk}/change/" not in page
    # Another team's stream is "not found" to the admin as well.
    response = developer.get(f"/admin/streams/stream/{foreign.pk}/change/")
    assert response.status_code == 302 and response.url == "/admin/"


def test_a_key_created_in_admin_is_shown_once_and_works(developer, shop, foreign, client):
    response = developer.post(
        "/admin/streams/apikey/add/",
        {"name": "web", "kind": "ingest", "streams": [shop.pk]},
        follow=True,
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    raw = next(m for m in shown if "ef_ingest_" in m).split()[4]
    key = ApiKey.objects.get(name="web")
    assert raw.startswith(key.prefix)
    assert key.created_by is not None and key.created_by.username == "dev"
    sent = client.post(
        "/api/v1/streams/shop/events", {"type": "login"}, content_type="application/json", HTTP_X_API_KEY=raw
    )
    assert sent.status_code == 202
    assert AuditEntry.objects.filter(action="key.create").exists()


def test_a_key_cannot_be_granted_a_stream_you_do_not_manage(developer, shop, foreign):
    response = developer.post("/admin/streams/apikey/add/", {"name": "x", "kind": "ingest", "streams": [foreign.pk]})
    assert response.status_code == 200 and response.context["adminform"].form.errors
    assert not ApiKey.objects.filter(name="x").exists()


def test_archiving_in_admin_stops_the_intake_at_once(developer, shop, client):
    from streams.services import api_key_create

    raw = api_key_create(kind="ingest", streams=[shop]).raw_key
    send = lambda: client.post(  # noqa: E731
        "/api/v1/streams/shop/events", {"type": "login"}, content_type="application/json", HTTP_X_API_KEY=raw
    )
    assert send().status_code == 202
    developer.post("/admin/streams/stream/", {"action": "archive", "_selected_action": [shop.pk]})
    assert Stream.objects.get(pk=shop.pk).archived_at is not None
    assert send().status_code == 409


def test_changing_a_stream_in_admin_validates_like_the_api(developer, shop):
    url = f"/admin/streams/stream/{shop.pk}/change/"
    form = {
        "name": "Shop",
        "description": "",
        "schema_mode": "enforce",
        "retention_days": 0,
        "anonymize_ip": "on",
        # The schema versions' inline (read-only) still sends its management form.
        "schemas-TOTAL_FORMS": "5",
        "schemas-INITIAL_FORMS": "5",
        **{
            f"schemas-{i}-id": s.pk
            for i, s in enumerate(EventSchema.objects.filter(stream=shop).order_by("event_type", "-version"))
        },
        **{f"schemas-{i}-stream": shop.pk for i in range(5)},
    }
    bad = developer.post(url, form)
    assert bad.status_code == 200 and "retention_days" in bad.context["adminform"].form.errors
    good = developer.post(url, {**form, "retention_days": 14})
    assert good.status_code == 302
    assert Stream.objects.get(pk=shop.pk).retention_days == 14


def test_a_schema_version_that_would_reject_logged_events_needs_force(developer, shop):
    base = datetime(2026, 11, 21, tzinfo=UTC)
    log_append_now(
        stream_id=shop.pk,
        records=[
            LogRecord(event_id=f"e{i}", type="login", event_time=base + timedelta(seconds=i), received_at=base)
            for i in range(4)
        ],
    )
    form = {"stream": shop.pk, "event_type": "login", "schema": '{"type": "object", "required": ["mfa"]}'}
    refused = developer.post("/admin/streams/eventschema/add/", form)
    assert refused.status_code == 200 and "would have rejected 4" in refused.content.decode()
    assert EventSchema.objects.filter(stream=shop, event_type="login").count() == 1
    saved = developer.post("/admin/streams/eventschema/add/", {**form, "force": "on"})
    assert saved.status_code == 302
    assert EventSchema.objects.filter(stream=shop, event_type="login").count() == 2
    assert AuditEntry.objects.filter(action="schema.register").exists()
