"""Plausible's events API: ``POST /api/event``.

Its script sends no secret, so the key is in the URL (``/s/{slug}/k/{ingest
key}/api/event``) and the stream's Origin allow-list applies. The body is
JSON, usually labelled ``text/plain``, with long names (``name``, ``url``,
``referrer``, ``props``, ``revenue``) or the script's short ones (``n``,
``u``, ``r``, ``p``). The visitor's user agent and address come from the
request, as Plausible takes them. Success is 202 ``ok``; errors are 4xx with
the usual error body (the script does not read answers).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse

from eventflow.errors import ApiError, error_body, json_response

from .body import read_json
from .intake import Target, all_rejected, client_ip, compat_view, deliver
from .mapping import envelope

MAX_BODY_BYTES = 64 * 1024


class PlausibleAnswers:
    def error(self, request: HttpRequest, exc: ApiError) -> HttpResponse:
        return json_response(error_body(exc.code, exc.message, exc.details), exc.status_code, exc.headers)


def _field(body: dict[str, Any], long: str, short: str) -> Any:
    return body.get(long, body.get(short))


def event_envelope(body: dict[str, Any], request: HttpRequest) -> dict[str, Any]:
    name = _field(body, "name", "n")
    props = _field(body, "props", "p")
    if isinstance(props, str):
        # The script sends props as a JSON string.
        try:
            props = orjson.loads(props)
        except orjson.JSONDecodeError:
            props = None
    payload = dict(props) if isinstance(props, dict) else {}
    if body.get("revenue") is not None:
        payload["revenue"] = body["revenue"]
    page = {
        key: value
        for key, value in (("url", _field(body, "url", "u")), ("referrer", _field(body, "referrer", "r")))
        if isinstance(value, str) and value
    }
    if name == "pageview":
        payload = {**page, **payload}
    context: dict[str, Any] = {"page": page} if page else {}
    domain = _field(body, "domain", "d")
    if isinstance(domain, str):
        context["domain"] = domain
    user_agent = request.META.get("HTTP_USER_AGENT")
    if user_agent:
        context["user_agent"] = user_agent
    ip = client_ip()
    if ip:
        context["ip"] = ip
    return envelope(
        type="page_view" if name == "pageview" else name,
        payload=payload,
        context=context,
    )


def event(request: HttpRequest, target: Target, received_at: datetime) -> HttpResponse:
    decoded = read_json(request, max_body=MAX_BODY_BYTES)
    body = decoded.value
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_payload", 'An event is a JSON object: {"name": "pageview", "url": "…", …}.')
    result = deliver(
        request,
        target,
        key=None,
        events=[event_envelope(body, request)],
        received_at=received_at,
        may_hold_nul=decoded.may_hold_nul,
    )
    refused = all_rejected(result)
    if refused is not None:
        raise refused
    return HttpResponse(b"ok", status=202, content_type="text/plain")


answers = PlausibleAnswers()
event_view = compat_view(event, answers)
