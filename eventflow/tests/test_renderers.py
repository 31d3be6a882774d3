"""The REST API's orjson renderer writes the JSON the REST framework's JSONRenderer writes (eventflow/renderers.py)."""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from django.utils.translation import gettext_lazy
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.serializer_helpers import ReturnDict

from eventflow.renderers import FastJSONRenderer

SAMPLES: list[Any] = [
    {"source": "rollups", "total": 3, "buckets": [{"start": "2026-11-20T00:00:00+01:00", "count": 3}]},
    {"at": datetime(2026, 11, 20, 9, 0, 0, 123456, tzinfo=UTC)},
    {"at": datetime(2026, 11, 20, 9, 0, tzinfo=timezone(timedelta(hours=-5)))},
    {"at": datetime(2026, 11, 20, 9, 0)},
    {"day": date(2026, 11, 20), "time": time(9, 30, 15, 250000)},
    {"money": Decimal("12.50"), "id": UUID("12345678-1234-5678-1234-567812345678")},
    {"message": gettext_lazy("This field is required."), "detail": ErrorDetail("bad", code="invalid")},
    {"text": "line\u2028separator\u2029paragraph", "unicode": "Zürich, 東京, emoji 🎉", "quote": 'a "b" \\ c'},
    {"controls": "tab\tnew\nline\x01"},
    {1: "int key", "nested": OrderedDict([("b", 1), ("a", [1.5, -0.0, 1e300, 0.5, None, True])])},
    ReturnDict({"kept": "order"}, serializer=serializers.Serializer()),
    [],
    "plain",
    12,
]


@pytest.mark.parametrize("data", SAMPLES, ids=range(len(SAMPLES)))
def test_the_same_bytes_as_the_frameworks_renderer(data: Any) -> None:
    assert FastJSONRenderer().render(data) == JSONRenderer().render(data)


def test_an_integer_beyond_64_bits_and_an_indented_answer_take_the_frameworks_way() -> None:
    big = {"n": 2**70}
    assert FastJSONRenderer().render(big) == JSONRenderer().render(big) == b'{"n":1180591620717411303424}'
    indented = FastJSONRenderer().render({"a": 1}, "application/json; indent=2")
    assert indented == JSONRenderer().render({"a": 1}, "application/json; indent=2") == b'{\n  "a": 1\n}'


def test_nothing_renders_as_an_empty_body() -> None:
    assert FastJSONRenderer().render(None) == b""


def test_a_small_float_is_the_same_number_in_another_notation_and_nan_is_null() -> None:
    data = {"rate": 1.234e-05, "share": 0.25}
    fast = FastJSONRenderer().render(data)
    assert (
        fast == b'{"rate":0.00001234,"share":0.25}'
        and JSONRenderer().render(data) == b'{"rate":1.234e-05,"share":0.25}'
    )
    assert json.loads(fast) == json.loads(JSONRenderer().render(data)) == data
    # The framework refuses NaN (strict JSON): an error where orjson writes null.
    with pytest.raises(ValueError):
        JSONRenderer().render({"x": float("nan")})
    assert FastJSONRenderer().render({"x": float("nan"), "y": float("inf")}) == b'{"x":null,"y":null}'
