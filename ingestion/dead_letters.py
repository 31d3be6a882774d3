"""Replay of processing dead letters: back into the inbox, to go through processing again.

Registered with ``streams.dead_letters`` (which holds the letters, their
status guard and the audit) for the processing stages when the app starts.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from django.db import connection, transaction
from django.utils import timezone

from streams.models import DeadLetter

from .services import INSERT_SQL, processing_kick


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


def processing_replay(letters: list[DeadLetter]) -> dict[int, str]:
    """Queue the letters' events in the inbox again; processing is asked to run after commit.

    An event already in the log, or already waiting in the inbox, is not
    queued a second time (the inbox INSERT skips both).
    """
    now = timezone.now()
    by_stream: dict[int, list[DeadLetter]] = {}
    for letter in letters:
        by_stream.setdefault(letter.stream_id, []).append(letter)
    with connection.cursor() as cursor:
        for stream_id, of_stream in by_stream.items():
            document = b"[" + b",".join(_inbox_row(letter) for letter in of_stream) + b"]"
            # A replayed event counts as sent by no known key (its letter does not keep one).
            params: dict[str, Any] = {
                "stream_id": stream_id,
                "received_at": now,
                "rows": document.decode(),
                "api_key_id": None,
            }
            cursor.execute(INSERT_SQL, params)
    for stream_id in by_stream:
        transaction.on_commit(functools.partial(processing_kick, stream_id))
    return {}
