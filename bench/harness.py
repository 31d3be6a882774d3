"""Shared pieces of the benchmarks: their own database and Redis, servers, CPU accounting, the report.

Benchmarks never touch the application's data: they use their own PostgreSQL
database on the same server and a Redis database index that was empty when
they started, and they remove the Redis keys they made.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

BENCHMARKS_MD = BASE_DIR / "docs" / "BENCHMARKS.md"


# --- data stores --------------------------------------------------------------------------


def database_url(name: str) -> str:
    """DATABASE_URL with its database name replaced by ``name``."""
    parts = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/eventflow"))
    return urlunsplit(parts._replace(path=f"/{name}"))


def _conninfo(url: str) -> str:
    # psycopg reads URLs, but not a socket directory given as an encoded host.
    import dj_database_url

    cfg = dj_database_url.parse(url)
    fields = {"dbname": cfg["NAME"], "user": cfg.get("USER"), "password": cfg.get("PASSWORD")}
    fields.update(host=cfg.get("HOST"), port=cfg.get("PORT"))
    return " ".join(f"{key}='{value}'" for key, value in fields.items() if value)


def connect(url: str, **kwargs: object):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(_conninfo(url), **kwargs)


def ensure_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with connect(database_url("postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--noinput", "-v", "0"],
        env=env,
        cwd=BASE_DIR,
        check=True,
    )


def django_setup(slot: RedisSlot, database: str, **extra: str) -> tuple[dict[str, str], str]:
    """Create and migrate the benchmark's own database, and set Django up in this process.

    Returns the environment the benchmark's servers run with (a deployment's:
    no DEBUG) and the database URL.
    """
    db_url = database_url(database)
    ensure_database(db_url)
    env = dict(
        os.environ,
        DATABASE_URL=db_url,
        REDIS_URL=slot.url,
        CELERY_BROKER_URL=slot.url,
        CACHE_KEY_PREFIX=slot.prefix,
        DJANGO_SETTINGS_MODULE="eventflow.settings",
        # A deployment runs without DEBUG (which keeps a log of every query).
        DEBUG="0",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    migrate(env)
    os.environ.update(env)
    import django

    django.setup()
    # As a serving process does once loaded (eventflow/wsgi.py): the benchmarks that call views
    # through Django's test client measure what a server's requests cost.
    from eventflow.readiness import loaded_objects_freeze

    loaded_objects_freeze()
    return env, db_url


@dataclass
class RedisSlot:
    """A Redis database index that held no keys when the benchmark started."""

    url: str
    prefix: str = field(default_factory=lambda: f"efbench-{secrets.token_hex(4)}")

    @classmethod
    def claim(cls) -> RedisSlot:
        import redis

        base = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        for index in range(15, 0, -1):
            url = urlunsplit(base._replace(path=f"/{index}"))
            client = redis.Redis.from_url(url)
            if client.dbsize() == 0:
                slot = cls(url)
                # Mark the index taken so that a benchmark started next to this one picks another.
                client.set(f"{slot.prefix}:claimed", 1, ex=3600)
                return slot
        raise RuntimeError("no empty Redis database index for the benchmark")

    def cleanup(self) -> None:
        """Remove what the benchmark's servers wrote: cache keys, kick markers, queued tasks."""
        import redis

        client = redis.Redis.from_url(self.url)
        for pattern in (f"{self.prefix}:*", "_kombu.*", "celery", "unacked*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)


# --- servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(command: list[str], *, env: dict[str, str], port: int, log: Path) -> Iterator[psutil.Process]:
    """Run a server until the block ends; yields its master process once it accepts connections."""
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command, env=env, cwd=BASE_DIR, stdout=subprocess.DEVNULL, stderr=log_file, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited with {process.returncode}; see {log}")
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start; see {log}")
                time.sleep(0.1)
            yield psutil.Process(process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- CPU accounting -----------------------------------------------------------------------------


def _cpu(process: psutil.Process) -> float:
    with contextlib.suppress(psutil.Error):
        times = process.cpu_times()
        return float(times.user + times.system)
    return 0.0


def _postgres(database: str) -> list[psutil.Process]:
    """The backends serving ``database`` and the server's own helpers (WAL writer, checkpointer, …).

    Backends of other databases are left out: they belong to other work on the machine.
    """
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if not (process.info["name"] or "").startswith("postgres"):
            continue
        # A backend's title is "postgres: [<cluster>:] <user> <database> <host(port)|[local]> <state>".
        parts = " ".join(process.info["cmdline"] or []).split()
        client = next((i for i, part in enumerate(parts) if part == "[local]" or part.endswith(")")), None)
        if client is None or parts[client - 1] == database:
            found.append(process)
    return found


def _named(prefix: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith(prefix)]


class CpuMeter:
    """CPU seconds spent by client, server, PostgreSQL and Redis over a phase.

    Counted per process, so that a process which exits during the phase (other
    work on the machine) does not subtract its CPU from a group. The groups are
    sampled every ``SAMPLE_SECONDS`` too, so that a process of the group that
    exits before the phase ends (a database connection that a worker closes
    after a task, a drain's read-ahead connection) still counts what it used.
    """

    SAMPLE_SECONDS = 0.5

    def __init__(self, database: str, server: psutil.Process | None = None) -> None:
        self.database = database
        self.server = server
        self._seen: dict[str, dict[int, float]] = {}
        self._stopping = threading.Event()
        self._sampler = threading.Thread(target=self._keep_sampling, daemon=True)

    def _remember(self, sample: dict[str, dict[int, float]]) -> None:
        for name, pids in sample.items():
            self._seen.setdefault(name, {}).update(pids)

    def _keep_sampling(self) -> None:
        while not self._stopping.wait(self.SAMPLE_SECONDS):
            self._remember(self._sample())

    def _sample(self) -> dict[str, dict[int, float]]:
        me = psutil.Process()
        groups: dict[str, list[psutil.Process]] = {"client": [me]}
        if self.server is not None:
            groups["server"] = [self.server, *self.server.children(recursive=True)]
        groups["postgres"] = _postgres(self.database)
        groups["redis"] = _named("redis-server")
        return {name: {p.pid: _cpu(p) for p in procs} for name, procs in groups.items()}

    @staticmethod
    def _machine() -> float:
        times = psutil.cpu_times()
        return float(times.user + times.nice + times.system + times.irq + times.softirq)

    def __enter__(self) -> CpuMeter:
        self.wall = time.perf_counter()
        self.start, self.start_machine = self._sample(), self._machine()
        self._remember(self.start)
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._sampler.join()
        self._remember(self._sample())
        end, end_machine = self._seen, self._machine()
        self.wall = time.perf_counter() - self.wall
        self.used = {
            name: sum(cpu - self.start.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items())
            for name, pids in end.items()
        }
        self.used["machine"] = end_machine - self.start_machine
        self.used["other"] = self.used["machine"] - sum(v for k, v in self.used.items() if k != "machine")

    def shares(self) -> str:
        """Each party's CPU in cores, e.g. 'server 1.21, postgres 0.52, …'."""
        order = ["server", "postgres", "redis", "client", "other"]
        return ", ".join(f"{name} {self.used[name] / self.wall:.2f}" for name in order if name in self.used)


# --- machine and report -------------------------------------------------------------------------------


def machine(db_url: str) -> dict[str, str]:
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with connect(db_url) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("synchronous_commit", "shared_buffers", "wal_level")
        }
    import django
    import gunicorn
    import psycopg

    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "postgresql": f"{pg} (" + ", ".join(f"{k}={v}" for k, v in settings.items()) + ")",
        "python": platform.python_version(),
        "django": django.get_version(),
        "gunicorn": gunicorn.__version__,
        "psycopg": psycopg.__version__,
    }


def write_section(name: str, title: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->``, keeping the rest."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n## {title}\n\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nMeasured by the scripts in `bench/`.\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def log_beside_rows(conn: Any, stream_id: int) -> None:
    """For a log loaded by COPY, what the processor writes beside it (streams/log.py): each event's key
    (the idempotency table, through which an event is found by its id) and each day's first offset."""
    conn.execute(
        'INSERT INTO streams_log_key (stream_id, event_id, "offset", logged_at)'
        ' SELECT stream_id, event_id, "offset", logged_at FROM streams_log WHERE stream_id = %s ON CONFLICT DO NOTHING',
        [stream_id],
    )
    conn.execute(
        "INSERT INTO streams_log_segment (stream_id, day, first_offset)"
        " SELECT stream_id, date_trunc('day', logged_at, 'UTC'), min(\"offset\") FROM streams_log"
        " WHERE stream_id = %s GROUP BY 1, 2 ON CONFLICT DO NOTHING",
        [stream_id],
    )
