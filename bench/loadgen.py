"""A lean HTTP/1.1 keep-alive load generator.

Requests are prepared bytes and responses are read with a minimal parser, so
the client spends a few tens of microseconds of CPU per request and leaves the
machine's cores to the server it measures. ``capacity()`` measures the client
alone against a responder that answers without doing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int = 0
    elapsed: float = 0.0
    client_cpu: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _head(host: str, port: int, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: keep-alive"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\nContent-Length: ").encode()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        parts.append(await reader.readexactly(size + 2))
        if size == 0:
            return b"".join(part[:-2] for part in parts)


async def _connection(
    host: str,
    port: int,
    head: bytes,
    bodies: Iterator[bytes],
    deadline: float,
    result: LoadResult,
    keep_bodies: bool,
) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    latencies = result.latencies
    statuses = result.statuses
    clock = time.perf_counter
    try:
        for body in bodies:
            if clock() >= deadline:
                break
            started = clock()
            writer.write(b"%s%d\r\n\r\n%s" % (head, len(body), body))
            header = await reader.readuntil(b"\r\n\r\n")
            status = int(header[9:12])
            length = 0
            lowered = header.lower()
            at = lowered.find(b"\r\ncontent-length:")
            if at >= 0:
                end = lowered.index(b"\r\n", at + 2)
                length = int(lowered[at + 17 : end])
            if at < 0 and b"\r\ntransfer-encoding: chunked" in lowered:
                payload = await _read_chunked(reader)
            else:
                payload = await reader.readexactly(length) if length else b""
            latencies.append(clock() - started)
            statuses[status] += 1
            if keep_bodies or status >= 300:
                result.bodies.append(payload)
            if b"\r\nconnection: close" in lowered:
                break
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def run_load(
    *,
    host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    bodies: Iterator[bytes],
    concurrency: int,
    duration: float = 3600.0,
    keep_bodies: bool = False,
) -> LoadResult:
    """POST the bodies over ``concurrency`` keep-alive connections until they run out or time is up."""
    result = LoadResult()
    head = _head(host, port, path, headers)

    async def main() -> None:
        deadline = time.perf_counter() + duration
        await asyncio.gather(
            *(_connection(host, port, head, bodies, deadline, result, keep_bodies) for _ in range(concurrency))
        )

    cpu = time.process_time()
    started = time.perf_counter()
    asyncio.run(main())
    result.elapsed = time.perf_counter() - started
    result.client_cpu = time.process_time() - cpu
    result.requests = len(result.latencies)
    return result


# --- client capacity --------------------------------------------------------------------

_CANNED = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 47\r\n\r\n" + (
    b'{"event_id":"00000000-0000-0000","status":"ok"}'
)


def _responder(port: int, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while True:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                at = self.buffer.lower().find(b"content-length: ", 0, end)
                length = int(self.buffer[at + 16 : self.buffer.index(b"\r\n", at)]) if at >= 0 else 0
                if len(self.buffer) < end + 4 + length:
                    return
                self.buffer = self.buffer[end + 4 + length :]
                self.transport.write(_CANNED)  # type: ignore[attr-defined]

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def capacity(
    *, port: int, bodies: Callable[[], Iterator[bytes]], concurrency: int, duration: float = 2.0
) -> LoadResult:
    """The client's own ceiling: requests/s against a responder that does no work."""
    ready = multiprocessing.Event()
    process = multiprocessing.Process(target=_responder, args=(port, ready), daemon=True)
    process.start()
    try:
        ready.wait(10)
        return run_load(
            host="127.0.0.1",
            port=port,
            path="/",
            headers={"Content-Type": "application/json"},
            bodies=bodies(),
            concurrency=concurrency,
            duration=duration,
        )
    finally:
        process.terminate()
        process.join(5)
