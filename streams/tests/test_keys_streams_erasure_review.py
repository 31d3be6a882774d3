"""A hostile user's review of API keys, streams and erasure: each test failed before its fix."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest
from django.test import Client

from eventflow.audit import audit_flush
from eventflow.logs import RequestIdFilter
from eventflow.models import AuditEntry
from ingestion.models import InboxEvent
from streams.erasure import erasure_run, subject_hash
from streams.models import ApiKeyKind, Erasure, Stream
from streams.services import api_key_create
from streams.tests.people_fixtures import Api
from tests.intake import post_event

pytestmark = pytest.mark.django_db


def _forged(position: str) -> str:
    return base64.b64encode(f"p={position}".encode()).decode()


@pytest.mark.parametrize(
    ("path", "position"),
    [
        ("/api/v1/streams", "%00"),
        ("/api/v1/keys", "garbage"),
        ("/api/v1/keys", "%00"),
        ("/api/v1/streams/shop/erasures", "garbage"),
        ("/api/v1/streams/shop/erasures", "2026-01-01T00:00:00Z"),
    ],
)
def test_a_forged_cursor_position_is_a_400_not_a_500(admin_api: Api, path: str, position: str) -> None:
    admin_api.client.raise_request_exception = False

    response = admin_api.get(f"{path}?cursor={_forged(position)}")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_cursor"


def test_a_cursor_the_api_gave_out_still_pages(admin_api: Api, stream: Stream) -> None:
    for n in range(3):
        api_key_create(kind=ApiKeyKind.INGEST, streams=[stream], name=f"k{n}")

    first = admin_api.get("/api/v1/keys?limit=2").json()
    second = admin_api.get(first["next"].removeprefix("http://testserver")).json()

    assert [k["name"] for k in first["results"] + second["results"]] == ["k2", "k1", "k0"]


def test_an_erasure_over_the_api_erases_the_id_as_sent_not_a_trimmed_one(
    client: Client, admin_api: Api, stream: Stream
) -> None:
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key
    assert (
        post_event(client, "shop", {"event_id": "e1", "type": "logout", "user_id": " u1"}, key=key).status_code == 202
    )
    assert post_event(client, "shop", {"event_id": "e2", "type": "logout", "user_id": "u1"}, key=key).status_code == 202

    response = admin_api.post("/api/v1/streams/shop/erasures", {"user_id": " u1"})

    assert response.status_code == 202
    assert response.json()["subject_sha256"] == subject_hash(by="user_id", subject=" u1")
    erasure = Erasure.objects.get(pk=response.json()["id"])
    assert erasure.subject == " u1"
    erasure_run(erasure_id=erasure.pk)
    # " u1"'s event is gone from the inbox; "u1", another person, keeps theirs.
    assert list(InboxEvent.objects.filter(stream=stream).values_list("user_id", flat=True)) == ["u1"]


def test_a_key_sent_in_the_url_does_not_reach_the_audit_log(
    client: Client, stream: Stream, empty_audit_buffer: Any
) -> None:
    raw = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key
    secret = api_key_create(kind=ApiKeyKind.SECRET, streams=[stream]).raw_key

    client.post(f"/s/shop/k/{raw}/api/event", b"{}", content_type="application/json")
    client.post(f"/k/{secret}/com.snowplowanalytics.snowplow/tp2", b"{}", content_type="application/json")
    audit_flush()

    paths = list(AuditEntry.objects.filter(kind="request").values_list("path", flat=True))
    assert len(paths) == 2, paths
    for path in paths:
        assert raw not in path and secret not in path, path
        assert raw.removeprefix("ef_ingest_")[8:] not in path and secret.removeprefix("ef_secret_")[8:] not in path
    # The prefix stays, so a row still tells which key it was.
    assert any(raw[:18] in path for path in paths), paths


def test_a_key_in_a_logged_path_is_cut_to_its_prefix(stream: Stream) -> None:
    raw = api_key_create(kind=ApiKeyKind.SECRET, streams=[stream]).raw_key
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Not Found: %s", (f"/k/{raw}/i",), None)

    RequestIdFilter().filter(record)

    assert record.getMessage() == f"Not Found: /k/{raw[:18]}…/i"


@pytest.mark.parametrize(("page", "position"), [("/keys/", "garbage"), ("/keys/", "%00"), ("/streams/", "%00")])
def test_a_forged_cursor_on_a_dashboard_list_is_a_400_not_a_500(admin_api: Api, page: str, position: str) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(admin_api.user)

    response = client.get(f"{page}?cursor={_forged(position)}")

    assert response.status_code == 400


def test_answers_that_hold_a_secret_are_not_cached(admin_api: Api, stream: Stream) -> None:
    key = admin_api.post("/api/v1/keys", {"kind": "ingest", "streams": [stream.slug], "rate_limit_per_minute": 60})
    invited = admin_api.post("/api/v1/people", {"username": "ines", "email": "ines@example.com", "roles": ["Analyst"]})
    resent = admin_api.post("/api/v1/people/ines/invitation")

    assert key.status_code == 201 and key.json()["key"]
    assert key.json()["rate_limit_per_minute"] == 60
    for answer in (key, invited, resent):
        assert answer.status_code == 201, answer.content
        assert answer["Cache-Control"] == "no-store"


def test_a_key_s_own_rate_limit_is_at_least_one_everywhere(admin_api: Api, stream: Stream) -> None:
    from django.core.exceptions import ValidationError

    from eventflow.errors import Invalid
    from streams.models import ApiKey
    from streams.services import api_key_update

    answer = admin_api.post("/api/v1/keys", {"kind": "ingest", "streams": [stream.slug], "rate_limit_per_minute": 0})
    assert answer.status_code == 400
    with pytest.raises(Invalid):
        api_key_create(kind=ApiKeyKind.INGEST, streams=[stream], name="zero", rate_limit_per_minute=0)
    issued = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream], name="one", rate_limit_per_minute=1)
    with pytest.raises((Invalid, ValidationError)):
        api_key_update(api_key=issued.api_key, rate_limit_per_minute=0)
    # Django admin's form validates with the model's validators: 0 is an error there too.
    zero = ApiKey.objects.get(pk=issued.api_key.pk)
    zero.rate_limit_per_minute = 0
    with pytest.raises(ValidationError) as refused:
        zero.full_clean(exclude=["hashed_key", "prefix", "kind"])
    assert "rate_limit_per_minute" in refused.value.message_dict
    issued.api_key.refresh_from_db()
    assert issued.api_key.rate_limit_per_minute == 1
