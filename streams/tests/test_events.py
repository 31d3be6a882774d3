"""The event's fields are named once (streams/events.py); the places that write them out keep to them."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import orjson
import pytest
from django.contrib.auth.models import User

from analytics.query import CSV_COLUMNS, EVENT_FIELDS
from consumers.services import _RECORD_JSON
from consumers.tests.conftest import append
from ingestion import envelope
from ingestion.compat.mapping import envelope as compat_envelope
from ingestion.envelope import CheckedEvent
from ingestion.pipeline import InboxRow
from ingestion.services import _row as intake_row
from streams.events import CSV_FIELDS, ENVELOPE_FIELDS, ID_FIELDS, JSON_FIELDS, LOGGED_FIELDS


def test_the_query_api_and_exports_name_the_logged_fields():
    assert EVENT_FIELDS == LOGGED_FIELDS
    assert set(CSV_COLUMNS) == set(LOGGED_FIELDS) - {"logged_at", "flags"} == set(CSV_FIELDS)
    assert set(JSON_FIELDS) < set(LOGGED_FIELDS) and set(ID_FIELDS) < set(LOGGED_FIELDS)


def test_a_consumer_record_is_a_logged_event_with_its_delivery_count():
    keys = re.findall(r"'([a-z_]+)',", _RECORD_JSON)
    assert keys == [name for name in LOGGED_FIELDS if name != "logged_at"] + ["delivery_count"]


def test_the_intake_refuses_what_is_not_an_envelope_field():
    assert envelope.ENVELOPE_FIELDS is ENVELOPE_FIELDS
    assert {"event_id", "type", "timestamp", "payload", "context", *ID_FIELDS} == ENVELOPE_FIELDS


def test_a_dead_letter_keeps_the_envelope_with_its_times_and_flags():
    now = datetime(2026, 11, 30, tzinfo=UTC)
    row = InboxRow(1, "e1", "login", now, now, "u", "a", "s", {}, {}, {}, 0)
    sent = set(row.as_event()) - {"event_time", "received_at", "flags"}
    assert sent == ENVELOPE_FIELDS - {"timestamp"}


def test_the_intake_writes_the_envelope_with_its_time_and_flags():
    now = datetime(2026, 11, 30, tzinfo=UTC)
    checked = CheckedEvent("e1", "login", now, "u", "a", "s", {}, {})
    written = set(orjson.loads(intake_row(checked))) - {"event_time", "flags"}
    assert written == ENVELOPE_FIELDS - {"timestamp"}


def test_the_compatible_formats_build_envelopes_of_its_fields():
    built = compat_envelope(type="x", user_id="u", payload={}, context=None)
    assert set(built) <= ENVELOPE_FIELDS


@pytest.mark.django_db
def test_the_query_api_answers_with_the_logged_fields(client, stream):
    append(stream, 1)
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    events = client.get(f"/api/v1/streams/{stream.slug}/events").json()["results"]
    assert list(events[0]) == list(LOGGED_FIELDS)
