"""Real EventFlow processes for tests that inject faults.

The web app (gunicorn), Celery workers and Celery beat run as child processes
against the test database and a throw-away redis-server of their own, so a
test may stop, freeze, flush or restart that Redis and kill any process. Each
child runs in a session of its own: a signal reaches its whole process group
(a worker and its pool processes), and a child dies with the test process even
when that is killed before its finalizers run.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import quote

import httpx
import psutil
import redis
from django.conf import settings
from django.db import connection

from eventflow.devservices import BASE_DIR, RedisProcess, free_port

T = TypeVar("T")

READY_SECONDS = 30.0
LOG_TAIL_CHARS = 6000


def wait_until(predicate: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def current_database_url() -> str:
    """A DATABASE_URL for the database this process is connected to (pytest-django's ``test_<name>``)."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"], safe="")
    # The host may be a socket directory (the embedded server): quoted, as dj-database-url expects.
    host = quote(db["HOST"] or "", safe="")
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{auth}@{host}{port}/{quote(db['NAME'], safe='')}"


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Child:
    """One child process and its process group, writing its output to a log file."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")
        self.popen = subprocess.Popen(
            argv,
            env=env,
            cwd=BASE_DIR,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.ready: Callable[[], bool] = lambda: True

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pool_processes(self) -> list[int]:
        """The pids of the process's children (a Celery worker's pool processes)."""
        try:
            return [child.pid for child in psutil.Process(self.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def signal_group(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash or the OOM killer would."""
        self.signal_group(signal.SIGKILL)
        self.popen.wait()

    def stop(self) -> None:
        # At the end of a test nothing needs a graceful shutdown, and a kill is quick.
        # It takes the whole group: pool processes left behind by a killed parent too.
        self.kill()
        self._log.close()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while not self.ready():
            if not self.alive():
                raise AssertionError(
                    f"{self.name} exited with {self.popen.returncode}:\n{self.log()[-LOG_TAIL_CHARS:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} not ready after {READY_SECONDS:.0f}s:\n{self.log()[-LOG_TAIL_CHARS:]}"
                )
            time.sleep(0.05)


class Stack:
    """EventFlow's processes sharing one environment: the test database and a throw-away Redis.

    ``env`` is added to every child's environment (settings such as
    EVENTFLOW_MAX_ATTEMPTS); a child may add its own on top.
    """

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.extra_env = dict(env or {})
        self.children: list[Child] = []
        self.redis_server = RedisProcess(workdir / "redis")
        self.redis_server.start()
        self.redis = redis.Redis.from_url(self.redis_server.url, socket_timeout=2, socket_connect_timeout=2)
        self.web_url = ""

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="eventflow.settings",
            DATABASE_URL=current_database_url(),
            REDIS_URL=self.redis_server.url,
            CELERY_BROKER_URL=self.redis_server.url,
            DEBUG="0",
            LOG_LEVEL="INFO",
            # A line per task received and per beat send: what a failing test's log needs.
            CELERY_LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
            EVENTFLOW_SWEEP_SECONDS="0.5",
            # Redis keys named alike in the test process and its children.
            CACHE_KEY_PREFIX=settings.REDIS_KEY_PREFIX,
        )
        env.update(self.extra_env)
        env.update(extra or {})
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None) -> Child:
        index = sum(1 for child in self.children if child.name.startswith(name))
        label = f"{name}-{index}"
        child = Child(label, argv, env=self.env(env), log_path=self.workdir / f"{label}.log")
        self.children.append(child)
        return child

    def web(self, *, workers: int = 2, threads: int = 4, env: dict[str, str] | None = None) -> Child:
        port = free_port()
        child = self._spawn(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "eventflow.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--worker-class",
                "gthread",
                "--threads",
                str(threads),
                "--log-level",
                "warning",
                "--no-control-socket",
            ],
            env,
        )
        self.web_url = f"http://127.0.0.1:{port}"
        url = f"{self.web_url}/health"

        def answers() -> bool:
            try:
                httpx.get(url, timeout=1, trust_env=False)
            except httpx.HTTPError:
                return False
            return True

        child.ready = answers
        return child

    def worker(self, *, concurrency: int = 1, env: dict[str, str] | None = None) -> Child:
        index = sum(1 for child in self.children if child.name.startswith("worker"))
        child = self._spawn(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "eventflow",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(concurrency),
                "--pool",
                "prefork",
                "--hostname",
                f"faults{index}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env,
        )
        child.ready = lambda: " ready." in child.log()
        return child

    def beat(self, *, env: dict[str, str] | None = None) -> Child:
        schedule = self.workdir / f"beat-schedule-{len(self.children)}"
        child = self._spawn(
            "beat",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "eventflow",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(schedule),
            ],
            env,
        )
        # Beat's own log lines are not printed under the project's logging setup; it
        # opens its schedule file when the scheduler starts.
        child.ready = lambda: any(self.workdir.glob(f"{schedule.name}*"))
        return child

    def wait_ready(self) -> None:
        for child in self.children:
            child.wait_ready()

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.web_url, timeout=30, trust_env=False, **kwargs)

    # --- faults on the throw-away Redis -------------------------------------------------

    def redis_stop(self) -> None:
        self.redis_server.stop()

    def redis_start(self) -> None:
        """Start Redis again, empty, on the same port."""
        self.redis_server.start()

    def redis_freeze(self) -> None:
        """SIGSTOP the server: connections are accepted by the kernel but never answered."""
        assert self.redis_server.process is not None
        os.kill(self.redis_server.process.pid, signal.SIGSTOP)

    def redis_thaw(self) -> None:
        assert self.redis_server.process is not None
        os.kill(self.redis_server.process.pid, signal.SIGCONT)

    # --- the end ---------------------------------------------------------------------------

    def log_tails(self) -> str:
        parts = []
        for child in self.children:
            try:
                text = child.log()
            except OSError:
                continue
            parts.append(f"----- {child.name} (pid {child.pid}) -----\n{text[-LOG_TAIL_CHARS:]}")
        return "\n".join(parts)

    def close(self) -> None:
        # ExitStack runs every callback even when one fails (last pushed, first run).
        with ExitStack() as cleanup:
            cleanup.callback(self.redis_server.stop)
            if self.redis_server.process is not None:
                cleanup.callback(self.redis_thaw)
            cleanup.callback(self.redis.close)
            for child in self.children:
                cleanup.callback(child.stop)
