import orjson
import pytest

from ingestion.models import InboxEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_single_event_is_committed_before_202(api, stream, ingest_key):
    response = api.post(
        f"/api/v1/streams/{stream.slug}/events",
        data=orjson.dumps({"type": "page_view", "event_id": "e1", "payload": {"page": "/x"}}),
        content_type="application/json",
        HTTP_X_API_KEY=ingest_key,
    )
    assert response.status_code == 202, response.content
    assert response.json() == {"event_id": "e1", "status": "accepted"}
    assert InboxEvent.objects.filter(stream=stream, event_id="e1").count() == 1
