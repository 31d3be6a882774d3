"""Reads for consumer groups and webhook subscriptions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from eventflow.errors import NotFound, Unprocessable
from streams.log_selectors import log_earliest_offset, log_offset_at
from streams.models import DeadLetter, DeadLetterStatus

from .models import ConsumerGroup, DeliveryAttempt, GroupKind, WebhookSubscription

RECENT_DEAD_LETTERS = 10

PositionKind = Literal["earliest", "latest", "offset", "timestamp"]


@dataclass(frozen=True)
class Position:
    """Where a group starts or seeks to."""

    kind: PositionKind
    offset: int | None = None
    timestamp: datetime | None = None


def log_position_resolve(*, stream_id: int, position: Position, head: int) -> int:
    """The offset a group starts or seeks to.

    An offset below the oldest the log still keeps (retention removed it) is
    raised to that oldest one, or to the head when the log keeps nothing: the
    group then shows where it will read, and its lag counts only kept events.
    """
    if position.kind == "latest":
        return head
    if position.kind == "earliest":
        earliest = log_earliest_offset(stream_id=stream_id)
        return head if earliest is None else earliest
    if position.kind == "timestamp":
        assert position.timestamp is not None
        found = log_offset_at(stream_id=stream_id, timestamp=position.timestamp)
        return head if found is None else found
    assert position.offset is not None
    if position.offset > head:
        raise Unprocessable(
            "offset_beyond_head",
            "The offset is beyond the head of the log.",
            {"offset": position.offset, "head": head},
        )
    if position.offset == head:
        return head
    earliest = log_earliest_offset(stream_id=stream_id)
    # An earliest beyond the head read before it came since: nothing below the head is kept.
    return max(position.offset, head if earliest is None else min(earliest, head))


# --- consumer groups --------------------------------------------------------------------------


def _with_head(groups: QuerySet[ConsumerGroup]) -> QuerySet[ConsumerGroup]:
    open_dead_letters = (
        DeadLetter.objects.filter(group_id=OuterRef("pk"), status=DeadLetterStatus.OPEN)
        .order_by()
        .values("group_id")
        .annotate(n=Count("*"))
        .values("n")
    )
    return groups.select_related("stream__head").annotate(open_dead_letters=Coalesce(Subquery(open_dead_letters), 0))


def consumer_groups_of_stream(*, stream_id: int) -> QuerySet[ConsumerGroup]:
    return _with_head(ConsumerGroup.objects.filter(stream_id=stream_id, kind=GroupKind.PULL))


def consumer_group_get(*, stream_id: int, name: str) -> ConsumerGroup:
    group = consumer_groups_of_stream(stream_id=stream_id).filter(name=name).first()
    if group is None:
        raise NotFound("consumer_group_not_found", "No such consumer group.")
    return group


def consumer_group_lease(group: ConsumerGroup) -> dict[str, Any] | None:
    if group.lease_id is None or group.lease_expires_at is None or group.lease_expires_at <= timezone.now():
        return None
    return {
        "id": str(group.lease_id),
        "start_offset": group.lease_start,
        "end_offset": group.lease_end,
        "expires_at": group.lease_expires_at.isoformat(),
    }


def consumer_group_state(group: ConsumerGroup) -> dict[str, Any]:
    """Position, head and lag of a group read with ``consumer_groups_of_stream`` (no further queries).

    The head is the log's length: events still waiting in the inbox are not in
    it and do not count as lag.
    """
    head = group.stream.head.next_offset
    return {
        "name": group.name,
        "committed_offset": group.committed_offset,
        "head": head,
        "lag": max(0, head - group.committed_offset),
        "lease": consumer_group_lease(group),
        "paused": group.paused,
        "paused_reason": group.paused_reason,
        "max_deliver": group.max_deliver,
        "on_max_deliver": group.on_max_deliver,
        "open_dead_letters": getattr(group, "open_dead_letters", 0),
        "created_at": group.created_at.isoformat(),
    }


def consumer_group_dead_letters(*, group: ConsumerGroup, limit: int = RECENT_DEAD_LETTERS) -> list[dict[str, Any]]:
    letters = DeadLetter.objects.filter(group_id=group.pk, status=DeadLetterStatus.OPEN).order_by("-log_offset", "-id")[
        :limit
    ]
    return [
        {
            "id": letter.pk,
            "offset": letter.log_offset,
            "event_id": letter.event_id,
            "stage": letter.stage,
            "error": letter.error_message,
            "attempts": letter.attempts,
            "failed_at": letter.last_failed_at.isoformat(),
        }
        for letter in letters
    ]


# --- webhooks -----------------------------------------------------------------------------------


def webhooks_of_stream(*, stream_id: int) -> QuerySet[WebhookSubscription]:
    return WebhookSubscription.objects.filter(stream_id=stream_id).select_related("group__stream__head")


def webhook_get(*, stream_id: int, webhook_id: int) -> WebhookSubscription:
    webhook = webhooks_of_stream(stream_id=stream_id).filter(pk=webhook_id).first()
    if webhook is None:
        raise NotFound("webhook_not_found", "No such webhook subscription.")
    return webhook


def webhook_deliveries(*, webhook: WebhookSubscription) -> QuerySet[DeliveryAttempt]:
    return DeliveryAttempt.objects.filter(subscription=webhook)


def webhooks_due(*, now: datetime | None = None) -> list[int]:
    """Active subscriptions with log entries past their position (or replayed ones waiting), no backoff, no lease."""
    now = now or timezone.now()
    return list(
        WebhookSubscription.objects.filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
            Q(group__committed_offset__lt=F("stream__head__next_offset")) | ~Q(group__redeliveries=[]),
            is_active=True,
            group__paused=False,
        )
        .filter(Q(group__lease_expires_at__isnull=True) | Q(group__lease_expires_at__lte=now))
        .values_list("pk", flat=True)
    )


def deliveries_of_offset(*, stream_id: int, offset: int, limit: int = 20) -> list[DeliveryAttempt]:
    """The stream's webhook delivery attempts whose batch held the log entry at ``offset`` (newest first).

    Only the recent attempts are kept (``WEBHOOK_KEEP_ATTEMPTS`` per subscription), so an old event may have none.
    """
    return list(
        DeliveryAttempt.objects.filter(
            subscription__stream_id=stream_id, first_offset__lte=offset, end_offset__gt=offset, is_test=False
        )
        .select_related("subscription")
        .order_by("-id")[:limit]
    )


@dataclass
class StreamConsumers:
    """What reads a stream, for the overview: its pull groups' lag and its webhooks' health."""

    groups: int = 0
    lag: int = 0
    paused: int = 0
    webhooks: int = 0
    failing: int = 0
    disabled: int = 0
    webhook_lag: int = 0


def consumers_of_streams(*, stream_ids: list[int]) -> dict[int, StreamConsumers]:
    """Per stream: pull groups (count, total lag, paused) and webhooks (count, failing, disabled, lag). Two queries."""
    out = {sid: StreamConsumers() for sid in stream_ids}
    if not stream_ids:
        return out
    groups = ConsumerGroup.objects.filter(stream_id__in=stream_ids, kind=GroupKind.PULL).values_list(
        "stream_id", "committed_offset", "stream__head__next_offset", "paused"
    )
    for stream_id, committed, head, paused in groups:
        one = out[stream_id]
        one.groups += 1
        one.lag += max(0, head - committed)
        one.paused += int(paused)
    hooks = WebhookSubscription.objects.filter(stream_id__in=stream_ids).values_list(
        "stream_id", "is_active", "consecutive_failures", "group__committed_offset", "stream__head__next_offset"
    )
    for stream_id, active, failures, committed, head in hooks:
        one = out[stream_id]
        one.webhooks += 1
        one.disabled += int(not active)
        one.failing += int(active and failures > 0)
        one.webhook_lag += max(0, head - committed)
    return out
