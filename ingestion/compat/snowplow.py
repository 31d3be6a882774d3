"""Snowplow's tracker protocol: ``POST /com.snowplowanalytics.snowplow/tp2`` and ``GET /i``.

Trackers send no secret, so the key is in the URL (``/s/{slug}/k/{ingest
key}/…``, which a tracker takes as its collector endpoint) and the stream's
Origin allow-list applies. A POST is ``{"schema": "iglu:…/payload_data/…",
"data": [events]}``, each event a dictionary of the protocol's short
parameters; ``GET /i`` is one event in the query string (a pixel). Success is
200 (``ok``, or a transparent GIF for the pixel); the Python tracker retries
everything but 2xx and 400, 401, 403, 410, 422, so bad bodies and keys answer
those and are not sent again.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse

from eventflow.errors import ApiError, error_body, json_response

from .body import query_params, read_json
from .intake import Target, all_rejected, client_ip, compat_view, deliver, request_origin
from .mapping import envelope, epoch_iso

# A transparent 1x1 GIF: the answer to the pixel (``GET /i``).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
EVENT_TYPES = {"pv": "page_view", "pp": "page_ping", "tr": "transaction", "ti": "transaction_item"}
STRUCTURED = {"se_ca": "category", "se_ac": "action", "se_la": "label", "se_pr": "property", "se_va": "value"}
PING = {"pp_mix": "min_x", "pp_max": "max_x", "pp_miy": "min_y", "pp_may": "max_y"}
# Parameters the mapping reads; the rest go to context.snowplow as sent.
MAPPED = frozenset(
    {"e", "eid", "uid", "duid", "sid", "dtm", "ttm", "stm", "url", "page", "refr", "ua", "ip"}
    | {"ue_pr", "ue_px", "co", "cx"}
    | STRUCTURED.keys()
    | PING.keys()
)


class SnowplowAnswers:
    def error(self, request: HttpRequest, exc: ApiError) -> HttpResponse:
        return json_response(error_body(exc.code, exc.message, exc.details), exc.status_code, exc.headers)


def _self_describing(params: dict[str, Any], plain: str, encoded: str) -> Any:
    """A JSON parameter, sent plain (``ue_pr``, ``co``) or as URL-safe base64 (``ue_px``, ``cx``)."""
    text = params.get(plain)
    try:
        if isinstance(text, str):
            return orjson.loads(text)
        coded = params.get(encoded)
        if isinstance(coded, str):
            return orjson.loads(base64.urlsafe_b64decode(coded + "=" * (-len(coded) % 4)))
    except (orjson.JSONDecodeError, binascii.Error, ValueError):
        return None
    return None


def schema_name(uri: Any) -> str | None:
    """The event name of an Iglu URI: ``iglu:com.acme/checkout/jsonschema/1-0-0`` → ``checkout``."""
    if not isinstance(uri, str) or not uri.startswith("iglu:"):
        return None
    parts = uri[len("iglu:") :].split("/")
    return parts[1] if len(parts) == 4 and parts[1] else None


def event_envelope(params: Any, *, request: HttpRequest, from_browser: bool) -> Any:
    if not isinstance(params, dict):
        return params
    kind = params.get("e")
    context: dict[str, Any] = {}
    page = {
        name: params[source]
        for name, source in (("url", "url"), ("title", "page"), ("referrer", "refr"))
        if isinstance(params.get(source), str)
    }
    if page:
        context["page"] = page
    user_agent = params.get("ua") or (request.META.get("HTTP_USER_AGENT") if from_browser else None)
    if isinstance(user_agent, str) and user_agent:
        context["user_agent"] = user_agent
    ip = params.get("ip") or (client_ip() if from_browser else None)
    if isinstance(ip, str):
        context["ip"] = ip
    contexts = _self_describing(params, "co", "cx")
    if isinstance(contexts, dict) and isinstance(contexts.get("data"), list):
        context["contexts"] = contexts["data"]
    rest = {name: value for name, value in params.items() if name not in MAPPED}
    if rest:
        context["snowplow"] = rest

    payload: Any = {}
    event_type: Any = EVENT_TYPES.get(kind, kind) if isinstance(kind, str) else None
    if kind == "ue":
        outer = _self_describing(params, "ue_pr", "ue_px")
        inner = outer.get("data") if isinstance(outer, dict) else None
        # Kept with its Iglu schema URI: the type is the schema's name, the URI goes in context.schema.
        event_type = schema_name(inner.get("schema")) if isinstance(inner, dict) else None
        if isinstance(inner, dict):
            context["schema"] = inner.get("schema")
            payload = inner.get("data")
    elif kind == "se":
        action = params.get("se_ac")
        event_type = action if isinstance(action, str) and action else None
        payload = {name: params[source] for source, name in STRUCTURED.items() if source in params}
    elif kind == "pp":
        payload = {name: params[source] for source, name in PING.items() if source in params}
    elif kind == "pv":
        payload = dict(page)
    elif kind in ("tr", "ti"):
        payload = {name: value for name, value in rest.items() if name.startswith(f"{kind}_")}
    return envelope(
        event_id=params.get("eid"),
        type=event_type,
        timestamp=epoch_iso(params.get("ttm") or params.get("dtm"), unit="ms"),
        user_id=params.get("uid") or None,
        anonymous_id=params.get("duid") or None,
        session_id=params.get("sid") or None,
        payload=payload,
        context=context,
    )


# JSON sent as base64 inside a parameter: the body's text shows none of its \u0000 escapes.
BASE64_JSON = frozenset({"ue_px", "cx"})


def _deliver(request: HttpRequest, target: Target, received_at: datetime, events: list[Any], nul: bool) -> None:
    sent = next((event.get("stm") for event in events if isinstance(event, dict) and event.get("stm")), None)
    sent_at = epoch_iso(sent, unit="ms") if sent is not None else None
    nul = nul or any(isinstance(event, dict) and not BASE64_JSON.isdisjoint(event) for event in events)
    # The JavaScript tracker POSTs from pages too: a page's request names its origin, a server's does not.
    from_browser = request.method == "GET" or request_origin(request) is not None
    result = deliver(
        request,
        target,
        key=None,
        events=[event_envelope(event, request=request, from_browser=from_browser) for event in events],
        received_at=received_at,
        sent_at=sent_at if isinstance(sent_at, str) and sent_at[:1].isdigit() else None,
        may_hold_nul=nul,
    )
    refused = all_rejected(result)
    if refused is not None:
        raise refused


def tp2(request: HttpRequest, target: Target, received_at: datetime) -> HttpResponse:
    decoded = read_json(request)
    body = decoded.value
    if not isinstance(body, dict) or not isinstance(body.get("data"), list) or not body["data"]:
        raise ApiError(400, "invalid_payload", 'A tp2 body is {"schema": "iglu:…/payload_data/…", "data": [events]}.')
    _deliver(request, target, received_at, body["data"], decoded.may_hold_nul)
    return HttpResponse(b"ok", status=200, content_type="text/plain")


def pixel(request: HttpRequest, target: Target, received_at: datetime) -> HttpResponse:
    params = query_params(request)
    if not params.get("e"):
        raise ApiError(400, "invalid_payload", "The pixel needs the event's parameters in the query string (e=…).")
    _deliver(request, target, received_at, [params], True)
    response = HttpResponse(PIXEL, status=200, content_type="image/gif")
    response["Cache-Control"] = "no-store"
    return response


answers = SnowplowAnswers()
tp2_view = compat_view(tp2, answers)
pixel_view = compat_view(pixel, answers, methods=("GET",))
