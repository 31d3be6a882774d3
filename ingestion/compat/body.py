"""Decoding the bodies other products' SDKs send: pure functions from bytes to JSON values.

SDKs label bodies loosely (gzip sent as ``text/plain`` or form-encoded), so
nothing here trusts ``Content-Type``: gzip is recognised by ``Content-Encoding``
or by its magic bytes, form fields by their shape, base64 by failing to be
JSON first. Every step is capped by the installation's size limits, and every
failure is a clear 400 (``ApiError``).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
from django.http import HttpRequest

from eventflow import conf
from eventflow.errors import ApiError
from ingestion.envelope import _gunzip_capped, _read_capped

GZIP_MAGIC = b"\x1f\x8b"
# Form fields that carry the events (Mixpanel, PostHog's older browser library).
DATA_FIELD = "data"


@dataclass
class Decoded:
    """A decoded body: its JSON value and the parameters around it (query string and form fields)."""

    value: Any
    params: dict[str, str] = field(default_factory=dict)
    # False when the JSON text held no \u0000 escape (see ingestion.envelope.JsonBody).
    may_hold_nul: bool = True


def body_limits() -> tuple[int, int]:
    settings = conf.get()
    return settings.max_body_bytes, settings.max_decompressed_bytes


def read_raw(request: HttpRequest, *, max_body: int | None = None) -> bytes:
    """The request's body, size-checked and un-gzipped (by Content-Encoding or magic bytes)."""
    limit, decompressed_limit = body_limits()
    if max_body is not None:
        limit = min(limit, max_body)
        decompressed_limit = min(decompressed_limit, max_body)
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApiError(400, "invalid_content_length", "Content-Length is not a number.") from None
    if declared > limit:
        raise ApiError(413, "body_too_large", f"The body may be at most {limit} bytes.", {"limit": limit})
    raw = _read_capped(request, limit)
    encoding = request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    if encoding not in ("", "identity", "gzip"):
        raise ApiError(
            415, "unsupported_content_encoding", "Content-Encoding may be gzip or identity.", {"encoding": encoding}
        )
    if encoding == "gzip" or raw.startswith(GZIP_MAGIC):
        raw = _gunzip_capped(raw, decompressed_limit)
    elif len(raw) > decompressed_limit:
        raise ApiError(413, "body_too_large", f"The body may be at most {decompressed_limit} bytes.")
    return raw


def read_json(request: HttpRequest, *, max_body: int | None = None) -> Decoded:
    """A JSON body (gzip or not), whatever its Content-Type says."""
    raw = read_raw(request, max_body=max_body)
    if not raw.strip():
        raise ApiError(400, "empty_body", "The request body is empty.")
    return parse_json(raw)


def query_params(request: HttpRequest) -> dict[str, str]:
    """The query string's parameters, the last value of each (as the SDKs send each once)."""
    return {name: request.GET[name] for name in request.GET}


def form_fields(raw: bytes) -> dict[str, str] | None:
    """The body as ``application/x-www-form-urlencoded`` fields, or None when it is not one."""
    stripped = raw.lstrip()
    if not stripped or stripped[:1] in (b"{", b"["):
        return None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    if "=" not in text:
        return None
    try:
        parsed = parse_qs(text, keep_blank_values=True, strict_parsing=True, max_num_fields=100)
    except ValueError:
        return None
    return {name: values[-1] for name, values in parsed.items()}


def parse_json(text: bytes | str, what: str = "body") -> Decoded:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"The {what} is not valid JSON: {exc}") from None
    marker = "\\u0000" if isinstance(text, str) else b"\\u0000"
    return Decoded(value, may_hold_nul=marker in text)  # type: ignore[operator]


def b64decode_any(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not; whitespace ignored."""
    cleaned = "".join(text.split())
    cleaned = cleaned.replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid_base64", "The data is neither JSON nor base64-encoded JSON.") from None


def decode_text(text: str | bytes, *, compression: str = "", what: str = "body") -> Decoded:
    """JSON text, base64 of JSON, gzip inside base64, or lz-string (``compression=lz64``)."""
    _, decompressed_limit = body_limits()
    if compression == "lz64":
        as_str = text.decode("ascii", "replace") if isinstance(text, bytes) else text
        return parse_json(lz_decompress_base64(as_str.strip(), limit=decompressed_limit), what)
    stripped = text.lstrip()
    if stripped[:1] in ("{", "[", b"{", b"["):
        return parse_json(text, what)
    as_str = text.decode("ascii", "replace") if isinstance(text, bytes) else text
    decoded = b64decode_any(as_str)
    if decoded.startswith(GZIP_MAGIC):
        decoded = _gunzip_capped(decoded, decompressed_limit)
    return parse_json(decoded, what)


def decode_body(request: HttpRequest, *, max_body: int | None = None) -> Decoded:
    """A body as the browser and server SDKs of PostHog and Mixpanel send it, whichever way that is.

    Raw JSON; gzip (also when ``?compression=gzip-js`` labels it); form fields
    with the events in ``data=`` (JSON, base64 or lz-string); or the whole body
    base64 or lz-string encoded. ``params`` holds the query and form fields.
    """
    params = query_params(request)
    raw = read_raw(request, max_body=max_body)
    if not raw.strip():
        if DATA_FIELD in params:
            # A GET beacon (Mixpanel's browser library) carries its events in the query string.
            decoded = decode_text(params.pop(DATA_FIELD), compression=params.get("compression", ""), what="data field")
            decoded.params = params
            return decoded
        raise ApiError(400, "empty_body", "The request body is empty.")
    form = form_fields(raw)
    if form is not None and DATA_FIELD in form:
        params.update({name: value for name, value in form.items() if name != DATA_FIELD})
        decoded = decode_text(form[DATA_FIELD], compression=params.get("compression", ""), what="data field")
    else:
        decoded = decode_text(raw, compression=params.get("compression", ""))
    decoded.params = params
    return decoded


# --- lz-string ---------------------------------------------------------------------------------
#
# PostHog's older browser library sends ``compression=lz64``: lz-string's
# compressToBase64. The PyPI port (lzstring 1.0.4) needs the Python 2 ``future``
# shim and has no output cap: an LZW stream of n codes can expand to n²/2
# characters, so a 5 MB body could ask for terabytes. This decoder stops at the
# installation's decompressed-body limit. It is tested against vectors made by
# the JavaScript lz-string itself (ingestion/tests/test_compat_body.py).

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_B64_VALUES = {char: index for index, char in enumerate(_B64)}


class _Bits:
    __slots__ = ("index", "position", "reset", "text", "value")

    def __init__(self, text: str, reset: int) -> None:
        self.text = text
        self.reset = reset
        self.position = reset
        self.index = 1
        self.value = self._char(0)

    def _char(self, index: int) -> int:
        if index >= len(self.text):
            return 0
        try:
            return _B64_VALUES[self.text[index]]
        except KeyError:
            raise ApiError(400, "invalid_lz64", "The lz-string data holds a character outside base64.") from None

    def read(self, count: int) -> int:
        bits = 0
        power = 1
        for _ in range(count):
            if self.value & self.position:
                bits |= power
            self.position >>= 1
            if self.position == 0:
                self.position = self.reset
                self.value = self._char(self.index)
                self.index += 1
            power <<= 1
        return bits


def lz_decompress_base64(text: str, *, limit: int) -> str:
    """lz-string's ``decompressFromBase64``, refusing output beyond ``limit`` characters (UTF-16 units)."""
    if not text:
        raise ApiError(400, "invalid_lz64", "The lz-string data is empty.")
    invalid = ApiError(400, "invalid_lz64", "The data is not valid lz-string (compression=lz64).")
    bits = _Bits(text, 32)
    dictionary: list[str] = ["", "", ""]
    enlarge_in = 4
    num_bits = 3
    first = bits.read(2)
    if first == 0:
        char = chr(bits.read(8))
    elif first == 1:
        char = chr(bits.read(16))
    else:
        return ""
    dictionary.append(char)
    w = char
    result = [char]
    size = 1
    while True:
        if bits.index > len(text):
            raise invalid
        code = bits.read(num_bits)
        if code in (0, 1):
            dictionary.append(chr(bits.read(8 if code == 0 else 16)))
            code = len(dictionary) - 1
            enlarge_in -= 1
        elif code == 2:
            break
        if enlarge_in == 0:
            enlarge_in = 1 << num_bits
            num_bits += 1
        if code < len(dictionary) and code > 2:
            entry = dictionary[code]
        elif code == len(dictionary):
            entry = w + w[0]
        else:
            raise invalid
        size += len(entry)
        if size > limit:
            raise ApiError(
                413, "body_too_large", f"The decompressed body may be at most {limit} bytes.", {"limit": limit}
            )
        result.append(entry)
        dictionary.append(w + entry[0])
        enlarge_in -= 1
        w = entry
        if enlarge_in == 0:
            enlarge_in = 1 << num_bits
            num_bits += 1
    # JavaScript strings are UTF-16 code units: pairs of surrogates make one character.
    joined = "".join(result)
    try:
        return joined.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeDecodeError:
        raise invalid from None
