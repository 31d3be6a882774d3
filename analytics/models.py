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
    type = models.CharField(max_length=200)
    minute = models.DateTimeField()
    count = models.BigIntegerField(default=0)

    class Meta:
        db_table = "analytics_minute_count"
        constraints = [
            models.UniqueConstraint(fields=["stream", "minute", "type"], name="uniq_minute_count"),
        ]

    def __str__(self) -> str:
        return f"{self.stream_id} {self.type} {self.minute:%Y-%m-%d %H:%M} = {self.count}"


class HourCount(models.Model):
    """Events logged per (stream, UTC hour of event time, type); see analytics/rollups.py."""

    pk = models.CompositePrimaryKey("stream_id", "hour", "type")
    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="+", db_index=False)
    hour = models.DateTimeField()
    type = models.CharField(max_length=200)
    count = models.BigIntegerField(default=0)

    class Meta:
        db_table = "analytics_hour_count"

    def __str__(self) -> str:
        return f"{self.stream_id} {self.type} {self.hour:%Y-%m-%d %H}h = {self.count}"


class DayCount(models.Model):
    """Events logged per (stream, UTC day of event time, type)."""

    pk = models.CompositePrimaryKey("stream_id", "day", "type")
    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateTimeField()
    type = models.CharField(max_length=200)
    count = models.BigIntegerField(default=0)

    class Meta:
        db_table = "analytics_day_count"

    def __str__(self) -> str:
        return f"{self.stream_id} {self.type} {self.day:%Y-%m-%d} = {self.count}"


class HourDimension(models.Model):
    """Events per (stream, dimension, UTC hour, value, type): browser, os, page, UTM, country, key, …"""

    pk = models.CompositePrimaryKey("stream_id", "dimension", "hour", "value", "type")
    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="+", db_index=False)
    dimension = models.CharField(max_length=32)
    hour = models.DateTimeField()
    value = models.CharField(max_length=200, blank=True)
    type = models.CharField(max_length=200)
    count = models.BigIntegerField(default=0)

    class Meta:
        db_table = "analytics_hour_dimension"

    def __str__(self) -> str:
        return f"{self.stream_id} {self.dimension}={self.value} {self.type} {self.hour:%Y-%m-%d %H}h = {self.count}"


class DayDimension(models.Model):
    """Events per (stream, dimension, UTC day, value, type)."""

    pk = models.CompositePrimaryKey("stream_id", "dimension", "day", "value", "type")
    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="+", db_index=False)
    dimension = models.CharField(max_length=32)
    day = models.DateTimeField()
    value = models.CharField(max_length=200, blank=True)
    type = models.CharField(max_length=200)
    count = models.BigIntegerField(default=0)

    class Meta:
        db_table = "analytics_day_dimension"

    def __str__(self) -> str:
        return f"{self.stream_id} {self.dimension}={self.value} {self.type} {self.day:%Y-%m-%d} = {self.count}"


class UserSketch(models.Model):
    """Unique users of a UTC hour or day as a HyperLogLog sketch (Apache DataSketches, HLL_4).

    ``dimension`` '' is every event, 'type' one event type (``value``), else one value
    of a dimension. ``users`` is the sketch's estimate, read when no union is needed.
    """

    pk = models.CompositePrimaryKey("stream_id", "grain", "dimension", "start", "value")
    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="+", db_index=False)
    grain = models.CharField(max_length=1, choices=[("h", "hour"), ("d", "day")])
    dimension = models.CharField(max_length=32, blank=True)
    start = models.DateTimeField()
    value = models.CharField(max_length=200, blank=True)
    users = models.BigIntegerField(default=0)
    sketch = models.BinaryField()

    class Meta:
        db_table = "analytics_user_sketch"

    def __str__(self) -> str:
        return f"{self.stream_id} {self.grain} {self.dimension}={self.value} {self.start:%Y-%m-%d %H}h ~ {self.users}"


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
