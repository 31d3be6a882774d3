"""PostHog's capture API: ``/batch/``, ``/capture/``, ``/e/``, ``/i/v0/e/`` and ``/track/`` (shared with Mixpanel).

The key: the body's ``api_key`` or ``token``, or an event's ``properties.token``.
Bodies come as JSON, gzip (``Content-Encoding``, ``?compression=gzip-js`` or
just the magic bytes), base64, form fields with the events in ``data=``, or
lz-string (``compression=lz64``); ``body.decode_body`` reads them all. Success
is 200 with ``{"status": 1}``. PostHog's SDKs retry 408, 429 and 5xx and give
up on any other 4xx, so a bad key (401) or a bad body (400) is not sent again;
errors carry ``detail``, which the Python SDK reads for its exception.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse

from eventflow.errors import ApiError, error_body, json_response

from .body import Decoded, decode_body
from .intake import Refused, Target, all_rejected, compat_view, deliver
from .mapping import as_dict, envelope, id_text, minus_ms, native_type

# Properties that say who sent the event or where the key is, moved out of the payload.
MOVED_PROPERTIES = frozenset(
    {"token", "distinct_id", "$set", "$set_once", "$lib", "$lib_version", "$session_id"}
    | {"$current_url", "$referrer", "$title", "$ip", "$raw_user_agent", "$device_id"}
)
# Top-level fields that only PostHog's bodies have: they tell its /track/ from Mixpanel's.
POSTHOG_FIELDS = frozenset(
    {"api_key", "token", "batch", "uuid", "distinct_id", "$distinct_id", "timestamp", "offset", "sent_at", "sentAt"}
)


class PostHogAnswers:
    def error(self, request: HttpRequest, exc: ApiError) -> HttpResponse:
        body = {"status": 0, "type": "validation_error", "code": exc.code, "detail": exc.message}
        body.update(error_body(exc.code, exc.message))
        return json_response(body, exc.status_code, exc.headers)


def is_posthog(value: Any) -> bool:
    """Whether a decoded ``/track/`` body is PostHog's (else it is Mixpanel's)."""
    first = value[0] if isinstance(value, list) and value else value
    return isinstance(first, dict) and bool(first.keys() & POSTHOG_FIELDS)


def event_envelope(event: Any, *, sent_at: Any, received_at: datetime) -> Any:
    if not isinstance(event, dict):
        return event
    properties = as_dict(event.get("properties"))
    distinct_id = event.get("distinct_id", event.get("$distinct_id", properties.get("distinct_id")))
    if distinct_id is None or distinct_id == "":
        # As PostHog: an event belongs to someone.
        return Refused("distinct_id", "Every event needs a distinct_id.", event.get("uuid"))
    payload = {name: value for name, value in properties.items() if name not in MOVED_PROPERTIES}
    traits = event.get("$set", properties.get("$set"))
    if isinstance(traits, dict):
        payload["traits"] = traits
    traits_once = event.get("$set_once", properties.get("$set_once"))
    if isinstance(traits_once, dict):
        payload["traits_once"] = traits_once
    context: dict[str, Any] = {}
    if "$lib" in properties:
        context["library"] = {"name": properties["$lib"], "version": properties.get("$lib_version")}
    page = {
        name: properties[source]
        for name, source in (("url", "$current_url"), ("referrer", "$referrer"), ("title", "$title"))
        if isinstance(properties.get(source), str)
    }
    if page:
        context["page"] = page
    if isinstance(properties.get("$ip"), str):
        context["ip"] = properties["$ip"]
    if isinstance(properties.get("$raw_user_agent"), str):
        context["user_agent"] = properties["$raw_user_agent"]
    timestamp = event.get("timestamp")
    offset = event.get("offset")
    if offset is not None:
        # PostHog: the event happened ``offset`` ms before the request was sent, by the sender's clock.
        timestamp = minus_ms(sent_at if sent_at is not None else received_at, offset) or timestamp
    event_type = event.get("event")
    if event_type == "$set":
        event_type = "identify"
    elif event_type == "$groupidentify":
        # As Segment's group call: the group's id and its traits (PostHog's group type beside them).
        group_id = id_text(payload.pop("$group_key", None))
        group_type = payload.pop("$group_type", None)
        traits = as_dict(payload.pop("$group_set", None))
        payload = {**payload, "group_id": group_id, "group_type": group_type, "traits": traits}
    session = properties.get("$session_id")
    return envelope(
        event_id=id_text(event.get("uuid")),
        type=native_type(event_type),
        timestamp=timestamp,
        user_id=id_text(distinct_id),
        anonymous_id=id_text(properties.get("$device_id")),
        session_id=id_text(session) if session is not None else None,
        payload=payload,
        context=context,
    )


def _key(body: Any, events: list[Any]) -> str | None:
    candidates: list[Any] = []
    if isinstance(body, dict):
        candidates += [body.get("api_key"), body.get("token")]
    for event in events[:1]:
        if isinstance(event, dict):
            candidates += [
                event.get("api_key"),
                event.get("token"),
                as_dict(event.get("properties")).get("token"),
            ]
    return next((value for value in candidates if isinstance(value, str) and value), None)


def capture_decoded(request: HttpRequest, target: Target, received_at: datetime, decoded: Decoded) -> HttpResponse:
    body = decoded.value
    if isinstance(body, list):
        events = body
    elif isinstance(body, dict) and isinstance(body.get("batch"), list):
        events = body["batch"]
    elif isinstance(body, dict) and "event" in body:
        events = [body]
    else:
        raise ApiError(400, "invalid_payload", 'Send an event, a list of events, or {"api_key", "batch": [...]}.')
    if not events:
        raise ApiError(400, "empty_batch", "The batch has no events.")
    sent_at = None
    if isinstance(body, dict):
        sent_at = body.get("sent_at", body.get("sentAt"))
    result = deliver(
        request,
        target,
        key=_key(body, events),
        events=[event_envelope(event, sent_at=sent_at, received_at=received_at) for event in events],
        received_at=received_at,
        sent_at=sent_at,
        may_hold_nul=decoded.may_hold_nul,
    )
    refused = all_rejected(result)
    if refused is not None:
        raise refused
    return json_response({"status": 1}, 200)


def capture(request: HttpRequest, target: Target, received_at: datetime) -> HttpResponse:
    return capture_decoded(request, target, received_at, decode_body(request))


answers = PostHogAnswers()
capture_view = compat_view(capture, answers)
