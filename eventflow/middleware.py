"""Every API request and page action into the audit log, with a request id on every answer.

Recorded: every request under /api/, and every page request that is not a
GET/HEAD/OPTIONS (a page *action*); never /health, /static/ or /metrics. The row
goes into this process's buffer (eventflow/audit.py), written in bulk by a
background thread, so the request itself does no audit I/O at all.
"""

from __future__ import annotations

import ipaddress
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from django.http import HttpRequest, HttpResponse
from django.utils.functional import empty

from eventflow import conf
from streams.selectors import stream_info

from .audit import RequestContext, audit_request_record, request_context_reset, request_context_set, request_row
from .logs import keys_masked

REQUEST_ID_HEADER = "X-Request-ID"
# A trusted proxy's id (EVENTFLOW_TRUSTED_PROXIES) is kept when it looks like one (a UUID, a trace id);
# anything else, and any id sent by anyone else, is replaced.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
SKIPPED_PREFIXES = ("/health", "/static/", "/metrics")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def _trusted(networks: tuple[IpNetwork, ...], ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return any(address in network for network in networks)


def client_ip(request: HttpRequest, trusted: tuple[IpNetwork, ...]) -> str | None:
    """The client's address: the peer, or, behind a trusted proxy, the last untrusted hop it forwarded."""
    peer = _ip(request.META.get("REMOTE_ADDR", ""))
    if peer is None or not trusted or not _trusted(trusted, peer):
        return peer
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    # Read from the right: each trusted proxy appended the address it saw; the
    # first address not of a trusted proxy is the client (anything left of it
    # the client could have written itself).
    for hop in reversed(forwarded.split(",")):
        ip = _ip(hop)
        if ip is None:
            break
        if not _trusted(trusted, ip):
            return ip
    return peer


def _user_if_loaded(request: HttpRequest) -> object | None:
    # request.user is lazy; reading it here would cost a session lookup on
    # requests (the intake) that never needed it.
    user = request.__dict__.get("user")
    if user is None:
        return None
    wrapped = getattr(user, "_wrapped", user)
    if wrapped is empty or not getattr(wrapped, "is_authenticated", False):
        return None
    return wrapped


class AuditMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.trusted: tuple[IpNetwork, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in conf.get().trusted_proxies
        )

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path.startswith(SKIPPED_PREFIXES):
            return self.get_response(request)
        started = time.perf_counter()
        at = datetime.now(UTC)
        request_id = self._request_id(request)
        request.request_id = request_id  # type: ignore[attr-defined]
        ip = client_ip(request, self.trusted)
        method = request.method or ""
        # Security events take the path from here: a key in it (``/k/{key}/…``) is cut to its prefix.
        token = request_context_set(RequestContext(request_id, ip, method, keys_masked(path), request))
        try:
            response = self.get_response(request)
        finally:
            request_context_reset(token)
        response[REQUEST_ID_HEADER] = request_id
        if method in READ_METHODS and not path.startswith("/api/"):
            return response
        self._record(request, response, at=at, started=started, request_id=request_id, ip=ip, method=method, path=path)
        return response

    def _request_id(self, request: HttpRequest) -> str:
        # Only a trusted proxy's id is kept (it ties our lines to the proxy's); anyone else could
        # otherwise plant ids that collide with or mimic other requests' in the logs and audit log.
        given = request.META.get("HTTP_X_REQUEST_ID", "")
        if given and SANE_REQUEST_ID.fullmatch(given):
            peer = _ip(request.META.get("REMOTE_ADDR", ""))
            if peer is not None and self.trusted and _trusted(self.trusted, peer):
                return given
        return uuid.uuid4().hex

    def _record(
        self,
        request: HttpRequest,
        response: HttpResponse,
        *,
        at: datetime,
        started: float,
        request_id: str,
        ip: str | None,
        method: str,
        path: str,
    ) -> None:
        caller = getattr(request, "ef_caller", None)
        label, key_prefix, user = "", "", None
        if caller is not None:
            label = caller.label
            user = caller.user
            if caller.key is not None:
                key_prefix = caller.key.prefix
        else:
            user = _user_if_loaded(request)
            if user is not None:
                label = str(user.get_username())  # type: ignore[attr-defined]
        stream_id = None
        match = request.resolver_match
        # Only for a known caller: the stream check has already put the slug in
        # the process's cache, and nobody can make the log look up made-up slugs.
        if match is not None and "slug" in match.kwargs and caller is not None and caller.is_authenticated:
            info = stream_info(str(match.kwargs["slug"]))
            stream_id = info.id if info is not None else None
        audit_request_record(
            request_row(
                at=at,
                request_id=request_id,
                method=method,
                path=keys_masked(path),
                status=response.status_code,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                caller=label,
                user_id=getattr(user, "pk", None),
                key_prefix=key_prefix,
                stream_id=stream_id,
                client_ip=ip,
            )
        )
