"""The management API of streams, schemas and API keys: who may do what, and what it does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from django.contrib.auth.models import User
from rest_framework_simplejwt.tokens import RefreshToken

from streams.log import LogRecord, log_append_now
from streams.models import ApiKey, ApiKeyKind, EventSchema, Stream
from streams.services import api_key_create, stream_create, team_create

from .people_fixtures import PASSWORD, Api, signed_in

pytestmark = pytest.mark.django_db


def person(username: str, role: str | None, *teams: Any) -> Api:
    return signed_in(username, role, *teams)


@pytest.fixture
def shop(db: Any) -> Stream:
    return stream_create(slug="shop", name="Shop", with_starter_schemas=True)


@pytest.fixture
def other(db: Any) -> Stream:
    return stream_create(slug="other", name="Other")


@pytest.fixture
def team(shop: Stream) -> Any:
    return team_create(slug="shop-team", streams=[shop])


@pytest.fixture
def developer(team: Any) -> Api:
    return person("dev", "Developer", team)


@pytest.fixture
def analyst(team: Any) -> Api:
    return person("ana", "Analyst", team)


def code(response: Any) -> str:
    return str(response.json()["error"]["code"])


# --- streams -----------------------------------------------------------------------------------


def test_the_list_shows_only_the_streams_you_reach(developer, analyst, other):
    assert [s["slug"] for s in developer.get("/api/v1/streams").json()["results"]] == ["shop"]
    assert [s["slug"] for s in analyst.get("/api/v1/streams").json()["results"]] == ["shop"]
    assert person("nobody", "Developer").get("/api/v1/streams").json()["results"] == []
    root = User.objects.create_superuser("root", password=PASSWORD)
    as_root = Api(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(root).access_token}")
    assert {s["slug"] for s in as_root.get("/api/v1/streams").json()["results"]} == {"shop", "other"}


def test_a_developer_creates_a_stream_for_their_team(developer, team):
    response = developer.post("/api/v1/streams", {"slug": "checkout", "name": "Checkout", "schema_mode": "enforce"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "checkout" and body["schema_mode"] == "enforce" and body["teams"] == ["shop-team"]
    assert body["head"] == 0 and body["archived"] is False
    assert developer.get("/api/v1/streams/checkout").status_code == 200
    assert developer.post("/api/v1/streams", {"slug": "checkout"}).status_code == 409


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"slug": "Bad Slug"}, "invalid_request"),
        ({"slug": "ok", "head": 5}, "unknown_field"),
        ({"slug": "ok", "archived_at": "2026-01-01T00:00:00Z"}, "unknown_field"),
        ({"slug": "ok", "retention_days": 0}, "invalid_request"),
        ({"slug": "ok", "schema_mode": "strict"}, "invalid_request"),
        ({"slug": "ok", "teams": ["not-mine"]}, "unknown_team"),
        ({"slug": "ok\u0000"}, "invalid_request"),
    ],
)
def test_bad_stream_bodies_are_400_and_create_nothing(developer, body, expected):
    response = developer.post("/api/v1/streams", body)
    assert response.status_code == 400 and code(response) == expected
    assert not Stream.objects.filter(slug="ok").exists()


def test_a_person_in_several_teams_names_one(developer, team, shop):
    user = User.objects.get(username="dev")
    team_create(slug="second", members=[user])
    assert code(developer.post("/api/v1/streams", {"slug": "new"})) == "team_required"
    assert developer.post("/api/v1/streams", {"slug": "new", "teams": ["second"]}).json()["teams"] == ["second"]


def test_roles_and_keys_that_may_not_create_streams(analyst, shop):
    assert analyst.post("/api/v1/streams", {"slug": "x"}).status_code == 403
    key = api_key_create(kind=ApiKeyKind.SECRET, streams=[shop]).raw_key
    assert Api(HTTP_X_API_KEY=key).post("/api/v1/streams", {"slug": "x"}).status_code == 403
    assert Api().post("/api/v1/streams", {"slug": "x"}).status_code == 401
    assert not Stream.objects.filter(slug="x").exists()


def test_update_archive_and_unarchive(developer, analyst, shop, other):
    changed = developer.patch("/api/v1/streams/shop", {"name": "The shop", "retention_days": 7, "anonymize_ip": False})
    assert changed.status_code == 200 and changed.json()["retention_days"] == 7
    assert developer.patch("/api/v1/streams/shop", {"slug": "renamed"}).status_code == 400
    assert analyst.patch("/api/v1/streams/shop", {"name": "x"}).status_code == 403
    assert developer.patch("/api/v1/streams/other", {"name": "x"}).status_code == 404
    assert developer.get("/api/v1/streams/other").json()["error"]["code"] == "stream_not_found"

    ingest = api_key_create(kind=ApiKeyKind.INGEST, streams=[shop]).raw_key
    sender = Api(HTTP_X_API_KEY=ingest)
    assert developer.post("/api/v1/streams/shop/archive").json()["archived"] is True
    assert sender.post("/api/v1/streams/shop/events", {"type": "login"}).status_code == 409
    assert developer.post("/api/v1/streams/shop/unarchive").json()["archived"] is False
    assert sender.post("/api/v1/streams/shop/events", {"type": "login"}).status_code == 202
    assert analyst.post("/api/v1/streams/shop/archive").status_code == 403


def test_stream_list_query_count_does_not_grow(developer, team, django_assert_max_num_queries):
    for n in range(5):
        team.streams.add(stream_create(slug=f"s{n}"))
    with django_assert_max_num_queries(8):
        listed = developer.get("/api/v1/streams").json()["results"]
    assert len(listed) == 6
    for n in range(5, 15):
        team.streams.add(stream_create(slug=f"s{n}"))
    with django_assert_max_num_queries(8):
        assert len(developer.get("/api/v1/streams").json()["results"]) == 16


# --- schemas -----------------------------------------------------------------------------------

LOGIN_V2 = {
    "type": "object",
    "required": ["method", "mfa"],
    "properties": {"method": {"type": "string"}, "mfa": {"type": "boolean"}},
}


def _log_logins(stream: Stream, n: int) -> None:
    base = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    log_append_now(
        stream_id=stream.pk,
        records=[
            LogRecord(
                event_id=f"l{i}",
                type="login",
                event_time=base + timedelta(seconds=i),
                received_at=base + timedelta(seconds=i),
                payload={"method": "password", **({"mfa": True} if i % 3 == 0 else {})},
            )
            for i in range(n)
        ],
    )


def test_schema_versions_are_listed_and_shown(developer, analyst):
    types = {t["event_type"]: t for t in analyst.get("/api/v1/streams/shop/schemas").json()}
    assert set(types) == {"login", "logout", "page_view", "button_click", "form_submit"}
    assert types["login"]["current_version"] == 1
    assert analyst.get("/api/v1/streams/shop/schemas/login/1").json()["version"] == 1
    assert analyst.get("/api/v1/streams/shop/schemas/login/9").status_code == 404
    assert analyst.get("/api/v1/streams/shop/schemas/nope").status_code == 404


def test_a_new_version_that_would_reject_logged_events_needs_force(developer, analyst, shop):
    _log_logins(shop, 30)
    dry = developer.post("/api/v1/streams/shop/schemas/login", {"schema": LOGIN_V2, "dry_run": True})
    assert dry.status_code == 200, dry.content
    report = dry.json()["dry_run"]
    assert dry.json()["saved"] is False and report["checked"] == 30 and report["rejected"] == 20
    assert report["reasons"][0]["events"] == 20 and "mfa" in report["reasons"][0]["message"]

    refused = developer.post("/api/v1/streams/shop/schemas/login", {"schema": LOGIN_V2})
    assert refused.status_code == 409 and code(refused) == "schema_would_reject"
    assert refused.json()["error"]["details"]["rejected"] == 20
    assert EventSchema.objects.filter(stream=shop, event_type="login").count() == 1

    forced = developer.post("/api/v1/streams/shop/schemas/login", {"schema": LOGIN_V2, "force": True})
    assert forced.status_code == 201 and forced.json()["version"]["version"] == 2
    versions = analyst.get("/api/v1/streams/shop/schemas/login").json()
    assert [v["version"] for v in versions["versions"]] == [2, 1]
    # The old version is unchanged.
    assert analyst.get("/api/v1/streams/shop/schemas/login/1").json()["schema"] != LOGIN_V2
    assert analyst.post("/api/v1/streams/shop/schemas/login", {"schema": LOGIN_V2}).status_code == 403


def test_a_compatible_version_saves_at_once_and_a_new_type_too(developer):
    response = developer.post("/api/v1/streams/shop/schemas/signup", {"schema": {"type": "object"}})
    assert response.status_code == 201 and response.json()["version"]["version"] == 1
    assert response.json()["dry_run"] == {"checked": 0, "rejected": 0, "reasons": []}


@pytest.mark.parametrize(
    "body",
    [{"schema": {"type": "no-such-type"}}, {"schema": []}, {"schema": {"required": "x"}}, {}, {"schema": {}, "x": 1}],
)
def test_invalid_schemas_are_400(developer, shop, body):
    response = developer.post("/api/v1/streams/shop/schemas/login", body)
    assert response.status_code == 400, response.content
    assert EventSchema.objects.filter(stream=shop, event_type="login").count() == 1


def test_validating_a_sample(analyst):
    good = analyst.post("/api/v1/streams/shop/schemas/page_view/validate", {"payload": {"page": "/dashboard"}})
    assert good.status_code == 200 and good.json()["valid"] is True and good.json()["version"] == 1
    bad = analyst.post("/api/v1/streams/shop/schemas/page_view/validate", {"payload": {"page": 5}})
    assert bad.json()["valid"] is False and bad.json()["errors"][0]["field"].startswith("payload")
    assert analyst.post("/api/v1/streams/shop/schemas/page_view/validate", {"payload": "x"}).status_code == 400


# --- API keys ----------------------------------------------------------------------------------


def test_a_key_is_shown_once_and_works_at_once(developer, shop):
    created = developer.post("/api/v1/keys", {"name": "web", "kind": "ingest", "streams": ["shop"]})
    assert created.status_code == 201, created.content
    body = created.json()
    raw = body["key"]
    assert raw.startswith("ef_ingest_") and body["prefix"] == raw[: len(body["prefix"])]
    assert body["streams"] == ["shop"] and body["revoked"] is False
    shown = developer.get(f"/api/v1/keys/{body['id']}").json()
    assert "key" not in shown and raw not in orjson.dumps(shown).decode()
    assert raw not in orjson.dumps(developer.get("/api/v1/keys").json()).decode()
    assert Api(HTTP_X_API_KEY=raw).post("/api/v1/streams/shop/events", {"type": "login"}).status_code == 202

    revoked = developer.delete(f"/api/v1/keys/{body['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert ApiKey.objects.filter(pk=body["id"]).exists()
    after = Api(HTTP_X_API_KEY=raw).post("/api/v1/streams/shop/events", {"type": "login"})
    assert after.status_code == 401 and code(after) == "revoked_api_key"


def test_a_key_can_only_be_granted_streams_you_manage(developer, analyst, other):
    refused = developer.post("/api/v1/keys", {"kind": "secret", "streams": ["shop", "other"]})
    assert refused.status_code == 400 and code(refused) == "unknown_stream"
    assert refused.json()["error"]["details"] == {"streams": ["other"]}
    assert analyst.post("/api/v1/keys", {"kind": "secret", "streams": ["shop"]}).status_code == 403
    assert ApiKey.objects.count() == 0


def test_keys_of_other_teams_are_invisible(developer, shop, other):
    mine = api_key_create(kind=ApiKeyKind.INGEST, streams=[shop], name="mine")
    theirs = api_key_create(kind=ApiKeyKind.INGEST, streams=[other], name="theirs")
    shared = api_key_create(kind=ApiKeyKind.INGEST, streams=[shop, other], name="shared")
    assert [k["name"] for k in developer.get("/api/v1/keys").json()["results"]] == ["mine"]
    for key in (theirs, shared):
        assert developer.get(f"/api/v1/keys/{key.api_key.pk}").status_code == 404
        assert developer.delete(f"/api/v1/keys/{key.api_key.pk}").status_code == 404
    assert developer.get(f"/api/v1/keys/{mine.api_key.pk}").status_code == 200
    assert developer.get("/api/v1/keys/99999999999999999999").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "admin", "streams": ["shop"]},
        {"kind": "ingest", "streams": []},
        {"kind": "ingest"},
        {"kind": "ingest", "streams": ["shop"], "hashed_key": "x"},
        {"kind": "ingest", "streams": ["shop"], "expires_at": "2001-01-01T00:00:00Z"},
        {"kind": "ingest", "streams": ["shop"], "expires_at": "tomorrow"},
        {"kind": "ingest", "streams": ["shop"], "rate_limit_per_minute": 0},
    ],
)
def test_bad_key_bodies_are_400(developer, body):
    assert developer.post("/api/v1/keys", body).status_code == 400
    assert ApiKey.objects.count() == 0


def test_changing_a_key(developer, team, shop):
    second = stream_create(slug="second")
    team.streams.add(second)
    key = developer.post("/api/v1/keys", {"kind": "ingest", "streams": ["shop"], "rate_limit_per_minute": 100}).json()
    assert key["rate_limit_per_minute"] == 100
    changed = developer.patch(f"/api/v1/keys/{key['id']}", {"name": "renamed", "streams": ["second"]})
    assert changed.status_code == 200 and changed.json()["streams"] == ["second"]
    assert developer.patch(f"/api/v1/keys/{key['id']}", {"kind": "secret"}).status_code == 400
    developer.delete(f"/api/v1/keys/{key['id']}")
    assert developer.patch(f"/api/v1/keys/{key['id']}", {"name": "x"}).status_code == 409


def test_key_list_query_count_does_not_grow(developer, shop, django_assert_max_num_queries):
    for n in range(3):
        api_key_create(kind=ApiKeyKind.INGEST, streams=[shop], name=f"k{n}")
    developer.get("/api/v1/keys")
    with django_assert_max_num_queries(7) as first:
        assert len(developer.get("/api/v1/keys").json()["results"]) == 3
    for n in range(3, 13):
        api_key_create(kind=ApiKeyKind.INGEST, streams=[shop], name=f"k{n}")
    with django_assert_max_num_queries(len(first.captured_queries)):
        assert len(developer.get("/api/v1/keys").json()["results"]) == 13
