"""The smallest Django view that takes one event: parse the JSON, one INSERT, answer 202.

No key check, no envelope check, no idempotency: it is the floor the product's
single-event endpoint is compared against.
"""

from __future__ import annotations

import os
import uuid

import orjson
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

STREAM_ID = int(os.environ.get("BENCH_STREAM_ID", "1"))

INSERT_SQL = """
INSERT INTO ingestion_inbox
    (stream_id, event_id, type, event_time, received_at, user_id, anonymous_id,
     session_id, payload, context, flags, attempts, next_attempt_at, last_error)
VALUES (%s, %s, %s, %s::timestamptz, %s, %s, %s, %s, %s::jsonb, %s::jsonb, '{}', 0, %s, '')
"""


@csrf_exempt
def minimal_event(request: HttpRequest, slug: str) -> HttpResponse:
    received_at = timezone.now()
    event = orjson.loads(request.body)
    event_id = event.get("event_id") or str(uuid.uuid4())
    with connection.cursor() as cursor:
        cursor.execute(
            INSERT_SQL,
            [
                STREAM_ID,
                event_id,
                event["type"],
                event.get("timestamp") or received_at,
                received_at,
                event.get("user_id"),
                event.get("anonymous_id"),
                event.get("session_id"),
                orjson.dumps(event.get("payload") or {}).decode(),
                orjson.dumps(event.get("context") or {}).decode(),
                received_at,
            ],
        )
    body = orjson.dumps({"event_id": event_id, "status": "accepted"})
    return HttpResponse(body, status=202, content_type="application/json")


urlpatterns = [path("api/v1/streams/<slug:slug>/events", minimal_event)]
