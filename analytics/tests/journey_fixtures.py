"""Events for the tests of funnels, paths, retention and segments, and the callers who ask.

Each test writes the events it needs with ``log``, and computes what it expects
from those same events in Python (``reference_*`` in the test modules), never
from the database.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import orjson
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.test import Client
from django.utils import timezone
from rest_framework_simplejwt.tokens import RefreshToken

from analytics.services import rollups_apply
from streams.log import LogRecord, log_append
from streams.models import Stream
from streams.services import team_create

_ids = itertools.count()
BASE = "/api/v1/streams/shop"


def event(
    type: str,
    at: datetime,
    *,
    user: str | None = None,
    anon: str | None = None,
    session: str | None = None,
    payload: dict[str, Any] | None = None,
    enrichment: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
) -> LogRecord:
    return LogRecord(
        event_id=f"j{next(_ids)}",
        type=type,
        event_time=at,
        received_at=at,
        user_id=user,
        anonymous_id=anon,
        session_id=session,
        payload=payload or {},
        context=context or {},
        enrichment=enrichment or {},
    )


def log(stream: Stream, records: list[LogRecord], *, logged_at: datetime | None = None) -> list[LogRecord]:
    """Append ``records`` as given (shuffled order is fine: the log keeps their event times), and count
    them into the rollups in the same transaction, as the processor does; logged at ``logged_at`` (now by
    default), which decides the day partition they land in."""
    with transaction.atomic():
        result = log_append(stream_id=stream.pk, records=records, logged_at=logged_at or timezone.now())
        rollups_apply(stream_id=stream.pk, records=[record for _, record in result.appended])
    return records


class Caller:
    """A JSON client of one person or key."""

    def __init__(self, headers: dict[str, Any]) -> None:
        self.client = Client(**headers)

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params)

    def post(self, path: str, body: Any, **params: Any) -> Any:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        url = f"{path}?{query}" if query else path
        return self.client.post(url, orjson.dumps(body), content_type="application/json")

    def patch(self, path: str, body: Any) -> Any:
        return self.client.patch(path, orjson.dumps(body), content_type="application/json")

    def delete(self, path: str) -> Any:
        return self.client.delete(path)


def person_of(stream: Stream, role: str = "Analyst", username: str = "ana") -> Caller:
    user = User.objects.create_user(username, password=None)
    user.groups.add(Group.objects.get(name=role))
    team_create(slug=f"{username}-team", members=[user], streams=[stream])
    return Caller({"HTTP_AUTHORIZATION": f"Bearer {RefreshToken.for_user(user).access_token}"})
