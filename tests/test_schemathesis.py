"""schemathesis against the live OpenAPI document: every operation, with real credentials and real objects.

The document is read from /api/schema/ of a live server. Each operation gets a few generated requests (valid
and invalid ones) whose path parameters name objects that exist: a stream, its events, a consumer group, a
webhook (on a closed loopback port), an alert rule, a segment, a dead letter, a key, a team, a person and a
schema type, so that the operation is reached rather than answered 404. A superuser's JWT signs every request;
the intake takes an ingest key. No answer may be a 5xx, and every answer must match the document: its status
code, content type and body.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import schemathesis
from django.contrib.auth.models import Group, User
from django.test import Client
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from rest_framework_simplejwt.tokens import RefreshToken
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from analytics.alerts import alert_rule_create
from analytics.segments import segment_create
from consumers.kafka_services import kafka_sink_create, kafka_source_create
from consumers.selectors import Position
from consumers.services import consumer_group_create
from consumers.webhook_services import webhook_create
from streams.dead_letters import DeadLetterIn, dead_letters_record
from streams.erasure import erasure_request
from streams.log import LogRecord, log_append_now
from streams.models import ApiKeyKind, DeadLetter, DeadLetterStage, EventSchema
from streams.services import api_key_create, stream_create, team_create
from tests.fixtures import conf_override

# Generated requests per operation: enough for valid and invalid input of each, small enough for the suite.
EXAMPLES = 12
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Readiness answers 503 until the process has finished starting, as documented: there a 503 is not a fault.
READINESS = "/ready"


def objects() -> dict[str, Any]:
    """The objects every path parameter names, made through the services; and the credentials."""
    shop = stream_create(slug="shop", name="Shop", with_starter_schemas=True)
    log_append_now(
        stream_id=shop.pk,
        records=[
            LogRecord(
                event_id=f"e{i}",
                type="page_view",
                event_time=datetime(2026, 11, 21, 9, i, tzinfo=UTC),
                received_at=datetime(2026, 11, 21, 9, i, tzinfo=UTC),
                user_id=f"u{i % 3}",
                payload={"page": f"/p/{i}"},
            )
            for i in range(10)
        ],
    )
    root = User.objects.create_superuser("root", "root@example.com", "a-long-password-1")
    ann = User.objects.create_user("ann", "ann@example.com", "a-long-password-1")
    ann.groups.add(Group.objects.get(name="Analyst"))
    team = team_create(slug="growth", members=[ann], streams=[shop])
    consumer_group_create(stream_id=shop.pk, name="g", start=Position(kind="earliest"))
    webhook = webhook_create(stream_id=shop.pk, url="http://127.0.0.1:9/hook")
    rule = alert_rule_create(stream_id=shop.pk, name="failed logins", window_seconds=300, event_types=["login"])
    segment_create(stream_id=shop.pk, name="mobile", conditions=[{"property": "payload.plan", "values": ["pro"]}])
    dead_letters_record(
        letters=[
            DeadLetterIn(
                stream_id=shop.pk,
                event_id="dl1",
                event={"event_id": "dl1", "type": "page_view"},
                stage=DeadLetterStage.VALIDATE,
                error_class="ValidationError",
            )
        ]
    )
    # A broker on a closed loopback port: the bridge does not run in this test, only the API.
    sink = kafka_sink_create(
        stream_id=shop.pk,
        topic="shop-events",
        key="user_id",
        start=Position(kind="earliest"),
        bootstrap_servers="127.0.0.1:9",
    )
    source = kafka_source_create(
        stream_id=shop.pk, stream_slug="shop", topic="shop-in", start="earliest", bootstrap_servers="127.0.0.1:9"
    )
    erasure = erasure_request(caller=None, stream_id=shop.pk, by="user_id", subject="u-erased")
    schema = EventSchema.objects.filter(stream=shop).order_by("event_type", "version").first()
    assert schema is not None
    # The key the key operations act on; the ingest key sends to the intake.
    other = api_key_create(kind=ApiKeyKind.SECRET, streams=[shop], name="rotated by the tests")
    ingest = api_key_create(kind=ApiKeyKind.INGEST, streams=[shop], name="intake")
    return {
        "path": {
            "slug": "shop",
            "stream": "shop",
            "team": team.slug,
            "username": "ann",
            "group": "g",
            "webhook_id": str(webhook.webhook.pk),
            "rule_id": str(rule.pk),
            "segment": "mobile",
            "letter_id": str(DeadLetter.objects.get(event_id="dl1").pk),
            "key_id": str(other.api_key.pk),
            "event_id": "e3",
            "event_type": schema.event_type,
            "version": str(schema.version),
            "sink_id": str(sink.pk),
            "source_id": str(source.pk),
            "erasure_id": str(erasure.pk),
        },
        "jwt": f"Bearer {RefreshToken.for_user(root).access_token}",
        "ingest_key": ingest.raw_key,
    }


def order(operation: Any) -> tuple[int, str]:
    """Operations that remove or archive what others need run last, the stream's own last of all."""
    path, method = operation.path, operation.method.upper()
    if method == "DELETE" or path.endswith("/archive"):
        return (2 if path.count("/") <= 4 or path.endswith("/archive") else 1, path)
    return (0, path)


def fuzz(
    operation: Any,
    label: str,
    real: dict[str, Any],
    headers: dict[str, str],
    *,
    base_url: str,
    session: requests.Session,
    reached: dict[str, set[int]],
) -> Callable[[], None]:
    """A Hypothesis test of one operation: generated cases, path parameters naming the real objects."""

    def run(case: Any) -> None:
        if case.path_parameters:
            case.path_parameters = {name: real["path"].get(name, value) for name, value in case.path_parameters.items()}
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        reached.setdefault(label, set()).add(response.status_code)
        checks = [check for check in CHECKS if check is not not_a_server_error] if label.endswith(READINESS) else CHECKS
        case.validate_response(response, checks=checks, headers=headers)

    settings = hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    return given(case=operation.as_strategy())(settings(run))  # type: ignore[no-any-return]


@pytest.mark.slow
def test_every_operation_answers_without_5xx_and_as_documented(
    live_server: Any, transactional_db: Any, settings: Any
) -> None:
    conf_override(settings, webhook_allow_loopback=True)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    real = objects()
    schema = schemathesis.openapi.from_url(
        f"{live_server.url}/api/schema/?format=json", headers={"Authorization": real["jwt"]}
    )
    operations = sorted((result.ok() for result in schema.get_all_operations()), key=order)  # type: ignore[union-attr]
    assert len(operations) > 80
    failures: dict[str, str] = {}
    reached: dict[str, set[int]] = {}
    # Closed at the end: the live server's thread keeps its database connection while the socket is open.
    with requests.Session() as session:
        for operation in operations:
            label = f"{operation.method.upper()} {operation.path}"
            security = {name for requirement in operation.definition.raw.get("security", []) for name in requirement}
            headers = (
                {"X-API-Key": real["ingest_key"]} if security == {"ApiKeyAuth"} else {"Authorization": real["jwt"]}
            )
            test = fuzz(operation, label, real, headers, base_url=live_server.url, session=session, reached=reached)
            try:
                test()
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 (every operation's failure is collected)
                failures[label] = f"{type(exc).__name__}: {exc}"[:2000]

    assert not failures, json.dumps(failures, indent=1)
    # Reached: each operation answered something other than 404 at least once.
    unreached = sorted(label for label, statuses in reached.items() if statuses <= {404})
    assert not unreached, unreached
    assert len(reached) == len(operations)


# --- what it found, kept as plain tests --------------------------------------------------------------


@pytest.mark.django_db
def test_a_nul_character_in_a_json_body_is_a_400_not_a_500() -> None:
    stream_create(slug="shop", name="Shop", with_starter_schemas=True)
    root = User.objects.create_superuser("root", "root@example.com", "a-long-password-1")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(root).access_token}")
    bodies: list[dict[str, Any]] = [
        {"schema": {"type": "object", "title": "a\x00b"}},
        {"schema": {"properties": {"\x00": {}}}},
    ]
    for body in bodies:
        response = client.post("/api/v1/streams/shop/schemas/checkout", body, content_type="application/json")
        assert response.status_code == 400, response.content
        assert response.json()["error"]["code"] == "invalid_request"
        assert "NUL" in response.json()["error"]["message"]
    # The escape written out as text (a backslash, then u0000) is an ordinary string.
    fine = client.post(
        "/api/v1/streams/shop/schemas/checkout",
        {"schema": {"type": "object", "title": "\\u0000"}},
        content_type="application/json",
    )
    assert fine.status_code == 201, fine.content


@pytest.mark.django_db
def test_a_cursor_the_api_did_not_give_out_is_a_400() -> None:
    stream_create(slug="shop", name="Shop")
    root = User.objects.create_superuser("root", "root@example.com", "a-long-password-1")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(root).access_token}")
    lists = ["/api/v1/teams", "/api/v1/streams", "/api/v1/keys", "/api/v1/dead-letters", "/api/v1/audit"]
    for path in [*lists, "/api/v1/streams/shop/consumer-groups", "/api/v1/streams/shop/webhooks"]:
        response = client.get(path, {"cursor": "3"})
        assert response.status_code == 400, (path, response.content)
        assert response.json()["error"]["code"] == "invalid_cursor"
