"""The management API of streams, their schemas and API keys.

Views are thin: ``DeclaredAccess`` asks ``streams/access.py`` (and puts the
stream on ``self.stream``), ``parse_input`` refuses unknown fields, one service
call does the work, and the output serializer is both the response and its
OpenAPI description.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from eventflow.api import ApiView, NameField, TextField, cursor_pagination, paginated_response, parse_input
from eventflow.errors import Invalid, NotAllowed, json_response
from eventflow.openapi import error_responses, paginated

from .access import REACH, Action, Caller, stream_ids_for, streams_reached
from .models import ApiKey, ApiKeyKind, EventSchema, SchemaMode, Stream
from .schemas import stored_schema_refusal
from .selectors import (
    StreamInfo,
    api_key_get,
    api_keys_for,
    payload_check,
    schema_version_get,
    schemas_of_stream,
    stream_get,
    teams_for_new_stream,
)
from .services import (
    api_key_create,
    api_key_revoke,
    api_key_update,
    schema_version_add,
    stream_archive,
    stream_create,
    stream_unarchive,
    stream_update,
)

SLUG_RE = r"^[a-z0-9][a-z0-9-]{0,63}$"

_SLUG = OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The stream's slug.")
_TYPE = OpenApiParameter("event_type", OpenApiTypes.STR, OpenApiParameter.PATH, description="The event type.")
_VERSION = OpenApiParameter("version", OpenApiTypes.INT, OpenApiParameter.PATH, description="The schema version.")
_KEY = OpenApiParameter("key_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The key's id.")


# --- streams -----------------------------------------------------------------------------------


class StreamOut(serializers.ModelSerializer):
    head = serializers.IntegerField(source="head.next_offset", help_text="The log's next offset (its length).")
    archived = serializers.SerializerMethodField()
    teams: Any = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)

    class Meta:
        model = Stream
        fields = [
            "slug",
            "name",
            "description",
            "schema_mode",
            "retention_days",
            "anonymize_ip",
            "allowed_origins",
            "archived",
            "archived_at",
            "created_at",
            "head",
            "teams",
        ]

    def get_archived(self, stream: Stream) -> bool:
        return stream.archived_at is not None


class StreamPatchIn(serializers.Serializer):
    name = TextField(required=False, max_length=200)
    description = TextField(required=False, allow_blank=True, max_length=5000)
    schema_mode = serializers.ChoiceField(SchemaMode.choices, required=False)
    retention_days = serializers.IntegerField(required=False, min_value=1, max_value=36500)
    anonymize_ip = serializers.BooleanField(required=False)
    allowed_origins = serializers.ListField(
        child=serializers.CharField(max_length=300),
        required=False,
        max_length=50,
        help_text="Pages that may send with this stream's keys through the SDK-compatible paths, as origins "
        '("https://shop.example.com", "https://*.example.com"); empty: any.',
    )


class StreamCreateIn(StreamPatchIn):
    slug = NameField(SLUG_RE, help_text="Lowercase letters, digits and -; up to 64. Never changes.")
    teams = serializers.ListField(
        child=NameField(SLUG_RE),
        required=False,
        max_length=50,
        help_text="Teams that reach the new stream; default: the creator's only team (required when they have several).",
    )
    starter_schemas = serializers.BooleanField(
        required=False, default=False, help_text="Register the five starter event types."
    )


def _stream_out(stream_id: int) -> dict[str, Any]:
    return dict(StreamOut(stream_get(stream_id=stream_id)).data)


StreamPagination = cursor_pagination("slug")


class StreamListView(ApiView):
    access = {"GET": REACH, "POST": Action.MANAGE}

    @extend_schema(
        operation_id="streams_list",
        summary="List the streams you reach",
        tags=["streams"],
        responses={200: paginated(StreamOut), **error_responses(400, 401, 429)},
    )
    def get(self, request: Request) -> Response:
        streams = streams_reached(self.caller).select_related("head").prefetch_related("teams")
        return paginated_response(self, request, StreamPagination, streams, StreamOut)

    @extend_schema(
        operation_id="streams_create",
        summary="Create a stream",
        tags=["streams"],
        request=StreamCreateIn,
        responses={201: StreamOut, **error_responses(400, 401, 403, 409, 413, 415, 429)},
        examples=[
            OpenApiExample("shop", request_only=True, value={"slug": "shop", "name": "Shop", "schema_mode": "warn"})
        ],
    )
    def post(self, request: Request) -> HttpResponse:
        if self.caller.key is not None:
            raise NotAllowed("key_kind_not_allowed", "API keys can't create streams.")
        data = parse_input(request, StreamCreateIn)
        teams = teams_for_new_stream(caller=self.caller, slugs=data.pop("teams", None))
        stream = stream_create(with_starter_schemas=data.pop("starter_schemas"), teams=teams, **data)
        return json_response(_stream_out(stream.pk), 201)


class StreamDetailView(ApiView):
    access = {"GET": REACH, "PATCH": Action.MANAGE}
    stream: StreamInfo

    @extend_schema(
        operation_id="streams_show",
        summary="Show a stream",
        tags=["streams"],
        parameters=[_SLUG],
        responses={200: StreamOut, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> HttpResponse:
        return json_response(_stream_out(self.stream.id))

    @extend_schema(
        operation_id="streams_update",
        summary="Change a stream's name, description, schema mode, retention or IP anonymisation",
        tags=["streams"],
        parameters=[_SLUG],
        request=StreamPatchIn,
        responses={200: StreamOut, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def patch(self, request: Request, slug: str) -> HttpResponse:
        data = parse_input(request, StreamPatchIn)
        stream_update(stream=stream_get(stream_id=self.stream.id), **data)
        return json_response(_stream_out(self.stream.id))


class StreamArchiveView(ApiView):
    access = Action.MANAGE
    stream: StreamInfo

    @extend_schema(
        operation_id="streams_archive",
        summary="Archive a stream: it takes no new events (409 at the intake); what it holds stays readable",
        tags=["streams"],
        parameters=[_SLUG],
        request=None,
        responses={200: StreamOut, **error_responses(401, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> HttpResponse:
        stream_archive(stream=stream_get(stream_id=self.stream.id))
        return json_response(_stream_out(self.stream.id))


class StreamUnarchiveView(ApiView):
    access = Action.MANAGE
    stream: StreamInfo

    @extend_schema(
        operation_id="streams_unarchive",
        summary="Unarchive a stream: it takes events again",
        tags=["streams"],
        parameters=[_SLUG],
        request=None,
        responses={200: StreamOut, **error_responses(401, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> HttpResponse:
        stream_unarchive(stream=stream_get(stream_id=self.stream.id))
        return json_response(_stream_out(self.stream.id))


# --- schemas -----------------------------------------------------------------------------------


class SchemaVersionOut(serializers.ModelSerializer):
    refused = serializers.SerializerMethodField(
        help_text=(
            "Why this version is not applied to events (null: it is). A version saved before a rule of the "
            "registry existed, such as the complexity limit, may break it: while it is the newest, events of "
            "its type are accepted as if the type had no schema. Register a new version to fix it."
        )
    )

    class Meta:
        model = EventSchema
        fields = ["event_type", "version", "schema", "created_at", "refused"]

    def get_refused(self, obj: EventSchema) -> str | None:
        return stored_schema_refusal(obj.pk, obj.schema)


class SchemaTypeOut(serializers.Serializer):
    event_type = serializers.CharField()
    current_version = serializers.IntegerField()
    versions = SchemaVersionOut(many=True, help_text="Newest first.")


class DryRunOut(serializers.Serializer):
    checked = serializers.IntegerField(help_text="Logged events of the type checked (the newest, up to 1,000).")
    rejected = serializers.IntegerField(help_text="How many of them the schema would have rejected.")
    reasons = serializers.ListField(
        child=serializers.DictField(), help_text="The most frequent reasons: field, message, events, offsets."
    )


class SchemaCreateIn(serializers.Serializer):
    schema = serializers.DictField(help_text="A JSON Schema (draft 2020-12) for the event's payload.")
    dry_run = serializers.BooleanField(
        required=False, default=False, help_text="Only check the newest logged events; save nothing."
    )
    force = serializers.BooleanField(
        required=False, default=False, help_text="Save even though the dry run would have rejected logged events."
    )


class SchemaCreatedOut(serializers.Serializer):
    saved = serializers.BooleanField(help_text="Whether a new version was saved.")
    unchanged = serializers.BooleanField(
        help_text="The schema is the same as the newest version: no version is added, and `version` is that one."
    )
    version = SchemaVersionOut(allow_null=True, help_text="The saved version, or the newest when unchanged.")
    dry_run = DryRunOut()


class ValidateIn(serializers.Serializer):
    payload = serializers.DictField(help_text="The event's payload (the part the schema describes).")


class ValidateOut(serializers.Serializer):
    valid = serializers.BooleanField()
    version = serializers.IntegerField()
    errors = serializers.ListField(child=serializers.DictField())  # type: ignore[assignment]


def _versions_out(event_type: str, versions: list[EventSchema]) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "current_version": versions[0].version,
        "versions": SchemaVersionOut(versions, many=True).data,
    }


class SchemaListView(ApiView):
    access = REACH
    stream: StreamInfo

    @extend_schema(
        operation_id="schemas_list",
        summary="The stream's event types with their schema versions",
        tags=["schemas"],
        parameters=[_SLUG],
        responses={200: SchemaTypeOut(many=True), **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> HttpResponse:
        by_type = schemas_of_stream(stream_id=self.stream.id)
        return json_response([_versions_out(t, v) for t, v in by_type.items()])


class SchemaTypeView(ApiView):
    access = {"GET": REACH, "POST": Action.MANAGE}
    stream: StreamInfo

    @extend_schema(
        operation_id="schemas_show_type",
        summary="An event type's schema versions, newest first",
        tags=["schemas"],
        parameters=[_SLUG, _TYPE],
        responses={200: SchemaTypeOut, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, slug: str, event_type: str) -> HttpResponse:
        versions = schemas_of_stream(stream_id=self.stream.id).get(event_type)
        if not versions:
            schema_version_get(stream_id=self.stream.id, event_type=event_type)  # raises not found
        assert versions is not None
        return json_response(_versions_out(event_type, versions))

    @extend_schema(
        operation_id="schemas_add_version",
        summary="Add a version of an event type's schema (older versions never change)",
        description=(
            "Before saving, the schema is tried on the newest 1,000 logged events of the type. When it would "
            "have rejected any, nothing is saved and the answer is 409 `schema_would_reject` with the reasons, "
            "unless `force` is true. `dry_run: true` only reports. A schema the same JSON as the newest version "
            "(whatever the order of its keys) adds no version: the answer is 200 with `saved: false`, "
            "`unchanged: true` and that version, so publishing again or retrying is harmless."
        ),
        tags=["schemas"],
        parameters=[_SLUG, _TYPE],
        request=SchemaCreateIn,
        responses={
            200: SchemaCreatedOut,
            201: SchemaCreatedOut,
            **error_responses(400, 401, 403, 404, 409, 413, 415),
        },
        examples=[
            OpenApiExample(
                "login",
                request_only=True,
                value={
                    "schema": {"type": "object", "required": ["method"], "properties": {"method": {"type": "string"}}}
                },
            )
        ],
    )
    def post(self, request: Request, slug: str, event_type: str) -> HttpResponse:
        data = parse_input(request, SchemaCreateIn)
        outcome = schema_version_add(
            stream=stream_get(stream_id=self.stream.id),
            event_type=event_type,
            schema=data["schema"],
            dry_run=data["dry_run"],
            force=data["force"],
        )
        shown = outcome.created or outcome.unchanged
        body = {
            "saved": outcome.created is not None,
            "unchanged": outcome.unchanged is not None,
            "version": None if shown is None else SchemaVersionOut(shown).data,
            "dry_run": DryRunOut(outcome.dry_run).data,
        }
        return json_response(body, 201 if outcome.created is not None else 200)


class SchemaVersionView(ApiView):
    access = REACH
    stream: StreamInfo

    @extend_schema(
        operation_id="schemas_show_version",
        summary="One version of an event type's schema",
        tags=["schemas"],
        parameters=[_SLUG, _TYPE, _VERSION],
        responses={200: SchemaVersionOut, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, slug: str, event_type: str, version: int) -> HttpResponse:
        found = schema_version_get(stream_id=self.stream.id, event_type=event_type, version=min(version, 2**31))
        return json_response(SchemaVersionOut(found).data)


class SchemaValidateView(ApiView):
    access = REACH
    stream: StreamInfo

    @extend_schema(
        operation_id="schemas_validate",
        summary="Validate a sample event's payload against the type's current schema",
        tags=["schemas"],
        parameters=[_SLUG, _TYPE],
        request=ValidateIn,
        description="`409 schema_refused` when the current version is refused (see `refused`): it is not applied.",
        responses={200: ValidateOut, **error_responses(400, 401, 403, 404, 409, 413, 415)},
    )
    def post(self, request: Request, slug: str, event_type: str) -> HttpResponse:
        data = parse_input(request, ValidateIn)
        schema = schema_version_get(stream_id=self.stream.id, event_type=event_type)
        errors = payload_check(schema=schema, payload=data["payload"])
        return json_response({"valid": not errors, "version": schema.version, "errors": errors})


# --- API keys ----------------------------------------------------------------------------------


class ApiKeyOut(serializers.ModelSerializer):
    streams: Any = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)
    revoked = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "prefix",
            "name",
            "kind",
            "streams",
            "rate_limit_per_minute",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked",
            "revoked_at",
        ]

    def get_revoked(self, api_key: ApiKey) -> bool:
        return api_key.revoked_at is not None


class ApiKeyCreatedOut(ApiKeyOut):
    key = serializers.CharField(help_text="The key itself. Shown only in this answer: keep it now.")

    class Meta(ApiKeyOut.Meta):
        fields = [*ApiKeyOut.Meta.fields, "key"]


class ApiKeyPatchIn(serializers.Serializer):
    name = TextField(required=False, allow_blank=True, max_length=200)
    streams = serializers.ListField(child=NameField(SLUG_RE), required=False, min_length=1, max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, help_text="ISO 8601 with zone.")
    rate_limit_per_minute = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=10_000_000, help_text="null: the default."
    )

    def validate_expires_at(self, value: Any) -> Any:
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value


class ApiKeyCreateIn(ApiKeyPatchIn):
    kind = serializers.ChoiceField(ApiKeyKind.values, help_text="ingest (send only) or secret (send, read, consume).")
    streams = serializers.ListField(child=NameField(SLUG_RE), min_length=1, max_length=100)


def _manageable(caller: Caller) -> frozenset[int] | None:
    return stream_ids_for(caller, Action.MANAGE)


def _streams_to_grant(caller: Caller, slugs: list[str]) -> list[Stream]:
    """The named streams, each one the caller may manage; any other is named as unknown (never as foreign)."""
    manageable = _manageable(caller)
    found = Stream.objects.filter(slug__in=slugs)
    if manageable is not None:
        found = found.filter(pk__in=manageable)
    streams = list(found)
    missing = sorted(set(slugs) - {s.slug for s in streams})
    if missing:
        raise Invalid("unknown_stream", f"No such stream of yours: {', '.join(missing)}.", {"streams": missing})
    return streams


KeyPagination = cursor_pagination("-created_at")


def _key_out(caller: Caller, key_id: int) -> dict[str, Any]:
    return dict(ApiKeyOut(api_key_get(manageable=_manageable(caller), key_id=key_id)).data)


class ApiKeyListView(ApiView):
    access = Action.MANAGE

    @extend_schema(
        operation_id="keys_list",
        summary="List the API keys of streams you manage",
        tags=["keys"],
        responses={200: paginated(ApiKeyOut), **error_responses(400, 401, 403, 429)},
    )
    def get(self, request: Request) -> Response:
        keys = api_keys_for(manageable=_manageable(self.caller))
        return paginated_response(self, request, KeyPagination, keys, ApiKeyOut)

    @extend_schema(
        operation_id="keys_create",
        summary="Create an API key (the key is in this answer only)",
        tags=["keys"],
        request=ApiKeyCreateIn,
        responses={201: ApiKeyCreatedOut, **error_responses(400, 401, 403, 413, 415, 429)},
        examples=[
            OpenApiExample(
                "web tracker", request_only=True, value={"name": "web", "kind": "ingest", "streams": ["shop"]}
            )
        ],
    )
    def post(self, request: Request) -> HttpResponse:
        data = parse_input(request, ApiKeyCreateIn)
        streams = _streams_to_grant(self.caller, data["streams"])
        # The key and its own rate limit are one change: no key without the limit asked for.
        with transaction.atomic():
            issued = api_key_create(
                kind=data["kind"],
                streams=streams,
                name=data.get("name", ""),
                expires_at=data.get("expires_at"),
                created_by=self.caller.user,
            )
            if data.get("rate_limit_per_minute") is not None:
                api_key_update(api_key=issued.api_key, rate_limit_per_minute=data["rate_limit_per_minute"])
        response = json_response({**_key_out(self.caller, issued.api_key.pk), "key": issued.raw_key}, 201)
        # The answer holds the secret, once: no cache keeps it.
        response["Cache-Control"] = "no-store"
        return response


class ApiKeyDetailView(ApiView):
    access = Action.MANAGE

    @extend_schema(
        operation_id="keys_show",
        summary="Show an API key (never the key itself)",
        tags=["keys"],
        parameters=[_KEY],
        responses={200: ApiKeyOut, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, key_id: int) -> HttpResponse:
        return json_response(_key_out(self.caller, key_id))

    @extend_schema(
        operation_id="keys_update",
        summary="Rename a key, change its streams, expiry or request limit",
        tags=["keys"],
        parameters=[_KEY],
        request=ApiKeyPatchIn,
        responses={200: ApiKeyOut, **error_responses(400, 401, 403, 404, 409, 413, 415)},
    )
    def patch(self, request: Request, key_id: int) -> HttpResponse:
        api_key = api_key_get(manageable=_manageable(self.caller), key_id=key_id)
        data = parse_input(request, ApiKeyPatchIn)
        slugs = data.pop("streams", None)
        streams = _streams_to_grant(self.caller, slugs) if slugs is not None else None
        api_key_update(api_key=api_key, streams=streams, **data)
        return json_response(_key_out(self.caller, key_id))

    @extend_schema(
        operation_id="keys_revoke",
        summary="Revoke a key: it fails from the next request on (the record stays, marked revoked)",
        tags=["keys"],
        parameters=[_KEY],
        responses={200: ApiKeyOut, **error_responses(401, 403, 404)},
    )
    def delete(self, request: Request, key_id: int) -> HttpResponse:
        api_key_revoke(api_key=api_key_get(manageable=_manageable(self.caller), key_id=key_id))
        return json_response(_key_out(self.caller, key_id))


__all__ = [
    "ApiKeyDetailView",
    "ApiKeyListView",
    "SchemaListView",
    "SchemaTypeView",
    "SchemaValidateView",
    "SchemaVersionView",
    "StreamArchiveView",
    "StreamDetailView",
    "StreamListView",
    "StreamUnarchiveView",
]
