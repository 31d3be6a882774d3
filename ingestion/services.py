"""Ingestion: checked events into the inbox, in one bulk statement."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from django.db import transaction

from eventflow import conf
from eventflow.db import prepared_cursor
from eventflow.metrics import intake_counted
from streams.models import SchemaMode
from streams.schemas import validation_errors
from streams.selectors import StreamInfo

from .envelope import CheckedEvent, EnvelopeLimits, check_event, clock_skew
from .group_commit import group_commit
from .processing import kicker

logger = logging.getLogger(__name__)

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"

# One statement writes the whole batch: rows arrive as one JSON document, are
# skipped when the event already reached the log, and ON CONFLICT makes a
# concurrent or repeated send of the same event_id a no-op. RETURNING tells
# which rows are new; the rest are duplicates. The document is parsed once, as
# jsonb, so payload and context reach their columns without a second parse; the
# statement is bound on the server and prepared, so it is planned once per
# connection rather than per request, and the document is not quoted into it.
# OFFSET 0 keeps the log check a per-row probe of the log's key table (one index
# however many partitions the log has): without it the planner may turn it into a
# hash anti-join over the stream's every key when the statistics are stale, which
# costs tens of milliseconds a request as it grows.
INSERT_SQL = """
INSERT INTO ingestion_inbox
    (stream_id, event_id, type, event_time, received_at, user_id, anonymous_id,
     session_id, payload, context, flags, attempts, next_attempt_at, last_error, api_key_id)
SELECT %(stream_id)s, r.event_id, r.type, r.event_time, %(received_at)s, r.user_id, r.anonymous_id,
       r.session_id, r.payload, r.context, r.flags, 0, %(received_at)s, '', %(api_key_id)s
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
    event_id text, type text, event_time timestamptz, user_id text, anonymous_id text,
    session_id text, payload jsonb, context jsonb, flags jsonb)
WHERE NOT EXISTS (
    SELECT 1 FROM streams_log_key l WHERE l.stream_id = %(stream_id)s AND l.event_id = r.event_id OFFSET 0)
ON CONFLICT (stream_id, event_id) DO NOTHING
RETURNING event_id
"""


@dataclass
class IngestResult:
    results: list[dict[str, Any]] = field(default_factory=list)
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    schema_rejections: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "results": self.results,
        }


def _row(event: CheckedEvent) -> bytes:
    return orjson.dumps(
        {
            "event_id": event.event_id,
            "type": event.type,
            "event_time": event.event_time,
            "user_id": event.user_id,
            "anonymous_id": event.anonymous_id,
            "session_id": event.session_id,
            "payload": event.payload,
            "context": event.context,
            "flags": event.flags,
        }
    )


def events_ingest(
    *,
    stream: StreamInfo,
    raw_events: list[Any],
    received_at: datetime,
    sent_at: Any = None,
    may_hold_nul: bool = True,
    api_key_id: int | None = None,
) -> IngestResult:
    """Check ``raw_events`` and commit the valid ones to the inbox.

    ``may_hold_nul=False`` when the body they came in held no NUL (``JsonBody``).
    ``api_key_id`` is the key that sent them: one value for the batch, kept on each event.

    Returns one result per input event, in order. Invalid events never stop
    valid ones. The events are committed when this returns.
    """
    skew = clock_skew(sent_at, received_at)
    limits = EnvelopeLimits.current()
    max_event_bytes = conf.get().max_event_bytes
    enforce = stream.schema_mode == SchemaMode.ENFORCE
    result = IngestResult()
    results = result.results
    rows: list[bytes] = []
    pending: dict[str, int] = {}  # event_id -> index in results of its first copy

    for index, raw in enumerate(raw_events):
        checked = check_event(raw, received_at=received_at, skew=skew, limits=limits, may_hold_nul=may_hold_nul)
        if isinstance(checked, list):
            event_id = raw.get("event_id") if isinstance(raw, dict) else None
            results.append(_rejected(index, event_id, checked))
            result.rejected += 1
            continue
        if enforce:
            validator = stream.validator_for(checked.type)
            errors = validation_errors(validator, checked.payload) if validator is not None else []
            if errors:
                results.append(_rejected(index, checked.event_id, errors))
                result.rejected += 1
                result.schema_rejections += 1
                continue
        if checked.event_id in pending:
            results.append({"index": index, "event_id": checked.event_id, "status": DUPLICATE})
            result.duplicates += 1
            continue
        row = _row(checked)
        if len(row) > max_event_bytes:
            results.append(
                _rejected(
                    index,
                    checked.event_id,
                    [
                        {
                            "field": "",
                            "code": "event_too_large",
                            "message": f"An event may be at most {max_event_bytes} bytes.",
                        }
                    ],
                )
            )
            result.rejected += 1
            continue
        pending[checked.event_id] = len(results)
        entry: dict[str, Any] = {"index": index, "event_id": checked.event_id, "status": ACCEPTED}
        if checked.flags:
            entry["flags"] = checked.flags
        results.append(entry)
        rows.append(row)

    if rows:
        # A single event on the intake's own autocommit joins the events other requests commit meanwhile.
        grouped = len(rows) == 1 and not transaction.get_connection().in_atomic_block
        if grouped:
            event_id = next(iter(pending))
            new = group_commit.insert(
                stream_id=stream.id,
                event_id=event_id,
                row=rows[0],
                received_at=received_at,
                api_key_id=api_key_id,
                write=_insert,
                committed=processing_kick,
            )
            inserted = {event_id} if new else set()
        else:
            inserted = _insert(stream_id=stream.id, rows=rows, received_at=received_at, api_key_id=api_key_id)
        for event_id, position in pending.items():
            if event_id in inserted:
                result.accepted += 1
            else:
                results[position]["status"] = DUPLICATE
                results[position].pop("flags", None)
                result.duplicates += 1
        if inserted and not grouped:
            stream_id = stream.id
            transaction.on_commit(lambda: processing_kick(stream_id))
    counted = functools.partial(
        intake_counted,
        stream.slug,
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=result.rejected,
        schema_rejections=result.schema_rejections,
    )
    # Counted once committed: at once on the intake's own autocommit, after the caller's transaction otherwise.
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(counted)
    else:
        counted()
    return result


def _insert(*, stream_id: int, rows: list[bytes], received_at: datetime, api_key_id: int | None) -> set[str]:
    document = b"[" + b",".join(rows) + b"]"
    params: dict[str, Any] = {
        "stream_id": stream_id,
        "received_at": received_at,
        "rows": document.decode(),
        "api_key_id": api_key_id,
    }
    with prepared_cursor() as cursor:
        cursor.execute(INSERT_SQL, params)
        return {row[0] for row in cursor.fetchall()}


def _rejected(index: int, event_id: Any, errors: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "index": index,
        "event_id": event_id if isinstance(event_id, str) else None,
        "status": REJECTED,
        "errors": errors,
    }


def processing_kick(stream_id: int) -> None:
    """Ask a worker to process the stream soon (from the kicker's thread in a serving process).

    Never raises: the sweep is the safety net.
    """
    kicker.kick(stream_id)
