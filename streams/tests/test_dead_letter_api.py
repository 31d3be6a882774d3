"""The dead letter API: list across the caller's streams with filters, show, replay and discard, one or many."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone
from rest_framework_simplejwt.tokens import RefreshToken

from eventflow.models import AuditEntry
from ingestion.models import InboxEvent
from streams.dead_letters import MAX_BULK_IDS, DeadLetterIn, dead_letters_record
from streams.models import ApiKeyKind, DeadLetter, DeadLetterStage, DeadLetterStatus, Stream
from streams.services import api_key_create, stream_create, team_create

pytestmark = pytest.mark.django_db

LETTERS = "/api/v1/dead-letters"


class Api:
    def __init__(self, **headers: Any) -> None:
        self.client = Client()
        self.headers = headers

    def get(self, path: str) -> Any:
        return self.client.get(path, **self.headers)

    def post(self, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        data = raw if raw is not None else (b"" if body is None else orjson.dumps(body))
        return self.client.post(path, data=data, content_type="application/json", **self.headers)


def person(username: str, role: str, streams: list[Stream]) -> Api:
    user = User.objects.create_user(username, password="a-long-password-1")
    user.groups.add(Group.objects.get(name=role))
    if streams:
        team_create(slug=f"{username}-team", members=[user], streams=streams)
    return Api(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")


def record(stream: Stream, event_id: str, *, stage: str = DeadLetterStage.VALIDATE, error: str = "boom", ago: int = 0):
    at = timezone.now() - timedelta(hours=ago)
    dead_letters_record(
        letters=[
            DeadLetterIn(
                stream_id=stream.pk,
                event_id=event_id,
                event={
                    "event_id": event_id,
                    "type": "page_view",
                    "event_time": at.isoformat(),
                    "payload": {"page": f"/{event_id}"},
                },
                stage=stage,
                error_class="SchemaViolation" if stage == DeadLetterStage.VALIDATE else "MaxDeliverExceeded",
                error_message=error,
                traceback="Traceback (most recent call last):\n  ...\nSchemaViolation: " + error,
                attempts=3,
            )
        ],
        now=at,
    )
    return DeadLetter.objects.get(stream=stream, event_id=event_id)


@pytest.fixture
def shop(db: Any) -> Stream:
    return stream_create(slug="shop", name="Shop")


@pytest.fixture
def blog(db: Any) -> Stream:
    return stream_create(slug="blog", name="Blog")


@pytest.fixture
def news(db: Any) -> Stream:
    return stream_create(slug="news", name="News")


@pytest.fixture
def operator(shop: Stream, blog: Stream) -> Api:
    return person("olga", "Operator", [shop, blog])


@pytest.fixture
def letters(shop: Stream, blog: Stream, news: Stream) -> dict[str, DeadLetter]:
    made = [
        record(shop, "s1", error="button_id: 42 is not of type 'string'", ago=30),
        record(shop, "s2", error="page: required", ago=5),
        record(shop, "s3", stage=DeadLetterStage.CONSUME, error="Delivered 5 times to billing", ago=2),
        record(blog, "b1", error="button_id: 7 is not of type 'string'", ago=1),
        record(news, "n1", error="button_id: 9 is not of type 'string'"),
    ]
    return {letter.event_id: letter for letter in made}


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["event_id"] for item in response.json()["results"]]


def test_list_shows_the_letters_of_the_callers_streams_latest_first(operator, letters):
    assert ids(operator.get(LETTERS)) == ["b1", "s3", "s2", "s1"]
    first = operator.get(LETTERS).json()["results"][1]
    assert first == {
        "id": letters["s3"].pk,
        "stream": "shop",
        "event_id": "s3",
        "stage": "consume",
        "status": "open",
        "error_class": "MaxDeliverExceeded",
        "error_message": "Delivered 5 times to billing",
        "attempts": 3,
        "log_offset": None,
        "group": None,
        "webhook_id": None,
        "subscriber": "",
        "first_failed_at": first["first_failed_at"],
        "last_failed_at": first["last_failed_at"],
        "acted_by": None,
        "acted_at": None,
        "created_at": first["created_at"],
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("stream=shop", ["s3", "s2", "s1"]),
        ("stream=news", []),
        ("stream=nope", []),
        ("stage=consume", ["s3"]),
        ("stage=validate&stream=shop", ["s2", "s1"]),
        ("status=open", ["b1", "s3", "s2", "s1"]),
        ("status=replayed", []),
        ("q=not+of+type", ["b1", "s1"]),
        ("q=SCHEMAVIOLATION", ["b1", "s2", "s1"]),
        ("q=s2", ["s2"]),
        ("from=PAST_6H", ["b1", "s3", "s2"]),
        ("to=PAST_6H", ["s1"]),
        ("from=PAST_6H&to=PAST_90M", ["s3", "s2"]),
    ],
)
def test_filters(operator, letters, query, expected):
    for name, hours in (("PAST_6H", 6), ("PAST_90M", 1.5)):
        query = query.replace(name, (timezone.now() - timedelta(hours=hours)).isoformat().replace("+", "%2B"))
    assert ids(operator.get(f"{LETTERS}?{query}")) == expected


@pytest.mark.parametrize(
    "query", ["stage=nope", "status=lost", "from=yesterday", "to=2026-13-01", "limit=0", "limit=501", "q=%00"]
)
def test_bad_filters_are_a_400(operator, letters, query):
    response = operator.get(f"{LETTERS}?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_request"


def test_list_is_cursor_paginated_in_a_fixed_number_of_queries(operator, shop, django_assert_num_queries):
    for i in range(7):
        record(shop, f"e{i}", ago=i)
    operator.get(LETTERS)  # warms the per-process caches
    seen: list[str] = []
    url = f"{LETTERS}?limit=3"
    # Session user + permissions (user's, groups') + the caller's streams + the page.
    with django_assert_num_queries(5):
        page = operator.get(url).json()
    seen += [item["event_id"] for item in page["results"]]
    while page["next"]:
        page = operator.get(page["next"]).json()
        seen += [item["event_id"] for item in page["results"]]
    assert seen == [f"e{i}" for i in reversed(range(7))]
    for i in range(7, 30):
        record(shop, f"e{i}", stage=DeadLetterStage.CONSUME)
    with django_assert_num_queries(5):
        assert len(operator.get(f"{LETTERS}?limit=30").json()["results"]) == 30


def test_show_has_the_event_payload_error_and_traceback(operator, letters):
    letter = letters["s1"]
    response = operator.get(f"{LETTERS}/{letter.pk}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["event"] == letter.event and body["payload"] == {"page": "/s1"}
    assert body["error_message"] == "button_id: 42 is not of type 'string'"
    assert body["traceback"].startswith("Traceback (most recent call last):")


def test_another_streams_letter_is_not_found(operator, letters):
    foreign = letters["n1"]
    for response in (
        operator.get(f"{LETTERS}/{foreign.pk}"),
        operator.post(f"{LETTERS}/{foreign.pk}/replay"),
        operator.post(f"{LETTERS}/{foreign.pk}/discard"),
        operator.get(f"{LETTERS}/999999999"),
    ):
        assert response.status_code == 404, response.content
        assert response.json()["error"]["code"] == "dead_letter_not_found"
    foreign.refresh_from_db()
    assert foreign.status == DeadLetterStatus.OPEN


@pytest.mark.parametrize("role", ["Developer", "Analyst", "Consumer"])
def test_roles_without_operate_are_refused(shop, letters, role):
    caller = person("sam", role, [shop])
    assert caller.get(LETTERS).status_code == 403
    assert caller.get(f"{LETTERS}/{letters['s1'].pk}").status_code == 403
    assert caller.post(f"{LETTERS}/replay", {"ids": [letters["s1"].pk]}).status_code == 403
    assert DeadLetter.objects.get(pk=letters["s1"].pk).status == DeadLetterStatus.OPEN


def test_keys_and_strangers_are_refused(shop, letters):
    secret = api_key_create(kind=ApiKeyKind.SECRET, streams=[shop]).raw_key
    assert Api(HTTP_X_API_KEY=secret).get(LETTERS).status_code == 403
    assert Api().get(LETTERS).status_code == 401
    assert Api().post(f"{LETTERS}/{letters['s1'].pk}/discard").status_code == 401


def test_admin_and_superuser_reach_every_stream(letters):
    assert len(ids(person("ada", "Admin", []).get(LETTERS))) == 0  # an Admin still reaches streams by team
    root = User.objects.create_superuser("root", password="a-long-password-1")
    superuser = Api(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(root).access_token}")
    assert set(ids(superuser.get(LETTERS))) == set(letters)


def test_replay_and_discard_one(operator, letters, shop):
    s1, s2 = letters["s1"], letters["s2"]
    response = operator.post(f"{LETTERS}/{s1.pk}/replay")
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["acted_by"]) == ("replayed", "olga")
    assert InboxEvent.objects.get(stream=shop, event_id="s1").flags["replayed_from"] == s1.pk
    again = operator.post(f"{LETTERS}/{s1.pk}/replay")
    assert again.status_code == 409 and again.json()["error"]["code"] == "dead_letter_not_open"
    assert InboxEvent.objects.filter(stream=shop, event_id="s1").count() == 1

    discarded = operator.post(f"{LETTERS}/{s2.pk}/discard")
    assert discarded.status_code == 200 and discarded.json()["status"] == "discarded"
    assert operator.post(f"{LETTERS}/{s2.pk}/discard").status_code == 409
    assert operator.post(f"{LETTERS}/{s2.pk}/replay").status_code == 409
    assert not InboxEvent.objects.filter(stream=shop, event_id="s2").exists()

    audited = list(AuditEntry.objects.filter(action__startswith="dead_letter.").order_by("id"))
    assert [(a.action, a.caller, a.stream_id, a.target) for a in audited] == [
        ("dead_letter.replay", "olga", shop.pk, f"dead_letter:{s1.pk}"),
        ("dead_letter.discard", "olga", shop.pk, f"dead_letter:{s2.pk}"),
    ]


def test_bulk_replay_and_discard_say_what_they_did_and_skipped(operator, letters, blog):
    s1, s2, s3, b1, n1 = (letters[k] for k in ("s1", "s2", "s3", "b1", "n1"))
    body = {"ids": [s1.pk, b1.pk, n1.pk, 999999999, s3.pk, s1.pk]}
    response = operator.post(f"{LETTERS}/replay", body)
    assert response.status_code == 200, response.content
    # s3 is a consumer group's letter with no group to go back to.
    assert response.json() == {
        "count": 2,
        "ids": [s1.pk, b1.pk],
        "skipped": [
            {"id": n1.pk, "reason": "not_found", "message": "No such dead letter."},
            {"id": 999999999, "reason": "not_found", "message": "No such dead letter."},
            {"id": s3.pk, "reason": "group_gone", "message": "Its consumer group or webhook no longer exists."},
        ],
    }
    discard = operator.post(f"{LETTERS}/discard", {"ids": [s1.pk, s2.pk, s3.pk, n1.pk]}).json()
    assert (discard["count"], discard["ids"]) == (2, [s2.pk, s3.pk])
    assert [(s["id"], s["reason"]) for s in discard["skipped"]] == [(s1.pk, "not_open"), (n1.pk, "not_found")]
    assert dict(DeadLetter.objects.values_list("event_id", "status")) == {
        "s1": "replayed",
        "s2": "discarded",
        "s3": "discarded",
        "b1": "replayed",
        "n1": "open",
    }
    # One security event per stream and action.
    audited = AuditEntry.objects.filter(action__startswith="dead_letter.").order_by("id")
    assert [(a.action, a.stream_id, a.details["ids"]) for a in audited] == [
        ("dead_letter.replay", s1.stream_id, [s1.pk]),
        ("dead_letter.replay", blog.pk, [b1.pk]),
        ("dead_letter.discard", s1.stream_id, [s2.pk, s3.pk]),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ids": []},
        {"ids": "1,2"},
        {"ids": ["a"]},
        {"ids": [0]},
        {"ids": [2**63]},
        {"ids": [1.5]},
        {"ids": list(range(1, MAX_BULK_IDS + 2))},
        {"ids": [1], "status": "open"},
        [1, 2],
    ],
)
def test_bad_bulk_bodies_are_a_400(operator, letters, body):
    for action in ("replay", "discard"):
        response = operator.post(f"{LETTERS}/{action}", body)
        assert response.status_code == 400, response.content
    assert not DeadLetter.objects.exclude(status=DeadLetterStatus.OPEN).exists()


def test_bulk_of_the_most_ids_allowed(operator, letters):
    body = {"ids": [letters["s2"].pk, *range(10**9, 10**9 + MAX_BULK_IDS - 1)]}
    response = operator.post(f"{LETTERS}/discard", body)
    assert response.status_code == 200 and response.json()["count"] == 1
    assert len(response.json()["skipped"]) == MAX_BULK_IDS - 1


def test_malformed_json_is_a_400(operator, letters):
    assert operator.post(f"{LETTERS}/replay", raw=b'{"ids": [1,').status_code == 400


def test_openapi_documents_the_endpoints_and_their_real_answers(operator, letters, client):
    schema = client.get("/api/schema/", {"format": "json"}).json()
    components = schema["components"]["schemas"]

    def ref(content: dict[str, Any]) -> str:
        found = content["application/json"]["schema"]
        found = found.get("items", found)
        return str(found["$ref"].rsplit("/", 1)[-1])

    listing = schema["paths"][LETTERS]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"stream", "stage", "status", "q", "from", "to", "cursor"}
    page = components[ref(listing["responses"]["200"]["content"])]
    item = components[page["properties"]["results"]["items"]["$ref"].rsplit("/", 1)[-1]]
    assert set(item["properties"]) == set(operator.get(LETTERS).json()["results"][0])
    detail = schema["paths"][f"{LETTERS}/{{letter_id}}"]["get"]
    assert set(components[ref(detail["responses"]["200"]["content"])]["properties"]) == set(
        operator.get(f"{LETTERS}/{letters['s1'].pk}").json()
    )
    for path in (f"{LETTERS}/{{letter_id}}/replay", f"{LETTERS}/{{letter_id}}/discard"):
        operation = schema["paths"][path]["post"]
        assert {"200", "401", "403", "404", "409"} <= set(operation["responses"])
    for path in (f"{LETTERS}/replay", f"{LETTERS}/discard"):
        operation = schema["paths"][path]["post"]
        assert ref(operation["responses"]["400"]["content"]) == "Error"
        bulk = components[ref(operation["responses"]["200"]["content"])]
        assert set(bulk["properties"]) == {"count", "ids", "skipped"}
        assert components[ref(operation["requestBody"]["content"])]["properties"]["ids"]["maxItems"] == MAX_BULK_IDS
