"""Management commands: create_stream and create_api_key."""

from __future__ import annotations

import hashlib
import io
import re

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from streams.models import ApiKey, EventSchema, SchemaMode, Stream, StreamHead
from streams.schemas import STARTER_TYPES
from tests.intake import post_event
from tests.subprocesses import manage

pytestmark = pytest.mark.django_db

KEY_LINE = re.compile(r"ef_(ingest|secret)_[A-Za-z0-9_-]{43,}\n\Z")


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_create_stream_makes_the_stream_and_its_log_head():
    assert run("create_stream", "orders") == "orders\n"

    stream = Stream.objects.get(slug="orders")
    assert (stream.name, stream.schema_mode, stream.anonymize_ip) == ("orders", SchemaMode.WARN, True)
    assert StreamHead.objects.get(stream=stream).next_offset == 0
    assert not EventSchema.objects.filter(stream=stream).exists()


def test_create_stream_options():
    run(
        "create_stream",
        "app",
        "--name",
        "Mobile app",
        "--schema-mode",
        "enforce",
        "--retention-days",
        "7",
        "--keep-ip",
        "--starter-schemas",
    )
    stream = Stream.objects.get(slug="app")
    assert (stream.name, stream.schema_mode, stream.retention_days, stream.anonymize_ip) == (
        "Mobile app",
        SchemaMode.ENFORCE,
        7,
        False,
    )
    assert sorted(EventSchema.objects.filter(stream=stream).values_list("event_type", flat=True)) == sorted(
        STARTER_TYPES
    )


def test_create_stream_refuses_an_existing_slug(stream):
    with pytest.raises(CommandError, match="already exists"):
        run("create_stream", stream.slug)
    assert Stream.objects.filter(slug=stream.slug).count() == 1


def test_create_api_key_prints_the_key_alone_and_stores_only_its_hash(api, stream):
    out = run("create_api_key", "--stream", stream.slug, "--kind", "ingest", "--name", "web")

    assert KEY_LINE.match(out), out
    raw = out.strip()
    key = ApiKey.objects.get(hashed_key=hashlib.sha256(raw.encode()).hexdigest())
    assert (key.kind, key.name, key.expires_at) == ("ingest", "web", None)
    assert list(key.streams.values_list("slug", flat=True)) == [stream.slug]
    assert post_event(api, stream.slug, {"type": "logout"}, key=raw).status_code == 202


def test_create_api_key_for_several_streams_with_expiry():
    run("create_stream", "a")
    run("create_stream", "b")

    raw = run("create_api_key", "--stream", "a", "--stream", "b", "--kind", "secret", "--expires-in-days", "3").strip()

    key = ApiKey.objects.get(hashed_key=hashlib.sha256(raw.encode()).hexdigest())
    assert raw.startswith("ef_secret_") and key.kind == "secret"
    assert sorted(key.streams.values_list("slug", flat=True)) == ["a", "b"]
    assert key.expires_at is not None
    assert abs((key.expires_at - timezone.now()).total_seconds() - 3 * 86400) < 60


def test_create_api_key_refuses_an_unknown_stream(stream):
    with pytest.raises(CommandError, match="No such stream: nope"):
        run("create_api_key", "--stream", stream.slug, "--stream", "nope", "--kind", "ingest")
    assert ApiKey.objects.count() == 0


def test_create_api_key_refuses_an_unknown_kind(stream):
    with pytest.raises(CommandError):
        run("create_api_key", "--stream", stream.slug, "--kind", "admin")
    assert ApiKey.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_commands_as_real_processes(api):
    created = manage("create_stream", "cli-stream", "--starter-schemas")
    assert created.returncode == 0, created.stderr
    assert created.stdout == "cli-stream\n"

    issued = manage("create_api_key", "--stream", "cli-stream", "--kind", "ingest")
    assert issued.returncode == 0, issued.stderr
    assert KEY_LINE.match(issued.stdout), issued.stdout

    raw = issued.stdout.strip()
    assert ApiKey.objects.filter(hashed_key=hashlib.sha256(raw.encode()).hexdigest()).exists()
    assert post_event(api, "cli-stream", {"type": "logout", "payload": {"user_id": "u"}}, key=raw).status_code == 202

    refused = manage("create_api_key", "--stream", "missing", "--kind", "ingest")
    assert refused.returncode != 0
    assert refused.stdout == ""
    assert "No such stream" in refused.stderr
