"""OpenAPI pieces shared by every app: the error shape and its responses."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorBody",
            fields={
                "code": serializers.CharField(help_text="Machine-readable, e.g. invalid_event."),
                "message": serializers.CharField(),
                "details": serializers.DictField(),
            },
        )
    },
)

ERROR_DESCRIPTIONS = {
    400: "Malformed request (shape, JSON, field values).",
    401: "Missing, unknown, expired or revoked credentials.",
    403: "The role or key kind lacks this right.",
    404: "Not found, or not yours.",
    409: "Conflict with the current state.",
    413: "Body or batch too large.",
    415: "Unsupported Content-Type or Content-Encoding.",
    422: "Schema violation (the stream enforces schemas).",
    429: "Rate limited; see Retry-After.",
    503: "A dependency is down; see Retry-After.",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code]) for code in codes}
