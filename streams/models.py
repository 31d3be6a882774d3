from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Now


class SchemaMode(models.TextChoices):
    OFF = "off", "Off"
    WARN = "warn", "Warn (accept, record violations)"
    ENFORCE = "enforce", "Enforce (reject at ingest)"
    QUARANTINE = "quarantine", "Quarantine (dead-letter violations)"


# An origin as a browser sends it, or one with a wildcard for every subdomain of a host.
ORIGIN_RE = re.compile(r"https?://(\*\.)?[a-z0-9]([a-z0-9.-]{0,252}[a-z0-9])?(:[0-9]{1,5})?\Z")
MAX_ALLOWED_ORIGINS = 50


def validate_origins(value: object) -> None:
    if not isinstance(value, list) or len(value) > MAX_ALLOWED_ORIGINS:
        raise ValidationError(f"A list of at most {MAX_ALLOWED_ORIGINS} origins.")
    for entry in value:
        if not isinstance(entry, str) or not ORIGIN_RE.match(entry):
            raise ValidationError(
                f"{entry!r} is not an origin such as https://shop.example.com or https://*.example.com "
                "(scheme, host and optional port, lowercase, no path)."
            )


class Stream(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    schema_mode = models.CharField(max_length=16, choices=SchemaMode.choices, default=SchemaMode.WARN)
    retention_days = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(36500)]
    )
    # Enrichment keeps only an anonymised IP unless the stream opts out.
    anonymize_ip = models.BooleanField(default=True)
    # Pages allowed to send with the stream's ingest keys, as origins ("https://shop.example.com",
    # "https://*.example.com"); empty: any. Checked by the compatible intake (ingestion/compat).
    allowed_origins = models.JSONField(default=list, blank=True, validators=[validate_origins])
    created_at = models.DateTimeField(auto_now_add=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["slug"]
        # What a person may do to the streams they reach; roles hold these (streams/access.py asks them).
        permissions = [
            ("send_events", "Send events to a stream"),
            ("read_events", "Read a stream's events and analytics"),
            ("consume_stream", "Read a stream through consumer groups"),
            ("manage_stream", "Manage streams, schemas, API keys, consumer groups and webhooks"),
            ("operate_stream", "Watch processing and work dead letters"),
        ]

    def __str__(self) -> str:
        return self.slug


class Team(models.Model):
    """People and the streams they reach: a person reaches exactly the streams of their teams."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="teams", blank=True)
    streams = models.ManyToManyField(Stream, related_name="teams", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        permissions = [("administer_people", "Administer people, teams, roles and the audit log")]

    def __str__(self) -> str:
        return self.slug


class StreamHead(models.Model):
    """The next offset of a stream's log.

    Appenders lock this row (``UPDATE … RETURNING``) inside the append
    transaction, so offsets are gapless and follow commit order.
    """

    stream = models.OneToOneField(Stream, on_delete=models.CASCADE, primary_key=True, related_name="head")
    next_offset = models.BigIntegerField(default=0)
    # The logged_at of the last append: a stream's logged_at never goes back, so its
    # offsets and its log's time partitions follow one order (streams/log.py).
    last_logged_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.stream_id}@{self.next_offset}"


class EventSchema(models.Model):
    """One version of the JSON Schema (draft 2020-12) for an event type's payload."""

    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="schemas")
    event_type = models.CharField(max_length=200)
    version = models.PositiveIntegerField()
    schema = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["stream", "event_type", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["stream", "event_type", "version"], name="uniq_schema_version"),
        ]

    def __str__(self) -> str:
        return f"{self.stream_id}:{self.event_type} v{self.version}"


class ApiKeyKind(models.TextChoices):
    INGEST = "ingest", "Ingest (write-only)"
    SECRET = "secret", "Secret (read and consume)"


class ApiKey(models.Model):
    name = models.CharField(max_length=200, blank=True, default="")
    kind = models.CharField(max_length=16, choices=ApiKeyKind.choices)
    # Only the SHA-256 of the key is stored; the prefix helps people tell keys apart.
    prefix = models.CharField(max_length=32)
    hashed_key = models.CharField(max_length=64, unique=True)
    streams = models.ManyToManyField(Stream, related_name="api_keys", blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # Requests a minute this key may make; empty: the installation's default. At least 1: a 0 would read as
    # "no limit" (the installation's 0 means that), never as "none at all".
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # When a change of the key (revoke, streams, expiry) could not be told to the Redis cache, which was
    # unreachable; cleared once a sync lands it there (streams/auth.py, api_key_cache_sync).
    cache_forget_pending_since = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.kind})"


class LogEntry(models.Model):
    """One event in a stream's ordered, gapless log.

    The table is partitioned by day of ``logged_at`` (docs/SCALING.md): each
    partition has its own primary key (stream_id, offset), and the idempotency
    key (stream_id, event_id) lives in ``LogKey``, one index whatever the number
    of partitions. Partitions are created ahead and dropped by streams/retention.py.
    """

    pk = models.CompositePrimaryKey("stream_id", "offset")
    # No constraint in the database: it cost a lookup per appended event (migration 0012);
    # deleting a stream deletes its events through Django, as it does their keys.
    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    offset = models.BigIntegerField()
    event_id = models.CharField(max_length=128)
    type = models.CharField(max_length=200)
    event_time = models.DateTimeField()
    received_at = models.DateTimeField()
    logged_at = models.DateTimeField(db_default=Now())
    user_id = models.CharField(max_length=256, null=True, blank=True)
    anonymous_id = models.CharField(max_length=256, null=True, blank=True)
    session_id = models.CharField(max_length=256, null=True, blank=True)
    payload = models.JSONField(default=dict)
    context = models.JSONField(default=dict)
    enrichment = models.JSONField(default=dict)
    flags = models.JSONField(default=dict)
    # The API key that sent the event (None: sent before keys were recorded, or by a tool).
    # A plain number, no foreign key: the constraint would cost a lookup per appended
    # event, and deleting a key would have to visit its events (README, Analytics).
    api_key_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        db_table = "streams_log"
        indexes = [
            models.Index(fields=["stream", "event_time"], name="log_stream_time"),
            # With who and when in it: funnels and retention by type read it alone (migration 0013).
            models.Index(
                fields=["stream", "type", "event_time"],
                include=["user_id", "anonymous_id", "offset", "logged_at"],
                name="log_type_time_people",
            ),
            # The readers by user and by session (migration 0007, docs/QUERIES.md).
            models.Index(
                fields=["stream", "user_id", "event_time"],
                condition=models.Q(user_id__isnull=False),
                name="log_stream_user_time",
            ),
            models.Index(
                fields=["stream", "session_id", "event_time"],
                condition=models.Q(session_id__isnull=False),
                name="log_stream_session_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.stream_id}#{self.offset} {self.type}"


class LogKey(models.Model):
    """The idempotency key of every event the log keeps: (stream, event_id) → where it is.

    Unpartitioned, so the duplicate check is one index probe however many
    partitions the log has; written in the append transaction and removed by
    retention with the event (streams/log.py, streams/retention.py).
    """

    pk = models.CompositePrimaryKey("stream_id", "event_id")
    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    event_id = models.CharField(max_length=128)
    offset = models.BigIntegerField()
    logged_at = models.DateTimeField()

    class Meta:
        db_table = "streams_log_key"

    def __str__(self) -> str:
        return f"{self.stream_id}/{self.event_id} -> {self.offset}"


class LogSegment(models.Model):
    """The first offset a stream logged on a UTC day: maps an offset to the partitions that hold it."""

    pk = models.CompositePrimaryKey("stream_id", "day")
    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    day = models.DateTimeField()
    first_offset = models.BigIntegerField()

    class Meta:
        db_table = "streams_log_segment"

    def __str__(self) -> str:
        return f"{self.stream_id} {self.day:%Y-%m-%d} from {self.first_offset}"


class DeadLetterStage(models.TextChoices):
    VALIDATE = "validate", "Validate"
    ENRICH = "enrich", "Enrich"
    APPEND = "append", "Append"
    DELIVER = "deliver", "Deliver (webhook)"
    CONSUME = "consume", "Consume (consumer group)"
    # A Kafka source's message the intake refused (consumers/kafka_source.py).
    SOURCE = "source", "Source (Kafka)"


# The stages of processing: their letters go back through the inbox when replayed.
PROCESSING_STAGES = (DeadLetterStage.VALIDATE, DeadLetterStage.ENRICH, DeadLetterStage.APPEND)


class DeadLetterStatus(models.TextChoices):
    OPEN = "open", "Open"
    REPLAYED = "replayed", "Replayed"
    DISCARDED = "discarded", "Discarded"


class DeadLetter(models.Model):
    """An event that failed a stage more times than allowed, kept whole for review.

    Written by every stage through ``streams.dead_letters`` (processing, consumer
    groups, webhooks); the table kept its name when the model came here from
    ``ingestion``.
    """

    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="dead_letters")
    event_id = models.CharField(max_length=128)
    # The event as it entered the failing stage (the inbox row or the log entry).
    event = models.JSONField()
    stage = models.CharField(max_length=16, choices=DeadLetterStage.choices)
    # For deliver/consume: the consumer group (a webhook's own group for deliver) and the log offset.
    group = models.ForeignKey(
        "consumers.ConsumerGroup", null=True, blank=True, on_delete=models.SET_NULL, related_name="dead_letters"
    )
    # The group's name when the letter was made: kept when the group is deleted.
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
        db_table = "ingestion_deadletter"
        ordering = ["-last_failed_at"]
        indexes = [
            models.Index(fields=["status", "stage", "last_failed_at"], name="deadletter_status_stage"),
            models.Index(fields=["stream", "event_id"], name="deadletter_stream_event"),
        ]
        constraints = [
            # A Kafka source's letter is named by its message's place in Kafka: one letter a message,
            # even when two bridge processes read the same batch during a rebalance.
            models.UniqueConstraint(
                fields=["stream", "event_id"], condition=models.Q(stage="source"), name="uniq_source_letter"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.stream_id}/{self.event_id} @{self.stage}"


class ErasureBy(models.TextChoices):
    USER_ID = "user_id", "user_id"
    ANONYMOUS_ID = "anonymous_id", "anonymous_id"


class ErasureStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"


class Erasure(models.Model):
    """A privacy request: every event of one person on one stream redacted in place (streams/erasure.py).

    ``subject`` (the user_id or anonymous_id) is kept only until the erasure is
    done, then blanked; ``subject_hash`` stays, so the request can be matched
    against a later one without keeping the identifier.
    """

    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="erasures")
    by = models.CharField(max_length=16, choices=ErasureBy.choices)
    subject = models.CharField(max_length=256, blank=True, default="")
    subject_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=ErasureStatus.choices, default=ErasureStatus.PENDING)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The key's prefix or the person's username, as it was at the time.
    requested_by_label = models.CharField(max_length=150, blank=True, default="")
    # The log's next offset when the erasure began: rows from here on are looked at once more at the end.
    head_at_start = models.BigIntegerField(null=True, blank=True)
    # By anonymous_id (no index): the UTC day the walk over the log has reached.
    scan_day = models.DateTimeField(null=True, blank=True)
    events_redacted = models.PositiveIntegerField(default=0)
    inbox_deleted = models.PositiveIntegerField(default=0)
    dead_letters_deleted = models.PositiveIntegerField(default=0)
    sessions_deleted = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "updated_at"], name="erasure_status_updated")]

    def __str__(self) -> str:
        return f"erasure {self.pk} of {self.stream_id} by {self.by} ({self.status})"
