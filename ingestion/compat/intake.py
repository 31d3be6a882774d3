"""The door every compatible format passes: key, stream, rate limit, Origin, ``events_ingest``, answer.

A format's view reads its body into native envelopes and calls ``deliver``;
everything after that is the native intake's own code: ``streams.access`` with
``Action.SEND``, the key's quota from ``ingestion.api``, ``events_ingest``
(which commits before it returns). Errors, domain or HTTP, reach the format's
``Answers`` and are answered the way its SDKs understand.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from eventflow.audit import current_request
from eventflow.errors import ApiError, Conflict, DomainError, Invalid, NotAllowed, NotAuthenticated, http_error
from ingestion.api import _quota, _rate_limit, _with_rate_headers, batch_count_check
from ingestion.services import IngestResult, events_ingest
from streams.access import Action, Caller, key_caller, stream_access
from streams.auth import API_KEY_HEADER
from streams.models import ApiKeyKind, Stream
from streams.selectors import StreamInfo

logger = logging.getLogger(__name__)

CORS_ALLOW_HEADERS = "Content-Type, Content-Encoding, Authorization, X-API-Key"
CORS_MAX_AGE = "86400"


@dataclass(frozen=True)
class Target:
    """What the URL says: the stream (``/s/{slug}/…``) and a key (``…/k/{key}/…``), each optional."""

    slug: str | None = None
    url_key: str | None = None


class Answers(Protocol):
    """How a format answers: its success body and its errors."""

    def error(self, request: HttpRequest, exc: ApiError) -> HttpResponse: ...


# --- the stream a root path sends to ------------------------------------------------------------

# Slugs never change (streams.services.stream_update), so a stream's slug by id can be kept for the process.
_slugs: dict[int, str] = {}
_slugs_lock = threading.Lock()


def _slug_of(stream_id: int) -> str | None:
    slug = _slugs.get(stream_id)
    if slug is None:
        slug = Stream.objects.filter(pk=stream_id).values_list("slug", flat=True).first()
        if slug is not None:
            with _slugs_lock:
                _slugs[stream_id] = slug
    return slug


def _stream_slug(caller: Caller, target: Target) -> str:
    if target.slug is not None:
        return target.slug
    assert caller.key is not None
    granted = caller.key.stream_ids
    if len(granted) != 1:
        raise Invalid(
            "stream_required",
            f"This key is granted {len(granted)} streams: send to /s/{{stream slug}}/ followed by this path.",
            {"streams_granted": len(granted)},
        )
    slug = _slug_of(next(iter(granted)))
    if slug is None:
        raise Invalid("stream_required", "The key's stream no longer exists.")
    return slug


# --- Origin allow-lists --------------------------------------------------------------------------


def request_origin(request: HttpRequest) -> str | None:
    """The page's origin: the ``Origin`` header, else the origin of ``Referer`` (image beacons send no Origin)."""
    origin = request.META.get("HTTP_ORIGIN", "").strip()
    if origin and origin != "null":
        return origin.lower()
    referer = request.META.get("HTTP_REFERER", "").strip()
    if referer:
        parts = urlsplit(referer)
        if parts.scheme and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}".lower()
    return None


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    for entry in allowed:
        if entry == origin:
            return True
        # "https://*.example.com" takes every subdomain, not example.com itself.
        scheme, _, host = entry.partition("://")
        if host.startswith("*.") and origin.startswith(f"{scheme}://") and origin.endswith(host[1:]):
            return True
    return False


def _check_origin(request: HttpRequest, info: StreamInfo) -> None:
    if not info.allowed_origins:
        return
    origin = request_origin(request)
    # Servers send no Origin; the list keeps a key copied into another site's pages from working there.
    if origin is not None and not origin_allowed(origin, info.allowed_origins):
        raise NotAllowed("origin_not_allowed", f"The stream takes no events from pages of {origin}.")


# --- the door ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """A message the format's own rules refuse before the envelope check (no user id where one is required)."""

    field: str
    message: str
    event_id: Any = None
    code: str = "invalid_message"


def _with_refusals(result: IngestResult, events: list[Any]) -> IngestResult:
    """``result`` of the events that were sent, with the refused ones put back in their places."""
    merged = IngestResult(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=result.rejected,
        schema_rejections=result.schema_rejections,
    )
    sent = iter(result.results)
    for index, event in enumerate(events):
        if isinstance(event, Refused):
            merged.rejected += 1
            merged.results.append(
                {
                    "index": index,
                    "event_id": event.event_id if isinstance(event.event_id, str) else None,
                    "status": "rejected",
                    "errors": [{"field": event.field, "code": event.code, "message": event.message}],
                }
            )
        else:
            entry = next(sent)
            entry["index"] = index
            merged.results.append(entry)
    return merged


def _authenticate(request: HttpRequest, key: str | None, target: Target) -> Caller:
    if key is None and target.url_key is not None:
        key = target.url_key
        in_url = True
    else:
        in_url = False
    if not key:
        key = request.META.get(API_KEY_HEADER, "").strip() or None
    if not key:
        raise NotAuthenticated("missing_api_key", "Send an EventFlow ingest key where this SDK sends its key.")
    # The native intake's authentication reads the key from this header: the format's key is put there.
    request.META[API_KEY_HEADER] = key
    caller = key_caller(request, count=True)
    assert caller.key is not None
    if in_url and caller.key.kind != ApiKeyKind.INGEST:
        raise NotAllowed("secret_key_in_url", "Only ingest keys may be put in a URL; send a secret key in a header.")
    return caller


def deliver(
    request: HttpRequest,
    target: Target,
    *,
    key: str | None,
    events: list[Any] | Callable[[StreamInfo], list[Any]],
    received_at: datetime,
    sent_at: Any = None,
    may_hold_nul: bool = True,
) -> IngestResult:
    """Send envelopes through the native intake's checks and commit them; returns one result per event.

    ``events`` may hold ``Refused`` messages, which are answered as rejected and never sent.
    It may also be a function of the stream, called once the caller may send to it, for
    envelopes that depend on the stream (the tracker's visitor hash and IP anonymisation).

    ``key`` is where the format keeps its key (body, basic auth); without one,
    the key of the URL (``/k/{key}/``, ingest keys only) or ``X-API-Key``.

    A request holds at most the native batch's ``max_batch_events`` (else 413, nothing
    stored). A HEAD passes every check before the events' own and stores nothing: its
    result is empty, so the format answers it as it would a GET that was taken.
    """
    caller = _authenticate(request, key, target)
    quota = _quota(caller)
    counted = caller.key_uses is not None
    request.ef_quota = (quota, counted)  # type: ignore[attr-defined]
    info = stream_access(caller, _stream_slug(caller, target), Action.SEND)
    if info.archived:
        raise Conflict("stream_archived", "The stream is archived and takes no new events.")
    _rate_limit(quota, counted)
    _check_origin(request, info)
    assert caller.key is not None
    if request.method == "HEAD":
        # Link prefetchers and uptime checkers HEAD the GET paths: they get the GET's answer
        # to the key, the stream and the request's shape, but no event is checked or stored.
        batch_count_check(events if isinstance(events, list) else [])
        return IngestResult()
    if callable(events):
        events = events(info)
    batch_count_check(events)
    refused = any(isinstance(event, Refused) for event in events)
    result = events_ingest(
        stream=info,
        raw_events=[event for event in events if not isinstance(event, Refused)] if refused else events,
        received_at=received_at,
        sent_at=sent_at,
        may_hold_nul=may_hold_nul,
        api_key_id=caller.key.key_id,
    )
    return _with_refusals(result, events) if refused else result


def client_ip() -> str | None:
    """The client's address as the audit middleware saw it (trusted proxies honoured)."""
    context = current_request()
    return context.client_ip if context is not None else None


def all_rejected(result: IngestResult) -> ApiError | None:
    """The 4xx for a request none of whose events was taken (nothing was written); None otherwise."""
    if not result.results or result.rejected < len(result.results):
        return None
    status = 422 if result.schema_rejections == result.rejected else 400
    first: list[dict[str, Any]] = next((entry["errors"] for entry in result.results if entry.get("errors")), [])
    message = "Every event was rejected."
    if first:
        message += f" First: {first[0].get('field') or 'event'}: {first[0].get('message')}"
    return ApiError(status, "all_events_rejected", message, result.summary())


# --- the view ------------------------------------------------------------------------------------

Handler = Callable[[HttpRequest, Target, datetime], HttpResponse]


def _cors(request: HttpRequest, response: HttpResponse, methods: str) -> HttpResponse:
    origin = request.META.get("HTTP_ORIGIN")
    # Browser SDKs may send with credentials, which "*" does not allow: the origin is echoed instead.
    response["Access-Control-Allow-Origin"] = origin or "*"
    if origin:
        response["Access-Control-Allow-Credentials"] = "true"
        response["Vary"] = "Origin"
    response["Access-Control-Allow-Methods"] = methods
    response["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
    response["Access-Control-Max-Age"] = CORS_MAX_AGE
    response["Access-Control-Expose-Headers"] = "RateLimit-Policy, RateLimit, Retry-After"
    return response


def compat_view(handler: Handler, answers: Answers, *, methods: tuple[str, ...] = ("POST",)) -> Callable[..., Any]:
    """A plain Django view for one format's path: CORS, no CSRF, and every error answered by ``answers``."""
    allowed = ", ".join([*methods, "OPTIONS"])

    @csrf_exempt
    def view(request: HttpRequest, slug: str | None = None, url_key: str | None = None) -> HttpResponse:
        if request.method == "OPTIONS":
            response = _cors(request, HttpResponse(status=204), allowed)
            response["Allow"] = allowed
            return response
        received_at = timezone.now()
        try:
            if request.method not in methods and not (request.method == "HEAD" and "GET" in methods):
                raise ApiError(405, "method_not_allowed", f'Method "{request.method}" not allowed.')
            response = handler(request, Target(slug, url_key), received_at)
        except ApiError as exc:
            response = answers.error(request, exc)
        except DomainError as exc:
            response = answers.error(request, http_error(exc))
        if response.status_code == 405:
            response["Allow"] = allowed
        _with_rate_headers(request, response)
        return _cors(request, response, allowed)

    return view
