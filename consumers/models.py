from __future__ import annotations

from django.db import models


class GroupKind(models.TextChoices):
    PULL = "pull", "Pull (HTTP consumers)"
    WEBHOOK = "webhook", "Webhook (server-side)"
    KAFKA = "kafka", "Kafka sink (server-side)"


class MaxDeliverPolicy(models.TextChoices):
    DEAD_LETTER = "dead_letter", "Dead-letter the record and move on"
    STOP = "stop", "Stop the group"


class ConsumerGroup(models.Model):
    """A named position in a stream's log, shared by the members that read it.

    ``committed_offset`` is the next offset to read (as in Kafka). While a lease
    lives, its holder alone may read and commit the leased range; an expired
    lease makes the range deliverable again. ``deliveries`` counts how often
    the records from ``committed_offset`` on have been handed out, as
    ``[[end_offset, count], …]``: ascending ends, non-increasing counts (each
    hand-out covers a prefix starting at the committed offset).
    """

    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="consumer_groups")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=GroupKind.choices, default=GroupKind.PULL)
    committed_offset = models.BigIntegerField(default=0)
    deliveries = models.JSONField(default=list, blank=True)
    # Replayed dead letters waiting to be handed out again, before new records:
    # ``[{"offset", "count", "letter", "leased"}, …]`` by offset (consumers.services).
    redeliveries = models.JSONField(default=list, blank=True)
    lease_id = models.UUIDField(null=True, blank=True)
    lease_start = models.BigIntegerField(null=True, blank=True)
    lease_end = models.BigIntegerField(null=True, blank=True)
    # NULL with a lease_id: the lease was released by its holder.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    paused = models.BooleanField(default=False)
    paused_reason = models.CharField(max_length=500, blank=True, default="")
    max_deliver = models.PositiveIntegerField(default=5)
    on_max_deliver = models.CharField(
        max_length=16, choices=MaxDeliverPolicy.choices, default=MaxDeliverPolicy.DEAD_LETTER
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["stream", "name"]
        constraints = [
            models.UniqueConstraint(fields=["stream", "name"], name="uniq_consumer_group_name"),
            models.CheckConstraint(condition=models.Q(committed_offset__gte=0), name="consumer_group_offset_gte_0"),
            models.CheckConstraint(condition=models.Q(max_deliver__gte=1), name="consumer_group_max_deliver_gte_1"),
        ]

    def __str__(self) -> str:
        return f"{self.stream_id}/{self.name}@{self.committed_offset}"


class WebhookSubscription(models.Model):
    """Push delivery of a stream's log to a URL, driven by its own consumer group."""

    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="webhooks")
    group = models.OneToOneField(ConsumerGroup, on_delete=models.CASCADE, related_name="webhook")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=500, blank=True, default="")
    # Empty: every event type.
    event_types = models.JSONField(default=list, blank=True)
    # Kept in the clear because every delivery is signed with it; the API shows it once.
    secret = models.CharField(max_length=128)
    batch_size = models.PositiveIntegerField(default=500)
    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True, default="")
    disabled_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    # Backoff: no delivery before this time.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["stream", "id"]
        indexes = [models.Index(fields=["is_active", "next_attempt_at"], name="webhook_due")]

    def __str__(self) -> str:
        return f"{self.stream_id} → {self.url}"

    @property
    def subscriber(self) -> str:
        return self.group.name


class DeliveryOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"


class DeliveryAttempt(models.Model):
    """One POST to a subscription's URL; the recent ones are kept as its delivery log."""

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="attempts")
    delivery_id = models.UUIDField()
    created_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=DeliveryOutcome.choices)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    first_offset = models.BigIntegerField(null=True, blank=True)
    end_offset = models.BigIntegerField(null=True, blank=True)
    event_count = models.PositiveIntegerField(default=0)
    # How many times this batch's first record had been handed out, this attempt included.
    attempt = models.PositiveIntegerField(default=1)
    is_test = models.BooleanField(default=False)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["subscription", "-id"], name="delivery_attempt_recent")]

    def __str__(self) -> str:
        return f"{self.subscription_id} {self.outcome} {self.status_code or '-'}"


# --- the Kafka bridge (consumers/kafka_*.py) --------------------------------------------------------


class KafkaKey(models.TextChoices):
    USER_ID = "user_id", "user_id"
    ANONYMOUS_ID = "anonymous_id", "anonymous_id"
    SESSION_ID = "session_id", "session_id"
    NONE = "none", "No key"


class KafkaSecurityProtocol(models.TextChoices):
    PLAINTEXT = "PLAINTEXT", "PLAINTEXT"
    SSL = "SSL", "SSL (TLS)"
    SASL_PLAINTEXT = "SASL_PLAINTEXT", "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL", "SASL_SSL (SASL over TLS)"


class KafkaSaslMechanism(models.TextChoices):
    PLAIN = "PLAIN", "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256", "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512", "SCRAM-SHA-512"


class KafkaBridgeStatus(models.TextChoices):
    STARTING = "starting", "Not run yet"
    RUNNING = "running", "Running"
    # The broker did not take or give messages: the bridge retries with backoff and skips nothing.
    PAUSED = "paused", "Paused (broker unreachable)"
    STOPPED = "stopped", "Stopped (inactive)"


class KafkaBridge(models.Model):
    """What a sink and a source share: the broker's address and security, who runs it, how it fares.

    Empty connection fields take the ``KAFKA_*`` settings. The SASL password is
    kept because the bridge needs it; the API never returns it.

    ``runner`` and ``runner_expires_at`` are a lease: one bridge process runs a
    sink or source at a time, renewing it while it lives; another takes over
    once it lapses (consumers/kafka_services.py).
    """

    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="+")
    topic = models.CharField(max_length=249)
    bootstrap_servers = models.CharField(max_length=1000, blank=True, default="")
    security_protocol = models.CharField(max_length=16, choices=KafkaSecurityProtocol.choices, blank=True, default="")
    sasl_mechanism = models.CharField(max_length=16, choices=KafkaSaslMechanism.choices, blank=True, default="")
    sasl_username = models.CharField(max_length=500, blank=True, default="")
    sasl_password = models.CharField(max_length=500, blank=True, default="")
    # PEM of the certificate authorities to trust for TLS; empty: the system's (or KAFKA_SSL_CA_LOCATION).
    ssl_ca_pem = models.TextField(blank=True, default="")
    description = models.CharField(max_length=500, blank=True, default="")
    is_active = models.BooleanField(default=True)
    status = models.CharField(max_length=16, choices=KafkaBridgeStatus.choices, default=KafkaBridgeStatus.STARTING)
    last_error = models.CharField(max_length=1000, blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    errors = models.BigIntegerField(default=0)
    runner = models.CharField(max_length=200, blank=True, default="")
    runner_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class KafkaSink(KafkaBridge):
    """Publishes a stream's log, in offset order, to a topic, reading it through a consumer group of its own."""

    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="kafka_sinks")
    group = models.OneToOneField(ConsumerGroup, on_delete=models.CASCADE, related_name="kafka_sink")
    key = models.CharField(max_length=16, choices=KafkaKey.choices, default=KafkaKey.USER_ID)
    batch_size = models.PositiveIntegerField(default=500)
    published = models.BigIntegerField(default=0)
    last_published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["stream", "id"]

    def __str__(self) -> str:
        return f"{self.stream_id} → kafka:{self.topic}"


class KafkaSourceStart(models.TextChoices):
    EARLIEST = "earliest", "The topic's earliest messages"
    LATEST = "latest", "Only messages sent from now on"


class KafkaSource(KafkaBridge):
    """Takes a topic's messages into a stream through the intake, as a Kafka consumer group."""

    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="kafka_sources")
    # The Kafka consumer group's id (its committed offsets live in the broker).
    consumer_group = models.CharField(max_length=200)
    start = models.CharField(max_length=16, choices=KafkaSourceStart.choices, default=KafkaSourceStart.EARLIEST)
    batch_size = models.PositiveIntegerField(default=500)
    consumed = models.BigIntegerField(default=0)
    accepted = models.BigIntegerField(default=0)
    duplicates = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    # The last rejected messages: [{"topic", "partition", "offset", "event_id", "errors", "value", "at"}, …], newest first.
    recent_rejections = models.JSONField(default=list, blank=True)
    last_consumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["stream", "id"]
        constraints = [
            # Two sources in one Kafka group would each get part of the topic's partitions.
            models.UniqueConstraint(
                fields=["bootstrap_servers", "topic", "consumer_group"], name="uniq_kafka_source_group"
            )
        ]

    def __str__(self) -> str:
        return f"kafka:{self.topic} → {self.stream_id}"
