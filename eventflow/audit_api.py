"""GET /api/v1/audit: the audit log for Admins, filtered, newest first."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer

from streams.access import Action, Caller, stream_ids_for
from streams.selectors import stream_info

from .api import ApiView, TextField, cursor_pagination, paginated_response, parse_query
from .audit import audit_entries, audit_security
from .models import AuditEntry, AuditKind
from .openapi import error_responses


class AuditQuery(serializers.Serializer):
    kind = serializers.ChoiceField(choices=AuditKind.choices, required=False)
    action = TextField(required=False, max_length=64)
    user = TextField(required=False, max_length=150)
    caller = TextField(required=False, max_length=150)
    stream = serializers.SlugField(required=False, max_length=64)
    status = serializers.IntegerField(required=False, min_value=100, max_value=599)
    path = TextField(required=False, max_length=512)
    # "from" is a Python keyword: the field is declared under its wire name below.
    to = serializers.DateTimeField(required=False)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField(required=False)
        return fields


class AuditEntryOut(serializers.ModelSerializer):
    user_id = serializers.IntegerField(allow_null=True)

    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "at",
            "request_id",
            "kind",
            "action",
            "method",
            "path",
            "status",
            "duration_ms",
            "caller",
            "user_id",
            "key_prefix",
            "stream_id",
            "client_ip",
            "target",
            "details",
        ]


AuditPage = inline_serializer(
    name="AuditPage",
    fields={
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": AuditEntryOut(many=True),
    },
)


AuditPagination = cursor_pagination(("-at", "-id"))


def _param(name: str, kind: Any, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, required=False, description=description)


class AuditListView(ApiView):
    access = Action.ADMINISTER
    caller: Caller

    @extend_schema(
        operation_id="audit_list",
        summary="The audit log: requests and security events, newest first",
        description=(
            "For Admins. Rows of streams the caller does not reach are left out (a superuser reaches all). "
            "Intake requests are written in bulk about a second after they are answered."
        ),
        tags=["audit"],
        parameters=[
            _param("kind", OpenApiTypes.STR, "`request` or `security`."),
            _param("action", OpenApiTypes.STR, 'A security event\'s action, e.g. "key.create", "login.failure".'),
            _param("user", OpenApiTypes.STR, "A person's username."),
            _param("caller", OpenApiTypes.STR, "A key's prefix or a username, as recorded."),
            _param("stream", OpenApiTypes.STR, "A stream's slug."),
            _param("status", OpenApiTypes.INT, "The HTTP status."),
            _param("path", OpenApiTypes.STR, "Paths starting with this."),
            _param("from", OpenApiTypes.DATETIME, "At or after this time (ISO 8601 with zone)."),
            _param("to", OpenApiTypes.DATETIME, "Before this time."),
            _param("cursor", OpenApiTypes.STR, "From a previous page's next/previous link."),
            _param("limit", OpenApiTypes.INT, "Page size (default 100, at most 500)."),
        ],
        responses={200: AuditPage, **error_responses(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        query = parse_query(request, AuditQuery)
        stream_ids = stream_ids_for(self.caller, Action.ADMINISTER)
        stream_id = None
        if "stream" in query:
            info = stream_info(query["stream"])
            reached = info is not None and (stream_ids is None or info.id in stream_ids)
            # A stream the caller does not reach lists nothing, as one that does not exist.
            stream_id = info.id if reached and info is not None else -1
        rows = audit_entries(
            stream_ids=stream_ids,
            kind=query.get("kind"),
            action=query.get("action"),
            username=query.get("user"),
            caller=query.get("caller"),
            stream_id=stream_id,
            status=query.get("status"),
            path_prefix=query.get("path"),
            since=query.get("from"),
            until=query.get("to"),
        )
        return paginated_response(self, request, AuditPagination, rows, AuditEntryOut)


class AuditedTokenObtainPairSerializer(TokenObtainPairSerializer):
    """simplejwt's token pair serializer (SIMPLE_JWT["TOKEN_OBTAIN_SERIALIZER"]), recording each issue.

    A wrong password never reaches here: ``authenticate`` sends
    ``user_login_failed``, recorded as "login.failure".
    """

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        data = super().validate(attrs)
        user = self.user
        assert user is not None  # validate() raised otherwise
        audit_security(action="token.issue", user=user, target=str(user.get_username()))
        return data
