"""Outbound webhook HTTP: public http(s) addresses only, bounded in time and size, no redirects.

The host is resolved once and every address it resolves to must be public; the
connection is then made to one of those very addresses (never resolved again,
so DNS rebinding cannot swap in another), and the address actually connected
to is checked again before a byte is sent. Loopback is allowed only when
``EVENTFLOW_WEBHOOK_ALLOW_LOOPBACK`` is on (development and tests).

The total timeout bounds the whole POST, looking the host up and connecting
included, so a delivery ends within its lease; interim (1xx) answers are
skipped for the final one.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

from eventflow import conf

USER_AGENT = "EventFlow-Webhooks/1.0"
MAX_URL_LENGTH = 2000
ERROR_SNIPPET_BYTES = 500

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 prefixes whose addresses carry an IPv4 address that a gateway or the host may deliver to
# (NAT64, RFC 6052; IPv4-compatible, RFC 4291): that address decides. 6to4 has ``sixtofour``.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
# IPv4-translated (SIIT, RFC 2765/6145): a stateless translator delivers to the IPv4 address in the last 32 bits.
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
# Local-use NAT64 (RFC 8215): translated into the operator's own network.
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
# The request line goes out as ASCII: other characters are sent percent-encoded (UTF-8), as browsers do.
_URL_SAFE = "".join(chr(c) for c in range(33, 127))
# Interim (1xx) answers skipped before the final one; a receiver sending more is not answering.
MAX_INTERIM_ANSWERS = 20


class UnsafeUrl(ValueError):
    """The URL is not an http(s) URL of a public address."""


def loopback_allowed() -> bool:
    return bool(conf.get().webhook_allow_loopback)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _IPV4_COMPATIBLE or address in _IPV4_TRANSLATED:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_allowed(address: IPAddress, *, allow_loopback: bool) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and not address.is_loopback:
        # Site-local (fec0::/10) is private in all but name; Python counts it global.
        if address.is_site_local or address in _NAT64_LOCAL:
            return False
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            address = embedded
    if address.is_loopback:
        return allow_loopback
    # is_global excludes private, link-local (cloud metadata at 169.254.169.254),
    # shared (100.64/10), reserved, documentation and unspecified ranges.
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    addresses: list[tuple[int, tuple[Any, ...]]] = field(default_factory=list)


def url_parse(url: str) -> Target:
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl("The URL must be a string of at most 2000 characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"The URL is malformed: {exc}.") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("Only http and https URLs are allowed.")
    if not parts.hostname:
        raise UnsafeUrl("The URL has no host.")
    if port == 0:
        raise UnsafeUrl("Port 0 can't be connected to.")
    if parts.username or parts.password:
        raise UnsafeUrl("Credentials in the URL are not supported; authenticate with the signature.")
    if any(ord(ch) < 33 for ch in url):
        raise UnsafeUrl("The URL contains spaces or control characters.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    try:
        path = quote(path, safe=_URL_SAFE)
    except UnicodeEncodeError:
        raise UnsafeUrl("The URL is not valid text.") from None
    return Target(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path)


def _getaddrinfo(host: str, port: int, *, timeout: float | None) -> list[tuple[Any, ...]]:
    """The host's TCP addresses; TimeoutError once ``timeout`` seconds pass (None: however long it takes).

    A lookup takes no timeout and can't be interrupted, and the resolver's own (resolv.conf: 5 s a try, two
    tries, each name server in turn) can hold a worker for half a minute: it runs in a thread of its own,
    left to end by itself when it is given up on. A daemon, so a hung one never holds up the process's exit.
    """
    if timeout is None:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    answer: Future[list[tuple[Any, ...]]] = Future()

    def lookup() -> None:
        try:
            answer.set_result(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP))
        except Exception as exc:  # noqa: BLE001 - the waiting caller raises it
            answer.set_exception(exc)

    threading.Thread(target=lookup, name="webhook-resolve", daemon=True).start()
    try:
        return answer.result(timeout=timeout)
    except TimeoutError:
        raise TimeoutError(f"timed out resolving {host}") from None


def url_resolve(url: str, *, allow_loopback: bool, timeout: float | None = None) -> Target:
    """Parse and resolve; raise UnsafeUrl if any address is not allowed, OSError if it does not resolve
    (TimeoutError if it does not within ``timeout`` seconds)."""
    target = url_parse(url)
    try:
        infos = _getaddrinfo(target.host, target.port, timeout=timeout)
    except UnicodeError:
        raise UnsafeUrl("The host name is not valid.") from None
    addresses: list[tuple[int, tuple[Any, ...]]] = []
    for family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not address_allowed(address, allow_loopback=allow_loopback):
            raise UnsafeUrl(f"The host resolves to {address}, which webhooks may not reach.")
        addresses.append((family, sockaddr))
    if not addresses:
        raise OSError(f"{target.host} has no address")
    return Target(target.scheme, target.host, target.port, target.path, addresses)


@dataclass
class PostResult:
    ok: bool
    status_code: int | None = None
    latency_ms: int = 0
    error: str = ""
    retryable: bool = False
    retry_after: float | None = None
    # The URL or the address connected to was refused: nothing was sent.
    refused: bool = False

    def __post_init__(self) -> None:
        # The error quotes the receiver (its body, a header, a malformed status line), and is stored in
        # text columns: a NUL, which PostgreSQL refuses, would fail the write of the attempt and so the run.
        self.error = self.error.replace("\x00", "\ufffd")


class _RefusedPeer(OSError):
    pass


class _FinalResponse(http.client.HTTPResponse):
    """A response that skips interim (1xx) answers, as http.client does for 100 only.

    A receiver, or a proxy in front of it, may send 102 Processing or 103 Early
    Hints before its real answer; taking one for the answer would count a batch
    the receiver took as refused. 101 is final (and, unasked for, a failure).
    """

    def _read_status(self) -> tuple[str, int, str]:
        for _ in range(MAX_INTERIM_ANSWERS):
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not (100 < status < 200) or status == 101:
                return version, status, reason
            http.client.parse_headers(self.fp)  # type: ignore[arg-type]
        raise http.client.HTTPException(f"more than {MAX_INTERIM_ANSWERS} interim answers")


@dataclass
class _Clock:
    """One POST's time bound: its deadline, whether the watchdog fired, and the socket it connected."""

    deadline: float
    timed_out: threading.Event = field(default_factory=threading.Event)
    sockets: list[socket.socket] = field(default_factory=list)

    def abort(self) -> None:
        # Set before the sockets are read, while the connector adds its socket before it reads this:
        # whichever comes second sees the other, so a connect ending as the watchdog fires is cut too.
        self.timed_out.set()
        for sock in list(self.sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _connector(target: Target, *, allow_loopback: bool, connect_timeout: float, clock: _Clock) -> Any:
    def connect(_address: Any, timeout: Any = None, source_address: Any = None) -> socket.socket:
        last: OSError = OSError("no address to connect to")
        for family, sockaddr in target.addresses:
            # Connecting counts against the total timeout too (the watchdog can't cut a connect short):
            # a host with several unanswering addresses, or a long connect timeout, must not outlive it.
            remaining = clock.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out")
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(min(connect_timeout, remaining))
                sock.connect(sockaddr)
                sock.settimeout(connect_timeout)
                peer = ipaddress.ip_address(str(sock.getpeername()[0]).split("%", 1)[0])
                if not address_allowed(peer, allow_loopback=allow_loopback):
                    raise _RefusedPeer(f"connected to {peer}, which webhooks may not reach")
                clock.sockets.append(sock)
                if clock.timed_out.is_set():
                    raise TimeoutError("timed out")
                return sock
            except _RefusedPeer:
                sock.close()
                raise
            except OSError as exc:
                sock.close()
                last = exc
        raise last

    return connect


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    # isdigit() also takes "²", which float() refuses.
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def post_json(url: str, body: bytes, headers: dict[str, str], *, allow_loopback: bool | None = None) -> PostResult:
    """POST ``body`` to ``url`` once. Never raises for network trouble: the result says what happened."""
    allow = loopback_allowed() if allow_loopback is None else allow_loopback
    connect_timeout = conf.get().webhook_connect_timeout_seconds
    total_timeout = conf.get().webhook_total_timeout_seconds
    started = time.monotonic()
    # One deadline for looking the host up, connecting and the exchange: a slow resolver holds a worker no longer.
    clock = _Clock(deadline=started + total_timeout)

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = url_resolve(url, allow_loopback=allow, timeout=total_timeout)
    except UnsafeUrl as exc:
        return PostResult(ok=False, error=f"refused: {exc}", refused=True)
    except TimeoutError as exc:
        return PostResult(ok=False, latency_ms=elapsed_ms(), error=str(exc), retryable=True)
    except OSError as exc:
        return PostResult(ok=False, latency_ms=elapsed_ms(), error=f"could not resolve host: {exc}", retryable=True)

    conn: http.client.HTTPConnection
    if target.scheme == "https":
        conn = http.client.HTTPSConnection(
            target.host, target.port, timeout=connect_timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=connect_timeout)
    # http.client connects through this hook; ours goes to the vetted addresses only.
    conn._create_connection = _connector(  # type: ignore[attr-defined]
        target, allow_loopback=allow, connect_timeout=connect_timeout, clock=clock
    )
    conn.response_class = _FinalResponse
    timed_out = clock.timed_out
    watchdog = threading.Timer(max(0.0, clock.deadline - time.monotonic()), clock.abort)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request(
            "POST",
            target.path,
            body=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "Connection": "close",
                **headers,
            },
        )
        response = conn.getresponse()
        snippet = response.read(conf.get().webhook_max_response_bytes)
        status = response.status
    except _RefusedPeer as exc:
        return PostResult(ok=False, latency_ms=elapsed_ms(), error=f"refused: {exc}", refused=True)
    except (OSError, http.client.HTTPException) as exc:
        if timed_out.is_set() or isinstance(exc, TimeoutError):
            return PostResult(ok=False, latency_ms=elapsed_ms(), error="timed out", retryable=True)
        return PostResult(ok=False, latency_ms=elapsed_ms(), error=f"{type(exc).__name__}: {exc}", retryable=True)
    finally:
        watchdog.cancel()
        conn.close()
    latency = elapsed_ms()
    if 200 <= status < 300:
        return PostResult(ok=True, status_code=status, latency_ms=latency)
    text = snippet[:ERROR_SNIPPET_BYTES].decode("utf-8", "replace")
    error = f"HTTP {status}" + (f": {text}" if text.strip() else "")
    if status == 429 or status >= 500:
        return PostResult(
            ok=False,
            status_code=status,
            latency_ms=latency,
            error=error,
            retryable=True,
            retry_after=_retry_after(response.getheader("Retry-After")),
        )
    if 300 <= status < 400:
        error = f"HTTP {status} redirect to {response.getheader('Location', '?')} (redirects are not followed)"
    return PostResult(ok=False, status_code=status, latency_ms=latency, error=error)
