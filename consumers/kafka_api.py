"""The Kafka bridge's sinks and sources of a stream, over HTTP.

Reading and changing them both need ``manage``, as webhooks do: they name the
broker's address and user, and a sink sends the stream's events outside. The
SASL password and the CA certificate are taken, never shown (``has_*`` says
whether one is set). The bridge process picks changes up within seconds.
"""

from __future__ import annotations

from typing import Any, cast

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from eventflow.api import (
    ApiView,
    NameField,
    TextField,
    cursor_pagination,
    paginated_response,
    parse_input,
)
from eventflow.errors import json_response
from eventflow.openapi import error_responses, paginated
from streams.access import Action
from streams.selectors import StreamInfo

from .kafka_selectors import (
    kafka_sink_get,
    kafka_sink_state,
    kafka_sinks_of_stream,
    kafka_source_get,
    kafka_source_state,
    kafka_sources_of_stream,
)
from .kafka_services import (
    CONNECTION_FIELDS,
    kafka_bridge_update,
    kafka_sink_create,
    kafka_sink_delete,
    kafka_source_create,
    kafka_source_delete,
)
from .models import KafkaBridgeStatus, KafkaKey, KafkaSaslMechanism, KafkaSecurityProtocol, KafkaSourceStart
from .selectors import Position, PositionKind

# Kafka's rule for topic names.
TOPIC_RE = r"^[A-Za-z0-9._-]{1,249}$"
GROUP_ID_RE = r"^[A-Za-z0-9._-]{1,200}$"
MAX_BATCH = 10_000
MAX_OFFSET = 2**63 - 1
SINK_START_CHOICES = ["earliest", "latest", "offset"]
SOURCE_START_CHOICES = list(KafkaSourceStart.values)
STATUS_CHOICES = list(KafkaBridgeStatus.values)


class KafkaApiView(ApiView):
    access = Action.MANAGE
    stream: StreamInfo


KafkaPagination = cursor_pagination("id")


# --- input ------------------------------------------------------------------------------------------


class ConnectionIn(serializers.Serializer):
    bootstrap_servers = TextField(
        required=False,
        allow_blank=True,
        max_length=1000,
        help_text="host:port[,host:port…]; empty: the KAFKA_BOOTSTRAP_SERVERS setting.",
    )
    security_protocol = serializers.ChoiceField(
        KafkaSecurityProtocol.values, required=False, allow_blank=True, help_text="Empty: KAFKA_SECURITY_PROTOCOL."
    )
    sasl_mechanism = serializers.ChoiceField(
        KafkaSaslMechanism.values, required=False, allow_blank=True, help_text="Empty: KAFKA_SASL_MECHANISM."
    )
    sasl_username = TextField(required=False, allow_blank=True, max_length=500)
    sasl_password = TextField(
        required=False, allow_blank=True, max_length=500, write_only=True, help_text="Never returned."
    )
    ssl_ca_pem = TextField(
        required=False,
        allow_blank=True,
        max_length=100_000,
        write_only=True,
        help_text="PEM of the certificate authorities to trust for TLS; never returned.",
    )
    description = TextField(required=False, allow_blank=True, max_length=500)


class SinkIn(ConnectionIn):
    topic = NameField(TOPIC_RE, help_text="The topic to publish to (it must exist, or the broker must create it).")
    key = serializers.ChoiceField(
        KafkaKey.values, required=False, default=KafkaKey.USER_ID, help_text="Which field is the message key."
    )
    batch_size = serializers.IntegerField(required=False, min_value=1, max_value=MAX_BATCH, default=500)
    start = serializers.ChoiceField(
        SINK_START_CHOICES,
        required=False,
        default="earliest",
        help_text="Where publishing starts: the log's earliest event (default), its head, or an offset.",
    )
    offset = serializers.IntegerField(required=False, min_value=0, max_value=MAX_OFFSET)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["start"] == "offset" and attrs.get("offset") is None:
            raise serializers.ValidationError({"offset": 'Required when start is "offset".'})
        if attrs["start"] != "offset" and attrs.get("offset") is not None:
            raise serializers.ValidationError({"offset": 'Only with start "offset".'})
        return attrs


class SinkPatchIn(ConnectionIn):
    key = serializers.ChoiceField(KafkaKey.values, required=False)
    batch_size = serializers.IntegerField(required=False, min_value=1, max_value=MAX_BATCH)
    is_active = serializers.BooleanField(required=False, help_text="false stops publishing; its position is kept.")


class SourceIn(ConnectionIn):
    topic = NameField(TOPIC_RE, help_text="The topic to read: each message's value is one event envelope (JSON).")
    consumer_group = NameField(
        GROUP_ID_RE, required=False, help_text="The Kafka consumer group id; absent: eventflow-<stream>-<id>."
    )
    start = serializers.ChoiceField(
        SOURCE_START_CHOICES,
        required=False,
        default=KafkaSourceStart.EARLIEST,
        help_text="Where a group with no committed offsets starts.",
    )
    batch_size = serializers.IntegerField(required=False, min_value=1, max_value=MAX_BATCH, default=500)


class SourcePatchIn(ConnectionIn):
    batch_size = serializers.IntegerField(required=False, min_value=1, max_value=MAX_BATCH)
    is_active = serializers.BooleanField(required=False, help_text="false stops reading; the group's offsets are kept.")


# --- output -----------------------------------------------------------------------------------------


class BridgeOut(serializers.Serializer):
    id = serializers.IntegerField()
    topic = serializers.CharField()
    description = serializers.CharField()
    bootstrap_servers = serializers.CharField(help_text="Empty: the KAFKA_BOOTSTRAP_SERVERS setting.")
    security_protocol = serializers.CharField()
    sasl_mechanism = serializers.CharField()
    sasl_username = serializers.CharField()
    has_sasl_password = serializers.BooleanField()
    has_ssl_ca_pem = serializers.BooleanField()
    is_active = serializers.BooleanField()
    status = serializers.ChoiceField(
        STATUS_CHOICES,
        help_text="paused: the broker did not answer; the bridge retries and skips nothing.",
    )
    last_error = serializers.CharField()
    last_error_at = serializers.DateTimeField(allow_null=True)
    # DRF takes declared fields off the class, so this does not hide Serializer.errors.
    errors = serializers.IntegerField(help_text="Failed attempts so far.")  # type: ignore[assignment]
    runner = serializers.CharField(allow_null=True, help_text="The bridge process running it (host:pid:id), if any.")
    created_at = serializers.DateTimeField()


class SinkOut(BridgeOut):
    key = serializers.ChoiceField(KafkaKey.values)
    batch_size = serializers.IntegerField()
    committed_offset = serializers.IntegerField(help_text="The next offset to publish.")
    head = serializers.IntegerField()
    lag = serializers.IntegerField(help_text="Events in the log not published yet.")
    published = serializers.IntegerField()
    last_published_at = serializers.DateTimeField(allow_null=True)


class RejectionOut(serializers.Serializer):
    topic = serializers.CharField()
    partition = serializers.IntegerField()
    offset = serializers.IntegerField()
    event_id = serializers.CharField(allow_null=True)
    errors = serializers.ListField(child=serializers.DictField())  # type: ignore[assignment]
    value = serializers.CharField(help_text="The message's value (its first 2,000 characters).")
    at = serializers.DateTimeField()


class SourceOut(BridgeOut):
    consumer_group = serializers.CharField()
    start = serializers.ChoiceField(SOURCE_START_CHOICES)
    batch_size = serializers.IntegerField()
    consumed = serializers.IntegerField()
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.IntegerField()
    recent_rejections = RejectionOut(many=True, help_text="The last rejected messages, newest first.")
    last_consumed_at = serializers.DateTimeField(allow_null=True)


_SLUG = OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The stream's slug.")
_SINK = OpenApiParameter("sink_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The sink's id.")
_SOURCE = OpenApiParameter("source_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The source's id.")
_TAGS = ["kafka"]


def _connection(data: dict[str, Any]) -> dict[str, Any]:
    return {name: data.get(name) for name in CONNECTION_FIELDS}


# --- sinks ------------------------------------------------------------------------------------------


class SinkListView(KafkaApiView):
    @extend_schema(
        operation_id="kafka_sinks_list",
        summary="List the stream's Kafka sinks",
        tags=_TAGS,
        parameters=[_SLUG],
        responses={200: paginated(SinkOut), **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        sinks = kafka_sinks_of_stream(stream_id=self.stream.id)
        return paginated_response(self, request, KafkaPagination, sinks, kafka_sink_state)

    @extend_schema(
        operation_id="kafka_sinks_create",
        summary="Publish the stream's log to a Kafka topic",
        description=(
            "Every event of the log, in offset order, becomes one message: the value is the event as the "
            "consumer API returns it, the key the chosen field, the headers `event_id`, `type` and `offset`. "
            "At least once: the position moves only after the broker acknowledged a batch."
        ),
        tags=_TAGS,
        parameters=[_SLUG],
        request=SinkIn,
        responses={201: SinkOut, **error_responses(400, 401, 403, 404, 413, 415, 422)},
    )
    def post(self, request: Request, slug: str) -> HttpResponse:
        data = parse_input(request, SinkIn)
        sink = kafka_sink_create(
            stream_id=self.stream.id,
            topic=data["topic"],
            key=data["key"],
            start=Position(kind=cast(PositionKind, data["start"]), offset=data.get("offset")),
            batch_size=data["batch_size"],
            description=data.get("description", ""),
            **_connection(data),
        )
        return json_response(kafka_sink_state(kafka_sink_get(stream_id=self.stream.id, sink_id=sink.pk)), 201)


class SinkDetailView(KafkaApiView):
    @extend_schema(
        operation_id="kafka_sinks_show",
        summary="Show a Kafka sink: position, lag, state",
        tags=_TAGS,
        parameters=[_SLUG, _SINK],
        responses={200: SinkOut, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, slug: str, sink_id: int) -> HttpResponse:
        return json_response(kafka_sink_state(kafka_sink_get(stream_id=self.stream.id, sink_id=sink_id)))

    @extend_schema(
        operation_id="kafka_sinks_update",
        summary="Change a Kafka sink (is_active: false stops it)",
        tags=_TAGS,
        parameters=[_SLUG, _SINK],
        request=SinkPatchIn,
        responses={200: SinkOut, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def patch(self, request: Request, slug: str, sink_id: int) -> HttpResponse:
        sink = kafka_sink_get(stream_id=self.stream.id, sink_id=sink_id)
        data = parse_input(request, SinkPatchIn)
        kafka_bridge_update(bridge=sink, **data)
        return json_response(kafka_sink_state(kafka_sink_get(stream_id=self.stream.id, sink_id=sink_id)))

    @extend_schema(
        operation_id="kafka_sinks_delete",
        summary="Delete a Kafka sink (its position goes with it)",
        tags=_TAGS,
        parameters=[_SLUG, _SINK],
        responses={204: None, **error_responses(401, 403, 404)},
    )
    def delete(self, request: Request, slug: str, sink_id: int) -> HttpResponse:
        kafka_sink_delete(sink=kafka_sink_get(stream_id=self.stream.id, sink_id=sink_id))
        return HttpResponse(status=204)


# --- sources ----------------------------------------------------------------------------------------


class SourceListView(KafkaApiView):
    @extend_schema(
        operation_id="kafka_sources_list",
        summary="List the stream's Kafka sources",
        tags=_TAGS,
        parameters=[_SLUG],
        responses={200: paginated(SourceOut), **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        sources = kafka_sources_of_stream(stream_id=self.stream.id)
        return paginated_response(self, request, KafkaPagination, sources, kafka_source_state)

    @extend_schema(
        operation_id="kafka_sources_create",
        summary="Take a Kafka topic's messages into the stream",
        description=(
            "Each message's value is one event envelope, checked and stored as the native intake does. "
            "A message without `event_id` gets `kafka:<topic>:<partition>:<offset>`, so reading it again "
            "is a duplicate. Messages the intake refuses are counted and listed in `recent_rejections`, "
            "and skipped."
        ),
        tags=_TAGS,
        parameters=[_SLUG],
        request=SourceIn,
        responses={201: SourceOut, **error_responses(400, 401, 403, 404, 409, 413, 415)},
    )
    def post(self, request: Request, slug: str) -> HttpResponse:
        data = parse_input(request, SourceIn)
        source = kafka_source_create(
            stream_id=self.stream.id,
            stream_slug=self.stream.slug,
            topic=data["topic"],
            start=data["start"],
            consumer_group=data.get("consumer_group", ""),
            batch_size=data["batch_size"],
            description=data.get("description", ""),
            **_connection(data),
        )
        return json_response(kafka_source_state(kafka_source_get(stream_id=self.stream.id, source_id=source.pk)), 201)


class SourceDetailView(KafkaApiView):
    @extend_schema(
        operation_id="kafka_sources_show",
        summary="Show a Kafka source: counts, state, recent rejections",
        tags=_TAGS,
        parameters=[_SLUG, _SOURCE],
        responses={200: SourceOut, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, slug: str, source_id: int) -> HttpResponse:
        return json_response(kafka_source_state(kafka_source_get(stream_id=self.stream.id, source_id=source_id)))

    @extend_schema(
        operation_id="kafka_sources_update",
        summary="Change a Kafka source (is_active: false stops it)",
        tags=_TAGS,
        parameters=[_SLUG, _SOURCE],
        request=SourcePatchIn,
        responses={200: SourceOut, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def patch(self, request: Request, slug: str, source_id: int) -> HttpResponse:
        source = kafka_source_get(stream_id=self.stream.id, source_id=source_id)
        data = parse_input(request, SourcePatchIn)
        kafka_bridge_update(bridge=source, **data)
        return json_response(kafka_source_state(kafka_source_get(stream_id=self.stream.id, source_id=source_id)))

    @extend_schema(
        operation_id="kafka_sources_delete",
        summary="Delete a Kafka source (its Kafka group's offsets stay in the broker)",
        tags=_TAGS,
        parameters=[_SLUG, _SOURCE],
        responses={204: None, **error_responses(401, 403, 404)},
    )
    def delete(self, request: Request, slug: str, source_id: int) -> HttpResponse:
        kafka_source_delete(source=kafka_source_get(stream_id=self.stream.id, source_id=source_id))
        return HttpResponse(status=204)
