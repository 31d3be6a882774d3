from __future__ import annotations

from django.db import models


class GroupKind(models.TextChoices):
    PULL = "pull", "Pull (HTTP consumers)"
    WEBHOOK = "webhook", "Webhook (server-side)"


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
