from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
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


class SketchSpan(models.Model):
    """Unique users of a past window [lo, hi) of whole UTC hours, merged once from the hour and day
    sketches when a reader first asked for it (analytics/spans.py): a local day, a week, a month.

    ``value`` is the dimension's value, or the values a reader asked for together, joined by
    ``SPAN_VALUES_SEP``. A late event in one of its hours deletes it (the writer, in its append
    transaction), so it always equals the union of its sketches as they stand.
    """

    pk = models.CompositePrimaryKey("stream_id", "dimension", "value", "lo", "hi")
    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="+", db_index=False)
    dimension = models.CharField(max_length=32, blank=True)
    value = models.CharField(max_length=200, blank=True)
    lo = models.DateTimeField()
    hi = models.DateTimeField()
    users = models.BigIntegerField(default=0)
    sketch = models.BinaryField()

    class Meta:
        db_table = "analytics_sketch_span"
        # The writer's invalidation: spans that end after a late hour (few: it is recent).
        indexes = [models.Index(fields=["stream", "hi"], name="sketch_span_stream_hi")]

    def __str__(self) -> str:
        return f"{self.stream_id} {self.dimension}={self.value} [{self.lo:%Y-%m-%d %H}h, {self.hi:%Y-%m-%d %H}h) ~ {self.users}"


class SketchEpoch(models.Model):
    """Counts a stream's late writes to its sketches: a span merged under an older count is not stored."""

    stream = models.OneToOneField("streams.Stream", on_delete=models.CASCADE, primary_key=True, related_name="+")
    n = models.BigIntegerField(default=0)

    class Meta:
        db_table = "analytics_sketch_epoch"

    def __str__(self) -> str:
        return f"{self.stream_id} epoch {self.n}"


class PersonDay(models.Model):
    """A person's activity on one UTC day: the first and last time of any event (analytics/activity.py).

    A person is ``user_id``, else ``anonymous_id`` (as journeys count them); ``type``
    is always '' (any type; per-type rows are no longer kept, migration 0009). Written
    in the append transaction, so it holds what the log holds.
    """

    pk = models.CompositePrimaryKey("stream_id", "type", "day", "person")
    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="+", db_index=False)
    type = models.CharField(max_length=200, blank=True)
    day = models.DateField()
    person = models.CharField(max_length=256)
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()

    class Meta:
        db_table = "analytics_person_day"

    def __str__(self) -> str:
        return f"{self.stream_id} {self.person} {self.type or '*'} {self.day}"


class PersonFirst(models.Model):
    """When a person was first seen in the stream, by any event (``type`` always ''): retention's cohorts."""

    pk = models.CompositePrimaryKey("stream_id", "type", "person")
    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="+", db_index=False)
    type = models.CharField(max_length=200, blank=True)
    person = models.CharField(max_length=256)
    first_at = models.DateTimeField()

    class Meta:
        db_table = "analytics_person_first"
        # Retention expires first sightings oldest first (streams/retention.py), and cohorts
        # read a time range of them (analytics/journeys.py).
        indexes = [models.Index(fields=["stream", "type", "first_at"], name="person_first_stream_first_at")]

    def __str__(self) -> str:
        return f"{self.stream_id} {self.person} {self.type or '*'} since {self.first_at:%Y-%m-%d %H:%M}"


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


# --- alert rules (analytics/alerts.py) ---------------------------------------------------------


class AlertKind(models.TextChoices):
    THRESHOLD = "threshold", "threshold: count >= N within the window"
    ABSENCE = "absence", "absence: no matching event within the window"


class DeliveryStatus(models.TextChoices):
    NONE = "none", "no URL on the rule"
    PENDING = "pending", "pending"
    DELIVERED = "delivered", "delivered"
    FAILED = "failed", "failed"


ALERT_MIN_WINDOW_SECONDS = 10
ALERT_MAX_WINDOW_SECONDS = 7 * 86400
ALERT_MAX_COOLDOWN_SECONDS = 30 * 86400
ALERT_MAX_THRESHOLD = 1_000_000_000


class AlertRule(models.Model):
    """When matching events reach a count within a sliding window (or none arrive), record an Alert.

    ``event_types`` (empty: any type) and ``conditions`` (the JSON shape of
    ``analytics.filters.parse_conditions``) say which events count; ``group_by``
    (``user_id``, ``anonymous_id``, ``session_id``, or a ``payload.``/``context.``/
    ``enrichment.`` path; empty: the whole stream) what is counted apart. Written
    through analytics/alerts.py, which validates and audits.
    """

    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="alert_rules")
    name = models.CharField(max_length=200)
    event_types = ArrayField(models.CharField(max_length=200), default=list, blank=True, size=50)
    conditions = models.JSONField(default=list, blank=True)
    kind = models.CharField(max_length=16, choices=AlertKind.choices, default=AlertKind.THRESHOLD)
    threshold = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(ALERT_MAX_THRESHOLD)]
    )
    window_seconds = models.PositiveIntegerField(
        validators=[MinValueValidator(ALERT_MIN_WINDOW_SECONDS), MaxValueValidator(ALERT_MAX_WINDOW_SECONDS)]
    )
    group_by = models.CharField(max_length=300, blank=True, default="")
    cooldown_seconds = models.PositiveIntegerField(
        default=600, validators=[MaxValueValidator(ALERT_MAX_COOLDOWN_SECONDS)]
    )
    # Optional direct notification, signed and SSRF-checked as webhooks are.
    url = models.CharField(max_length=2000, blank=True, default="")
    secret = models.CharField(max_length=100)
    muted_until = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    # When the rule last started watching (created, re-activated or changed): an absence
    # window never reaches back before it.
    active_since = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "analytics_alert_rule"
        ordering = ["stream", "id"]
        constraints = [models.UniqueConstraint(fields=["stream", "name"], name="uniq_alert_rule_name")]

    def __str__(self) -> str:
        return f"{self.stream_id}:{self.name}"


class AlertBucket(models.Model):
    """Matching events of a rule per group and 10-second bucket of event time: the sliding windows' counts.

    Upserted in the append transaction, one statement per batch. ``rule_id`` has
    no foreign key on purpose: a rule deleted while a worker still holds it in
    its cache must not fail the batch; orphan rows are removed by the periodic
    check (analytics/alerts.py, ``alerts_check``).
    """

    pk = models.CompositePrimaryKey("rule_id", "group_key", "bucket")
    rule_id = models.BigIntegerField()
    group_key = models.CharField(max_length=200)
    bucket = models.DateTimeField()
    count = models.BigIntegerField(default=0)
    first_offset = models.BigIntegerField()
    first_event_id = models.CharField(max_length=128)
    last_offset = models.BigIntegerField()
    last_event_id = models.CharField(max_length=128)

    class Meta:
        db_table = "analytics_alert_bucket"

    def __str__(self) -> str:
        return f"rule {self.rule_id} [{self.group_key}] {self.bucket:%H:%M:%S} = {self.count}"


class AlertCooldown(models.Model):
    """The last alert of a (rule, group): a conditional upsert on it is what lets only one worker fire."""

    pk = models.CompositePrimaryKey("rule_id", "group_key")
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="+", db_index=False)
    group_key = models.CharField(max_length=200)
    fired_at = models.DateTimeField()
    quiet_until = models.DateTimeField()

    class Meta:
        db_table = "analytics_alert_cooldown"

    def __str__(self) -> str:
        return f"rule {self.rule_id} [{self.group_key}] quiet until {self.quiet_until:%H:%M:%S}"


class Alert(models.Model):
    """A rule that fired: for which group, how many events in which window, the first and last of them."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    stream = models.ForeignKey("streams.Stream", on_delete=models.CASCADE, related_name="+", db_index=False)
    # The field the rule grouped by when it fired ('' for none): an erasure finds the person's alerts by it,
    # whatever the rule is grouped by since.
    group_by = models.CharField(max_length=300, blank=True, default="")
    group_value = models.TextField(null=True, blank=True)
    count = models.BigIntegerField()
    threshold = models.BigIntegerField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    first_offset = models.BigIntegerField(null=True, blank=True)
    first_event_id = models.CharField(max_length=128, null=True, blank=True)
    last_offset = models.BigIntegerField(null=True, blank=True)
    last_event_id = models.CharField(max_length=128, null=True, blank=True)
    fired_at = models.DateTimeField()
    # Delivery to the rule's own URL (the stream's webhooks get the `alert` event from the log).
    delivery_status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.NONE)
    delivery_attempts = models.PositiveIntegerField(default=0)
    delivery_error = models.TextField(blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "analytics_alert"
        indexes = [
            models.Index(fields=["stream", "-id"], name="alert_stream_id"),
            models.Index(fields=["rule", "-id"], name="alert_rule_id"),
            models.Index(
                fields=["next_attempt_at"],
                name="alert_delivery_pending",
                condition=models.Q(delivery_status="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"alert {self.pk} of rule {self.rule_id} [{self.group_value}] {self.count}"
