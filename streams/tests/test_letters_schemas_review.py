"""Dead letters and the schema registry at their edges: remote references, NUL characters, replays."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.contrib.auth.models import User
from django.test import Client

from eventflow.models import AuditEntry
from ingestion.pipeline import stream_process_batch
from streams.dead_letters import DeadLetterIn, dead_letters_record, dead_letters_replay
from streams.models import (
    ApiKeyKind,
    DeadLetter,
    DeadLetterStage,
    DeadLetterStatus,
    EventSchema,
    LogEntry,
    SchemaMode,
    Stream,
)
from streams.services import api_key_create, schema_register, stream_create, stream_update
from streams.tests.people_fixtures import Api
from tests.fixtures import conf_override
from tests.intake import assert_api_error, post_batch

pytestmark = pytest.mark.django_db

SCHEMAS = "/api/v1/streams/shop/schemas"


class SchemaHost:
    """A real HTTP server that would hand out a schema to anyone who fetched it, and notes who did."""

    def __init__(self) -> None:
        self.fetched: list[str] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.fetched.append(self.path)
                body = b'{"type": "object"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def schema_host() -> Iterator[SchemaHost]:
    host = SchemaHost()
    thread = threading.Thread(target=host.server.serve_forever, daemon=True)
    thread.start()
    yield host
    host.server.shutdown()
    host.server.server_close()


def _versions(stream: Stream, event_type: str) -> list[int]:
    return list(EventSchema.objects.filter(stream=stream, event_type=event_type).values_list("version", flat=True))


@pytest.mark.parametrize(
    "schema",
    [
        '{"$ref": "HOST/payload.json"}',
        '{"type": "object", "properties": {"page": {"$ref": "HOST/page.json"}}}',
        '{"$id": "HOST/schemas/", "$ref": "payload.json"}',
        '{"$schema": "HOST/meta.json", "type": "object"}',
    ],
    ids=["ref", "nested-ref", "relative-ref", "meta-schema"],
)
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_schema_naming_a_remote_url_is_refused_and_never_fetched(admin_api, stream, schema_host, schema, dry_run):
    schema = orjson.loads(schema.replace("HOST", schema_host.url))
    before = _versions(stream, "login")

    response = admin_api.post(f"{SCHEMAS}/login", {"schema": schema, "dry_run": dry_run})

    assert_api_error(response, 400, "invalid_schema")
    assert schema_host.fetched == []
    assert _versions(stream, "login") == before


def test_a_schema_naming_a_local_file_is_refused_and_never_read(admin_api, stream, tmp_path: Path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"type": "object", "description": "read from the server\'s disk"}')

    response = admin_api.post(f"{SCHEMAS}/login", {"schema": {"$ref": secret.as_uri()}})

    assert_api_error(response, 400, "invalid_schema")
    assert _versions(stream, "login") == [1]


def test_a_schema_referring_to_itself_is_taken(admin_api, stream):
    tree = {
        "type": "object",
        "properties": {"children": {"type": "array", "items": {"$ref": "#"}}},
        "$defs": {"loop": {"$ref": "#/$defs/loop"}},
    }
    response = admin_api.post(f"{SCHEMAS}/tree", {"schema": tree})
    assert response.status_code == 201, response.content

    check = admin_api.post(f"{SCHEMAS}/tree/validate", {"payload": {"children": [{"children": [{"children": 1}]}]}})
    assert check.status_code == 200, check.content
    assert check.json()["valid"] is False


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", f"{SCHEMAS}/a%00b", 404, "schema_not_found"),
        ("get", f"{SCHEMAS}/a%00b/1", 404, "schema_not_found"),
        ("post", f"{SCHEMAS}/a%00b/validate", 404, "schema_not_found"),
        ("post", f"{SCHEMAS}/a%00b", 400, "invalid_event_type"),
    ],
)
def test_a_nul_in_the_event_type_of_a_schema_url_is_a_4xx(admin_api, stream, method, path, status, code):
    body = {"payload": {}} if path.endswith("validate") else {"schema": {"type": "object"}}
    response = admin_api.get(path) if method == "get" else admin_api.post(path, body)
    assert_api_error(response, status, code)
    assert not EventSchema.objects.filter(event_type__startswith="a").exists()


def test_a_schema_with_a_nul_typed_into_the_page_is_a_form_error(admin_api, stream):
    browser = Client()
    browser.force_login(admin_api.user)
    typed = '{"type": "object", "properties": {"page": {"description": "a\\u0000b"}}}'

    response = browser.post("/streams/shop/schemas/login/new/", {"schema": typed, "action": "save"})

    assert response.status_code == 200
    assert "NUL" in response.content.decode()
    assert _versions(stream, "login") == [1]


def test_the_api_refuses_a_nul_in_a_schema_as_before(admin_api: Api, stream):
    response = admin_api.post(f"{SCHEMAS}/login", {"schema": {"description": "a\u0000b"}})
    assert_api_error(response, 400, "invalid_request")


# Processing takes the inbox rows due by the database's clock: the events must have committed.
@pytest.fixture
def quarantined_letter(settings: Any, client: Client) -> DeadLetter:
    """A quarantine stream's event that broke its schema (button_id must be a string): now a dead letter."""
    conf_override(settings, max_attempts=1)
    strict = stream_create(slug="strict", name="Strict", schema_mode=SchemaMode.QUARANTINE, with_starter_schemas=True)
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[strict]).raw_key
    event = {"event_id": "bad", "type": "button_click", "payload": {"button_id": 42}}
    assert post_batch(client, "strict", [event], key=key).status_code == 202
    assert stream_process_batch(stream_id=strict.pk).dead_lettered == 1
    return DeadLetter.objects.get(stream=strict, event_id="bad")


@pytest.mark.django_db(transaction=True)
def test_a_letter_replayed_into_a_stream_that_now_enforces_its_schema_stays_out_of_the_log(quarantined_letter):
    strict = quarantined_letter.stream
    stream_update(stream=strict, schema_mode=SchemaMode.ENFORCE)

    assert dead_letters_replay(ids=[quarantined_letter.pk]).count == 1
    stream_process_batch(stream_id=strict.pk)

    assert not LogEntry.objects.filter(stream=strict, event_id="bad").exists()
    again = DeadLetter.objects.get(stream=strict, event_id="bad", status=DeadLetterStatus.OPEN)
    assert (again.stage, again.error_class) == (DeadLetterStage.VALIDATE, "SchemaViolation")


@pytest.mark.django_db(transaction=True)
def test_a_letter_replayed_after_its_schema_was_fixed_is_logged_once(quarantined_letter):
    strict = quarantined_letter.stream
    stream_update(stream=strict, schema_mode=SchemaMode.ENFORCE)
    schema_register(stream=strict, event_type="button_click", schema={"type": "object"})

    assert dead_letters_replay(ids=[quarantined_letter.pk]).count == 1
    assert dead_letters_replay(ids=[quarantined_letter.pk]).count == 0
    stream_process_batch(stream_id=strict.pk)

    assert LogEntry.objects.filter(stream=strict, event_id="bad").count() == 1
    assert not DeadLetter.objects.filter(stream=strict, status=DeadLetterStatus.OPEN).exists()


@pytest.mark.parametrize("typed", ["[1, 2]", '"checkout"', "42", "null"])
def test_trying_a_payload_that_is_not_an_object_on_the_page_is_never_valid(admin_api, stream, typed):
    schema_register(stream=stream, event_type="tagged", schema={"properties": {"page": {"type": "string"}}})
    browser = Client()
    browser.force_login(admin_api.user)

    page = browser.post("/streams/shop/schemas/tagged/try/", {"payload": typed}).content.decode()

    assert "<strong>Valid</strong>" not in page
    assert "An event&#x27;s payload is a JSON object" in page
    # The API's check refuses such a payload too.
    assert_api_error(
        admin_api.post(f"{SCHEMAS}/tagged/validate", {"payload": orjson.loads(typed)}), 400, "invalid_request"
    )


@pytest.fixture
def root_browser(db: Any) -> Client:
    browser = Client()
    browser.force_login(User.objects.create_superuser("root", password="a-long-password-1"))
    return browser


def _letter(stream: Stream, event_id: str) -> DeadLetter:
    dead_letters_record(
        letters=[
            DeadLetterIn(
                stream_id=stream.pk,
                event_id=event_id,
                event={"event_id": event_id, "type": "page_view", "payload": {"page": "/"}},
                stage=DeadLetterStage.VALIDATE,
                error_class="SchemaViolation",
                error_message="payload/page: 1 is not of type 'string'",
            )
        ]
    )
    return DeadLetter.objects.get(stream=stream, event_id=event_id)


def test_deleting_dead_letters_in_admin_leaves_a_security_event_per_stream(root_browser, stream, other_stream):
    one, two, three = _letter(stream, "a"), _letter(stream, "b"), _letter(other_stream, "c")

    selected = root_browser.post(
        "/admin/streams/deadletter/",
        {"action": "delete_selected", "_selected_action": [one.pk, two.pk, three.pk], "post": "yes"},
    )
    assert selected.status_code == 302, selected.content
    assert not DeadLetter.objects.exists()

    audited = AuditEntry.objects.filter(kind="security", action="dead_letter.delete").order_by("id")
    assert sorted((a.stream_id, tuple(a.details["ids"]), a.caller) for a in audited) == [
        (stream.pk, (one.pk, two.pk), "root"),
        (other_stream.pk, (three.pk,), "root"),
    ]


def test_deleting_one_dead_letter_in_admin_leaves_a_security_event(root_browser, stream):
    letter = _letter(stream, "a")

    response = root_browser.post(f"/admin/streams/deadletter/{letter.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302, response.content
    assert not DeadLetter.objects.exists()
    audited = AuditEntry.objects.get(kind="security", action="dead_letter.delete")
    assert (audited.stream_id, audited.target, audited.caller) == (stream.pk, f"dead_letter:{letter.pk}", "root")


def _nested_schema(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"inner": schema}}
    return schema


def test_a_schema_nested_too_deep_to_be_shown_is_refused_and_the_registry_stays_readable(admin_api, stream):
    # 253 levels of objects: the JSON parser and the schema compiler take them; orjson writes at most 254,
    # and every answer that shows a schema holds it in objects of its own.
    deep = _nested_schema(126)

    # The standard library writes what orjson won't.
    body = json.dumps({"schema": deep})
    response = admin_api.client.post(f"{SCHEMAS}/deep", body, content_type="application/json", **admin_api.headers)

    assert_api_error(response, 400, "invalid_schema")
    assert not EventSchema.objects.filter(event_type="deep").exists()
    listed = admin_api.get(SCHEMAS)
    assert listed.status_code == 200, listed.content


def test_a_deep_but_reasonable_schema_is_taken(admin_api, stream):
    response = admin_api.post(f"{SCHEMAS}/nested", {"schema": _nested_schema(40)})
    assert response.status_code == 201, response.content
    assert admin_api.get(f"{SCHEMAS}/nested").status_code == 200
