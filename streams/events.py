"""The event's fields, defined once: what a producer sends, what the log keeps, what readers get.

The intake (ingestion/envelope.py), the compatible formats (ingestion/compat/, which
translate into ENVELOPE_FIELDS), the log (streams/log.py), the consumer groups and the
query API (analytics/query.py) name their fields from here. The type rule is
streams/event_types.py. The hot paths build each event's dict with its keys written
out (a dict display is the fastest way to build one); streams/tests/test_events.py
checks that those keys are the ones named here.
"""

from __future__ import annotations

# What a producer may send (docs: README "Sending events"); anything else is refused.
ENVELOPE_FIELDS = frozenset(
    {"event_id", "type", "timestamp", "user_id", "anonymous_id", "session_id", "payload", "context"}
)
# The ids that name who did it, each optional, each up to MAX_ID_LENGTH characters.
ID_FIELDS = ("user_id", "anonymous_id", "session_id")
MAX_EVENT_ID_LENGTH = 128
MAX_ID_LENGTH = 256
# The JSON objects an event carries: the producer's, and what processing adds.
JSON_FIELDS = ("payload", "context", "enrichment", "flags")

# An event as the log holds it and readers receive it (consumer groups, webhooks, the query
# API), in this order; "timestamp" is when it happened (the log's event_time).
LOGGED_FIELDS = (
    "offset",
    "event_id",
    "type",
    "timestamp",
    "received_at",
    "logged_at",
    *ID_FIELDS,
    *JSON_FIELDS,
)
# An export's CSV columns: the logged fields but the processing time and the flags.
CSV_FIELDS = tuple(name for name in LOGGED_FIELDS if name not in ("logged_at", "flags"))
