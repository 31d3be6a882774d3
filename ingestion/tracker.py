"""The browser tracker: its script (``GET /t.js``) and the intake it sends to (``POST /k/{ingest key}/tracker``).

The script (``static/tracker/t.js``, served minified as ``t.min.js``) sends one
JSON object per beacon, as ``text/plain`` so no CORS preflight is needed::

    {"type": "page_view", "event_id": "…", "view": "<page view id>",
     "url": "https://shop.example.com/pricing?utm_source=x", "referrer": "…", "props": {…}}

``sendBeacon`` can't set headers, so the ingest key is in the URL, the
compatible intake's ``/k/{key}/`` form (with ``/s/{slug}/`` ahead of it for a
key of several streams); the body never carries it. Everything after the body
is the compatible intake's (``compat.intake.deliver``): the key, the stream's
Origin allow-list, the rate limit, ``events_ingest``.

What the server adds, made from the request alone: the visitor
(``anonymous_id``, a daily-rotating salted hash of address, user agent and
stream: ingestion/visitors.py), the country of the full address (looked up
before the stream's anonymisation masks it: ingestion/geo.py), the user agent
and the address, masked here already when the stream anonymises, so the inbox
never holds more of it than the log will.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_safe

from eventflow.errors import ApiError, error_body, json_response
from streams.selectors import StreamInfo

from .compat.body import read_json
from .compat.intake import Refused, Target, all_rejected, client_ip, compat_view, deliver
from .compat.mapping import envelope
from .enrichment import anonymize_ip
from .geo import country_of
from .visitors import visitor_id

SCRIPT_FILE = settings.BASE_DIR / "static" / "tracker" / "t.min.js"
LIBRARY = "eventflow-tracker"
# /t.js may change with an upgrade, so browsers ask again daily (or sooner: the ETag makes it a 304);
# /t.{version}.js never changes.
SCRIPT_MAX_AGE = 86_400
VERSIONED_MAX_AGE = 365 * 86_400

MAX_BODY_BYTES = 64 * 1024
MAX_EVENTS = 20
MAX_URL_CHARS = 2048
MAX_VIEW_ID_CHARS = 64
PAGE_PERFORMANCE = "page_performance"
# Milliseconds since the navigation started (INP: the interaction's duration); at most an hour.
TIME_METRICS = ("ttfb", "dom_content_loaded", "load", "lcp", "inp")
MAX_MILLISECONDS = 3_600_000
# Cumulative Layout Shift is a unitless score (0.1 good, 0.25 poor); anything past 100 is not a measurement.
MAX_CLS = 100.0


# --- the script ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    body: bytes
    gzipped: bytes
    # The first 12 hex digits of its SHA-256: the name of the versioned URL, /t.{version}.js, and the ETag.
    version: str
    # Subresource Integrity: what a page's <script integrity="…"> says.
    integrity: str


@functools.cache
def tracker_script() -> Script:
    """The served script, read once per process."""
    body = SCRIPT_FILE.read_bytes()
    return Script(
        body=body,
        gzipped=gzip.compress(body, compresslevel=9, mtime=0),
        version=hashlib.sha256(body).hexdigest()[:12],
        integrity="sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode(),
    )


@require_safe
def script_view(request: HttpRequest, version: str | None = None) -> HttpResponse:
    """``/t.js`` (cached a day, revalidated by ETag) and ``/t.{version}.js`` (immutable; another version is a 404)."""
    script = tracker_script()
    if version is not None and version != script.version:
        return HttpResponse(
            b"/* Not this version: load /t.js, or the snippet of the README of this EventFlow. */\n",
            status=404,
            content_type="text/javascript; charset=utf-8",
        )
    etag = f'"{script.version}"'
    gzip_ok = "gzip" in request.META.get("HTTP_ACCEPT_ENCODING", "")
    if etag in request.META.get("HTTP_IF_NONE_MATCH", ""):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(
            script.gzipped if gzip_ok else script.body, content_type="text/javascript; charset=utf-8"
        )
        if gzip_ok:
            response["Content-Encoding"] = "gzip"
    response["ETag"] = etag
    if version is None:
        response["Cache-Control"] = f"public, max-age={SCRIPT_MAX_AGE}"
    else:
        response["Cache-Control"] = f"public, max-age={VERSIONED_MAX_AGE}, immutable"
    # Pages of any site load it, with integrity="…" crossorigin="anonymous", which needs CORS.
    response["Access-Control-Allow-Origin"] = "*"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    response["X-Content-Type-Options"] = "nosniff"
    patch_vary_headers(response, ("Accept-Encoding",))
    return response


# --- the intake ----------------------------------------------------------------------------------


class TrackerAnswers:
    def error(self, request: HttpRequest, exc: ApiError) -> HttpResponse:
        return json_response(error_body(exc.code, exc.message, exc.details), exc.status_code, exc.headers)


def _text(value: Any, limit: int) -> str | None:
    return value if isinstance(value, str) and value and len(value) <= limit else None


def _path(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        return urlsplit(url).path or "/"
    except ValueError:
        return None


def performance_metrics(props: dict[str, Any]) -> dict[str, float | int]:
    """The measurements of a ``page_performance`` event: known names with plausible numbers; the rest dropped."""
    metrics: dict[str, float | int] = {}
    for name in (*TIME_METRICS, "cls"):
        value = props.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            continue
        if 0 <= value <= (MAX_CLS if name == "cls" else MAX_MILLISECONDS):
            metrics[name] = value
    return metrics


@dataclass(frozen=True)
class Visit:
    """What the request says about the visitor, the same for every event of the body."""

    visitor: str
    user_agent: str | None
    ip: str | None
    country: str | None


def tracker_envelope(item: Any, visit: Visit) -> dict[str, Any] | Refused:
    """One of the script's events as an envelope (type and event id are checked by the native intake)."""
    if not isinstance(item, dict):
        return Refused("event", 'An event is a JSON object: {"type": "page_view", "url": "…", …}.')
    props = item.get("props")
    if props is None:
        props = {}
    if not isinstance(props, dict):
        return Refused("props", "props is an object of the event's properties.", item.get("event_id"))
    kind = item.get("type")
    url = _text(item.get("url"), MAX_URL_CHARS)
    referrer = _text(item.get("referrer"), MAX_URL_CHARS)
    path = _path(url)
    payload: dict[str, Any] = performance_metrics(props) if kind == PAGE_PERFORMANCE else dict(props)
    if path is not None:
        # The page dimension of the rollups and journeys: the tracker's own, over a property of that name.
        payload["page"] = path
    if kind == "page_view" and referrer:
        payload["referrer"] = referrer
    if kind == "form_submit" and not payload.get("form_id"):
        # The starter schema of form_submit names the form; a form without an id is named as well as it can be.
        payload["form_id"] = payload.get("form_name") or _path(payload.get("action")) or "form"
    page = {name: value for name, value in (("url", url), ("path", path), ("referrer", referrer)) if value}
    context: dict[str, Any] = {"library": {"name": LIBRARY, "version": tracker_script().version}}
    if page:
        context["page"] = page
    view = _text(item.get("view"), MAX_VIEW_ID_CHARS)
    if view:
        context["page_view_id"] = view
    for name, value in (("user_agent", visit.user_agent), ("ip", visit.ip), ("country", visit.country)):
        if value:
            context[name] = value
    return envelope(
        event_id=item.get("event_id"),
        type=kind,
        anonymous_id=visit.visitor,
        payload=payload,
        context=context,
    )


def event(request: HttpRequest, target: Target, received_at: datetime) -> HttpResponse:
    decoded = read_json(request, max_body=MAX_BODY_BYTES)
    body = decoded.value
    items = body if isinstance(body, list) else [body]
    if not items or len(items) > MAX_EVENTS:
        raise ApiError(400, "invalid_payload", f"Send one event (a JSON object), or a list of 1 to {MAX_EVENTS}.")
    ip = client_ip()
    user_agent = request.META.get("HTTP_USER_AGENT") or None
    country = country_of(ip)

    def envelopes(stream: StreamInfo) -> list[Any]:
        visit = Visit(
            visitor=visitor_id(stream_id=stream.id, ip=ip, user_agent=user_agent, at=received_at),
            user_agent=user_agent,
            ip=anonymize_ip(ip) if ip and stream.anonymize_ip else ip,
            country=country,
        )
        return [tracker_envelope(item, visit) for item in items]

    result = deliver(
        request,
        target,
        key=None,
        events=envelopes,
        received_at=received_at,
        may_hold_nul=decoded.may_hold_nul,
    )
    refused = all_rejected(result)
    if refused is not None:
        raise refused
    return json_response(result.summary(), 202)


answers = TrackerAnswers()
event_view = compat_view(event, answers)
