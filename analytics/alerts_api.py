"""Alert rules and alerts over HTTP (analytics/alerts.py does the work).

Reading rules and alerts is ``Action.READ`` (Analysts and up of the stream's
teams, secret keys of the stream); creating, changing, muting and deleting a
rule is ``Action.MANAGE`` (Developers and up): a rule sends data to a URL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from eventflow.api import ApiView, TextField, cursor_pagination, paginated_response, parse_input, parse_query
from eventflow.errors import Invalid
from eventflow.openapi import error_responses, paginated
from streams.access import Action
from streams.selectors import StreamInfo

from .alerts import (
    alert_rule_create,
    alert_rule_delete,
    alert_rule_get,
    alert_rule_mute,
    alert_rule_update,
    alert_rules_of_stream,
    alerts_of_stream,
)
from .filters import MAX_CONDITIONS, MAX_TYPES, parse_time
from .journeys_api import ConditionIn
from .models import (
    ALERT_MAX_COOLDOWN_SECONDS,
    ALERT_MAX_THRESHOLD,
    ALERT_MAX_WINDOW_SECONDS,
    ALERT_MIN_WINDOW_SECONDS,
    Alert,
    AlertKind,
    AlertRule,
    DeliveryStatus,
)

_TAGS = ["alerts"]
_SLUG = OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The stream's slug.")
_RULE = OpenApiParameter("rule_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The rule's id.")
MAX_MUTE_MINUTES = 30 * 24 * 60


# --- shapes -------------------------------------------------------------------------------------------------


class AlertRuleOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(AlertKind.choices)
    event_types = serializers.ListField(child=serializers.CharField(), help_text="Empty: events of any type.")
    conditions = ConditionIn(many=True)
    threshold = serializers.IntegerField(
        help_text="threshold: fire when this many match within the window. An absence rule keeps it unused, "
        "for a switch back to threshold."
    )
    window_seconds = serializers.IntegerField()
    group_by = serializers.CharField(allow_blank=True, help_text="Empty: the whole stream is one group.")
    cooldown_seconds = serializers.IntegerField()
    url = serializers.CharField(allow_blank=True)
    is_active = serializers.BooleanField()
    muted_until = serializers.DateTimeField(allow_null=True)
    muted = serializers.SerializerMethodField()
    created_by = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_muted(self, rule: AlertRule) -> bool:
        return rule.muted_until is not None and rule.muted_until > timezone.now()

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_created_by(self, rule: AlertRule) -> str | None:
        return rule.created_by.get_username() if rule.created_by is not None else None


class AlertRuleCreatedOut(AlertRuleOut):
    secret = serializers.CharField(help_text="Signs the deliveries to `url`. Shown in this response only.")


class AlertRuleIn(serializers.Serializer):
    name = TextField(max_length=200)
    kind = serializers.ChoiceField(AlertKind.choices, default=AlertKind.THRESHOLD)
    event_types = serializers.ListField(child=TextField(max_length=200), required=False, max_length=MAX_TYPES)
    conditions = ConditionIn(many=True, required=False, max_length=MAX_CONDITIONS)  # type: ignore[call-arg]  # ListSerializer takes them (DRF ≥ 3.14); the stubs lag
    threshold = serializers.IntegerField(min_value=1, max_value=ALERT_MAX_THRESHOLD, default=1)
    window_seconds = serializers.IntegerField(min_value=ALERT_MIN_WINDOW_SECONDS, max_value=ALERT_MAX_WINDOW_SECONDS)
    group_by = TextField(max_length=300, required=False, allow_blank=True, default="")
    cooldown_seconds = serializers.IntegerField(min_value=0, max_value=ALERT_MAX_COOLDOWN_SECONDS, default=600)
    url = TextField(max_length=2000, required=False, allow_blank=True, default="")
    is_active = serializers.BooleanField(default=True)


class AlertRuleUpdateIn(serializers.Serializer):
    name = TextField(max_length=200, required=False)
    kind = serializers.ChoiceField(AlertKind.choices, required=False)
    event_types = serializers.ListField(child=TextField(max_length=200), required=False, max_length=MAX_TYPES)
    conditions = ConditionIn(many=True, required=False, max_length=MAX_CONDITIONS)  # type: ignore[call-arg]  # ListSerializer takes them (DRF ≥ 3.14); the stubs lag
    threshold = serializers.IntegerField(min_value=1, max_value=ALERT_MAX_THRESHOLD, required=False)
    window_seconds = serializers.IntegerField(
        min_value=ALERT_MIN_WINDOW_SECONDS, max_value=ALERT_MAX_WINDOW_SECONDS, required=False
    )
    group_by = TextField(max_length=300, required=False, allow_blank=True)
    cooldown_seconds = serializers.IntegerField(min_value=0, max_value=ALERT_MAX_COOLDOWN_SECONDS, required=False)
    url = TextField(max_length=2000, required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False)


class MuteIn(serializers.Serializer):
    minutes = serializers.IntegerField(min_value=1, max_value=MAX_MUTE_MINUTES)


class AlertDeliveryOut(serializers.Serializer):
    status = serializers.ChoiceField(DeliveryStatus.choices, source="delivery_status")
    attempts = serializers.IntegerField(source="delivery_attempts")
    error = serializers.CharField(source="delivery_error", allow_blank=True)
    delivered_at = serializers.DateTimeField(allow_null=True)


class AlertOut(serializers.Serializer):
    id = serializers.IntegerField()
    rule_id = serializers.IntegerField()
    rule = serializers.CharField(source="rule.name")
    kind = serializers.CharField(source="rule.kind")
    group_by = serializers.CharField(
        allow_blank=True, help_text="What the rule grouped by when it fired ('' for none): group_value is of this."
    )
    group_value = serializers.CharField(allow_null=True)
    count = serializers.IntegerField(help_text="Matching events in the window (absence: 0).")
    threshold = serializers.IntegerField()
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    first_offset = serializers.IntegerField(allow_null=True)
    first_event_id = serializers.CharField(allow_null=True)
    last_offset = serializers.IntegerField(allow_null=True)
    last_event_id = serializers.CharField(allow_null=True)
    fired_at = serializers.DateTimeField()
    event_id = serializers.SerializerMethodField(help_text="The `alert` event's id in the stream's log.")
    delivery = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.STR)
    def get_event_id(self, alert: Alert) -> str:
        return f"alert-{alert.pk}"

    @extend_schema_field(AlertDeliveryOut)
    def get_delivery(self, alert: Alert) -> dict[str, Any]:
        return dict(AlertDeliveryOut(alert).data)


class ZonedTimeField(serializers.DateTimeField):
    """An ISO 8601 time with its zone, read as every time filter of the analytics API is (``parse_time``).

    DRF's own field took a time without a zone as the server's, and any run of digits for a date.
    """

    def to_internal_value(self, value: Any) -> datetime:
        if not isinstance(value, str):
            raise serializers.ValidationError("Must be an ISO 8601 time with a zone.")
        try:
            return parse_time(value, self.field_name or "time")
        except Invalid as exc:
            raise serializers.ValidationError(exc.message) from None


class AlertsQuery(serializers.Serializer):
    rule = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    # "from" is a Python keyword: declared below.
    to = ZonedTimeField(required=False)


AlertsQuery._declared_fields["from"] = ZonedTimeField(required=False)


_RULE_EXAMPLE = {
    "name": "failed logins",
    "kind": "threshold",
    "event_types": ["login"],
    "conditions": [{"property": "payload.success", "op": "eq", "values": ["false"]}],
    "threshold": 5,
    "window_seconds": 300,
    "group_by": "user_id",
    "cooldown_seconds": 900,
    "url": "https://hooks.example.com/eventflow-alerts",
}
_ABSENCE_EXAMPLE = {
    "name": "no page views",
    "kind": "absence",
    "event_types": ["page_view"],
    "window_seconds": 600,
    "cooldown_seconds": 3600,
}

AlertPagination = cursor_pagination("-id", size=50, max_size=500)


def _rule_out(rule: AlertRule, *, created: bool = False) -> dict[str, Any]:
    serializer = AlertRuleCreatedOut(rule) if created else AlertRuleOut(rule)
    return dict(serializer.data)


# --- views ----------------------------------------------------------------------------------------------------


class AlertRuleListView(ApiView):
    access = {"GET": Action.READ, "POST": Action.MANAGE}
    stream: StreamInfo

    @extend_schema(
        operation_id="alert_rules_list",
        summary="List the stream's alert rules",
        tags=_TAGS,
        parameters=[_SLUG],
        responses={200: AlertRuleOut(many=True), **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        return Response([_rule_out(rule) for rule in alert_rules_of_stream(stream_id=self.stream.id)])

    @extend_schema(
        operation_id="alert_rules_create",
        summary="Create an alert rule",
        description=(
            "**threshold**: fire when `threshold` or more events of `event_types` (empty: any type) that meet every "
            "condition arrive within `window_seconds` of event time for the same value of `group_by` (`user_id`, "
            "`anonymous_id`, `session_id`, or a `payload.`/`context.`/`enrichment.` path; empty: the whole stream). "
            "**absence**: fire when no such event has arrived for `window_seconds` (checked every 15 s; no "
            "`group_by`). Windows are counted in 10-second buckets. After an alert, the same group stays quiet for "
            "`cooldown_seconds`. Each alert is appended to the stream's log as an `alert` event (so webhooks and "
            "consumer groups get it) and, with a `url`, POSTed there signed like a webhook delivery with the "
            "`secret` of this response (shown once)."
        ),
        tags=_TAGS,
        parameters=[_SLUG],
        request=AlertRuleIn,
        responses={201: AlertRuleCreatedOut, **error_responses(400, 401, 403, 404, 409, 413, 415)},
        examples=[
            OpenApiExample("five failed logins per user in five minutes", request_only=True, value=_RULE_EXAMPLE),
            OpenApiExample("no page views for ten minutes", request_only=True, value=_ABSENCE_EXAMPLE),
        ],
    )
    def post(self, request: Request, slug: str) -> Response:
        data = parse_input(request, AlertRuleIn)
        rule = alert_rule_create(
            stream_id=self.stream.id,
            name=data["name"],
            kind=data["kind"],
            event_types=data.get("event_types", []),
            conditions=[dict(c) for c in data.get("conditions", [])],
            threshold=data["threshold"],
            window_seconds=data["window_seconds"],
            group_by=data["group_by"],
            cooldown_seconds=data["cooldown_seconds"],
            url=data["url"],
            is_active=data["is_active"],
            created_by=self.caller.user,
        )
        return Response(_rule_out(rule, created=True), status=201)


class AlertRuleDetailView(ApiView):
    access = {"GET": Action.READ, "PATCH": Action.MANAGE, "DELETE": Action.MANAGE}
    stream: StreamInfo

    @extend_schema(
        operation_id="alert_rules_show",
        summary="Show an alert rule",
        tags=_TAGS,
        parameters=[_SLUG, _RULE],
        responses={200: AlertRuleOut, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, slug: str, rule_id: int) -> Response:
        return Response(_rule_out(alert_rule_get(stream_id=self.stream.id, rule_id=rule_id)))

    @extend_schema(
        operation_id="alert_rules_update",
        summary="Change an alert rule",
        description=(
            "A change of what or how the rule counts (types, conditions, kind, threshold, window, group_by) or "
            "re-activating it starts its windows and cool-downs afresh. Workers see a change within "
            "EVENTFLOW_ALERT_RULES_CACHE_SECONDS."
        ),
        tags=_TAGS,
        parameters=[_SLUG, _RULE],
        request=AlertRuleUpdateIn,
        responses={200: AlertRuleOut, **error_responses(400, 401, 403, 404, 409, 413, 415)},
        examples=[OpenApiExample("raise the threshold", request_only=True, value={"threshold": 10})],
    )
    def patch(self, request: Request, slug: str, rule_id: int) -> Response:
        data = parse_input(request, AlertRuleUpdateIn)
        if "conditions" in data:
            data["conditions"] = [dict(c) for c in data["conditions"]]
        rule = alert_rule_update(stream_id=self.stream.id, rule_id=rule_id, **data)
        return Response(_rule_out(alert_rule_get(stream_id=self.stream.id, rule_id=rule.pk)))

    @extend_schema(
        operation_id="alert_rules_delete",
        summary="Delete an alert rule and its alerts",
        tags=_TAGS,
        parameters=[_SLUG, _RULE],
        responses={204: None, **error_responses(401, 403, 404)},
    )
    def delete(self, request: Request, slug: str, rule_id: int) -> HttpResponse:
        alert_rule_delete(stream_id=self.stream.id, rule_id=rule_id)
        return HttpResponse(status=204)


class AlertRuleMuteView(ApiView):
    access = {"POST": Action.MANAGE}
    stream: StreamInfo

    @extend_schema(
        operation_id="alert_rules_mute",
        summary="Mute an alert rule for some minutes",
        description="A muted rule still counts events; it fires nothing until `muted_until`.",
        tags=_TAGS,
        parameters=[_SLUG, _RULE],
        request=MuteIn,
        responses={200: AlertRuleOut, **error_responses(400, 401, 403, 404, 413, 415)},
        examples=[OpenApiExample("an hour", request_only=True, value={"minutes": 60})],
    )
    def post(self, request: Request, slug: str, rule_id: int) -> Response:
        data = parse_input(request, MuteIn)
        alert_rule_mute(stream_id=self.stream.id, rule_id=rule_id, minutes=data["minutes"])
        return Response(_rule_out(alert_rule_get(stream_id=self.stream.id, rule_id=rule_id)))


class AlertRuleUnmuteView(ApiView):
    access = {"POST": Action.MANAGE}
    stream: StreamInfo

    @extend_schema(
        operation_id="alert_rules_unmute",
        summary="Unmute an alert rule",
        tags=_TAGS,
        parameters=[_SLUG, _RULE],
        request=None,
        responses={200: AlertRuleOut, **error_responses(401, 403, 404)},
    )
    def post(self, request: Request, slug: str, rule_id: int) -> Response:
        alert_rule_mute(stream_id=self.stream.id, rule_id=rule_id, minutes=None)
        return Response(_rule_out(alert_rule_get(stream_id=self.stream.id, rule_id=rule_id)))


class AlertListView(ApiView):
    access = Action.READ
    stream: StreamInfo

    @extend_schema(
        operation_id="alerts_list",
        summary="List the stream's alerts, newest first",
        tags=_TAGS,
        parameters=[
            _SLUG,
            OpenApiParameter("rule", OpenApiTypes.INT, description="Only this rule's alerts."),
            OpenApiParameter("from", OpenApiTypes.DATETIME, description="Fired at or after (ISO 8601 with zone)."),
            OpenApiParameter("to", OpenApiTypes.DATETIME, description="Fired before (ISO 8601 with zone)."),
            OpenApiParameter("limit", OpenApiTypes.INT, description="Page size (default 50, at most 500)."),
            OpenApiParameter("cursor", OpenApiTypes.STR, description="From the `next` or `previous` link."),
        ],
        responses={200: paginated(AlertOut), **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        query = parse_query(request, AlertsQuery)
        alerts = alerts_of_stream(
            stream_id=self.stream.id,
            rule_id=query.get("rule"),
            fired_from=query.get("from"),
            fired_to=query.get("to"),
        )
        return paginated_response(self, request, AlertPagination, alerts, AlertOut)
