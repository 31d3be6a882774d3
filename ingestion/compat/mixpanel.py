"""Mixpanel's ingestion API: ``/track`` (events) and ``/engage`` (profile updates).

Bodies are form fields with the JSON (or its base64) in ``data=``, or raw
JSON; the key is the event's ``properties.token`` (``$token`` on ``/engage``).
Mixpanel answers ``1`` or ``0``, or with ``verbose=1`` (which its Python
client always sends) ``{"status": 1, "error": null}`` / ``{"status": 0,
"error": "..."}``. The Python client reads that body whatever the HTTP status
and retries only 5xx; the Node client treats any status but 200 as an error.
Events without ``$insert_id`` and profile updates get an id made from their
content, so a resent message is a duplicate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse

from eventflow.errors import ApiError, json_response

from .body import Decoded, decode_body
from .intake import Refused, Target, all_rejected, compat_view, deliver
from .mapping import as_dict, content_id, envelope, epoch_iso, id_text, native_type
from .posthog import answers as posthog_answers
from .posthog import capture_decoded, is_posthog

# ``$ip`` is the client's address (Mixpanel's own clients and server-side senders set it): it goes to context.ip,
# where a stream that masks addresses masks it, never into the payload as sent.
MOVED_PROPERTIES = frozenset(
    {"token", "distinct_id", "time", "$insert_id", "mp_lib", "$lib_version", "$device_id", "$ip"}
)
ENGAGE_OPERATIONS = ("$set", "$set_once", "$add", "$append", "$union", "$remove", "$unset", "$delete")


def _verbose(request: HttpRequest) -> bool:
    params = getattr(request, "ef_mixpanel_params", None) or request.GET
    return str(params.get("verbose", "")) == "1"


def _answer(request: HttpRequest, status: int, error: str | None) -> HttpResponse:
    if _verbose(request):
        return json_response({"status": 0 if error else 1, "error": error}, status)
    return HttpResponse(b"0" if error else b"1", status=status, content_type="text/plain")


class MixpanelAnswers:
    def error(self, request: HttpRequest, exc: ApiError) -> HttpResponse:
        response = _answer(request, exc.status_code, f"{exc.code}: {exc.message}")
        for name, value in exc.headers.items():
            response[name] = value
        return response


def _too_deep() -> Refused:
    # A message is hashed for its id; orjson writes no deeper than 254 levels (mapping.content_id).
    return Refused("", "The message nests too deeply to be given an id.", code="too_deep")


def event_envelope(event: Any) -> Any:
    if not isinstance(event, dict):
        return event
    properties = as_dict(event.get("properties"))
    insert_id = properties.get("$insert_id")
    event_id = id_text(insert_id) if insert_id is not None else content_id("mp", event)
    if event_id is None:
        return _too_deep()
    context: dict[str, Any] = {}
    if "mp_lib" in properties:
        context["library"] = {"name": properties["mp_lib"], "version": properties.get("$lib_version")}
    if isinstance(properties.get("$current_url"), str):
        context["page"] = {"url": properties["$current_url"]}
    if isinstance(properties.get("$ip"), str):
        context["ip"] = properties["$ip"]
    return envelope(
        event_id=event_id,
        type=native_type(event.get("event")),
        timestamp=epoch_iso(properties.get("time")),
        user_id=id_text(properties.get("distinct_id")),
        anonymous_id=id_text(properties.get("$device_id")),
        payload={name: value for name, value in properties.items() if name not in MOVED_PROPERTIES},
        context=context,
    )


def engage_envelope(update: Any) -> Any:
    if not isinstance(update, dict):
        return update
    if update.get("$distinct_id") in (None, ""):
        return Refused("$distinct_id", "A profile update needs a $distinct_id.")
    operation = next((name for name in ENGAGE_OPERATIONS if name in update), None)
    if operation is None:
        return Refused("", f"A profile update needs one of {', '.join(ENGAGE_OPERATIONS)}.")
    event_id = content_id("mp", update)
    if event_id is None:
        return _too_deep()
    payload: dict[str, Any]
    if operation in ("$set", "$set_once") and isinstance(update[operation], dict):
        payload = {"traits" if operation == "$set" else "traits_once": update[operation]}
    else:
        payload = {"operation": operation, "properties": update.get(operation) if operation else None}
    return envelope(
        event_id=event_id,
        type="identify",
        timestamp=epoch_iso(update.get("$time")),
        user_id=id_text(update.get("$distinct_id")),
        payload=payload,
        context={"ip": update["$ip"]} if isinstance(update.get("$ip"), str) else {},
    )


def _events(decoded: Decoded) -> list[Any]:
    value = decoded.value
    events = value if isinstance(value, list) else [value]
    if not events:
        raise ApiError(400, "empty_batch", "The request has no events.")
    return events


def _send(
    request: HttpRequest, target: Target, received_at: datetime, decoded: Decoded, events: list[Any], key: Any
) -> HttpResponse:
    result = deliver(
        request,
        target,
        key=key if isinstance(key, str) and key else None,
        events=events,
        received_at=received_at,
        may_hold_nul=decoded.may_hold_nul,
    )
    refused = all_rejected(result)
    if refused is not None:
        raise refused
    return _answer(request, 200, None)


def _decoded(request: HttpRequest) -> Decoded:
    request.ef_mixpanel_params = dict(request.GET.items())  # type: ignore[attr-defined]
    decoded = decode_body(request)
    request.ef_mixpanel_params = decoded.params  # type: ignore[attr-defined]
    return decoded


def engage(request: HttpRequest, target: Target, received_at: datetime) -> HttpResponse:
    decoded = _decoded(request)
    updates = _events(decoded)
    first = updates[0] if isinstance(updates[0], dict) else {}
    return _send(
        request, target, received_at, decoded, [engage_envelope(update) for update in updates], first.get("$token")
    )


class TrackAnswers:
    """``/track`` is PostHog's and Mixpanel's: errors answer in the shape of the body's format, once it is known."""

    def error(self, request: HttpRequest, exc: ApiError) -> HttpResponse:
        if getattr(request, "ef_format", "") == "posthog":
            return posthog_answers.error(request, exc)
        return mixpanel_answers.error(request, exc)


def shared_track(request: HttpRequest, target: Target, received_at: datetime) -> HttpResponse:
    """``/track``: PostHog's when the body has a field only PostHog sends (``api_key``, ``uuid``, …), else Mixpanel's."""
    decoded = _decoded(request)
    if is_posthog(decoded.value):
        request.ef_format = "posthog"  # type: ignore[attr-defined]
        return capture_decoded(request, target, received_at, decoded)
    events = _events(decoded)
    first = events[0] if isinstance(events[0], dict) else {}
    key = as_dict(first.get("properties")).get("token")
    return _send(request, target, received_at, decoded, [event_envelope(event) for event in events], key)


mixpanel_answers = MixpanelAnswers()
track_view = compat_view(shared_track, TrackAnswers(), methods=("GET", "POST"))
engage_view = compat_view(engage, mixpanel_answers, methods=("GET", "POST"))
