"""``GET /api/v1/me``: who is calling, and what they may do on each stream they reach.

It is also how a person checks the tenancy rule: they reach exactly the
streams of their teams, and a grant or revoke shows on their next request
(a consumer group list on a granted stream is 200, on any other 404).
"""

from __future__ import annotations

import pytest
from django.test import Client

from streams.models import ApiKeyKind
from streams.services import api_key_create, stream_create, team_create

from .people_fixtures import (
    Api,
    make_person,
    signed_in,
)

pytestmark = pytest.mark.django_db

ME = "/api/v1/me"
STREAM_ACTIONS = ["send", "read", "consume", "manage"]


def test_a_person_sees_their_roles_teams_and_streams(ops, other_stream):
    api = signed_in("bob", "Developer", ops)
    response = api.get(ME)
    assert response.status_code == 200
    assert response.json() == {
        "via": "jwt",
        "person": {
            "username": "bob",
            "email": "bob@example.com",
            "is_superuser": False,
            "roles": ["Developer"],
            "teams": [{"slug": "ops", "name": "Ops"}],
        },
        "key": None,
        "actions": STREAM_ACTIONS,
        "streams": [{"slug": "shop", "name": "Shop", "archived": False, "actions": STREAM_ACTIONS}],
    }


def test_an_admin_may_administer_but_that_is_no_stream_action(admin_api):
    body = admin_api.get(ME).json()
    assert body["actions"] == ["send", "read", "consume", "manage", "operate", "administer"]
    assert body["streams"][0]["actions"] == ["send", "read", "consume", "manage", "operate"]


def test_a_superuser_reaches_every_stream(root_api, stream, other_stream):
    body = root_api.get(ME).json()
    assert body["person"]["is_superuser"] is True
    assert [s["slug"] for s in body["streams"]] == ["other", "shop"]


def test_a_key_sees_its_prefix_kind_and_streams(stream, other_stream):
    issued = api_key_create(kind=ApiKeyKind.INGEST, streams=[other_stream])
    body = Api(HTTP_X_API_KEY=issued.raw_key).get(ME).json()
    assert body == {
        "via": "api_key",
        "person": None,
        "key": {"prefix": issued.api_key.prefix, "kind": "ingest"},
        "actions": ["send"],
        "streams": [{"slug": "other", "name": "Other", "archived": False, "actions": ["send"]}],
    }
    secret = api_key_create(kind=ApiKeyKind.SECRET, streams=[stream]).raw_key
    assert Api(HTTP_X_API_KEY=secret).get(ME).json()["streams"][0]["actions"] == ["send", "read", "consume"]


def test_a_person_without_a_team_reaches_nothing(db, stream):
    body = signed_in("bob", "Developer").get(ME).json()
    assert body["streams"] == [] and body["person"]["teams"] == []


def test_grants_decide_what_a_person_reaches(admin_api, ops, stream, other_stream):
    """Developer bob joins team web; web is granted shop, then loses it."""
    web = team_create(slug="web")
    bob = signed_in("bob", "Developer", web)
    groups_of = {slug: f"/api/v1/streams/{slug}/consumer-groups" for slug in ("shop", "other", "nope")}

    assert bob.get(ME).json()["streams"] == []
    assert bob.get(groups_of["shop"]).status_code == 404

    assert admin_api.post("/api/v1/teams/web/streams", {"streams": ["shop"]}).status_code == 200
    assert [s["slug"] for s in bob.get(ME).json()["streams"]] == ["shop"]
    assert bob.get(groups_of["shop"]).status_code == 200
    # Another stream answers exactly like one that does not exist.
    foreign, missing = bob.get(groups_of["other"]), bob.get(groups_of["nope"])
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()

    assert admin_api.delete("/api/v1/teams/web/streams/shop").status_code == 204
    assert bob.get(ME).json()["streams"] == []
    assert bob.get(groups_of["shop"]).status_code == 404


def test_membership_decides_too(admin_api, ops, stream):
    bob = signed_in("bob", "Developer")
    assert admin_api.post("/api/v1/teams/ops/members", {"usernames": ["bob"]}).status_code == 200
    assert [s["slug"] for s in bob.get(ME).json()["streams"]] == ["shop"]
    assert admin_api.delete("/api/v1/teams/ops/members/bob").status_code == 204
    assert bob.get(ME).json()["streams"] == []


def test_me_costs_the_same_queries_for_one_stream_or_many(ops, django_assert_num_queries):
    api = signed_in("bob", "Developer", ops)
    # user (JWT), its permissions (2), its reached stream ids, the streams, teams, roles.
    with django_assert_num_queries(7):
        assert len(api.get(ME).json()["streams"]) == 1
    for n in range(5):
        ops.streams.add(stream_create(slug=f"s{n}"))
    with django_assert_num_queries(7):
        assert len(api.get(ME).json()["streams"]) == 6


def test_a_session_works_and_says_so(ops):
    client = Client()
    client.force_login(make_person("bob", "Analyst", ops))
    body = client.get(ME).json()
    assert body["via"] == "session" and body["actions"] == ["read"]
