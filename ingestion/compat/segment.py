"""Segment's HTTP tracking API, which RudderStack's SDKs speak too.

Paths: ``/v1/batch`` and the single calls ``/v1/track``, ``/identify``,
``/page``, ``/screen``, ``/group``, ``/alias``. The key: HTTP Basic auth (the
key as user name, RudderStack) or the body's ``writeKey`` (Segment's Python
library). Success is 200 with ``{"success": true}``; the SDKs give up on a 4xx
other than 429 (a bad key, a bad body: sending it again would not help) and
retry 429 and 5xx with backoff, sending the same ``messageId`` again, which
the intake takes as a duplicate. Errors carry ``code`` and ``message`` at the
top level, where the SDKs read them for their logs.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse

from eventflow.errors import ApiError, error_body, json_response

from .body import read_json
from .intake import Refused, Target, all_rejected, compat_view, deliver
from .mapping import as_dict, envelope, id_text

# Segment's documented limit of a single call. A batch has only the installation's body limits: Segment's
# 500 KB would refuse RudderStack's SDKs, which send up to 4 MB a batch and give up on a 413 (events lost).
MAX_CALL_BYTES = 32 * 1024

CALL_TYPES = ("track", "identify", "page", "screen", "group", "alias")


class SegmentAnswers:
    def error(self, request: HttpRequest, exc: ApiError) -> HttpResponse:
        body = {"success": False, "code": exc.code, "message": exc.message, **error_body(exc.code, exc.message)}
        return json_response(body, exc.status_code, exc.headers)


def _basic_auth_user(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        # binascii.Error is a ValueError, as is the one for a header holding non-ASCII characters.
        raise ApiError(401, "invalid_authorization", "The Basic authorization header is not valid base64.") from None
    return decoded.partition(":")[0] or None


def message_envelope(message: Any, *, call_type: str | None = None, batch_context: Any = None) -> Any:
    """One Segment message as a native envelope; what can't be read is left for the envelope check to refuse."""
    if not isinstance(message, dict):
        return message
    kind = message.get("type", call_type)
    if message.get("userId") is None and message.get("anonymousId") is None:
        # As Segment: every call names someone.
        return Refused("userId", "Every call needs a userId or an anonymousId.", message.get("messageId"))
    context = {**as_dict(batch_context), **as_dict(message.get("context"))}
    if isinstance(message.get("integrations"), dict):
        context.setdefault("integrations", message["integrations"])
    properties = message.get("properties")
    payload: Any
    if kind == "track":
        event_type = message.get("event")
        payload = properties
    elif kind in ("page", "screen"):
        event_type = f"{kind}_view"
        payload = dict(as_dict(properties))
        for name in ("name", "category"):
            if message.get(name) is not None:
                payload.setdefault(name, message[name])
    elif kind == "identify":
        event_type, payload = "identify", {"traits": as_dict(message.get("traits"))}
    elif kind == "group":
        event_type = "group"
        payload = {"group_id": id_text(message.get("groupId")), "traits": as_dict(message.get("traits"))}
    elif kind == "alias":
        event_type, payload = "alias", {"previous_id": id_text(message.get("previousId"))}
    else:
        # Not a Segment call: no type, which the envelope check refuses.
        event_type, payload = None, properties
    session = context.get("sessionId")
    return envelope(
        event_id=id_text(message.get("messageId")),
        type=event_type,
        # RudderStack's originalTimestamp is the device's time, corrected by sentAt like any other.
        timestamp=message.get("originalTimestamp") or message.get("timestamp"),
        user_id=id_text(message.get("userId")),
        anonymous_id=id_text(message.get("anonymousId")),
        session_id=id_text(session) if session is not None else None,
        payload=payload,
        context=context,
    )


def _key(request: HttpRequest, body: Any) -> str | None:
    user = _basic_auth_user(request)
    if user:
        return user
    key = body.get("writeKey") if isinstance(body, dict) else None
    return key if isinstance(key, str) and key else None


def _answer(result: Any) -> HttpResponse:
    refused = all_rejected(result)
    if refused is not None:
        raise refused
    # Events rejected beside accepted ones are named in the answer; the SDKs read only the status.
    return json_response({"success": True, **result.summary()}, 200)


def segment_batch(request: HttpRequest, target: Target, received_at: datetime) -> HttpResponse:
    decoded = read_json(request)
    body = decoded.value
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        raise ApiError(400, "invalid_batch", 'A batch is an object: {"batch": [messages], "sentAt": optional}.')
    messages = body["batch"]
    if not messages:
        raise ApiError(400, "empty_batch", "The batch has no messages.")
    result = deliver(
        request,
        target,
        key=_key(request, body),
        events=[message_envelope(message, batch_context=body.get("context")) for message in messages],
        received_at=received_at,
        sent_at=body.get("sentAt"),
        may_hold_nul=decoded.may_hold_nul,
    )
    return _answer(result)


def segment_call(call_type: str) -> Any:
    def handler(request: HttpRequest, target: Target, received_at: datetime) -> HttpResponse:
        decoded = read_json(request, max_body=MAX_CALL_BYTES)
        body = decoded.value
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_message", f"A {call_type} call is a JSON object.")
        result = deliver(
            request,
            target,
            key=_key(request, body),
            events=[message_envelope({**body, "type": call_type})],
            received_at=received_at,
            sent_at=body.get("sentAt"),
            may_hold_nul=decoded.may_hold_nul,
        )
        return _answer(result)

    return handler


answers = SegmentAnswers()
batch_view = compat_view(segment_batch, answers)
call_views = {call_type: compat_view(segment_call(call_type), answers) for call_type in CALL_TYPES}
