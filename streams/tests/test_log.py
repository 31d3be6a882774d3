from datetime import UTC, datetime

import pytest

from streams.log import LogRecord, log_append_now, log_head
from streams.models import LogEntry

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def _rec(event_id: str) -> LogRecord:
    return LogRecord(event_id=event_id, type="page_view", event_time=NOW, received_at=NOW, payload={"page": "/"})


def test_offsets_are_gapless_and_known_events_are_skipped(stream):
    first = log_append_now(stream_id=stream.pk, records=[_rec("a"), _rec("b")])
    second = log_append_now(stream_id=stream.pk, records=[_rec("b"), _rec("c"), _rec("c")])
    assert [o for o, _ in first.appended] == [0, 1]
    assert [o for o, _ in second.appended] == [2]
    assert [r.event_id for r in second.already_logged] == ["b", "c"]
    assert log_head(stream.pk) == 3
    assert list(LogEntry.objects.filter(stream=stream).order_by("offset").values_list("offset", "event_id")) == [
        (0, "a"),
        (1, "b"),
        (2, "c"),
    ]
