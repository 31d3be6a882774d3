"""Real answers of the API checked against the OpenAPI document drf-spectacular generates.

Each call is matched to its operation by the URL resolver's route and the
method; the answer's status must be one the operation documents, and its JSON
body must validate against the documented schema (``$ref``s resolved against
the document's components). Objects are checked strictly: a field the document
does not name is a failure, so the answer and its documentation can't drift.
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

import jsonschema_rs
import orjson
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import resolve
from django.utils import timezone
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator

from consumers.models import ConsumerGroup
from streams.dead_letters import DeadLetterIn, dead_letters_record
from streams.log import LogRecord, log_append_now
from streams.models import DeadLetterStage, SchemaMode
from streams.services import stream_update
from tests.fixtures import conf_override

from .access_matrix import OWN, World, world_build

pytestmark = pytest.mark.django_db


# --- OpenAPI 3.0 schemas as JSON Schema --------------------------------------------------------

_SCHEMA_MAPS = ("properties", "patternProperties", "$defs")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_ONE = ("items", "not", "additionalProperties", "contains")


def json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema object as JSON Schema 2020-12: ``nullable`` becomes null in the type.

    Objects that list their properties get ``additionalProperties: false``: an
    answer may not carry a field its documentation does not name.
    """
    if not isinstance(node, dict):
        return node
    out = dict(node)
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: json_schema(sub) for name, sub in out[key].items()}
    for key in _SCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [json_schema(sub) for sub in out[key]]
    for key in _SCHEMA_ONE:
        if isinstance(out.get(key), dict):
            out[key] = json_schema(out[key])
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if out.pop("nullable", False):
        if "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def _template(route: str) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


class Contract:
    """The generated document, and the check of one answer against it."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.components = {
            name: json_schema(schema) for name, schema in document.get("components", {}).get("schemas", {}).items()
        }
        self.checked: set[str] = set()

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        template = _template(resolve(path).route)
        operations = self.document["paths"].get(template)
        assert operations is not None, f"{template} is not in the OpenAPI document"
        operation = operations.get(method.lower())
        assert operation is not None, f"{method} {template} is not in the OpenAPI document"
        return template, operation

    def check(self, response: Any) -> Any:
        request = response.wsgi_request
        template, operation = self.operation(request.method, request.path)
        status = str(response.status_code)
        responses = operation["responses"]
        documented = responses.get(status) or responses.get("default")
        where = f"{request.method} {template} → {status}"
        assert documented is not None, f"{where}: not a documented status ({sorted(responses)})"
        self.checked.add(f"{operation['operationId']} {status}")
        content = documented.get("content")
        if not content:
            assert not response.content, f"{where}: documented without a body, answered {response.content[:200]!r}"
            return None
        media = content.get("application/json")
        assert media is not None, f"{where}: no application/json documented ({sorted(content)})"
        assert response["Content-Type"].startswith("application/json"), f"{where}: {response['Content-Type']}"
        body = orjson.loads(response.content)
        validator = jsonschema_rs.Draft202012Validator(
            {**json_schema(media["schema"]), "components": {"schemas": self.components}}, validate_formats=True
        )
        errors = [f"  at {list(e.instance_path)}: {e.message}" for e in validator.iter_errors(body)]
        assert not errors, f"{where}: the body does not match its documentation\n" + "\n".join(errors[:20])
        return body


class Api:
    """Django's test client speaking JSON as one caller; every answer is checked against the document."""

    def __init__(self, contract: Contract, headers: dict[str, str]) -> None:
        self.contract = contract
        self.client = Client()
        self.headers = headers

    def call(self, method: str, path: str, body: Any = None, *, status: int, **extra: Any) -> Any:
        data = b"" if body is None else orjson.dumps(body)
        response = self.client.generic(
            method, path, data=data, content_type="application/json", **{**self.headers, **extra}
        )
        assert response.status_code == status, f"{method} {path}: {response.status_code} {response.content[:500]!r}"
        return self.contract.check(response)

    def get(self, path: str, *, status: int = 200, **extra: Any) -> Any:
        return self.call("GET", path, status=status, **extra)

    def post(self, path: str, body: Any = None, *, status: int = 200, **extra: Any) -> Any:
        return self.call("POST", path, body, status=status, **extra)

    def patch(self, path: str, body: Any = None, *, status: int = 200) -> Any:
        return self.call("PATCH", path, body, status=status)

    def delete(self, path: str, *, status: int = 200) -> Any:
        return self.call("DELETE", path, status=status)


@pytest.fixture(scope="module")
def generated() -> tuple[dict[str, Any], list[str]]:
    """The document, and what drf-spectacular warned of while generating it."""
    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        document = SchemaGenerator().get_schema(request=None, public=True)
    warnings = sorted([*GENERATOR_STATS._warn_cache, *GENERATOR_STATS._error_cache])
    GENERATOR_STATS.reset()
    return document, warnings


@pytest.fixture(scope="module")
def contract(generated: tuple[dict[str, Any], list[str]]) -> Contract:
    return Contract(generated[0])


@pytest.fixture
def world(settings: Any) -> World:
    conf_override(settings, webhook_allow_loopback=True)
    return world_build()


@pytest.fixture
def as_(contract: Contract, world: World) -> Any:
    def caller(name: str) -> Api:
        return Api(contract, world.headers[name])

    return caller


S = "/api/v1/streams/own"


# --- the checker itself ------------------------------------------------------------------------


def test_the_checker_refuses_an_undocumented_field_a_wrong_type_and_a_missing_null(contract: Contract):
    schema = json_schema(
        {
            "type": "object",
            "properties": {"a": {"type": "string", "nullable": True}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        }
    )
    validator = jsonschema_rs.Draft202012Validator(schema)
    assert validator.is_valid({"a": None, "b": 1})
    assert not validator.is_valid({"a": None, "b": 1, "c": 2})
    assert not validator.is_valid({"a": "x", "b": "1"})
    assert not validator.is_valid({"b": 1})


def test_an_undocumented_operation_or_status_fails(contract: Contract, world: World):
    developer: dict[str, Any] = world.headers["Developer"]
    response = Client().put("/api/v1/me", **developer)
    assert response.status_code == 405
    with pytest.raises(AssertionError, match="not in the OpenAPI document"):
        contract.check(response)
    response = Client().get("/api/v1/me", HTTP_X_API_KEY="ef_secret_nonsense")
    assert response.status_code == 401
    contract.check(response)
    document = copy.deepcopy(contract.document)
    del document["paths"]["/api/v1/me"]["get"]["responses"]["401"]
    with pytest.raises(AssertionError, match="not a documented status"):
        Contract(document).check(response)


# --- streams, schemas, keys --------------------------------------------------------------------


def test_streams(as_: Any):
    dev = as_("Developer")
    page = dev.get("/api/v1/streams")
    assert [s["slug"] for s in page["results"]] == ["own"]
    dev.post("/api/v1/streams", {"slug": "fresh", "name": "Fresh", "schema_mode": "enforce"}, status=201)
    dev.get(S)
    dev.patch(S, {"name": "Renamed", "retention_days": 7, "anonymize_ip": False})
    assert dev.post(f"{S}/archive")["archived"] is True
    assert dev.post(f"{S}/unarchive")["archived"] is False
    dev.post("/api/v1/streams", {"slug": "own"}, status=409)
    dev.post("/api/v1/streams", {"slug": "x", "owner": "me"}, status=400)
    dev.patch(S, {"retention_days": 0}, status=400)
    as_("nobody").get("/api/v1/streams", status=401)
    as_("Analyst").patch(S, {"name": "no"}, status=403)
    dev.get("/api/v1/streams/foreign", status=404)
    dev.get("/api/v1/streams/no-such-stream", status=404)


def test_schemas(as_: Any):
    dev = as_("Developer")
    types = dev.get(f"{S}/schemas")
    assert [t["event_type"] for t in types] == ["login"]
    dev.get(f"{S}/schemas/login")
    dev.get(f"{S}/schemas/login/1")
    schema = {"type": "object", "required": ["method"], "properties": {"method": {"type": "string"}}}
    assert dev.post(f"{S}/schemas/login", {"schema": schema, "dry_run": True})["saved"] is False
    created = dev.post(f"{S}/schemas/login", {"schema": schema}, status=201)
    assert created["version"]["version"] == 2
    assert dev.post(f"{S}/schemas/login/validate", {"payload": {"method": 1}})["valid"] is False
    dev.post(f"{S}/schemas/login/validate", {}, status=400)
    dev.post(f"{S}/schemas/login", {"schema": {"type": "nonsense"}}, status=400)
    dev.get(f"{S}/schemas/checkout", status=404)
    dev.get(f"{S}/schemas/login/9", status=404)
    as_("Analyst").post(f"{S}/schemas/login", {"schema": schema}, status=403)


def test_keys(as_: Any, world: World):
    dev = as_("Developer")
    page = dev.get("/api/v1/keys")
    assert {k["name"] for k in page["results"]} == {"own ingest", "own secret"}
    created = dev.post("/api/v1/keys", {"name": "web", "kind": "ingest", "streams": ["own"]}, status=201)
    assert created["key"].startswith("ef_ingest_")
    key = f"/api/v1/keys/{created['id']}"
    assert "key" not in dev.get(key)
    dev.patch(key, {"rate_limit_per_minute": 100, "expires_at": None})
    assert dev.delete(key)["revoked"] is True
    dev.post("/api/v1/keys", {"name": "web", "kind": "ingest", "streams": ["foreign"]}, status=400)
    dev.post("/api/v1/keys", {"kind": "master", "streams": ["own"]}, status=400)
    dev.get(f"/api/v1/keys/{world.values['foreign']['key_id']}", status=404)
    as_("Analyst").post("/api/v1/keys", {"kind": "ingest", "streams": ["own"]}, status=403)
    as_("secret key").get("/api/v1/keys", status=403)
    as_("nobody").get("/api/v1/keys", status=401)


# --- consumer groups and webhooks --------------------------------------------------------------


def _log(world: World, n: int) -> None:
    now = timezone.now()
    records = [
        LogRecord(event_id=f"e{i}", type="page_view", event_time=now, received_at=now, payload={"page": f"/p/{i}"})
        for i in range(n)
    ]
    log_append_now(stream_id=world.streams[OWN].pk, records=records)


def test_consumer_groups(as_: Any, world: World):
    _log(world, 3)
    consumer = as_("secret key")
    groups = f"{S}/consumer-groups"
    page = consumer.get(groups)
    assert [g["name"] for g in page["results"]] == ["billing"]
    consumer.post(groups, {"name": "audit", "start": "latest"}, status=201)
    billing = ConsumerGroup.objects.get(stream=world.streams[OWN], name="billing")
    dead_letters_record(
        letters=[
            DeadLetterIn(
                stream_id=billing.stream_id,
                event_id="e0",
                event={"event_id": "e0", "type": "page_view"},
                stage=DeadLetterStage.CONSUME,
                group_id=billing.pk,
                subscriber="billing",
                log_offset=0,
                error_class="MaxDeliverExceeded",
            )
        ]
    )
    assert consumer.get(f"{groups}/billing")["dead_letters"][0]["event_id"] == "e0"
    polled = consumer.post(f"{groups}/billing/poll", {"max": 2})
    assert len(polled["records"]) == 2
    lease = polled["lease"]["id"]
    consumer.post(f"{groups}/billing/commit", {"lease_id": lease, "offset": polled["next_offset"]})
    consumer.post(f"{groups}/billing/commit", {"lease_id": str(uuid.uuid4()), "offset": 3}, status=409)
    consumer.post(f"{groups}/billing/commit", {"offset": 3}, status=400)
    assert consumer.post(f"{groups}/billing/poll")["records"][0]["offset"] == 2
    consumer.post(f"{groups}/billing/seek", {"to": "earliest"})
    consumer.post(f"{groups}/billing/seek", {"to": "offset", "offset": 99}, status=422)
    consumer.post(f"{groups}/billing/pause")
    assert consumer.post(f"{groups}/billing/poll")["idle_reason"] == "paused"
    consumer.post(f"{groups}/billing/resume")
    consumer.post(groups, {"name": "audit"}, status=409)
    consumer.delete(f"{groups}/audit", status=204)
    consumer.get(f"{groups}/audit", status=404)
    as_("Analyst").get(groups, status=403)
    as_("Developer").get("/api/v1/streams/foreign/consumer-groups", status=404)


def test_webhooks(as_: Any, world: World):
    dev = as_("Developer")
    hooks = f"{S}/webhooks"
    page = dev.get(hooks)
    assert len(page["results"]) == 1
    created = dev.post(hooks, {"url": "http://127.0.0.1:9/other", "event_types": ["login"]}, status=201)
    hook = f"{hooks}/{created['id']}"
    dev.get(hook)
    dev.patch(hook, {"description": "billing", "batch_size": 10})
    dev.post(f"{hook}/enable")
    assert dev.post(f"{hook}/test")["is_test"] is True
    deliveries = dev.get(f"{hook}/deliveries")
    assert len(deliveries["results"]) == 1
    dev.post(hooks, {"url": "ftp://example.com/x"}, status=400)
    dev.delete(hook, status=204)
    dev.get(hook, status=404)
    as_("secret key").post(hooks, {"url": "http://127.0.0.1:9/x"}, status=403)


# --- the event query ---------------------------------------------------------------------------


def test_event_query(as_: Any, world: World):
    _log(world, 3)
    analyst = as_("Analyst")
    page = analyst.get(f"{S}/events?limit=2&type=page_view")
    assert [e["event_id"] for e in page["results"]] == ["e2", "e1"]
    assert [e["event_id"] for e in analyst.get(page["next"])["results"]] == ["e0"]
    analyst.get(f"{S}/events?from=yesterday", status=400)
    analyst.get(f"{S}/events?segment=none", status=404)
    assert analyst.get(f"{S}/events/e0")["state"] == "logged"
    assert analyst.get(f"{S}/events/own-1")["state"] == "dead_letter"
    analyst.get(f"{S}/events/nope", status=404)
    analyst.get(f"{S}/events/export?format=xml", status=400)
    as_("secret key").get(f"{S}/events")
    as_("Operator").get(f"{S}/events", status=403)
    as_("nobody").get(f"{S}/events/e0", status=401)
    analyst.get("/api/v1/streams/foreign/events", status=404)


# --- intake and tokens -------------------------------------------------------------------------


def test_intake(as_: Any, world: World):
    producer = as_("ingest key")
    assert producer.post(f"{S}/events", {"type": "page_view", "payload": {"page": "/"}}, status=202)["status"] == (
        "accepted"
    )
    batch = producer.post(f"{S}/events/batch", {"events": [{"type": "page_view"}, {"type": "BAD\tTYPE"}]}, status=202)
    assert (batch["accepted"], batch["rejected"]) == (1, 1)
    producer.post(f"{S}/events", {"payload": {}}, status=400)
    producer.post(f"{S}/events/batch", {"events": []}, status=400)
    producer.call("POST", f"{S}/events", status=415, CONTENT_TYPE="text/plain")
    producer.post("/api/v1/streams/foreign/events", {"type": "page_view"}, status=404)
    as_("nobody").post(f"{S}/events", {"type": "page_view"}, status=401)
    as_("Developer").post(f"{S}/events", {"type": "page_view"}, status=401)
    stream_update(stream=world.streams[OWN], schema_mode=SchemaMode.ENFORCE)
    producer.post(f"{S}/events", {"type": "login", "payload": {"method": 5}}, status=422)
    as_("Developer").post(f"{S}/archive")
    producer.post(f"{S}/events", {"type": "page_view"}, status=409)


def test_tokens(contract: Contract, settings: Any):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    User.objects.create_user("ada", password="a-long-password-1")
    anyone = Api(contract, {})
    pair = anyone.post("/api/v1/auth/token", {"username": "ada", "password": "a-long-password-1"})
    anyone.post("/api/v1/auth/token/refresh", {"refresh": pair["refresh"]})
    anyone.post("/api/v1/auth/token", {"username": "ada", "password": "wrong"}, status=401)
    anyone.post("/api/v1/auth/token", {}, status=400)
    anyone.post("/api/v1/auth/token/refresh", {"refresh": "nonsense"}, status=401)


# --- teams, people, me -------------------------------------------------------------------------


def test_teams(as_: Any):
    admin = as_("Admin")
    page = admin.get("/api/v1/teams")
    assert {t["slug"] for t in page["results"]} == {"own-team", "foreign-team"}
    admin.post("/api/v1/teams", {"slug": "ops", "name": "Ops", "members": ["bystander"]}, status=201)
    admin.get("/api/v1/teams/ops")
    admin.patch("/api/v1/teams/ops", {"name": "Operations"})
    admin.get("/api/v1/teams/ops/members")
    admin.post("/api/v1/teams/ops/members", {"usernames": ["analyst"]})
    admin.delete("/api/v1/teams/ops/members/analyst", status=204)
    admin.post("/api/v1/teams/ops/streams", {"streams": ["own"]})
    admin.get("/api/v1/teams/ops/streams")
    admin.delete("/api/v1/teams/ops/streams/own", status=204)
    admin.post("/api/v1/teams/ops/streams", {"streams": ["foreign"]}, status=400)
    admin.post("/api/v1/teams", {"slug": "ops"}, status=409)
    admin.delete("/api/v1/teams/ops", status=204)
    admin.get("/api/v1/teams/ops", status=404)
    as_("Developer").get("/api/v1/teams", status=403)


def test_people_and_me(as_: Any):
    admin = as_("Admin")
    page = admin.get("/api/v1/people")
    assert "bystander" in {p["username"] for p in page["results"]}
    invited = admin.post(
        "/api/v1/people", {"username": "grace", "email": "grace@example.com", "roles": ["Analyst"]}, status=201
    )
    assert invited["set_password_url"]
    admin.get("/api/v1/people/grace")
    admin.patch("/api/v1/people/grace", {"roles": ["Operator"], "is_active": False})
    admin.patch("/api/v1/people/grace", {"roles": ["Wizard"]}, status=400)
    admin.get("/api/v1/people/nobody-here", status=404)
    admin.get("/api/v1/people?is_active=perhaps", status=400)
    assert admin.get("/api/v1/me")["person"]["username"] == "admin"
    assert as_("secret key").get("/api/v1/me")["key"]["kind"] == "secret"
    as_("nobody").get("/api/v1/me", status=401)
    as_("Operator").get("/api/v1/people", status=403)


# --- dead letters and the audit log ------------------------------------------------------------


def test_dead_letters(as_: Any, world: World):
    operator = as_("Operator")
    letters = "/api/v1/dead-letters"
    page = operator.get(letters)
    assert [letter["stream"] for letter in page["results"]] == ["own"]
    own = world.values[OWN]["letter_id"]
    operator.get(f"{letters}/{own}")
    operator.post(f"{letters}/{own}/replay")
    operator.post(f"{letters}/{own}/discard", status=409)
    operator.post(f"{letters}/replay", {"ids": [own]})
    operator.post(f"{letters}/discard", {"ids": [own, 123456789]})
    operator.post(f"{letters}/replay", {"ids": []}, status=400)
    operator.get(f"{letters}?stage=nonsense", status=400)
    operator.get(f"{letters}/{world.values['foreign']['letter_id']}", status=404)
    as_("Developer").get(letters, status=403)


def test_audit(as_: Any):
    admin = as_("Admin")
    admin.post("/api/v1/keys", {"name": "audited", "kind": "ingest", "streams": ["own"]}, status=201)
    page = admin.get("/api/v1/audit?kind=security")
    assert "key.create" in {row["action"] for row in page["results"]}
    admin.get("/api/v1/audit?status=abc", status=400)
    as_("Operator").get("/api/v1/audit", status=403)


def test_the_document_is_generated_without_warnings(generated: tuple[dict[str, Any], list[str]]):
    """A warning means a guess: two components of one name, a field of unknown type, an enum named at random."""
    assert generated[1] == []


def test_every_operation_of_the_api_is_documented(contract: Contract):
    """Each route and method the resolver knows is an operation of the document."""
    from .access_matrix import api_routes

    missing = []
    for route, method in api_routes():
        operations = contract.document["paths"].get(_template(route), {})
        if method.lower() not in operations:
            missing.append(f"{method} /{route}")
    assert not missing, missing
