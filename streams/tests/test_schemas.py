"""The five starter schemas, and registering schema versions."""

from __future__ import annotations

from typing import Any

import pytest

from eventflow.errors import Invalid
from streams.models import EventSchema
from streams.schemas import STARTER_TYPES, compiled_validator, starter_schemas, validation_errors
from streams.services import api_key_create, schema_register, stream_create
from tests.intake import post_batch

REALISTIC: dict[str, list[dict[str, Any]]] = {
    "login": [
        {"user_id": "u456", "ip": "203.0.113.7", "device": "iPhone 15"},
        {"user_id": "alice@example.com"},
    ],
    "logout": [
        {"user_id": "u456", "duration": 1834.5, "ip": "2001:db8::1"},
        {"user_id": "u456", "duration": 0},
    ],
    "page_view": [
        {"page": "/dashboard", "referrer": "/login", "user_id": "u456", "device": "desktop"},
        {"page": "/", "referrer": None},
    ],
    "button_click": [
        {"button_id": "checkout", "page": "/cart", "user_id": "u456"},
        {"button_id": "nav-menu"},
    ],
    "form_submit": [
        {"form_id": "signup", "fields": ["email", "password"], "user_id": "u456"},
        {"form_id": "survey", "fields": {"score": 9, "comment": "fine"}},
    ],
}

BAD: dict[str, list[dict[str, Any]]] = {
    "login": [{}, {"user_id": ""}, {"user_id": 456}, {"user_id": "u", "ip": "x" * 65}],
    "logout": [{"duration": 3}, {"user_id": "u", "duration": -1}, {"user_id": "u", "duration": "long"}],
    "page_view": [{}, {"page": ""}, {"page": "/", "referrer": 5}, {"page": "/" * 2049}],
    "button_click": [{}, {"button_id": ""}, {"button_id": ["a"]}, {"button_id": "b", "page": 1}],
    "form_submit": [{}, {"form_id": "f", "fields": "email"}, {"form_id": "f", "fields": [1, 2]}],
}


def _validate(event_type: str, payload: dict[str, Any]) -> list[dict[str, str]]:
    validator = compiled_validator(0, starter_schemas()[event_type])
    return validation_errors(validator, payload)


def test_there_are_five_starter_schemas():
    assert set(starter_schemas()) == set(STARTER_TYPES) == set(REALISTIC) == set(BAD)


@pytest.mark.parametrize(
    ("event_type", "payload"), [(t, p) for t, payloads in REALISTIC.items() for p in payloads], ids=str
)
def test_starter_schemas_accept_realistic_events(event_type, payload):
    assert _validate(event_type, payload) == []


@pytest.mark.parametrize(("event_type", "payload"), [(t, p) for t, payloads in BAD.items() for p in payloads], ids=str)
def test_starter_schemas_reject_bad_events(event_type, payload):
    errors = _validate(event_type, payload)
    assert errors
    assert all(e["code"] == "schema" and e["field"].startswith("payload") and e["message"] for e in errors)


@pytest.mark.django_db
def test_registering_adds_versions_and_keeps_the_old_ones():
    stream = stream_create(slug="s", with_starter_schemas=True)
    assert set(EventSchema.objects.filter(stream=stream).values_list("event_type", "version")) == {
        (t, 1) for t in STARTER_TYPES
    }

    second = schema_register(stream=stream, event_type="login", schema={"type": "object"})

    assert second.version == 2
    assert list(
        EventSchema.objects.filter(stream=stream, event_type="login")
        .order_by("version")
        .values_list("version", flat=True)
    ) == [1, 2]


@pytest.mark.django_db
@pytest.mark.parametrize("schema", [{"type": "no-such-type"}, {"required": "user_id"}, ["not", "an", "object"]])
def test_registering_an_invalid_schema_is_refused(schema):
    stream = stream_create(slug="s")
    with pytest.raises(Invalid):
        schema_register(stream=stream, event_type="login", schema=schema)
    assert not EventSchema.objects.exists()


@pytest.mark.django_db
def test_an_enforcing_stream_takes_realistic_starter_events_and_refuses_bad_ones(api, enforcing_stream):
    key = api_key_create(kind="ingest", streams=[enforcing_stream]).raw_key
    good = [{"type": t, "payload": p} for t, payloads in REALISTIC.items() for p in payloads]
    bad = [{"type": t, "payload": p} for t, payloads in BAD.items() for p in payloads]

    accepted = post_batch(api, enforcing_stream.slug, good, key=key)
    refused = post_batch(api, enforcing_stream.slug, bad, key=key)

    assert accepted.status_code == 202, accepted.content
    assert accepted.json()["accepted"] == len(good)
    assert refused.status_code == 422, refused.content
    assert refused.json()["error"]["details"]["rejected"] == len(bad)
