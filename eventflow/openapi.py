"""OpenAPI pieces shared by every app: the error shape and its responses, and a page of a list."""

from __future__ import annotations

import functools
from typing import Any

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

from streams.access import declared_access, key_may_pass

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
    503: "A dependency is down, or heavy analytics questions fill every slot (analytics_busy); see Retry-After.",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code]) for code in codes}


@functools.cache
def paginated(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    """One cursor page of ``serializer_class`` items, as the list views answer: ``{next, previous, results}``.

    The views paginate inside ``get`` (their ``pagination_class`` is not the
    REST framework's), so drf-spectacular cannot see the page by itself. One
    component per item type (``Paginated<Name>List``), made once.
    """
    name = serializer_class.__name__.removesuffix("Serializer")
    return inline_serializer(
        name=f"Paginated{name}List",
        fields={
            "next": serializers.URLField(allow_null=True, help_text="The next page; null on the last one."),
            "previous": serializers.URLField(allow_null=True, help_text="The page before; null on the first one."),
            "results": serializer_class(many=True),
        },
    )


API_KEY_SCHEME = {
    "type": "apiKey",
    "in": "header",
    "name": "X-API-Key",
    "description": "A stream API key: ef_ingest_… (send events) or ef_secret_… (send, read and consume).",
}


def add_api_key_security(result: dict, generator: Any, request: object, public: bool) -> dict:  # type: ignore[type-arg]
    """List X-API-Key on the operations whose declared ``access`` lets a key in, and on no other.

    DRF lists only the people's credentials; an API key is read by the access
    rule itself (``streams.access.caller_of``), so which operations take one is
    derived from each view's ``access`` (``key_may_pass``). Views that declare
    no access (the intake) keep the security their ``extend_schema`` states.
    """
    result.setdefault("components", {}).setdefault("securitySchemes", {})["ApiKeyAuth"] = API_KEY_SCHEME
    paths = result.get("paths", {})
    for path, _regex, method, callback in generator.endpoints:
        view = generator.create_view(callback, method)
        operation = paths.get(generator.coerce_path(path, method, view), {}).get(method.lower())
        declared = declared_access(view, method)
        if not isinstance(operation, dict) or declared is None:
            continue
        security = [s for s in operation.get("security", []) if s and s != {"ApiKeyAuth": []}]
        if key_may_pass(declared):
            security.insert(0, {"ApiKeyAuth": []})
        operation["security"] = security
    return result


def add_people_limit_responses(result: dict, generator: object, request: object, public: bool) -> dict:  # type: ignore[type-arg]
    """Every API operation a person may call is rate-limited per person, failing closed while Redis is down.

    So each one can answer 429 and 503 (with Retry-After); they are added here
    rather than listed on every view. The intake's own limits are on its operations.
    """
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for code in ("429", "503"):
                responses.setdefault(code, {"description": ERROR_DESCRIPTIONS[int(code)], "content": error})
    return result
