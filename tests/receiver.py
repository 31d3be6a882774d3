"""A real HTTP receiver for webhook tests: http.server in a thread, answering from a script."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def offsets(self) -> list[int]:
        return [event["offset"] for event in self.json["events"]]


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0


# Decides each answer from the request's index and body.
Script = Callable[[int, bytes], Answer]


class Receiver:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    index = len(receiver.requests)
                    answer = receiver.script(index, body)
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body, answer.status))
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    @property
    def delivered(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300]


@contextmanager
def receiver(script: Script | None = None) -> Iterator[Receiver]:
    instance = Receiver(script or (lambda index, body: Answer()))
    thread = threading.Thread(target=instance.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield instance
    finally:
        instance.server.shutdown()
        instance.server.server_close()
