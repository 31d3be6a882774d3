import time

import pytest

from ingestion.models import InboxEvent
from tests.fixtures import conf_override
from tests.intake import assert_api_error, post_event

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def limit_three(settings):
    conf_override(settings, rate_limit_per_minute=3)
    # The window is a calendar minute: don't start a test that would straddle two.
    if time.time() % 60 > 55:
        time.sleep(61 - time.time() % 60)


def test_a_key_over_its_limit_gets_429_with_retry_after_and_writes_nothing(api, stream, ingest_key, limit_three):
    statuses = [
        post_event(api, stream.slug, {"event_id": f"r{i}", "type": "page_view"}, key=ingest_key).status_code
        for i in range(3)
    ]
    assert statuses == [202, 202, 202]
    response = post_event(api, stream.slug, {"event_id": "r3", "type": "page_view"}, key=ingest_key)
    details = assert_api_error(response, 429, "rate_limited")
    assert details["limit_per_minute"] == 3
    assert 1 <= int(response["Retry-After"]) <= 60
    assert not InboxEvent.objects.filter(event_id="r3").exists()
    assert InboxEvent.objects.count() == 3


def test_each_key_has_its_own_budget(api, stream, ingest_key, limit_three):
    from streams.models import ApiKeyKind
    from streams.services import api_key_create

    other = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream]).raw_key
    for i in range(4):
        post_event(api, stream.slug, {"event_id": f"a{i}", "type": "page_view"}, key=ingest_key)
    response = post_event(api, stream.slug, {"event_id": "b0", "type": "page_view"}, key=other)
    assert response.status_code == 202
