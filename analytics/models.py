from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Value


class MinuteCount(models.Model):
    """Events logged per (stream, type, minute of event time): the first rollup.

    Written in the same transaction as the log append, so it always equals
    what the log holds (DESIGN invariant 6).
    """

    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="+", db_index=False)
    type = models.CharField(max_length=64)
    minute = models.DateTimeField()
    count = models.BigIntegerField(default=0)

    class Meta:
        db_table = "analytics_minute_count"
        constraints = [
            models.UniqueConstraint(fields=["stream", "minute", "type"], name="uniq_minute_count"),
        ]

    def __str__(self) -> str:
        return f"{self.stream_id} {self.type} {self.minute:%Y-%m-%d %H:%M} = {self.count}"


class ProcessingMinute(models.Model):
    """Processing health per (stream, minute of logging): volume and accepted→logged latency."""

    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="+", db_index=False)
    minute = models.DateTimeField()
    events = models.BigIntegerField(default=0)
    latency_ms_sum = models.BigIntegerField(default=0)
    latency_ms_max = models.BigIntegerField(default=0)
    dead_letters = models.BigIntegerField(default=0)
    retries = models.BigIntegerField(default=0)
    # Events received (accepted by the intake) in this minute, counted when they leave the
    # inbox, logged or dead-lettered: a row's minute is also a minute of receipt.
    accepted = models.BigIntegerField(default=0, db_default=0)
    # Events logged in this minute per latency bucket (analytics.processing.LATENCY_BOUNDS_MS):
    # what the percentiles are read from.
    latency_buckets = ArrayField(
        models.BigIntegerField(), default=list, db_default=Value([], ArrayField(models.BigIntegerField()))
    )

    class Meta:
        db_table = "analytics_processing_minute"
        constraints = [
            models.UniqueConstraint(fields=["stream", "minute"], name="uniq_processing_minute"),
        ]

    def __str__(self) -> str:
        return f"{self.stream_id} {self.minute:%Y-%m-%d %H:%M}: {self.events} events"


class Segment(models.Model):
    """A saved filter of a stream's events by name: property conditions every analytics endpoint accepts."""

    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="segments")
    name = models.SlugField(max_length=64)
    description = models.CharField(max_length=500, blank=True, default="")
    # [{"property": "payload.plan", "op": "eq" | "ne" | "exists" | "missing", "values": ["pro"]}]
    conditions = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["stream", "name"]
        constraints = [models.UniqueConstraint(fields=["stream", "name"], name="uniq_segment_name")]

    def __str__(self) -> str:
        return f"{self.stream_id}:{self.name}"
