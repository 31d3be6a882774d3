"""Consumer groups (pull) and webhook subscriptions (push) over HTTP.

Views are thin: check access, parse the input, call one service, render.
"""

from __future__ import annotations

from typing import Any, cast

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from eventflow import conf
from eventflow.api import (
    ApiView,
    NameField,
    TextField,
    cursor_pagination,
    paginated_response,
    parse_input,
)
from eventflow.errors import ApiError, json_response
from eventflow.openapi import error_responses, paginated
from streams.access import Action
from streams.event_types import EVENT_TYPE_MAX_LENGTH, EVENT_TYPE_REGEX
from streams.selectors import StreamInfo

from .models import ConsumerGroup, DeliveryAttempt, GroupKind, MaxDeliverPolicy, WebhookSubscription
from .selectors import (
    Position,
    PositionKind,
    consumer_group_dead_letters,
    consumer_group_get,
    consumer_group_state,
    consumer_groups_of_stream,
    webhook_deliveries,
    webhook_get,
    webhooks_of_stream,
)
from .services import (
    consumer_group_commit,
    consumer_group_create,
    consumer_group_delete,
    consumer_group_pause,
    consumer_group_poll,
    consumer_group_resume,
    consumer_group_seek,
)
from .webhook_services import (
    MAX_BATCH_SIZE,
    MAX_EVENT_TYPES,
    webhook_create,
    webhook_delete,
    webhook_enable,
    webhook_send_test,
    webhook_update,
)

MAX_OFFSET = 2**63 - 1
GROUP_NAME_RE = r"^[A-Za-z0-9_-]{1,64}$"


class ConsumerApiView(ApiView):
    """A stream's consumer API view: ``access`` says what it needs, and ``DeclaredAccess`` puts the stream on ``self.stream``."""

    access: Action = Action.CONSUME
    stream: StreamInfo


class WebhookApiView(ConsumerApiView):
    # A webhook sends a stream's events to an outside address: managing it is a manager's right.
    access = Action.MANAGE


# --- consumer groups ---------------------------------------------------------------------------


GroupPagination = cursor_pagination("name")
DeliveryPagination = cursor_pagination("-id", size=50, max_size=200)


class PositionIn(serializers.Serializer):
    offset = serializers.IntegerField(required=False, min_value=0, max_value=MAX_OFFSET)
    timestamp = serializers.DateTimeField(required=False, help_text="ISO 8601 with zone.")

    def _position(self, attrs: dict[str, Any], field: str) -> dict[str, Any]:
        kind = attrs.get(field)
        offset, timestamp = attrs.get("offset"), attrs.get("timestamp")
        if offset is not None and timestamp is not None:
            raise serializers.ValidationError({"offset": "Give an offset or a timestamp, not both."})
        if kind is None:
            kind = "offset" if offset is not None else "timestamp" if timestamp is not None else "earliest"
        if kind == "offset" and offset is None:
            raise serializers.ValidationError({"offset": f'Required when {field} is "offset".'})
        if kind == "timestamp" and timestamp is None:
            raise serializers.ValidationError({"timestamp": f'Required when {field} is "timestamp".'})
        if kind in ("earliest", "latest") and (offset is not None or timestamp is not None):
            raise serializers.ValidationError({field: f'"{kind}" takes no offset or timestamp.'})
        attrs["position"] = Position(kind=cast(PositionKind, kind), offset=offset, timestamp=timestamp)
        return attrs


POSITION_CHOICES = ["earliest", "latest", "offset", "timestamp"]


class GroupCreateIn(PositionIn):
    name = NameField(GROUP_NAME_RE, help_text="Letters, digits, _ and -; up to 64.")
    start = serializers.ChoiceField(
        POSITION_CHOICES,
        required=False,
        help_text="Where the group starts: earliest (default), latest, an offset, or the first event at or after a timestamp.",
    )
    max_deliver = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=5)
    on_max_deliver = serializers.ChoiceField(
        MaxDeliverPolicy.values, required=False, default=MaxDeliverPolicy.DEAD_LETTER
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return self._position(attrs, "start")


class SeekIn(PositionIn):
    to = serializers.ChoiceField(POSITION_CHOICES, required=False, help_text="earliest, latest, offset or timestamp.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "to" not in attrs and "offset" not in attrs and "timestamp" not in attrs:
            raise serializers.ValidationError({"to": "Say where to seek: earliest, latest, an offset or a timestamp."})
        return self._position(attrs, "to")


class PollIn(serializers.Serializer):
    max = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=100)
    lease_seconds = serializers.IntegerField(required=False, min_value=1, max_value=3600, default=30)
    wait_ms = serializers.IntegerField(required=False, min_value=0, max_value=30000, default=0)


class CommitIn(serializers.Serializer):
    lease_id = serializers.UUIDField()
    offset = serializers.IntegerField(min_value=0, max_value=MAX_OFFSET, help_text="The next offset to read.")
    release = serializers.BooleanField(
        required=False, default=False, help_text="End the lease now; its uncommitted records are delivered again."
    )


class LeaseOut(serializers.Serializer):
    id = serializers.UUIDField()
    start_offset = serializers.IntegerField()
    end_offset = serializers.IntegerField()
    expires_at = serializers.DateTimeField()


class GroupDeadLetterOut(serializers.Serializer):
    id = serializers.IntegerField()
    offset = serializers.IntegerField(allow_null=True)
    event_id = serializers.CharField()
    stage = serializers.CharField()
    error = serializers.CharField()
    attempts = serializers.IntegerField()
    failed_at = serializers.DateTimeField()


class GroupOut(serializers.Serializer):
    name = serializers.CharField()
    committed_offset = serializers.IntegerField(help_text="The next offset to read.")
    head = serializers.IntegerField(help_text="The log's next offset (its length).")
    lag = serializers.IntegerField(help_text="head - committed_offset: events in the log not yet committed.")
    lease = LeaseOut(allow_null=True)
    paused = serializers.BooleanField()
    paused_reason = serializers.CharField()
    max_deliver = serializers.IntegerField()
    on_max_deliver = serializers.ChoiceField(MaxDeliverPolicy.values)
    open_dead_letters = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class GroupDetailOut(GroupOut):
    dead_letters = GroupDeadLetterOut(many=True, help_text="The most recent open dead letters of the group.")


class RecordOut(serializers.Serializer):
    offset = serializers.IntegerField()
    event_id = serializers.CharField()
    type = serializers.CharField()
    timestamp = serializers.DateTimeField()
    received_at = serializers.DateTimeField()
    user_id = serializers.CharField(allow_null=True)
    anonymous_id = serializers.CharField(allow_null=True)
    session_id = serializers.CharField(allow_null=True)
    payload = serializers.DictField()
    # DRF takes declared fields off the class, so this does not hide Serializer.context.
    context = serializers.DictField()  # type: ignore[assignment]
    enrichment = serializers.DictField()
    flags = serializers.DictField()
    delivery_count = serializers.IntegerField(help_text="1 on first delivery; one more each time a lease lapses.")


class PollOut(serializers.Serializer):
    records = RecordOut(many=True)
    next_offset = serializers.IntegerField(help_text="Commit this once every record is handled.")
    lease = LeaseOut(allow_null=True)
    committed_offset = serializers.IntegerField()
    head = serializers.IntegerField()
    lag = serializers.IntegerField()
    paused = serializers.BooleanField()
    idle_reason = serializers.ChoiceField(
        ["caught_up", "lease_held", "paused"], allow_null=True, help_text="Why no lease was given."
    )
    expired_skipped = serializers.IntegerField(
        help_text=(
            "Offsets this poll moved the group past because retention had removed them: its position was below "
            "the oldest offset the log keeps, and the poll started there instead (0 almost always)."
        )
    )


class CommitOut(serializers.Serializer):
    committed_offset = serializers.IntegerField()
    head = serializers.IntegerField()
    lag = serializers.IntegerField()
    lease = LeaseOut(allow_null=True, help_text="Still held when the commit was partial.")


_SLUG = OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The stream's slug.")
_GROUP = OpenApiParameter("group", OpenApiTypes.STR, OpenApiParameter.PATH, description="The consumer group's name.")
_WEBHOOK = OpenApiParameter("webhook_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The subscription id.")
_TAG_GROUPS = ["consumer groups"]
_TAG_WEBHOOKS = ["webhooks"]


def _lookup(stream_id: int, name: str) -> dict[str, Any]:
    return {"stream_id": stream_id, "name": name, "kind": GroupKind.PULL}


def _group_detail(stream_id: int, name: str) -> dict[str, Any]:
    group = consumer_group_get(stream_id=stream_id, name=name)
    return {**consumer_group_state(group), "dead_letters": consumer_group_dead_letters(group=group)}


class GroupListView(ConsumerApiView):
    @extend_schema(
        operation_id="consumer_groups_list",
        summary="List the stream's consumer groups",
        tags=_TAG_GROUPS,
        parameters=[_SLUG],
        responses={200: paginated(GroupOut), **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        info = self.stream
        groups = consumer_groups_of_stream(stream_id=info.id)
        return paginated_response(self, request, GroupPagination, groups, consumer_group_state)

    @extend_schema(
        operation_id="consumer_groups_create",
        summary="Create a consumer group",
        tags=_TAG_GROUPS,
        parameters=[_SLUG],
        request=GroupCreateIn,
        responses={201: GroupDetailOut, **error_responses(400, 401, 403, 404, 409, 413, 415, 422)},
    )
    def post(self, request: Request, slug: str) -> HttpResponse:
        info = self.stream
        data = parse_input(request, GroupCreateIn)
        group = consumer_group_create(
            stream_id=info.id,
            name=data["name"],
            start=data["position"],
            max_deliver=data["max_deliver"],
            on_max_deliver=data["on_max_deliver"],
        )
        return json_response(_group_detail(info.id, group.name), 201)


class GroupDetailView(ConsumerApiView):
    @extend_schema(
        operation_id="consumer_groups_show",
        summary="Show a consumer group: position, head, lag, lease and dead letters",
        tags=_TAG_GROUPS,
        parameters=[_SLUG, _GROUP],
        responses={200: GroupDetailOut, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, slug: str, group: str) -> HttpResponse:
        info = self.stream
        return json_response(_group_detail(info.id, group))

    @extend_schema(
        operation_id="consumer_groups_delete",
        summary="Delete a consumer group",
        tags=_TAG_GROUPS,
        parameters=[_SLUG, _GROUP],
        responses={204: None, **error_responses(401, 403, 404)},
    )
    def delete(self, request: Request, slug: str, group: str) -> HttpResponse:
        info = self.stream
        consumer_group_delete(lookup=_lookup(info.id, group))
        return HttpResponse(status=204)


class PollView(ConsumerApiView):
    @extend_schema(
        operation_id="consumer_groups_poll",
        summary="Lease the group's next records",
        description=(
            "Returns up to `max` records after the group's position under an exclusive lease of `lease_seconds`. "
            "While the lease lives, other members polling get nothing. With `wait_ms`, waits (up to 30 s) until "
            "records arrive. An empty `records` with a lease means the range holds no events (commit `next_offset`). "
            "A lease that expires (or is given back) without a commit makes its records deliverable again with "
            "`delivery_count` + 1; a record's last delivery before `max_deliver` comes alone, so a dead letter "
            "holds only the record that failed. A group whose position is below the oldest offset the log keeps "
            "(it fell behind retention) starts at the oldest kept offset in the same poll: `committed_offset` "
            "moves there and `expired_skipped` says how many offsets it moved past."
        ),
        tags=_TAG_GROUPS,
        parameters=[_SLUG, _GROUP],
        request=PollIn,
        responses={200: PollOut, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def post(self, request: Request, slug: str, group: str) -> HttpResponse:
        info = self.stream
        data = parse_input(request, PollIn)
        result = consumer_group_poll(
            stream_id=info.id,
            name=group,
            max_records=data["max"],
            lease_seconds=min(data["lease_seconds"], conf.get().max_lease_seconds),
            wait_ms=data["wait_ms"],
        )
        return HttpResponse(result.as_json(), content_type="application/json")


class CommitView(ConsumerApiView):
    @extend_schema(
        operation_id="consumer_groups_commit",
        summary="Commit the group's position under a lease",
        description=(
            "`offset` is the next offset to read. Committing the lease's end (or `release: true`) ends the lease. "
            "409 when the lease expired or is not the current one, or when the offset moves backwards "
            "(use seek); 422 when the offset is beyond the head or the lease."
        ),
        tags=_TAG_GROUPS,
        parameters=[_SLUG, _GROUP],
        request=CommitIn,
        responses={200: CommitOut, **error_responses(400, 401, 403, 404, 409, 413, 415, 422)},
    )
    def post(self, request: Request, slug: str, group: str) -> HttpResponse:
        info = self.stream
        data = parse_input(request, CommitIn)
        result = consumer_group_commit(
            lookup=_lookup(info.id, group), lease_id=data["lease_id"], offset=data["offset"], release=data["release"]
        )
        return json_response(
            {
                "committed_offset": result.committed_offset,
                "head": result.head,
                "lag": max(0, result.head - result.committed_offset),
                "lease": result.lease.as_dict() if result.lease else None,
            }
        )


class SeekView(ConsumerApiView):
    @extend_schema(
        operation_id="consumer_groups_seek",
        summary="Move the group to earliest, latest, an offset, or the first event at or after a timestamp",
        description=(
            "Ends the current lease; delivery counts start afresh. An offset below the oldest the log keeps "
            "(retention removed it) moves the group to that oldest offset, as `earliest` would."
        ),
        tags=_TAG_GROUPS,
        parameters=[_SLUG, _GROUP],
        request=SeekIn,
        responses={200: GroupDetailOut, **error_responses(400, 401, 403, 404, 413, 415, 422)},
    )
    def post(self, request: Request, slug: str, group: str) -> HttpResponse:
        info = self.stream
        data = parse_input(request, SeekIn)
        consumer_group_seek(lookup=_lookup(info.id, group), position=data["position"])
        return json_response(_group_detail(info.id, group))


class PauseView(ConsumerApiView):
    @extend_schema(
        operation_id="consumer_groups_pause",
        summary="Pause the group: polls get nothing until it is resumed",
        tags=_TAG_GROUPS,
        parameters=[_SLUG, _GROUP],
        request=None,
        responses={200: GroupDetailOut, **error_responses(401, 403, 404)},
    )
    def post(self, request: Request, slug: str, group: str) -> HttpResponse:
        info = self.stream
        consumer_group_pause(lookup=_lookup(info.id, group), reason="Paused by a user.")
        return json_response(_group_detail(info.id, group))


class ResumeView(ConsumerApiView):
    @extend_schema(
        operation_id="consumer_groups_resume",
        summary="Resume the group (also after it stopped at max_deliver)",
        tags=_TAG_GROUPS,
        parameters=[_SLUG, _GROUP],
        request=None,
        responses={200: GroupDetailOut, **error_responses(401, 403, 404)},
    )
    def post(self, request: Request, slug: str, group: str) -> HttpResponse:
        info = self.stream
        consumer_group_resume(lookup=_lookup(info.id, group))
        return json_response(_group_detail(info.id, group))


# --- webhooks ------------------------------------------------------------------------------------


class WebhookIn(serializers.Serializer):
    url = TextField(max_length=2000, help_text="http(s) URL of a public address.")
    event_types = serializers.ListField(
        child=NameField(EVENT_TYPE_REGEX, max_length=EVENT_TYPE_MAX_LENGTH),
        required=False,
        max_length=MAX_EVENT_TYPES,
        help_text="Deliver only these event types; empty or absent: all.",
    )
    description = TextField(required=False, allow_blank=True, max_length=500)
    batch_size = serializers.IntegerField(required=False, min_value=1, max_value=MAX_BATCH_SIZE, default=500)


class WebhookPatchIn(WebhookIn):
    url = TextField(max_length=2000, required=False)
    batch_size = serializers.IntegerField(required=False, min_value=1, max_value=MAX_BATCH_SIZE)
    is_active = serializers.BooleanField(required=False, help_text="true re-enables a disabled subscription.")


class WebhookOut(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    description = serializers.CharField()
    event_types = serializers.ListField(child=serializers.CharField())
    batch_size = serializers.IntegerField()
    is_active = serializers.BooleanField()
    disabled_reason = serializers.CharField()
    disabled_at = serializers.DateTimeField(allow_null=True)
    consecutive_failures = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_success_at = serializers.DateTimeField(allow_null=True)
    last_failure_at = serializers.DateTimeField(allow_null=True)
    secret_hint = serializers.CharField(help_text="The start of the signing secret.")
    committed_offset = serializers.IntegerField()
    head = serializers.IntegerField()
    lag = serializers.IntegerField()
    subscriber = serializers.CharField(help_text="How dead letters name this subscription.")
    created_at = serializers.DateTimeField()


class WebhookCreatedOut(WebhookOut):
    secret = serializers.CharField(help_text="The signing secret. Shown only here: keep it.")


class DeliveryAttemptOut(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = [
            "id",
            "delivery_id",
            "created_at",
            "outcome",
            "status_code",
            "latency_ms",
            "error",
            "first_offset",
            "end_offset",
            "event_count",
            "attempt",
            "is_test",
        ]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _webhook_out(webhook: WebhookSubscription) -> dict[str, Any]:
    group: ConsumerGroup = webhook.group
    head = group.stream.head.next_offset
    return {
        "id": webhook.pk,
        "url": webhook.url,
        "description": webhook.description,
        "event_types": webhook.event_types,
        "batch_size": webhook.batch_size,
        "is_active": webhook.is_active,
        "disabled_reason": webhook.disabled_reason,
        "disabled_at": _iso(webhook.disabled_at),
        "consecutive_failures": webhook.consecutive_failures,
        "next_attempt_at": _iso(webhook.next_attempt_at),
        "last_success_at": _iso(webhook.last_success_at),
        "last_failure_at": _iso(webhook.last_failure_at),
        "secret_hint": webhook.secret[:10] + "…",
        "committed_offset": group.committed_offset,
        "head": head,
        "lag": max(0, head - group.committed_offset),
        "subscriber": group.name,
        "created_at": webhook.created_at.isoformat(),
    }


def _webhook(stream_id: int, webhook_id: int) -> WebhookSubscription:
    if webhook_id > MAX_OFFSET:
        raise ApiError(404, "webhook_not_found", "No such webhook subscription.")
    return webhook_get(stream_id=stream_id, webhook_id=webhook_id)


WebhookPagination = cursor_pagination("id")


class WebhookListView(WebhookApiView):
    @extend_schema(
        operation_id="webhooks_list",
        summary="List the stream's webhook subscriptions",
        tags=_TAG_WEBHOOKS,
        parameters=[_SLUG],
        responses={200: paginated(WebhookOut), **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        info = self.stream
        return paginated_response(self, request, WebhookPagination, webhooks_of_stream(stream_id=info.id), _webhook_out)

    @extend_schema(
        operation_id="webhooks_create",
        summary="Subscribe a URL to the stream's new events",
        description=(
            "Deliveries are JSON POSTs of up to `batch_size` events, in log order, signed: "
            '`X-EventFlow-Signature: v1=<hex HMAC-SHA256 of "<X-EventFlow-Timestamp>." + body>`. '
            "The secret is in this response only."
        ),
        tags=_TAG_WEBHOOKS,
        parameters=[_SLUG],
        request=WebhookIn,
        responses={201: WebhookCreatedOut, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def post(self, request: Request, slug: str) -> HttpResponse:
        info = self.stream
        data = parse_input(request, WebhookIn)
        created = webhook_create(
            stream_id=info.id,
            url=data["url"],
            event_types=data.get("event_types"),
            description=data.get("description", ""),
            batch_size=data["batch_size"],
        )
        webhook = _webhook(info.id, created.webhook.pk)
        return json_response({**_webhook_out(webhook), "secret": created.secret}, 201)


class WebhookDetailView(WebhookApiView):
    @extend_schema(
        operation_id="webhooks_show",
        summary="Show a webhook subscription",
        tags=_TAG_WEBHOOKS,
        parameters=[_SLUG, _WEBHOOK],
        responses={200: WebhookOut, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, slug: str, webhook_id: int) -> HttpResponse:
        info = self.stream
        return json_response(_webhook_out(_webhook(info.id, webhook_id)))

    @extend_schema(
        operation_id="webhooks_update",
        summary="Change a webhook subscription (is_active: true re-enables it)",
        tags=_TAG_WEBHOOKS,
        parameters=[_SLUG, _WEBHOOK],
        request=WebhookPatchIn,
        responses={200: WebhookOut, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def patch(self, request: Request, slug: str, webhook_id: int) -> HttpResponse:
        info = self.stream
        webhook = _webhook(info.id, webhook_id)
        data = parse_input(request, WebhookPatchIn)
        webhook_update(
            webhook=webhook,
            url=data.get("url"),
            event_types=data.get("event_types"),
            description=data.get("description"),
            batch_size=data.get("batch_size"),
            is_active=data.get("is_active"),
        )
        return json_response(_webhook_out(_webhook(info.id, webhook_id)))

    @extend_schema(
        operation_id="webhooks_delete",
        summary="Delete a webhook subscription",
        tags=_TAG_WEBHOOKS,
        parameters=[_SLUG, _WEBHOOK],
        responses={204: None, **error_responses(401, 403, 404)},
    )
    def delete(self, request: Request, slug: str, webhook_id: int) -> HttpResponse:
        info = self.stream
        webhook_delete(webhook=_webhook(info.id, webhook_id))
        return HttpResponse(status=204)


class WebhookEnableView(WebhookApiView):
    @extend_schema(
        operation_id="webhooks_enable",
        summary="Re-enable a subscription (failures are forgotten; delivery resumes where it stopped)",
        tags=_TAG_WEBHOOKS,
        parameters=[_SLUG, _WEBHOOK],
        request=None,
        responses={200: WebhookOut, **error_responses(401, 403, 404)},
    )
    def post(self, request: Request, slug: str, webhook_id: int) -> HttpResponse:
        info = self.stream
        webhook_enable(webhook=_webhook(info.id, webhook_id))
        return json_response(_webhook_out(_webhook(info.id, webhook_id)))


class WebhookTestView(WebhookApiView):
    @extend_schema(
        operation_id="webhooks_send_test",
        summary="Send a signed test event now and report what the endpoint answered",
        tags=_TAG_WEBHOOKS,
        parameters=[_SLUG, _WEBHOOK],
        request=None,
        responses={200: DeliveryAttemptOut, **error_responses(401, 403, 404)},
    )
    def post(self, request: Request, slug: str, webhook_id: int) -> HttpResponse:
        info = self.stream
        attempt = webhook_send_test(webhook=_webhook(info.id, webhook_id))
        return json_response(DeliveryAttemptOut(attempt).data)


class WebhookDeliveriesView(WebhookApiView):
    @extend_schema(
        operation_id="webhooks_deliveries",
        summary="The subscription's recent delivery attempts, newest first",
        tags=_TAG_WEBHOOKS,
        parameters=[_SLUG, _WEBHOOK],
        responses={200: paginated(DeliveryAttemptOut), **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str, webhook_id: int) -> Response:
        info = self.stream
        webhook = _webhook(info.id, webhook_id)
        return paginated_response(
            self, request, DeliveryPagination, webhook_deliveries(webhook=webhook), DeliveryAttemptOut
        )


__all__ = [
    "CommitView",
    "GroupDetailView",
    "GroupListView",
    "PauseView",
    "PollView",
    "ResumeView",
    "SeekView",
    "WebhookDeliveriesView",
    "WebhookDetailView",
    "WebhookEnableView",
    "WebhookListView",
    "WebhookTestView",
]
