"""Alert rules: counted as events are logged, fired once per group and cool-down, delivered signed.

How a rule is evaluated
-----------------------
In the processor's append transaction (``alerts_evaluate``, called from
ingestion/pipeline.py), per batch and never per event:

1. the stream's active rules come from a per-process cache (at most
   ``ALERT_RULES_CACHE_SECONDS`` old; no rules, no query);
2. each appended event is matched in Python against each rule (types, then the
   property conditions with ``analytics.filters.Condition.matches``, which
   answers as the SQL of the event query does), and counted per (rule, group,
   10-second bucket of event time);
3. ONE statement upserts those bucket counts (``analytics_alert_bucket``);
4. ONE statement sums, for the groups this batch touched only, every window of
   the rule's length that holds a touched bucket, and returns the earliest one
   that reaches the threshold — so an event that arrives late or out of order
   completes the window it belongs to;
5. ONE statement fires: a conditional upsert of the (rule, group)'s cool-down
   row (``quiet_until <= now``) and the insert of the Alert, so two workers can
   never fire the same group twice within the cool-down, and a muted or
   inactive rule never fires;
6. the alert is appended to the stream's log as an ``alert`` event through the
   normal intake (``ingestion.services.events_ingest``, same transaction), and,
   when the rule has a URL, a delivery task is queued after commit.

Counting in the append transaction keeps the counts exact like the rollups: a
batch that rolls back counts nothing, a duplicate is never counted. A window is
``window_seconds`` rounded up to whole buckets, so "5 within 5 minutes" means 5
within 30 consecutive 10-second buckets of event time. Events older than the
window plus ``ALERT_LATENESS_SECONDS`` are not counted.

Absence rules ("no page_view for 10 minutes") count matching events the same
way; the periodic ``alerts_check`` (Celery beat) fires them when the last
matching event (or the rule's start) is a window old, and removes bucket rows
that no window can need any more.

Why an ``alert`` event in the log rather than a delivery of its own to the
stream's webhooks: it is committed with the alert (never lost, never sent
twice: its event id is ``alert-<id>``), ordered after the events that caused
it, and delivered by the webhooks' own machinery (signing, SSRF rules, retries,
dead letters, type filters); consumer groups and the live tail see it too. The
price: ``alert`` events are counted by analytics like any other type.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from consumers.outbound import post_json
from consumers.tasks import WEBHOOK_QUEUE
from consumers.webhook_services import (
    SECRET_PREFIX,
    webhook_backoff_seconds,
    webhook_signed_headers,
    webhook_url_check,
)
from eventflow import conf
from eventflow.audit import audit_security
from eventflow.celery import app as celery_app
from eventflow.db import prepared_cursor
from eventflow.errors import Conflict, Invalid, NotFound
from ingestion.services import events_ingest
from streams.event_types import is_event_type
from streams.events import ID_FIELDS
from streams.log import LogRecord
from streams.models import Stream
from streams.selectors import stream_info

from .filters import MAX_TYPES, Condition, json_path_get, json_text, parse_conditions, parse_path
from .models import Alert, AlertBucket, AlertCooldown, AlertKind, AlertRule, DeliveryStatus

logger = logging.getLogger(__name__)

ALERT_EVENT_TYPE = "alert"
BUCKET_SECONDS = 10
GROUP_FIELDS = ID_FIELDS
GROUP_KEY_MAX = 200
GROUP_VALUE_MAX = 1000
MAX_RULES_PER_STREAM = 100
# A delivery claims its alert for this long: longer than one whole POST.
DELIVERY_LEASE_SECONDS = 60.0
# A pending delivery this far past due lost its task: the periodic check queues it again.
DELIVERY_LOST_AFTER_SECONDS = 60.0
DELIVER_TASK = "analytics.alert_deliver"


# --- rules as the evaluator holds them --------------------------------------------------------------


@dataclass(frozen=True)
class CompiledRule:
    id: int
    stream_slug: str
    name: str
    kind: str
    types: frozenset[str]
    conditions: tuple[Condition, ...]
    threshold: int
    window_seconds: int
    group_by: str
    # Where the group's value is: ("user_id", ()) or ("payload", ("a", "b")); None: ungrouped.
    group_root: str | None
    group_path: tuple[str, ...]

    @property
    def span_seconds(self) -> int:
        """The window in whole buckets."""
        return math.ceil(self.window_seconds / BUCKET_SECONDS) * BUCKET_SECONDS

    def matches(self, record: LogRecord) -> bool:
        if self.types and record.type not in self.types:
            return False
        for condition in self.conditions:
            if not condition.matches(getattr(record, condition.root)):
                return False
        return True

    def group_of(self, record: LogRecord) -> tuple[str, str | None] | None:
        """(group key, group value) of the record; None when it has no value to be grouped by."""
        if self.group_root is None:
            return "", None
        if self.group_root in GROUP_FIELDS:
            value = getattr(record, self.group_root)
        else:
            found, raw = json_path_get(getattr(record, self.group_root), self.group_path)
            value = json_text(raw) if found else None
        if value is None:
            return None
        return group_key(value), value[:GROUP_VALUE_MAX]


def group_key(value: str) -> str:
    """The key a group's buckets and cool-down are stored under: the value, or its digest when long."""
    return value if len(value) <= GROUP_KEY_MAX else "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def _group_target(group_by: str) -> tuple[str | None, tuple[str, ...]]:
    if not group_by:
        return None, ()
    if group_by in GROUP_FIELDS:
        return group_by, ()
    return parse_path(group_by)


def _compile(rule: AlertRule, slug: str) -> CompiledRule:
    root, path = _group_target(rule.group_by)
    return CompiledRule(
        id=rule.pk,
        stream_slug=slug,
        name=rule.name,
        kind=rule.kind,
        types=frozenset(rule.event_types),
        conditions=parse_conditions(rule.conditions),
        threshold=rule.threshold,
        window_seconds=rule.window_seconds,
        group_by=rule.group_by,
        group_root=root,
        group_path=path,
    )


_cache: dict[int, tuple[float, tuple[CompiledRule, ...]]] = {}
_cache_lock = threading.Lock()


def rules_active(stream_id: int) -> tuple[CompiledRule, ...]:
    """The stream's active rules, at most ALERT_RULES_CACHE_SECONDS old (one query when not cached)."""
    now = time.monotonic()
    hit = _cache.get(stream_id)
    if hit is not None and hit[0] > now:
        return hit[1]
    rules = tuple(
        _compile(rule, rule.stream.slug)
        for rule in AlertRule.objects.filter(stream_id=stream_id, is_active=True).select_related("stream")
    )
    with _cache_lock:
        _cache[stream_id] = (now + conf.get().alert_rules_cache_seconds, rules)
    return rules


def alert_rules_cache_clear(stream_id: int | None = None) -> None:
    with _cache_lock:
        if stream_id is None:
            _cache.clear()
        else:
            _cache.pop(stream_id, None)


# --- evaluation in the append transaction ---------------------------------------------------------------

# Bucket counts of a batch, added to what the table holds. The first and last event of a
# bucket are kept by offset, so an upsert that arrives out of order cannot move them back.
_BUCKETS_SQL = """
INSERT INTO analytics_alert_bucket AS b
    (rule_id, group_key, bucket, count, first_offset, first_event_id, last_offset, last_event_id)
SELECT r.rule_id, r.group_key, to_timestamp(r.bucket), r.count, r.first_offset, r.first_event_id,
       r.last_offset, r.last_event_id
FROM json_to_recordset(%s::json) AS r(rule_id bigint, group_key text, bucket bigint, count bigint,
                                      first_offset bigint, first_event_id text, last_offset bigint, last_event_id text)
ON CONFLICT (rule_id, group_key, bucket) DO UPDATE SET
    count = b.count + EXCLUDED.count,
    first_offset = LEAST(b.first_offset, EXCLUDED.first_offset),
    first_event_id = CASE WHEN EXCLUDED.first_offset < b.first_offset THEN EXCLUDED.first_event_id
                          ELSE b.first_event_id END,
    last_offset = GREATEST(b.last_offset, EXCLUDED.last_offset),
    last_event_id = CASE WHEN EXCLUDED.last_offset > b.last_offset THEN EXCLUDED.last_event_id
                         ELSE b.last_event_id END
"""

# For each group the batch touched: every window of the rule's span that ends at one of the
# group's buckets and holds a bucket this batch touched (a window that reaches the threshold can
# always be slid until it ends on a bucket with events); the earliest one at the threshold.
# Two index range scans per candidate end over the primary key (rule_id, group_key, bucket).
_WINDOWS_SQL = """
SELECT DISTINCT ON (t.rule_id, t.group_key)
       t.rule_id, t.group_key, extract(epoch FROM e.bucket)::bigint, w.total,
       w.first_offset, w.first_event_id, w.last_offset, w.last_event_id
FROM json_to_recordset(%s::json) AS t(rule_id bigint, group_key text, lo bigint, hi bigint, span int,
                                      threshold bigint, touched bigint[])
CROSS JOIN LATERAL (
    SELECT e.bucket FROM analytics_alert_bucket e
    WHERE e.rule_id = t.rule_id AND e.group_key = t.group_key
      AND e.bucket BETWEEN to_timestamp(t.lo) AND to_timestamp(t.hi)
) AS e
CROSS JOIN LATERAL (
    SELECT sum(b.count) AS total,
           min(b.first_offset) AS first_offset,
           (array_agg(b.first_event_id ORDER BY b.first_offset))[1] AS first_event_id,
           max(b.last_offset) AS last_offset,
           (array_agg(b.last_event_id ORDER BY b.last_offset DESC))[1] AS last_event_id
    FROM analytics_alert_bucket b
    WHERE b.rule_id = t.rule_id AND b.group_key = t.group_key
      AND b.bucket > e.bucket - make_interval(secs => t.span) AND b.bucket <= e.bucket
) AS w
WHERE w.total >= t.threshold
  AND EXISTS (
      SELECT 1 FROM unnest(t.touched) AS x(epoch)
      WHERE x.epoch > extract(epoch FROM e.bucket) - t.span AND x.epoch <= extract(epoch FROM e.bucket))
ORDER BY t.rule_id, t.group_key, e.bucket
"""

# Fire: only for an active, unmuted rule, and only when the (rule, group)'s cool-down is over.
# The upsert of the cool-down row is the claim: of two transactions firing the same group, the
# second waits for the first's row and then finds quiet_until in the future.
_FIRE_SQL = """
WITH c AS (
    SELECT c.*, r.stream_id, r.cooldown_seconds, r.url
    FROM json_to_recordset(%(rows)s::json) AS c(
        rule_id bigint, group_key text, group_by text, group_value text, count bigint, threshold bigint,
        window_start double precision, window_end double precision,
        first_offset bigint, first_event_id text, last_offset bigint, last_event_id text)
    JOIN analytics_alert_rule r ON r.id = c.rule_id
    WHERE r.is_active AND (r.muted_until IS NULL OR r.muted_until <= %(now)s)
), claimed AS (
    INSERT INTO analytics_alert_cooldown AS q (rule_id, group_key, fired_at, quiet_until)
    SELECT c.rule_id, c.group_key, %(now)s, %(now)s + make_interval(secs => c.cooldown_seconds) FROM c
    ON CONFLICT (rule_id, group_key) DO UPDATE SET fired_at = EXCLUDED.fired_at, quiet_until = EXCLUDED.quiet_until
    WHERE q.quiet_until <= EXCLUDED.fired_at
    RETURNING q.rule_id, q.group_key
)
INSERT INTO analytics_alert
    (rule_id, stream_id, group_by, group_value, count, threshold, window_start, window_end, first_offset,
     first_event_id, last_offset, last_event_id, fired_at, delivery_status, delivery_attempts, delivery_error,
     next_attempt_at)
SELECT c.rule_id, c.stream_id, c.group_by, c.group_value, c.count, c.threshold, to_timestamp(c.window_start),
       to_timestamp(c.window_end), c.first_offset, c.first_event_id, c.last_offset, c.last_event_id, %(now)s,
       CASE WHEN c.url <> '' THEN 'pending' ELSE 'none' END, 0, '',
       CASE WHEN c.url <> '' THEN %(now)s END
FROM c JOIN claimed ON claimed.rule_id = c.rule_id AND claimed.group_key = c.group_key
RETURNING id
"""


@dataclass
class _Bucket:
    count: int
    first_offset: int
    first_event_id: str
    last_offset: int
    last_event_id: str


@dataclass
class Tally:
    """A batch's matching events per (rule, group key, bucket), and what each group's value is."""

    buckets: dict[tuple[int, str, int], _Bucket] = field(default_factory=dict)
    values: dict[tuple[int, str], str | None] = field(default_factory=dict)

    def add(self, rule: CompiledRule, key: str, value: str | None, bucket: int, offset: int, event_id: str) -> None:
        entry = self.buckets.get((rule.id, key, bucket))
        if entry is None:
            self.buckets[(rule.id, key, bucket)] = _Bucket(1, offset, event_id, offset, event_id)
            self.values[(rule.id, key)] = value
            return
        entry.count += 1
        if offset < entry.first_offset:
            entry.first_offset, entry.first_event_id = offset, event_id
        if offset > entry.last_offset:
            entry.last_offset, entry.last_event_id = offset, event_id


def alerts_tally(*, rules: Sequence[CompiledRule], appended: Sequence[tuple[int, LogRecord]], now: datetime) -> Tally:
    """Match the batch against the rules in Python: no database."""
    tally = Tally()
    now_ts = now.timestamp()
    lateness = conf.get().alert_lateness_seconds
    oldest = {rule.id: now_ts - rule.span_seconds - lateness for rule in rules}
    for offset, record in appended:
        if record.type == ALERT_EVENT_TYPE:
            continue
        # An event stamped ahead of the clock (a device's clock, within the intake's tolerance) counts as it
        # arrives: in a future bucket it would keep an absence rule quiet until that time came.
        event_ts = min(record.event_time.timestamp(), now_ts)
        for rule in rules:
            if event_ts < oldest[rule.id] or not rule.matches(record):
                continue
            group = rule.group_of(record)
            if group is None:
                continue
            bucket = int(event_ts // BUCKET_SECONDS) * BUCKET_SECONDS
            tally.add(rule, group[0], group[1], bucket, offset, record.event_id)
    return tally


def alerts_evaluate(*, stream_id: int, appended: Sequence[tuple[int, LogRecord]], now: datetime) -> list[int]:
    """Count the events just appended against the stream's rules and fire what reached its threshold.

    Runs inside the append transaction. A constant number of statements per
    batch: none without rules or matches, else the upsert and the window check,
    and for a batch that fires, the fire statement and the ``alert`` events'
    insert into the inbox. An error of the alerts' own rolls back their
    savepoint only: the batch is logged all the same (and the error logged);
    a transient one fails the batch, which is retried whole.
    """
    if not appended:
        return []
    rules = rules_active(stream_id)
    if not rules:
        return []
    tally = alerts_tally(rules=rules, appended=appended, now=now)
    if not tally.buckets:
        return []
    try:
        with transaction.atomic():
            candidates = _windows_reached(rules=rules, tally=tally)
            return _fire(rules=rules, candidates=candidates, now=now) if candidates else []
    except (OperationalError, InterfaceError):
        raise
    except DatabaseError:
        logger.exception("alert evaluation failed for stream %s; the batch is logged without it", stream_id)
        return []


def _windows_reached(*, rules: Sequence[CompiledRule], tally: Tally) -> list[dict[str, Any]]:
    rows = [
        {
            "rule_id": rule_id,
            "group_key": key,
            "bucket": bucket,
            "count": b.count,
            "first_offset": b.first_offset,
            "first_event_id": b.first_event_id,
            "last_offset": b.last_offset,
            "last_event_id": b.last_event_id,
        }
        for (rule_id, key, bucket), b in tally.buckets.items()
    ]
    by_id = {rule.id: rule for rule in rules}
    touched: dict[tuple[int, str], list[int]] = {}
    for rule_id, key, bucket in tally.buckets:
        if by_id[rule_id].kind == AlertKind.THRESHOLD:
            touched.setdefault((rule_id, key), []).append(bucket)
    with prepared_cursor() as cursor:
        cursor.execute(_BUCKETS_SQL, [orjson.dumps(rows).decode()])
        if not touched:
            return []
        groups = []
        for (rule_id, key), buckets in touched.items():
            span = by_id[rule_id].span_seconds
            groups.append(
                {
                    "rule_id": rule_id,
                    "group_key": key,
                    "lo": min(buckets),
                    "hi": max(buckets) + span - BUCKET_SECONDS,
                    "span": span,
                    "threshold": by_id[rule_id].threshold,
                    "touched": sorted(buckets),
                }
            )
        cursor.execute(_WINDOWS_SQL, [orjson.dumps(groups).decode()])
        reached = cursor.fetchall()
    candidates = []
    for rule_id, key, end, total, first_offset, first_event_id, last_offset, last_event_id in reached:
        span = by_id[rule_id].span_seconds
        candidates.append(
            {
                "rule_id": rule_id,
                "group_key": key,
                # What this process grouped by (its rules are cached a few seconds): the value is of that field.
                "group_by": by_id[rule_id].group_by,
                "group_value": tally.values.get((rule_id, key)),
                "count": int(total),
                "threshold": by_id[rule_id].threshold,
                "window_start": end + BUCKET_SECONDS - span,
                "window_end": end + BUCKET_SECONDS,
                "first_offset": first_offset,
                "first_event_id": first_event_id,
                "last_offset": last_offset,
                "last_event_id": last_event_id,
            }
        )
    return candidates


def _fire(*, rules: Sequence[CompiledRule], candidates: list[dict[str, Any]], now: datetime) -> list[int]:
    """Insert the alerts whose (rule, group) is not cooling down; log them as events; queue URL deliveries."""
    with prepared_cursor() as cursor:
        cursor.execute(_FIRE_SQL, {"rows": orjson.dumps(candidates).decode(), "now": now})
        alert_ids = [row[0] for row in cursor.fetchall()]
    if not alert_ids:
        return []
    alerts = list(Alert.objects.filter(pk__in=alert_ids).order_by("pk"))
    by_id = {rule.id: rule for rule in rules}
    slugs = {by_id[a.rule_id].stream_slug for a in alerts if a.rule_id in by_id}
    for slug in slugs:
        info = stream_info(slug)
        if info is None:
            continue
        events = [alert_event(a, by_id[a.rule_id]) for a in alerts if by_id[a.rule_id].stream_slug == slug]
        events_ingest(stream=info, raw_events=events, received_at=now, may_hold_nul=False)
    for alert in alerts:
        if alert.delivery_status == DeliveryStatus.PENDING:
            transaction.on_commit(functools.partial(alert_delivery_request, alert.pk))
    return alert_ids


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def alert_event(alert: Alert, rule: CompiledRule | AlertRule) -> dict[str, Any]:
    """The ``alert`` event as it goes into the stream's log (and to the rule's URL)."""
    return {
        "event_id": f"alert-{alert.pk}",
        "type": ALERT_EVENT_TYPE,
        "timestamp": _iso(alert.fired_at),
        "payload": {
            "alert_id": alert.pk,
            "rule_id": alert.rule_id,
            "rule": rule.name,
            "kind": rule.kind,
            "group_by": alert.group_by or None,
            "group_value": alert.group_value,
            "count": alert.count,
            "threshold": alert.threshold,
            "window_seconds": rule.window_seconds,
            "window_start": _iso(alert.window_start),
            "window_end": _iso(alert.window_end),
            "first_offset": alert.first_offset,
            "first_event_id": alert.first_event_id,
            "last_offset": alert.last_offset,
            "last_event_id": alert.last_event_id,
            "fired_at": _iso(alert.fired_at),
        },
    }


# --- the periodic check: absence rules, clean-up, lost deliveries --------------------------------------------

# Each active, unmuted absence rule with its latest bucket (the primary key's last entry).
_ABSENCE_SQL = """
SELECT r.id, r.active_since, r.window_seconds, last.bucket, last.last_offset, last.last_event_id
FROM analytics_alert_rule r
LEFT JOIN LATERAL (
    SELECT b.bucket, b.last_offset, b.last_event_id FROM analytics_alert_bucket b
    WHERE b.rule_id = r.id AND b.group_key = '' ORDER BY b.bucket DESC LIMIT 1
) AS last ON true
WHERE r.kind = 'absence' AND r.is_active AND (r.muted_until IS NULL OR r.muted_until <= %s)
"""
# Buckets no window can reach any more (and those of deleted rules): one pass over the table,
# which holds only two windows and the lateness allowance of buckets per rule and group. Two:
# an event a window plus the allowance late still counts, and its window reaches a window further back.
_BUCKETS_PRUNE_SQL = """
DELETE FROM analytics_alert_bucket b
WHERE NOT EXISTS (
    SELECT 1 FROM analytics_alert_rule r
    WHERE r.id = b.rule_id AND b.bucket >= %(now)s - make_interval(secs => 2 * r.window_seconds + %(keep)s))
"""
_ALERTS_PRUNE_SQL = """
DELETE FROM analytics_alert WHERE id IN (
    SELECT id FROM analytics_alert WHERE fired_at < %s ORDER BY id LIMIT 10000)
"""


@dataclass
class CheckOutcome:
    absence_fired: int = 0
    buckets_pruned: int = 0
    cooldowns_pruned: int = 0
    alerts_pruned: int = 0
    deliveries_requeued: int = 0


def alerts_check(*, now: datetime | None = None) -> CheckOutcome:
    """Fire absence rules whose silence is a window long; prune state; re-queue lost deliveries.

    Safe to run twice at once: firing goes through the same conditional claim as
    threshold alerts, the deletes are idempotent.
    """
    now = now or timezone.now()
    outcome = CheckOutcome()
    outcome.absence_fired = len(_absence_fire(now=now))
    with connection.cursor() as cursor:
        # Whole buckets: each of the two windows rounds up by less than one, and a bucket starts before its events.
        keep = conf.get().alert_lateness_seconds + 4 * BUCKET_SECONDS
        cursor.execute(_BUCKETS_PRUNE_SQL, {"now": now, "keep": keep})
        outcome.buckets_pruned = cursor.rowcount
        cursor.execute("DELETE FROM analytics_alert_cooldown WHERE quiet_until < %s", [now])
        outcome.cooldowns_pruned = cursor.rowcount
        cursor.execute(_ALERTS_PRUNE_SQL, [now - timedelta(days=conf.get().alert_retention_days)])
        outcome.alerts_pruned = cursor.rowcount
    lost = Alert.objects.filter(
        delivery_status=DeliveryStatus.PENDING,
        next_attempt_at__lte=now - timedelta(seconds=DELIVERY_LOST_AFTER_SECONDS),
    ).values_list("pk", flat=True)[:1000]
    for alert_id in lost:
        alert_delivery_request(alert_id)
        outcome.deliveries_requeued += 1
    return outcome


def _absence_fire(*, now: datetime) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(_ABSENCE_SQL, [now])
        rows = cursor.fetchall()
    due: dict[int, dict[str, Any]] = {}
    for rule_id, active_since, window_seconds, last_bucket, last_offset, last_event_id in rows:
        last_seen = last_bucket + timedelta(seconds=BUCKET_SECONDS) if last_bucket is not None else None
        silent_since = max(active_since, last_seen) if last_seen is not None else active_since
        if now - silent_since < timedelta(seconds=window_seconds):
            continue
        due[rule_id] = {
            "rule_id": rule_id,
            "group_key": "",
            "group_by": "",
            "group_value": None,
            "count": 0,
            "threshold": 0,
            "window_start": silent_since.timestamp(),
            "window_end": now.timestamp(),
            "first_offset": None,
            "first_event_id": None,
            "last_offset": last_offset if last_seen is not None and last_seen > active_since else None,
            "last_event_id": last_event_id if last_seen is not None and last_seen > active_since else None,
        }
    if not due:
        return []
    fired: list[int] = []
    rules = AlertRule.objects.filter(pk__in=due).select_related("stream")
    for stream_id in {rule.stream_id for rule in rules}:
        compiled = [_compile(rule, rule.stream.slug) for rule in rules if rule.stream_id == stream_id]
        try:
            with transaction.atomic():
                fired += _fire(rules=compiled, candidates=[due[rule.id] for rule in compiled], now=now)
        except IntegrityError:
            # The rule was deleted meanwhile.
            logger.info("absence alert of stream %s not fired: its rule is gone", stream_id)
    return fired


# --- delivery to the rule's own URL ------------------------------------------------------------------------


def alert_delivery_request(alert_id: int) -> None:
    """Queue the delivery task. Never raises: the periodic check queues a lost one again."""
    try:
        celery_app.send_task(DELIVER_TASK, args=[alert_id], queue=WEBHOOK_QUEUE)
    except Exception:
        logger.warning("could not queue delivery of alert %s; the periodic check will", alert_id, exc_info=True)


ALERT_RULE_HEADER = "X-EventFlow-Alert-Rule"


def _delivery_body(alert: Alert, delivery_id: uuid.UUID) -> bytes:
    """The webhooks' body shape, with the one ``alert`` event: a webhook receiver reads it as it is."""
    event = alert_event(alert, alert.rule)
    event.update(offset=None, delivery_count=alert.delivery_attempts)
    return orjson.dumps(
        {
            "alert_rule_id": alert.rule_id,
            "stream": alert.stream.slug,
            "delivery_id": str(delivery_id),
            "test": False,
            "events": [event],
        }
    )


def alert_deliver(*, alert_id: int) -> float | None:
    """POST the alert to its rule's URL once. Returns seconds until the next try, or None when done.

    The attempt is claimed by a conditional update (pending, due), so two runs
    never send at once; the claim lapses after DELIVERY_LEASE_SECONDS.
    """
    now = timezone.now()
    claimed = Alert.objects.filter(
        pk=alert_id, delivery_status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).update(
        next_attempt_at=now + timedelta(seconds=DELIVERY_LEASE_SECONDS), delivery_attempts=F("delivery_attempts") + 1
    )
    if not claimed:
        return None
    alert = Alert.objects.select_related("rule", "stream").get(pk=alert_id)
    if not alert.rule.url:
        Alert.objects.filter(pk=alert_id).update(delivery_status=DeliveryStatus.NONE, next_attempt_at=None)
        return None
    delivery_id = uuid.uuid4()
    body = _delivery_body(alert, delivery_id)
    headers = webhook_signed_headers(
        secret=alert.rule.secret, body=body, delivery_id=delivery_id, extra={ALERT_RULE_HEADER: str(alert.rule_id)}
    )
    result = post_json(alert.rule.url, body, headers)
    done = timezone.now()
    if result.ok:
        Alert.objects.filter(pk=alert_id).update(
            delivery_status=DeliveryStatus.DELIVERED, delivered_at=done, delivery_error="", next_attempt_at=None
        )
        return None
    max_attempts = conf.get().webhook_max_attempts
    if result.retryable and alert.delivery_attempts < max_attempts:
        delay = webhook_backoff_seconds(alert.delivery_attempts, result.retry_after)
        Alert.objects.filter(pk=alert_id).update(
            delivery_error=result.error[:2000], next_attempt_at=done + timedelta(seconds=delay)
        )
        return delay
    Alert.objects.filter(pk=alert_id).update(
        delivery_status=DeliveryStatus.FAILED, delivery_error=result.error[:2000], next_attempt_at=None
    )
    return None


# --- rules: reads -------------------------------------------------------------------------------------------


def alerts_erase_person(*, stream_id: int, by: str, subject: str) -> list[str]:
    """Take a person out of the alerts of the stream's rules grouped by ``by`` (user_id or anonymous_id).

    Their groups' counts and cool-downs are deleted; their alerts (those raised while the rule was
    grouped by ``by``, whatever it is grouped by now) keep counts, times and event ids but lose the
    group value; the event ids of those alerts' ``alert`` events are returned
    for the caller (an erasure, streams/erasure.py) to redact in the log. Runs in the caller's
    transaction. A rule grouped by a property that holds the person (``payload.email``) is not
    reached: the value is the producer's, not one of the person's ids.
    """
    rule_ids = list(AlertRule.objects.filter(stream_id=stream_id, group_by=by).values_list("pk", flat=True))
    if rule_ids:
        key = group_key(subject)
        AlertBucket.objects.filter(rule_id__in=rule_ids, group_key=key).delete()
        AlertCooldown.objects.filter(rule_id__in=rule_ids, group_key=key).delete()
    # By what each alert was grouped by when it fired: a rule regrouped since still has the person's alerts.
    theirs = Alert.objects.filter(stream_id=stream_id, group_by=by, group_value=subject[:GROUP_VALUE_MAX])
    alert_ids = list(theirs.values_list("pk", flat=True))
    theirs.update(group_value=None)
    return [f"alert-{pk}" for pk in alert_ids]


def alert_rules_of_stream(*, stream_id: int) -> QuerySet[AlertRule]:
    return AlertRule.objects.filter(stream_id=stream_id).select_related("created_by").order_by("id")


def alert_rule_get(*, stream_id: int, rule_id: int) -> AlertRule:
    rule = alert_rules_of_stream(stream_id=stream_id).filter(pk=rule_id).first()
    if rule is None:
        raise NotFound("alert_rule_not_found", "The stream has no such alert rule.", {"rule_id": rule_id})
    return rule


def alerts_of_stream(
    *,
    stream_id: int,
    rule_id: int | None = None,
    fired_from: datetime | None = None,
    fired_to: datetime | None = None,
) -> QuerySet[Alert]:
    if fired_from is not None and fired_to is not None and fired_from >= fired_to:
        raise Invalid("invalid_filter", "from must be before to.", {"from": _iso(fired_from), "to": _iso(fired_to)})
    alerts = Alert.objects.filter(stream_id=stream_id).select_related("rule")
    if rule_id is not None:
        alerts = alerts.filter(rule_id=rule_id)
    if fired_from is not None:
        alerts = alerts.filter(fired_at__gte=fired_from)
    if fired_to is not None:
        alerts = alerts.filter(fired_at__lt=fired_to)
    return alerts


# --- rules: writes ------------------------------------------------------------------------------------------

_RESETTING = frozenset({"event_types", "conditions", "kind", "threshold", "window_seconds", "group_by"})
_CHANGEABLE = _RESETTING | {"name", "cooldown_seconds", "url", "is_active"}


def _types(raw: Any) -> list[str]:
    if not isinstance(raw, list | tuple) or len(raw) > MAX_TYPES or not all(is_event_type(t) for t in raw):
        raise Invalid("invalid_alert_rule", f"event_types is a list of up to {MAX_TYPES} event types.")
    if ALERT_EVENT_TYPE in raw:
        raise Invalid(
            "invalid_alert_rule",
            "Rules cannot count `alert` events: an alert would feed its own rule.",
            {"type": "alert"},
        )
    return sorted(set(raw))


def _group_by(raw: Any) -> str:
    if raw in (None, ""):
        return ""
    if not isinstance(raw, str):
        raise Invalid("invalid_alert_rule", "group_by is a field name.")
    if raw in GROUP_FIELDS:
        return raw
    try:
        parse_path(raw)
    except Invalid:
        raise Invalid(
            "invalid_alert_rule",
            "group_by is user_id, anonymous_id, session_id, or a payload.…, context.… or enrichment.… path.",
            {"group_by": raw},
        ) from None
    return raw


def _validated(rule: AlertRule) -> None:
    """Field limits from the model (``full_clean``), the filter's language, the rule's kinds, the URL."""
    rule.event_types = _types(rule.event_types)
    rule.conditions = [c.as_dict() for c in parse_conditions(rule.conditions)]
    rule.group_by = _group_by(rule.group_by)
    if rule.kind == AlertKind.ABSENCE:
        if rule.group_by:
            raise Invalid(
                "invalid_alert_rule",
                "An absence rule watches the whole stream: it takes no group_by.",
                {"group_by": rule.group_by},
            )
        # Its threshold stays as it was set: unused here, it is the one a switch back to threshold counts with.
    try:
        rule.full_clean(exclude=["stream", "created_by", "secret", "active_since"], validate_unique=False)
    except ValidationError as exc:
        raise Invalid("invalid_alert_rule", "The alert rule is invalid.", exc.message_dict) from None
    if rule.url:
        webhook_url_check(rule.url)


def _reset_state(rule_id: int) -> None:
    AlertBucket.objects.filter(rule_id=rule_id).delete()
    AlertCooldown.objects.filter(rule_id=rule_id).delete()


def _audit_details(rule: AlertRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "kind": rule.kind,
        "event_types": rule.event_types,
        "conditions": rule.conditions,
        "threshold": rule.threshold,
        "window_seconds": rule.window_seconds,
        "group_by": rule.group_by,
        "cooldown_seconds": rule.cooldown_seconds,
        "url": rule.url,
        "is_active": rule.is_active,
    }


def alert_rule_create(
    *,
    stream_id: int,
    name: str,
    window_seconds: int,
    kind: str = AlertKind.THRESHOLD,
    event_types: Sequence[str] = (),
    conditions: Any = (),
    threshold: int = 1,
    group_by: str = "",
    cooldown_seconds: int = 600,
    url: str = "",
    is_active: bool = True,
    created_by: Any = None,
) -> AlertRule:
    """A new rule, watching from now. Its signing secret is on the returned rule (show it once)."""
    now = timezone.now()
    rule = AlertRule(
        stream_id=stream_id,
        name=name,
        kind=kind,
        event_types=list(event_types),
        conditions=list(conditions),
        threshold=threshold,
        window_seconds=window_seconds,
        group_by=group_by,
        cooldown_seconds=cooldown_seconds,
        url=url,
        is_active=is_active,
        secret=SECRET_PREFIX + secrets.token_urlsafe(32),
        active_since=now,
        created_by=created_by if getattr(created_by, "pk", None) else None,
    )
    _validated(rule)
    try:
        with transaction.atomic():
            # Creates on one stream take turns, so that two at once cannot both pass the count
            # (NO KEY UPDATE: appends, which only share the stream row's key, go on).
            list(Stream.objects.select_for_update(no_key=True).filter(pk=stream_id).values_list("pk", flat=True))
            if AlertRule.objects.filter(stream_id=stream_id).count() >= MAX_RULES_PER_STREAM:
                raise Conflict("too_many_alert_rules", f"A stream has at most {MAX_RULES_PER_STREAM} alert rules.")
            rule.save()
            audit_security(
                action="alert_rule.create", stream_id=stream_id, target=str(rule.pk), details=_audit_details(rule)
            )
    except IntegrityError:
        raise Conflict("alert_rule_exists", f"The stream already has an alert rule {name!r}.", {"name": name}) from None
    alert_rules_cache_clear(stream_id)
    return rule


def alert_rule_update(*, stream_id: int, rule_id: int, **changes: Any) -> AlertRule:
    """Change a rule. A change of what or how it counts starts its windows and cool-downs afresh."""
    unknown = set(changes) - _CHANGEABLE
    if unknown:
        raise Invalid("invalid_alert_rule", f"Unknown field(s): {', '.join(sorted(unknown))}.")
    try:
        with transaction.atomic():
            rule = AlertRule.objects.select_for_update().filter(stream_id=stream_id, pk=rule_id).first()
            if rule is None:
                raise NotFound("alert_rule_not_found", "The stream has no such alert rule.", {"rule_id": rule_id})
            before = _audit_details(rule)
            for name, value in changes.items():
                setattr(rule, name, list(value) if name in ("event_types", "conditions") else value)
            _validated(rule)
            after = _audit_details(rule)
            changed = {name: after[name] for name in after if after[name] != before[name]}
            if not changed:
                return rule
            counting = _RESETTING & set(changed)
            if rule.kind == AlertKind.ABSENCE and "kind" not in changed:
                counting -= {"threshold"}  # kept for a switch back, unused by an absence rule
            restart = bool(counting) or (changed.get("is_active") is True)
            if restart:
                rule.active_since = timezone.now()
                _reset_state(rule.pk)
            elif "cooldown_seconds" in changed:
                # A group quiet since its last alert stays quiet for the rule's cool-down as it is now.
                AlertCooldown.objects.filter(rule_id=rule.pk).update(
                    quiet_until=F("fired_at") + timedelta(seconds=rule.cooldown_seconds)
                )
            rule.save()
            audit_security(action="alert_rule.update", stream_id=stream_id, target=str(rule.pk), details=changed)
    except IntegrityError:
        raise Conflict("alert_rule_exists", "The stream already has an alert rule of that name.") from None
    alert_rules_cache_clear(stream_id)
    return rule


def alert_rule_mute(*, stream_id: int, rule_id: int, minutes: int | None) -> AlertRule:
    """Mute for ``minutes`` (events are still counted, nothing fires), or unmute with None."""
    now = timezone.now()
    until = now + timedelta(minutes=minutes) if minutes is not None else None
    with transaction.atomic():
        rule = AlertRule.objects.select_for_update().filter(stream_id=stream_id, pk=rule_id).first()
        if rule is None:
            raise NotFound("alert_rule_not_found", "The stream has no such alert rule.", {"rule_id": rule_id})
        rule.muted_until = until
        rule.save(update_fields=["muted_until", "updated_at"])
        audit_security(
            action="alert_rule.mute" if until else "alert_rule.unmute",
            stream_id=stream_id,
            target=str(rule.pk),
            details={"name": rule.name, "muted_until": _iso(until)},
        )
    return rule


def alert_rule_delete(*, stream_id: int, rule_id: int) -> None:
    """Delete a rule with its alerts and counts."""
    with transaction.atomic():
        rule = AlertRule.objects.select_for_update().filter(stream_id=stream_id, pk=rule_id).first()
        if rule is None:
            raise NotFound("alert_rule_not_found", "The stream has no such alert rule.", {"rule_id": rule_id})
        details = _audit_details(rule)
        AlertBucket.objects.filter(rule_id=rule.pk).delete()
        rule.delete()
        audit_security(action="alert_rule.delete", stream_id=stream_id, target=str(rule_id), details=details)
    alert_rules_cache_clear(stream_id)
