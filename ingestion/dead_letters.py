"""Working the dead letter queue: replay and discard (services)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import orjson
from django.db import connection, transaction
from django.utils import timezone

from .models import DeadLetter, DeadLetterStage, DeadLetterStatus
from .services import INSERT_SQL, processing_kick

REPLAYABLE_STAGES = (DeadLetterStage.VALIDATE, DeadLetterStage.ENRICH, DeadLetterStage.APPEND)


def _inbox_row(dead_letter: DeadLetter) -> bytes:
    event: dict[str, Any] = dead_letter.event
    return orjson.dumps(
        {
            "event_id": event["event_id"],
            "type": event["type"],
            "event_time": event["event_time"],
            "user_id": event.get("user_id"),
            "anonymous_id": event.get("anonymous_id"),
            "session_id": event.get("session_id"),
            "payload": event.get("payload") or {},
            "context": event.get("context") or {},
            "flags": {**(event.get("flags") or {}), "replayed_from": dead_letter.pk},
        }
    )


def dead_letters_replay(*, ids: Iterable[int], user: Any = None) -> int:
    """Send open dead letters of the processing stages back through processing.

    Idempotent: only open letters are replayed (a second replay finds them
    replayed), and an event already in the log is not queued again.
    """
    now = timezone.now()
    with transaction.atomic():
        letters = list(
            DeadLetter.objects.select_for_update()
            .filter(pk__in=list(ids), status=DeadLetterStatus.OPEN, stage__in=REPLAYABLE_STAGES)
            .order_by("pk")
        )
        by_stream: dict[int, list[DeadLetter]] = {}
        for letter in letters:
            by_stream.setdefault(letter.stream_id, []).append(letter)
        with connection.cursor() as cursor:
            for stream_id, group in by_stream.items():
                document = b"[" + b",".join(_inbox_row(letter) for letter in group) + b"]"
                cursor.execute(INSERT_SQL, {"stream_id": stream_id, "received_at": now, "rows": document.decode()})
        DeadLetter.objects.filter(pk__in=[letter.pk for letter in letters]).update(
            status=DeadLetterStatus.REPLAYED, acted_by=user, acted_at=now
        )
        for stream_id in by_stream:
            transaction.on_commit(functools.partial(processing_kick, stream_id))
    return len(letters)


def dead_letters_discard(*, ids: Iterable[int], user: Any = None) -> int:
    return DeadLetter.objects.filter(pk__in=list(ids), status=DeadLetterStatus.OPEN).update(
        status=DeadLetterStatus.DISCARDED, acted_by=user, acted_at=timezone.now()
    )
