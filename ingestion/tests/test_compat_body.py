"""Body decoding of the compatible intake: lz-string against the JavaScript library's own output, caps, base64."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventflow.errors import ApiError
from ingestion.compat.body import b64decode_any, decode_text, form_fields, lz_decompress_base64

VECTORS = json.loads((Path(__file__).parent / "data" / "lzstring_vectors.json").read_text())["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=[str(index) for index in range(len(VECTORS))])
def test_lz_string_decodes_what_the_javascript_library_made(vector):
    assert lz_decompress_base64(vector["base64"], limit=1_000_000) == vector["text"]


def test_lz_string_output_is_capped():
    vector = VECTORS[-1]
    with pytest.raises(ApiError) as caught:
        lz_decompress_base64(vector["base64"], limit=1000)
    assert caught.value.status_code == 413


@pytest.mark.parametrize("text", ["!!!", "NobwRApgbhB2AuYBcYAkAHAh", "A", "////", "Q"])
def test_lz_string_garbage_is_400_or_decodes_to_something_short(text):
    try:
        lz_decompress_base64(text, limit=10_000)
    except ApiError as exc:
        assert exc.status_code in (400, 413)


def test_base64_variants():
    assert b64decode_any("eyJhIjoxfQ") == b'{"a":1}'
    assert b64decode_any("eyJh\nIjoxfQ==") == b'{"a":1}'
    assert decode_text("eyJhIjoxfQ==").value == {"a": 1}
    assert decode_text(b" [1]").value == [1]


def test_form_fields_only_when_it_is_a_form():
    assert form_fields(b"data=abc&verbose=1") == {"data": "abc", "verbose": "1"}
    assert form_fields(b'{"data": 1}') is None
    assert "data" not in (form_fields(b"eyJhIjoxfQ==") or {})
