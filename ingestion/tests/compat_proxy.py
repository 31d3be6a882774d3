"""A small HTTP proxy in front of the live server that loses answers: the SDKs' retries, for real.

Each request is forwarded and committed by EventFlow; for the first
``failures`` of them the proxy then answers 503 instead of the real answer,
as a load balancer does when the backend's answer is lost. An SDK that
retries sends the same messages again, and the intake must take them as
duplicates.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

HOP_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding", "keep-alive"})


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0


@dataclass
class ProxyState:
    upstream: str
    failures: int = 0
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self) -> None:
        state = self.server.state
        body = self._body()
        headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_HEADERS}
        seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        upstream = httpx.request(self.command, state.upstream + self.path, headers=headers, content=body, timeout=30)
        with state.lock:
            state.seen.append(seen)
            lose = state.failures > 0
            if lose:
                state.failures -= 1
        if lose:
            status, content, content_type = (
                503,
                b'{"code": "lost", "message": "lost", "detail": "lost"}',
                "application/json",
            )
        else:
            status, content = upstream.status_code, upstream.content
            content_type = upstream.headers.get("content-type", "text/plain")
        seen.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = do_OPTIONS = _forward


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ProxyState


class LosingProxy:
    def __init__(self, upstream: str, *, failures: int = 0) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.state = ProxyState(upstream=upstream.rstrip("/"), failures=failures)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def seen(self) -> list[Seen]:
        return list(self.server.state.seen)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
