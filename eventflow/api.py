"""What every REST view of the management and consumer APIs shares: JSON bodies, strict input, the access door.

Views are thin: ``DeclaredAccess`` checks the caller against the view's
``access`` (and puts the stream on ``self.stream``), ``parse_input`` turns the
body into validated data (unknown fields are refused, so nobody sets a field
their role may not), one service call does the work, and the response is
rendered from an output serializer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ParseError
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from eventflow.db import holds_nul
from eventflow.errors import ApiError, Invalid

if TYPE_CHECKING:
    from streams.access import Caller

MAX_BODY_BYTES = 64 * 1024


class JsonBodyParser(BaseParser):
    """Small JSON bodies, parsed by orjson (depth-limited)."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        raw = stream.read(MAX_BODY_BYTES + 1) if stream is not None else b""
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large", f"The body may be at most {MAX_BODY_BYTES} bytes.")
        if not raw.strip():
            return {}
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"The body is not valid JSON: {exc}") from None
        # JSON can only hold a NUL as the escape \u0000; PostgreSQL refuses it in text and jsonb (it was a 500).
        if b"\\u0000" in raw and holds_nul(value):
            raise ApiError(400, "invalid_request", "Strings may not contain NUL (\\u0000).")
        return value


def parse_input(request: Request, serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
    """The body validated by ``serializer_class``; any field it does not declare is a 400."""
    data = request.data
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "The body must be a JSON object.")
    known = set(serializer_class().fields)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ApiError(400, "unknown_field", f"Unknown field(s): {', '.join(unknown)}.", {"fields": unknown})
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        raise ApiError(400, "invalid_request", "The request is invalid.", serializer.errors)
    return dict(serializer.validated_data)


def parse_query(request: Request, serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
    """Query parameters validated by ``serializer_class`` (unknown ones are ignored, as links add their own)."""
    serializer = serializer_class(data=request.query_params)
    if not serializer.is_valid():
        raise ApiError(400, "invalid_request", "The query is invalid.", serializer.errors)
    return dict(serializer.validated_data)


class TextField(serializers.CharField):
    """A JSON string (numbers are not taken for text) that PostgreSQL can store: no NUL characters."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a string.")
        value = super().to_internal_value(data)
        if "\x00" in value:
            raise serializers.ValidationError("NUL characters are not allowed.")
        return value


class NameField(TextField, serializers.RegexField):
    pass


class ApiView(APIView):
    """Base of the JSON API views. Subclasses declare ``access`` (see ``streams.access.DeclaredAccess``)."""

    parser_classes = [JsonBodyParser]
    # Set by streams.access.DeclaredAccess before the handler runs.
    caller: Caller


class ApiCursorPagination(CursorPagination):
    """The API's cursor pages: a cursor the API did not give out is bad input (400 ``invalid_cursor``)."""

    _model: Any = None

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        self._model = getattr(queryset, "model", None)
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request: Request) -> Any:
        # DRF answers a cursor it cannot read with 404; it is bad input, a 400 as the query API answers it.
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise Invalid("invalid_cursor", "The cursor is not one this API gave out.") from None
        if cursor is not None and cursor.position is not None:
            self._position_checked(cursor.position)
        return cursor

    def _position_checked(self, position: Any) -> None:
        """A forged position is bad input: DRF filters by it as given, which was a 500 (NUL, not a date, not a number)."""
        refused = Invalid("invalid_cursor", "The cursor is not one this API gave out.")
        if "\x00" in str(position):
            raise refused
        name = self.ordering[0].lstrip("-")
        try:
            field = self._model._meta.get_field(name) if self._model is not None else None
        except FieldDoesNotExist:
            field = None
        if field is None:
            return
        try:
            field.to_python(position)
        except (DjangoValidationError, TypeError, ValueError):
            raise refused from None


def cursor_pagination(
    order: str | tuple[str, ...], *, size: int = 100, max_size: int = 500
) -> type[ApiCursorPagination]:
    """A cursor paginator over ``order`` (a unique field, or fields ending in one), with a capped ``limit``."""
    fields = (order,) if isinstance(order, str) else order
    return type(
        "CursorBy" + "".join(field.strip("-").title() for field in fields),
        (ApiCursorPagination,),
        {"ordering": order, "page_size": size, "page_size_query_param": "limit", "max_page_size": max_size},
    )


def paginated_response(
    view: APIView,
    request: Request,
    pagination: type[CursorPagination],
    queryset: Any,
    out: type[serializers.BaseSerializer] | Callable[[Any], Any],
) -> Response:
    """One cursor page of ``queryset`` as every list endpoint answers it: ``{"next", "previous", "results"}``.

    ``out`` renders the page: a serializer class (as ``many=True``), or a function of one item.
    """
    paginator = pagination()
    page: list[Any] = paginator.paginate_queryset(queryset, request, view=view) or []
    if isinstance(out, type) and issubclass(out, serializers.BaseSerializer):
        results = out(page, many=True).data
    else:
        results = [out(item) for item in page]  # type: ignore[call-arg]
    return paginator.get_paginated_response(results)
