"""Webhook subscriptions and their delivery (writes).

Each subscription reads its stream through a consumer group of its own. A
delivery leases the next batch, POSTs it signed, and commits on a 2xx. A
timeout, 5xx or 429 gives the lease back and sets ``next_attempt_at`` (backoff
with jitter, at least Retry-After); the next hand-out counts one more attempt.
After the last attempt, or at once for other answers, the batch's events
become dead letters (stage ``deliver``) and delivery goes on. A long enough run
of failures disables the subscription, with the reason shown. A replayed
``deliver`` dead letter is queued on the subscription's group and sent again
by the next delivery run, before new events.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from eventflow import conf
from eventflow.celery_helpers import backoff_seconds, queue_once, queue_once_clear
from eventflow.errors import Invalid
from eventflow.metrics import WEBHOOK_DELIVERIES, WEBHOOK_DISABLED, WEBHOOK_EVENTS_DELIVERED
from streams.log import log_head
from streams.models import DeadLetter

from .models import ConsumerGroup, DeliveryAttempt, DeliveryOutcome, GroupKind, MaxDeliverPolicy, WebhookSubscription
from .outbound import PostResult, UnsafeUrl, loopback_allowed, post_json, url_resolve
from .services import (
    consumer_group_commit,
    consumer_group_dead_letter_lease,
    consumer_group_poll_once,
    consumer_group_redeliver,
)

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-EventFlow-Signature"
TIMESTAMP_HEADER = "X-EventFlow-Timestamp"
DELIVERY_HEADER = "X-EventFlow-Delivery"
WEBHOOK_HEADER = "X-EventFlow-Webhook"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
TEST_EVENT_TYPE = "eventflow.test"
MAX_BATCH_SIZE = 1000
# The most event types a webhook delivers (none named: every type).
MAX_EVENT_TYPES = 100
# Longer than a whole attempt (connect + total timeout), so a lease never ends mid-POST.
DELIVERY_LEASE_SECONDS = 60.0
KICK_MARKER_SECONDS = 60
DELIVER_TASK = "consumers.webhook_deliver"


def webhook_sign(*, secret: str, timestamp: int, body: bytes) -> str:
    """``v1=`` + hex HMAC-SHA256 of ``"<timestamp>." + body`` with the subscription's secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def webhook_url_check(url: str) -> None:
    """Refuse what deliveries would refuse, when the URL is saved.

    The lookup has the deliveries' total timeout: a host that doesn't resolve within it is refused, and a
    slow resolver holds the request no longer than it would hold a delivery.
    """
    try:
        url_resolve(url, allow_loopback=loopback_allowed(), timeout=conf.get().webhook_total_timeout_seconds)
    except UnsafeUrl as exc:
        raise Invalid("unsafe_url", str(exc), {"url": url}) from None
    except OSError as exc:
        raise Invalid("unresolvable_url", f"The host does not resolve: {exc}.", {"url": url}) from None


def _lookup(webhook: WebhookSubscription) -> dict[str, Any]:
    return {"pk": webhook.group_id}


# --- subscriptions ------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedWebhook:
    webhook: WebhookSubscription
    secret: str


def webhook_create(
    *,
    stream_id: int,
    url: str,
    event_types: list[str] | None = None,
    description: str = "",
    batch_size: int = 500,
) -> CreatedWebhook:
    """Subscribe ``url`` to the stream's events from now on; the secret is returned here only."""
    webhook_url_check(url)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        group = ConsumerGroup.objects.create(
            stream_id=stream_id,
            name=f"webhook-pending:{uuid.uuid4()}",
            kind=GroupKind.WEBHOOK,
            committed_offset=log_head(stream_id),
            max_deliver=conf.get().webhook_max_attempts,
            on_max_deliver=MaxDeliverPolicy.DEAD_LETTER,
        )
        webhook = WebhookSubscription.objects.create(
            stream_id=stream_id,
            group=group,
            url=url,
            event_types=sorted(set(event_types or [])),
            description=description,
            secret=secret,
            batch_size=batch_size,
        )
        # Dead letters name the subscription this way.
        group.name = f"webhook:{webhook.pk}"
        group.save(update_fields=["name"])
    return CreatedWebhook(webhook=webhook, secret=secret)


def webhook_update(
    *,
    webhook: WebhookSubscription,
    url: str | None = None,
    event_types: list[str] | None = None,
    description: str | None = None,
    batch_size: int | None = None,
    is_active: bool | None = None,
) -> WebhookSubscription:
    fields = ["updated_at"]
    if url is not None and url != webhook.url:
        webhook_url_check(url)
        webhook.url = url
        fields.append("url")
    if event_types is not None:
        webhook.event_types = sorted(set(event_types))
        fields.append("event_types")
    if description is not None:
        webhook.description = description
        fields.append("description")
    if batch_size is not None:
        webhook.batch_size = batch_size
        fields.append("batch_size")
    webhook.save(update_fields=fields)
    if is_active is True and not webhook.is_active:
        webhook = webhook_enable(webhook=webhook)
    elif is_active is False and webhook.is_active:
        webhook = webhook_disable(webhook=webhook, reason="Disabled by a user.")
    return webhook


def webhook_enable(*, webhook: WebhookSubscription) -> WebhookSubscription:
    """Re-enable: failures are forgotten and delivery resumes where the subscription stopped."""
    WebhookSubscription.objects.filter(pk=webhook.pk).update(
        is_active=True,
        disabled_reason="",
        disabled_at=None,
        consecutive_failures=0,
        next_attempt_at=None,
        updated_at=timezone.now(),
    )
    webhook.refresh_from_db()
    webhook_id = webhook.pk
    transaction.on_commit(lambda: webhook_delivery_request(webhook_id))
    return webhook


def webhook_disable(*, webhook: WebhookSubscription, reason: str) -> WebhookSubscription:
    now = timezone.now()
    WebhookSubscription.objects.filter(pk=webhook.pk).update(
        is_active=False, disabled_reason=reason[:500], disabled_at=now, updated_at=now
    )
    webhook.refresh_from_db()
    return webhook


def webhook_delete(*, webhook: WebhookSubscription) -> None:
    with transaction.atomic():
        group_id = webhook.group_id
        webhook.delete()
        ConsumerGroup.objects.filter(pk=group_id).delete()


# --- delivery ---------------------------------------------------------------------------------


def webhook_backoff_seconds(attempt: int, retry_after: float | None) -> float:
    """Seconds before the next attempt of an outbound delivery (webhooks, alert URLs): backoff with jitter."""
    settings = conf.get()
    base, cap = settings.webhook_backoff_base_seconds, settings.webhook_backoff_max_seconds
    delay = backoff_seconds(attempt, base=base, cap=cap)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


def webhook_signed_headers(
    *, secret: str, body: bytes, delivery_id: uuid.UUID, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The signing headers of an outbound delivery (webhooks, alert URLs), signed now with ``secret``."""
    timestamp = int(time.time())
    return {
        SIGNATURE_HEADER: webhook_sign(secret=secret, timestamp=timestamp, body=body),
        TIMESTAMP_HEADER: str(timestamp),
        DELIVERY_HEADER: str(delivery_id),
        **(extra or {}),
    }


def _signed_headers(webhook: WebhookSubscription, body: bytes, delivery_id: uuid.UUID) -> dict[str, str]:
    return webhook_signed_headers(
        secret=webhook.secret, body=body, delivery_id=delivery_id, extra={WEBHOOK_HEADER: str(webhook.pk)}
    )


def _body(webhook: WebhookSubscription, delivery_id: uuid.UUID, events_json: str, test: bool = False) -> bytes:
    head = orjson.dumps(
        {"webhook_id": webhook.pk, "stream": webhook.stream.slug, "delivery_id": str(delivery_id), "test": test}
    )
    return head[:-1] + b',"events":' + events_json.encode() + b"}"


def _attempt_record(
    *,
    webhook: WebhookSubscription,
    delivery_id: uuid.UUID,
    result: PostResult,
    first_offset: int | None,
    end_offset: int | None,
    event_count: int,
    attempt: int,
    is_test: bool = False,
) -> DeliveryAttempt:
    return DeliveryAttempt.objects.create(
        subscription=webhook,
        delivery_id=delivery_id,
        created_at=timezone.now(),
        outcome=DeliveryOutcome.SUCCESS if result.ok else DeliveryOutcome.FAILURE,
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        error=result.error[:2000],
        first_offset=first_offset,
        end_offset=end_offset,
        event_count=event_count,
        attempt=attempt,
        is_test=is_test,
    )


def _failure_record(*, webhook: WebhookSubscription, result: PostResult, now: datetime) -> bool:
    """Count a failed attempt; disable the subscription after the configured run. True if disabled."""
    WebhookSubscription.objects.filter(pk=webhook.pk).update(
        consecutive_failures=F("consecutive_failures") + 1, last_failure_at=now, updated_at=now
    )
    threshold = conf.get().webhook_disable_after_failures
    reason = f"Disabled after {threshold} failed deliveries in a row; the last: {result.error}"[:500]
    disabled = WebhookSubscription.objects.filter(
        pk=webhook.pk, is_active=True, consecutive_failures__gte=threshold
    ).update(is_active=False, disabled_reason=reason, disabled_at=now)
    return bool(disabled)


@dataclass
class DeliverOutcome:
    batches: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    dead_lettered: int = 0
    stopped_because: str = ""


def webhook_deliver(*, webhook_id: int, budget_seconds: float = 20.0) -> DeliverOutcome:
    """Deliver the subscription's pending events in order, batch after batch, for up to ``budget_seconds``.

    Safe to run twice at once: the group's lease lets one run hold a batch, the
    other finds nothing to do.
    """
    outcome = DeliverOutcome()
    deadline = time.monotonic() + budget_seconds
    while time.monotonic() < deadline:
        webhook = WebhookSubscription.objects.select_related("stream", "group").filter(pk=webhook_id).first()
        now = timezone.now()
        if webhook is None or not webhook.is_active:
            outcome.stopped_because = "inactive"
            break
        if webhook.next_attempt_at is not None and webhook.next_attempt_at > now:
            outcome.stopped_because = "backoff"
            break
        lookup = _lookup(webhook)
        event_types = list(webhook.event_types) or None
        poll = consumer_group_poll_once(
            lookup=lookup,
            max_records=min(webhook.batch_size, MAX_BATCH_SIZE),
            lease_seconds=DELIVERY_LEASE_SECONDS,
            event_types=event_types,
        )
        outcome.dead_lettered += poll.dead_lettered
        lease = poll.lease
        if lease is None:
            outcome.stopped_because = poll.idle_reason or "idle"
            break
        if poll.record_count == 0:
            # Nothing of the subscribed types in this range: move past it.
            consumer_group_commit(lookup=lookup, lease_id=lease.id, offset=lease.end_offset)
            continue
        delivery_id = uuid.uuid4()
        body = _body(webhook, delivery_id, poll.records_json)
        result = post_json(webhook.url, body, _signed_headers(webhook, body, delivery_id))
        _attempt_record(
            webhook=webhook,
            delivery_id=delivery_id,
            result=result,
            first_offset=lease.start_offset,
            end_offset=lease.end_offset,
            event_count=poll.record_count,
            attempt=poll.delivery_count,
        )
        outcome.batches += 1
        now = timezone.now()
        if result.ok:
            consumer_group_commit(lookup=lookup, lease_id=lease.id, offset=lease.end_offset)
            WebhookSubscription.objects.filter(pk=webhook.pk).update(
                consecutive_failures=0, last_success_at=now, updated_at=now
            )
            outcome.delivered += poll.record_count
            WEBHOOK_DELIVERIES.labels(webhook.stream.slug, "delivered").inc()
            WEBHOOK_EVENTS_DELIVERED.labels(webhook.stream.slug).inc(poll.record_count)
            continue
        outcome.failed_attempts += 1
        WEBHOOK_DELIVERIES.labels(webhook.stream.slug, "failed").inc()
        disabled = _failure_record(webhook=webhook, result=result, now=now)
        if disabled:
            WEBHOOK_DISABLED.labels(webhook.stream.slug).inc()
        if result.retryable and poll.delivery_count < webhook.group.max_deliver:
            delay = webhook_backoff_seconds(poll.delivery_count, result.retry_after)
            WebhookSubscription.objects.filter(pk=webhook.pk).update(next_attempt_at=now + timedelta(seconds=delay))
            consumer_group_commit(lookup=lookup, lease_id=lease.id, offset=lease.start_offset, release=True)
            outcome.stopped_because = "disabled" if disabled else "backoff"
            break
        outcome.dead_lettered += consumer_group_dead_letter_lease(
            group_id=webhook.group_id,
            lease_id=lease.id,
            error_class="WebhookDeliveryFailed",
            error_message=f"{result.error} (attempt {poll.delivery_count})",
            event_types=event_types,
        )
        if disabled:
            outcome.stopped_because = "disabled"
            break
    else:
        outcome.stopped_because = "budget"
    webhook_attempts_prune(webhook_id=webhook_id)
    return outcome


def webhook_send_test(*, webhook: WebhookSubscription) -> DeliveryAttempt:
    """POST one signed test event now; recorded in the delivery log, no effect on failure counts."""
    delivery_id = uuid.uuid4()
    event = {
        "offset": None,
        "event_id": f"test-{delivery_id}",
        "type": TEST_EVENT_TYPE,
        "timestamp": timezone.now().isoformat(),
        "payload": {"message": "A test event from EventFlow."},
        "delivery_count": 1,
    }
    body = _body(webhook, delivery_id, orjson.dumps([event]).decode(), test=True)
    result = post_json(webhook.url, body, _signed_headers(webhook, body, delivery_id))
    attempt = _attempt_record(
        webhook=webhook,
        delivery_id=delivery_id,
        result=result,
        first_offset=None,
        end_offset=None,
        event_count=1,
        attempt=1,
        is_test=True,
    )
    webhook_attempts_prune(webhook_id=webhook.pk)
    return attempt


def webhook_attempts_prune(*, webhook_id: int) -> int:
    """Keep the delivery log to its most recent WEBHOOK_KEEP_ATTEMPTS entries."""
    keep = conf.get().webhook_keep_attempts
    oldest_kept = (
        DeliveryAttempt.objects.filter(subscription_id=webhook_id)
        .order_by("-id")
        .values_list("id", flat=True)[keep - 1 : keep]
        .first()
    )
    if oldest_kept is None:
        return 0
    deleted, _ = DeliveryAttempt.objects.filter(subscription_id=webhook_id, id__lt=oldest_kept).delete()
    return deleted


def webhook_redeliver(letters: list[DeadLetter]) -> dict[int, str]:
    """Replay of ``deliver`` dead letters: queued on the webhooks' groups, sent by a run kicked after commit."""
    skipped = consumer_group_redeliver(letters)
    group_ids = {letter.group_id for letter in letters if letter.pk not in skipped}
    for webhook_id in WebhookSubscription.objects.filter(group_id__in=group_ids).values_list("pk", flat=True):
        transaction.on_commit(functools.partial(webhook_delivery_request, webhook_id))
    return skipped


# --- kicking deliveries -------------------------------------------------------------------------


def _kick_marker(webhook_id: int) -> str:
    return f"{conf.get().redis_key_prefix}:webhook-kick:{webhook_id}"


def webhook_delivery_request(webhook_id: int) -> None:
    """Queue a delivery run unless one is already queued or running (a Redis marker says so)."""
    # Redis down: queued anyway (the broker may be another server); the sweep runs every second.
    queue_once(
        marker=_kick_marker(webhook_id),
        seconds=KICK_MARKER_SECONDS,
        task_name=DELIVER_TASK,
        args=[webhook_id],
        if_redis_down=True,
    )


def webhook_delivery_request_clear(webhook_id: int) -> None:
    queue_once_clear(_kick_marker(webhook_id))
