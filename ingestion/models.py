from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class InboxEvent(models.Model):
    """An accepted event waiting for processing.

    Rows are written by the ingestion API in bulk and removed by the processor
    in the same transaction that appends them to the stream log.
    """

    id = models.BigAutoField(primary_key=True)
    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="+", db_index=False)
    event_id = models.CharField(max_length=128)
    type = models.CharField(max_length=200)
    event_time = models.DateTimeField()
    received_at = models.DateTimeField(db_default=Now())
    user_id = models.CharField(max_length=256, null=True, blank=True)
    anonymous_id = models.CharField(max_length=256, null=True, blank=True)
    session_id = models.CharField(max_length=256, null=True, blank=True)
    payload = models.JSONField(default=dict)
    context = models.JSONField(default=dict)
    flags = models.JSONField(default=dict)
    # The API key that sent it, carried into the log (no foreign key: see streams.LogEntry).
    api_key_id = models.BigIntegerField(null=True, blank=True)
    # Processing bookkeeping: a failing event is retried alone with backoff.
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_default=Now())
    first_failed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "ingestion_inbox"
        constraints = [
            models.UniqueConstraint(fields=["stream", "event_id"], name="uniq_inbox_event_id"),
        ]
        indexes = [
            models.Index(fields=["stream", "next_attempt_at", "id"], name="inbox_stream_due"),
        ]

    def __str__(self) -> str:
        return f"inbox {self.stream_id}/{self.event_id}"


class SessionState(models.Model):
    """The current session of each user or anonymous id, for events sent without one.

    ``started_at`` and ``last_seen`` are event times (a backfill writes last year's);
    ``touched_at`` is when processing last used the row, by the database's clock.
    Retention expires a row by ``touched_at`` (streams/retention.py): the events
    that used it were logged no later, so the row goes when they may have, and
    never in the middle of a backfill whose events are old.
    """

    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="+", db_index=False)
    identity = models.CharField(max_length=300)
    session_id = models.CharField(max_length=64)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()
    touched_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "ingestion_session_state"
        constraints = [
            models.UniqueConstraint(fields=["stream", "identity"], name="uniq_session_identity"),
        ]
        indexes = [
            # Retention's delete: one index range per stream (migration 0009).
            models.Index(fields=["stream", "touched_at"], name="session_stream_touched"),
        ]

    def __str__(self) -> str:
        return f"{self.identity}: {self.session_id}"


class VisitorSalt(models.Model):
    """The secret of one UTC day that the browser tracker's visitor hashes are made with (ingestion/visitors.py).

    Deleted once the day is older than yesterday: without it, a hash of that day
    can no longer be linked to the visitor it came from, nor to another day's.
    """

    day = models.DateField(primary_key=True)
    salt = models.BinaryField()
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "ingestion_visitor_salt"

    def __str__(self) -> str:
        return f"visitor salt of {self.day}"
