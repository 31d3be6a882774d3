from __future__ import annotations

from django.conf import settings
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
    type = models.CharField(max_length=64)
    event_time = models.DateTimeField()
    received_at = models.DateTimeField(db_default=Now())
    user_id = models.CharField(max_length=256, null=True, blank=True)
    anonymous_id = models.CharField(max_length=256, null=True, blank=True)
    session_id = models.CharField(max_length=256, null=True, blank=True)
    payload = models.JSONField(default=dict)
    context = models.JSONField(default=dict)
    flags = models.JSONField(default=dict)
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


class DeadLetterStage(models.TextChoices):
    VALIDATE = "validate", "Validate"
    ENRICH = "enrich", "Enrich"
    APPEND = "append", "Append"
    DELIVER = "deliver", "Deliver (webhook)"
    CONSUME = "consume", "Consume (consumer group)"


class DeadLetterStatus(models.TextChoices):
    OPEN = "open", "Open"
    REPLAYED = "replayed", "Replayed"
    DISCARDED = "discarded", "Discarded"


class DeadLetter(models.Model):
    """An event that failed a stage more times than allowed, kept whole for review."""

    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="dead_letters")
    event_id = models.CharField(max_length=128)
    # The event as it entered the failing stage (the inbox row or the log entry).
    event = models.JSONField()
    stage = models.CharField(max_length=16, choices=DeadLetterStage.choices)
    # For deliver/consume: which webhook subscription or consumer group, and the log offset.
    subscriber = models.CharField(max_length=200, blank=True, default="")
    log_offset = models.BigIntegerField(null=True, blank=True)
    error_class = models.CharField(max_length=200)
    error_message = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=1)
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=DeadLetterStatus.choices, default=DeadLetterStatus.OPEN)
    acted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-last_failed_at"]
        indexes = [
            models.Index(fields=["status", "stage", "last_failed_at"], name="deadletter_status_stage"),
            models.Index(fields=["stream", "event_id"], name="deadletter_stream_event"),
        ]

    def __str__(self) -> str:
        return f"{self.stream_id}/{self.event_id} @{self.stage}"


class SessionState(models.Model):
    """The current session of each user or anonymous id, for events sent without one."""

    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="+", db_index=False)
    identity = models.CharField(max_length=300)
    session_id = models.CharField(max_length=64)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        db_table = "ingestion_session_state"
        constraints = [
            models.UniqueConstraint(fields=["stream", "identity"], name="uniq_session_identity"),
        ]

    def __str__(self) -> str:
        return f"{self.identity}: {self.session_id}"
