"""``python -m eventflow web|worker|webhooks|beat|kafka|health``: the processes of an installation.

Each becomes one process, with the command line containers and process
managers run (Dockerfile, docker-compose.yml, deploy/k8s), reading its settings
from the environment (eventflow/conf.py). ``up`` and ``test``, the development
launcher that runs them all with embedded PostgreSQL and Redis, live in
``launcher/`` (``python -m launcher``); they are passed on to it from here, so
that nothing in the application imports the launcher.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from eventflow import conf

# Embedded PostgreSQL's data, the demo key, the beat schedule (EVENTFLOW_STATE_DIR).
STATE_DIR = conf.at_start().state_path
LAUNCHER_COMMANDS = ("up", "test")


# A line per request on stdout, when WEB_ACCESS_LOG is on.
GRANIAN_ACCESS_LOG = [
    "--access-log",
    '--access-log-fmt=%(addr)s "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).3fms',
]
GUNICORN_ACCESS_LOG = ["--access-logfile=-", '--access-logformat=%(h)s "%(r)s" %(s)s %(b)s %(M)sms']


# Every interface by default: the web process runs in a container or behind a proxy (docs/SECURITY.md).
def web_command(
    *,
    port: int,
    workers: int,
    bind: str = "0.0.0.0",  # noqa: S104  # nosec B104
    server: str | None = None,
) -> list[str]:
    """The web server's command line (``WEB_SERVER``: gunicorn or granian); bench/ingest.py measures exactly this."""
    server = server or conf.at_start().web_server
    threads = conf.at_start().web_threads
    access_log = conf.at_start().web_access_log
    if server == "granian":
        return [
            os.path.join(os.path.dirname(sys.executable), "granian"),
            "eventflow.wsgi:application",
            "--interface=wsgi",
            f"--host={bind}",
            f"--port={port}",
            f"--workers={workers}",
            # As gunicorn's threads: long polls of consumer groups wait in one (holding no database connection).
            f"--blocking-threads={threads}",
            "--no-ws",
            *(GRANIAN_ACCESS_LOG if access_log else []),
            "--log-level=warning",
            "--workers-kill-timeout=10",
        ]
    return [
        os.path.join(os.path.dirname(sys.executable), "gunicorn"),
        "eventflow.wsgi:application",
        # Its hooks only (child_exit tidies the metrics of a worker that stopped).
        "--config=python:eventflow.gunicorn_conf",
        f"--bind={bind}:{port}",
        f"--workers={workers}",
        "--worker-class=gthread",
        # Long polls of consumer groups wait in a thread (holding no database
        # connection), so a worker keeps enough threads for them and for the rest.
        f"--threads={threads}",
        *(GUNICORN_ACCESS_LOG if access_log else []),
        "--graceful-timeout=10",
        # The default control socket is one per user: two servers would fight over it.
        "--no-control-socket",
    ]


def _celery(*args: str) -> list[str]:
    return [os.path.join(os.path.dirname(sys.executable), "celery"), "--app=eventflow", "--quiet", *args]


def worker_command(*, concurrency: int) -> list[str]:
    return _celery("worker", "--loglevel=INFO", f"--concurrency={concurrency}", "--without-gossip", "--without-mingle")


def webhook_worker_command(*, concurrency: int) -> list[str]:
    """Webhook deliveries have a queue and a thread-pool worker of their own: a slow
    endpoint holds one of its threads, never the processing worker or other endpoints."""
    return [
        *worker_command(concurrency=concurrency),
        "--queues=webhooks",
        "--pool=threads",
        "--hostname=webhooks@%h",
    ]


def beat_command(*, schedule: Path) -> list[str]:
    return _celery("beat", "--loglevel=INFO", f"--schedule={schedule}")


def kafka_bridge_command() -> list[str]:
    """The Kafka bridge (consumers/kafka_bridge.py): every active sink and source, in one loop."""
    return [sys.executable, str(Path(__file__).resolve().parent.parent / "manage.py"), "kafka_bridge"]


def metrics_dir_prepare(env: dict[str, str], *, clean: bool) -> Path:
    """The directory where every process of the group writes its metrics (PROMETHEUS_MULTIPROC_DIR).

    Set in ``env`` when unset. ``clean`` empties it: values of an earlier run
    would be added to this one's, and their process ids may be reused.
    """
    path = Path(env.get("PROMETHEUS_MULTIPROC_DIR") or STATE_DIR / "metrics")
    env["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    if clean and path.is_dir():
        for entry in path.glob("*.db"):
            entry.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def serve(role: str, *, host: str, port: int, workers: int) -> int:
    """Become one process of the installation (the command lines ``python -m launcher up`` runs as a group)."""
    argv = {
        "web": lambda: web_command(port=port, workers=workers, bind=host),
        "worker": lambda: worker_command(concurrency=conf.at_start().worker_concurrency),
        "webhooks": lambda: webhook_worker_command(concurrency=conf.at_start().webhook_concurrency),
        "beat": lambda: beat_command(schedule=STATE_DIR / "celerybeat-schedule"),
        "kafka": kafka_bridge_command,
    }[role]()
    if role == "beat":
        STATE_DIR.mkdir(parents=True, exist_ok=True)
    if conf.at_start().prometheus_multiproc_dir:
        # Containers of one installation may share it, so none empties it here: give each
        # deployment a fresh one (a tmpfs or emptyDir), as docker-compose.yml does.
        metrics_dir_prepare(os.environ, clean=False)  # type: ignore[arg-type]
    sys.stdout.flush()
    os.execv(argv[0], argv)  # noqa: S606 (the process's own command line)


def health(*, port: int) -> int:
    """Exit 0 when the local web server answers /health with 200: a container health check.

    It asks with a host name from ALLOWED_HOSTS, so that Django does not turn it away.
    """
    hosts = [h.lstrip(".") for h in conf.at_start().allowed_hosts or ()]
    host = next((h for h in hosts if h and h != "*"), "localhost")
    request = urllib.request.Request(f"http://127.0.0.1:{port}/health", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310  # nosec B310
            print(response.read().decode())
            return 0
    except urllib.error.HTTPError as exc:
        print(f"{exc.code} {exc.read().decode(errors='replace')}")
    except OSError as exc:
        print(f"no answer: {exc}")
    return 1


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] and argv[0] in LAUNCHER_COMMANDS:
        # The development launcher, in a process of its own: the application never imports it.
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "launcher", *argv])  # noqa: S606 (this interpreter)
    settings = conf.at_start()
    parser = argparse.ArgumentParser(prog="python -m eventflow", epilog="up, test: see python -m launcher --help")
    sub = parser.add_subparsers(dest="command", required=True)
    web_parser = sub.add_parser("web", help="run only the web server")
    sub.add_parser("worker", help="run only the processing worker (Celery)")
    sub.add_parser("webhooks", help="run only the webhook delivery worker (Celery)")
    sub.add_parser("beat", help="run only the scheduler (Celery beat)")
    sub.add_parser("kafka", help="run only the Kafka bridge (sinks and sources)")
    health_parser = sub.add_parser("health", help="exit 0 when the local web server is healthy")
    health_parser.add_argument("--port", type=int, default=settings.port)
    web_parser.add_argument("--host", default=settings.host, help="address to listen on")
    web_parser.add_argument("--port", type=int, default=settings.port)
    web_parser.add_argument("--workers", type=int, default=settings.web_concurrency, help="web server workers")
    args = parser.parse_args(argv)
    if args.command == "health":
        return health(port=args.port)
    return serve(
        args.command,
        host=getattr(args, "host", ""),
        port=getattr(args, "port", 0),
        workers=getattr(args, "workers", 0),
    )


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
