"""Rate limits on real Redis: the counters, the intake's per-key limit and headers, the management API per person.

"Redis down" is a closed port given as REDIS_URL (the shared Redis keeps running).
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from rest_framework_simplejwt.tokens import RefreshToken

from eventflow import conf
from eventflow import redis as ef_redis
from eventflow.errors import Unavailable
from eventflow.ratelimit import Fail, Window, _sliding_wait, fixed_window, hit
from ingestion.models import InboxEvent
from streams.models import ApiKeyKind, Stream
from streams.services import api_key_create, team_create
from tests.fixtures import conf_override
from tests.intake import assert_api_error, post_event

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_rate_counters")]

GROUPS = "/api/v1/streams/shop/consumer-groups"
POLICY_RE = re.compile(r'^"key";q=(\d+);w=60$')
STATE_RE = re.compile(r'^"key";r=(\d+);t=(\d+)$')


def whole_minute_ahead(margin: float = 5.0) -> None:
    """Fixed windows are calendar minutes: don't start a test that would straddle two."""
    if time.time() % 60 > 60 - margin:
        time.sleep(60.5 - time.time() % 60)


# --- counters ---------------------------------------------------------------------------------


def test_a_fixed_window_counts_each_client_apart_and_says_when_it_resets() -> None:
    whole_minute_ahead()
    window = Window("test-fixed", 2, 60)
    quotas = []
    for _ in range(3):
        outcome = hit([(window, "a")], fail=Fail.CLOSED)
        assert outcome is not None
        quotas.append(outcome.quotas[0])
    assert [q.used for q in quotas] == [1, 2, 3]
    assert [q.exceeded for q in quotas] == [False, False, True]
    assert quotas[1].remaining == 0
    assert 1 <= quotas[2].retry_after <= 60
    other = hit([(window, "b")], fail=Fail.CLOSED)
    assert other is not None and other.quotas[0].used == 1


def test_a_refused_hit_is_taken_back() -> None:
    whole_minute_ahead()
    window = Window("test-back", 1, 60)
    first = hit([(window, "a")], fail=Fail.CLOSED)
    second = hit([(window, "a")], fail=Fail.CLOSED)
    assert first is not None and second is not None
    second.take_back()
    third = hit([(window, "a")], fail=Fail.CLOSED)
    assert third is not None and third.quotas[0].used == 2


def test_a_sliding_window_weighs_the_previous_window_by_its_overlap() -> None:
    window = Window("test-sliding", 10, 100, sliding=True)
    client = ef_redis.get_redis()
    now = time.time()
    index, elapsed = divmod(now, 100)
    client.set(f"{conf.get().redis_key_prefix}:rl:test-sliding:a:{int(index) - 1}", 10, ex=300)
    outcome = hit([(window, "a")], fail=Fail.CLOSED)
    assert outcome is not None
    quota = outcome.quotas[0]
    expected = 10 * (1 - elapsed / 100) + 1
    assert quota.used == pytest.approx(expected, abs=1.01)
    assert quota.exceeded == (expected > 10 + 1e-6)


@pytest.mark.parametrize(
    ("previous", "current", "elapsed", "wait"),
    [
        (0, 0, 10.0, 0.0),  # empty: now
        (10, 0, 0.0, 10.0),  # previous full: once a tenth of it has slid out
        (10, 5, 50.0, 10.0),  # 10·(1 - t/100) + 6 ≤ 10 from t = 60
        (0, 10, 30.0, 80.0),  # this window full: 70 s to its end, then 10·(1 - t/100) + 1 ≤ 10 at t = 10
    ],
)
def test_sliding_wait(previous: int, current: int, elapsed: float, wait: float) -> None:
    assert _sliding_wait(limit=10, seconds=100, previous=previous, current=current, elapsed=elapsed) == pytest.approx(
        wait
    )


def test_fixed_window_headers_follow_the_ietf_draft() -> None:
    quota = fixed_window(policy="key", limit=60000, seconds=60, used=10, now=18.0)
    assert quota.headers() == {"RateLimit-Policy": '"key";q=60000;w=60', "RateLimit": '"key";r=59990;t=42'}
    over = fixed_window(policy="key", limit=5, seconds=60, used=6, now=59.5)
    assert over.headers()["RateLimit"] == '"key";r=0;t=1'
    assert over.retry_after == 1


def test_redis_down_fails_open_or_closed_as_asked(redis_down: None) -> None:
    window = Window("test-down", 1, 60)
    assert hit([(window, "a")], fail=Fail.OPEN) is None
    with pytest.raises(Unavailable) as refused:
        hit([(window, "a")], fail=Fail.CLOSED)
    assert refused.value.code == "rate_limiter_unavailable"
    assert refused.value.retry_after >= 1


# --- the intake: each key's own limit, and the RateLimit headers ------------------------------


@pytest.fixture
def default_limit(settings: Any) -> int:
    conf_override(settings, rate_limit_per_minute=50)
    whole_minute_ahead()
    return 50


def send(api: Client, key: str, n: int = 1, slug: str = "shop", **extra: Any) -> list[Any]:
    return [post_event(api, slug, {"type": "page_view"}, key=key, **extra) for _ in range(n)]


def test_a_keys_own_limit_wins_over_the_default(api: Client, stream: Stream, default_limit: int) -> None:
    own = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream], rate_limit_per_minute=2).raw_key
    plain = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key

    answers = send(api, own, 3)
    assert [r.status_code for r in answers] == [202, 202, 429]
    details = assert_api_error(answers[2], 429, "rate_limited")
    assert details == {"limit_per_minute": 2}
    assert 1 <= int(answers[2]["Retry-After"]) <= 60
    assert answers[2]["RateLimit"].startswith('"key";r=0;')
    assert [r.status_code for r in send(api, plain, 3)] == [202, 202, 202]
    assert InboxEvent.objects.count() == 5


def test_a_keys_own_limit_applies_with_the_default_off(api: Client, stream: Stream) -> None:
    # The run's default is 0 (off): a key's own limit still holds.
    whole_minute_ahead()
    own = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream], rate_limit_per_minute=1).raw_key
    assert [r.status_code for r in send(api, own, 2)] == [202, 429]


def test_a_higher_own_limit_lets_a_key_past_the_default(api: Client, stream: Stream, settings: Any) -> None:
    conf_override(settings, rate_limit_per_minute=1)
    whole_minute_ahead()
    own = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream], rate_limit_per_minute=3).raw_key
    assert [r.status_code for r in send(api, own, 4)] == [202, 202, 202, 429]


def test_every_answer_after_authentication_carries_the_ratelimit_headers(
    api: Client, stream: Stream, default_limit: int
) -> None:
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key
    accepted = send(api, key, 2)
    not_granted = post_event(api, "no-such-stream", {"type": "page_view"}, key=key)
    invalid = post_event(api, stream.slug, {"type": ""}, key=key)

    assert not_granted.status_code == 404
    assert invalid.status_code == 400
    for number, response in enumerate([*accepted, not_granted, invalid], start=1):
        policy = POLICY_RE.match(response["RateLimit-Policy"])
        state = STATE_RE.match(response["RateLimit"])
        assert policy and state, response.headers
        assert int(policy[1]) == default_limit
        assert int(state[1]) == default_limit - number
        assert 1 <= int(state[2]) <= 60


def test_an_unauthenticated_answer_has_no_ratelimit_headers(api: Client, stream: Stream, default_limit: int) -> None:
    refused = post_event(api, stream.slug, {"type": "page_view"}, key="ef_ingest_nope")
    assert refused.status_code == 401
    assert "RateLimit" not in refused and "RateLimit-Policy" not in refused


def test_browsers_may_read_the_ratelimit_headers(api: Client, stream: Stream, default_limit: int) -> None:
    key = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key
    preflight = api.options("/api/v1/streams/shop/events", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    (accepted,) = send(api, key, HTTP_ORIGIN="https://app.example.com")
    for response in (preflight, accepted):
        exposed = {name.strip().lower() for name in response["Access-Control-Expose-Headers"].split(",")}
        assert {"ratelimit", "ratelimit-policy", "retry-after"} <= exposed


@pytest.fixture
def key_of_one(stream: Stream) -> str:
    return api_key_create(kind=ApiKeyKind.INGEST, streams=[stream], rate_limit_per_minute=1).raw_key


def test_the_intake_keeps_accepting_while_redis_is_down(api: Client, key_of_one: str, redis_down: None) -> None:
    answers = send(api, key_of_one, 3)

    assert [r.status_code for r in answers] == [202, 202, 202]
    # The limit is known, the count is not: the policy alone.
    assert answers[0]["RateLimit-Policy"] == '"key";q=1;w=60'
    assert "RateLimit" not in answers[0]
    assert InboxEvent.objects.count() == 3


# --- the management API, per person -----------------------------------------------------------


def person(stream: Stream, username: str) -> Client:
    user = User.objects.create_user(username, password="a-long-password-1")
    user.groups.add(Group.objects.get(name="Developer"))
    team_create(slug=f"team-{username}", members=[user], streams=[stream])
    token = str(RefreshToken.for_user(user).access_token)
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def three_a_minute(settings: Any) -> None:
    conf_override(settings, api_rate_limit_per_user=3)
    whole_minute_ahead()


def test_a_person_over_the_limit_gets_429_in_the_api_shape(stream: Stream, three_a_minute: None) -> None:
    ann, bob = person(stream, "ann"), person(stream, "bob")
    answers = [ann.get(GROUPS) for _ in range(4)]

    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert_api_error(answers[3], 429, "rate_limited")
    assert 1 <= int(answers[3]["Retry-After"]) <= 60
    assert bob.get(GROUPS).status_code == 200


def test_api_keys_are_not_counted_as_people(api: Client, stream: Stream, three_a_minute: None) -> None:
    secret = api_key_create(kind=ApiKeyKind.SECRET, streams=[stream]).raw_key
    assert {api.get(GROUPS, HTTP_X_API_KEY=secret).status_code for _ in range(5)} == {200}


def test_the_management_api_fails_closed_while_redis_is_down(stream: Stream, settings: Any, redis_down: None) -> None:
    conf_override(settings, api_rate_limit_per_user=100)
    ann = person(stream, "ann")
    response = ann.get(GROUPS)
    assert_api_error(response, 503, "rate_limiter_unavailable")
    assert int(response["Retry-After"]) >= 1
