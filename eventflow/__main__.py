"""``python -m eventflow up`` runs everything; ``python -m eventflow test`` runs the suite.

Both start embedded PostgreSQL and Redis when DATABASE_URL / REDIS_URL are unset
(see eventflow/devservices.py). ``up`` applies migrations, makes sure there is an
admin user and a demo stream, then runs gunicorn, the Celery workers (processing
and webhooks) and Celery beat as one group: their output is prefixed with their
names, and when one of them stops, or on Ctrl-C, all of them and the embedded
servers stop.

``web``, ``worker``, ``webhooks`` and ``beat`` each become one member of that
group, with the same command line and no embedded servers: containers and
process managers run those.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from eventflow import conf
from eventflow.devservices import (
    BASE_DIR,
    STATE_DIR,
    die_with_parent,
    display_path,
    run_child,
    say,
    services,
    stop_on_signals,
)

# Stopping on a signal is a clean stop, not an error.
SIGNAL_RETURN_CODES = {130, 143}
READY_TIMEOUT_SECONDS = 90
# Our processes print their own level and logger; the group's prefix carries the time.
CHILD_LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
RULE = "─" * 78


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
            "--access-log",
            '--access-log-fmt=%(addr)s "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).3fms',
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
        "--access-logfile=-",
        '--access-logformat=%(h)s "%(r)s" %(s)s %(b)s %(M)sms',
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


def _manage(*args: str) -> str:
    """Run a management command; its output is returned, its errors shown."""
    done = subprocess.run(  # noqa: S603 (this interpreter and manage.py)
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.stdout.write(done.stdout)
        raise SystemExit(f"eventflow: `manage.py {' '.join(args)}` failed (exit {done.returncode})")
    return done.stdout


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


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("LOG_FORMAT", CHILD_LOG_FORMAT)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Celery warns at length about root; on a development machine that is noise.
        quiet_root = "ignore:You're running the worker with superuser privileges"
        env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), quiet_root]))
    return env


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _banner(*, base_url: str, host: str, setup: dict[str, Any], embedded_db: bool) -> str:
    key = setup["demo_key"]
    slug = setup["demo_stream"]
    python = display_path(Path(sys.executable))
    if setup["admin_password"]:
        login = f"{setup['admin_username']} / {setup['admin_password']}   (new user: the password is shown only now)"
    elif setup["admin_password_from_env"]:
        login = f"{setup['admin_username']} / the password in EVENTFLOW_ADMIN_PASSWORD"
    else:
        login = (
            f"{setup['admin_username']}   (password from the first run; "
            f"to reset: {python} manage.py changepassword {setup['admin_username']})"
        )
    url_flag = "" if base_url == "http://127.0.0.1:8000" else f" --url {base_url}"
    lines = [
        RULE,
        "  EventFlow is running.",
        "",
        f"    Dashboard   {base_url}/",
        f"    Admin       {base_url}/admin/",
        f"    API docs    {base_url}/api/docs/",
        f"    Health      {base_url}/health",
        "",
        f"  Admin login   {login}",
        f"  Demo stream   {slug}",
        f"  Ingest key    {key}",
        "",
        "  Send an event:",
        f"    curl -X POST {base_url}/api/v1/streams/{slug}/events \\",
        f"         -H 'X-API-Key: {key}' -H 'Content-Type: application/json' \\",
        '         -d \'{"type": "page_view", "user_id": "u1", "payload": {"page": "/home"}}\'',
        "  Simulate traffic:",
        f"    {python} manage.py simulate_events --stream {slug} --key {key} --rate 50 --duration 30{url_flag}",
        "",
    ]
    if host == "0.0.0.0":  # noqa: S104  # nosec B104
        lines.append("  Listening on every interface (HOST=0.0.0.0).")
    if embedded_db:
        lines.append(f"  Data is kept in {display_path(STATE_DIR)}/ between runs.  Ctrl-C stops everything.")
    else:
        lines.append("  Ctrl-C stops everything.")
    lines.append(RULE)
    return "\n".join(lines)


class _Announcer:
    """Prints the banner once the web server answers, after the start-up noise."""

    NAME = "\0banner"

    def __init__(self, events: Any, health_url: str, banner: str) -> None:
        self.events = events
        self.health_url = health_url
        self.banner = banner
        self.shown = False
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="eventflow-announcer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def _web_answers(self) -> bool:
        try:
            # An http:// URL built from the launcher's own host and port.
            with urllib.request.urlopen(self.health_url, timeout=2):  # noqa: S310  # nosec B310
                return True
        except urllib.error.HTTPError:
            return True  # it answered: a 503 says what is down, and that shows in the banner's health URL
        except OSError:
            return False

    def _run(self) -> None:
        from honcho.printer import Message

        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not self.stopped.wait(0.25):
            ready = self._web_answers()
            if ready or time.monotonic() > deadline:
                text = self.banner if ready else f"{self.banner}\n  (the web server has not answered yet)"
                self.events.put(Message(type="line", data=text, time=datetime.now(), name=self.NAME, colour=None))
                self.shown = True
                return


def _group_process_class() -> Any:
    """honcho's process, tied to our life: if ``up`` is killed outright, the group still ends."""
    from honcho.process import Popen, Process

    term_on_parent_death = die_with_parent(signal.SIGTERM)
    kill_on_parent_death = die_with_parent(signal.SIGKILL)

    class GroupProcess(Process):
        def __init__(self, cmd: str, **kwargs: Any) -> None:
            # exec: the program itself is the shell's process and keeps the death signal.
            super().__init__(f"exec {cmd}", **kwargs)
            self._child_ctor = functools.partial(Popen, preexec_fn=term_on_parent_death)

        def run(self, events: Any = None, ignore_signals: bool = False) -> None:
            # This runs in honcho's relay process between us and the program.
            if kill_on_parent_death is not None:
                kill_on_parent_death()
            super().run(events, ignore_signals)

    return GroupProcess


def _printer() -> Any:
    from honcho.printer import Printer

    class GroupPrinter(Printer):
        """honcho's printer, plus unprefixed lines for the banner."""

        def write(self, message: Any) -> None:
            if message.name == _Announcer.NAME:
                print(f"\n{message.data}\n", file=self.output, flush=True)
            else:
                super().write(message)

    return GroupPrinter(sys.stdout, colour=sys.stdout.isatty(), prefix=True)


def up(*, host: str, port: int, workers: int, worker_concurrency: int) -> int:
    from honcho.manager import Manager

    if _port_in_use(host, port):
        say(f"port {port} is in use on {host}; choose another one, e.g. `PORT={port + 1} make run`")
        return 1
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104  # nosec B104
    base_url = f"http://{shown_host}:{port}"
    embedded_db = not os.environ.get("DATABASE_URL")
    stop_on_signals()
    with services():
        # One process for all three saves a Django start-up or two.
        setup = json.loads(_manage("bootstrap", "--migrate", "--collectstatic", "--json").strip().splitlines()[-1])
        say("starting web (gunicorn), workers and beat (Celery) …")

        env = _child_env()
        metrics_dir_prepare(env, clean=True)
        manager = Manager(_printer())
        manager._process_ctor = _group_process_class()
        commands = {
            "web": web_command(port=port, workers=workers, bind=host),
            "worker": worker_command(concurrency=worker_concurrency),
            "webhooks": webhook_worker_command(concurrency=conf.at_start().webhook_concurrency),
            "beat": beat_command(schedule=STATE_DIR / "celerybeat-schedule"),
        }
        for name, argv in commands.items():
            manager.add_process(name, shlex.join(argv), env=env, cwd=str(BASE_DIR))
        announcer = _Announcer(
            manager.events,
            f"http://{shown_host}:{port}/health",
            _banner(base_url=base_url, host=host, setup=setup, embedded_db=embedded_db),
        )
        announcer.start()
        try:
            manager.loop()
        finally:
            announcer.stop()
        returncode = int(manager.returncode or 0)
        if not announcer.shown and setup["admin_password"]:
            say(f"the admin user made in this run: {setup['admin_username']} / {setup['admin_password']}")
        if returncode in SIGNAL_RETURN_CODES:
            say("stopping …")
            return 0
        say(f"a process stopped (exit {returncode}), so everything was stopped; see its output above")
        return returncode or 1


def test(pytest_args: list[str]) -> int:
    stop_on_signals()
    with services():
        returncode = run_child([sys.executable, "-m", "pytest", *pytest_args], cwd=BASE_DIR)
    if returncode == 5:
        say("pytest collected no tests (exit 5)")
    return returncode


def serve(role: str, *, host: str, port: int, workers: int) -> int:
    """Become one member of the group, with no embedded servers: for containers and process managers."""
    argv = {
        "web": lambda: web_command(port=port, workers=workers, bind=host),
        "worker": lambda: worker_command(concurrency=conf.at_start().worker_concurrency),
        "webhooks": lambda: webhook_worker_command(concurrency=conf.at_start().webhook_concurrency),
        "beat": lambda: beat_command(schedule=STATE_DIR / "celerybeat-schedule"),
    }[role]()
    if role == "beat":
        STATE_DIR.mkdir(parents=True, exist_ok=True)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Containers of one installation may share it, so none empties it here: give each
        # deployment a fresh one (a tmpfs or emptyDir), as docker-compose.yml does.
        metrics_dir_prepare(os.environ, clean=False)  # type: ignore[arg-type]
    sys.stdout.flush()
    os.execv(argv[0], argv)  # noqa: S606 (the launcher's own command line)


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
    settings = conf.at_start()
    parser = argparse.ArgumentParser(prog="python -m eventflow")
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="run web, workers and beat with everything they need")
    test_parser = sub.add_parser("test", help="run the test suite (arguments go to pytest)")
    test_parser.add_argument("pytest_args", nargs=argparse.REMAINDER)
    web_parser = sub.add_parser("web", help="run only the web server (gunicorn)")
    sub.add_parser("worker", help="run only the processing worker (Celery)")
    sub.add_parser("webhooks", help="run only the webhook delivery worker (Celery)")
    sub.add_parser("beat", help="run only the scheduler (Celery beat)")
    health_parser = sub.add_parser("health", help="exit 0 when the local web server is healthy")
    health_parser.add_argument("--port", type=int, default=settings.port)
    for web_like in (up_parser, web_parser):
        web_like.add_argument("--host", default=settings.host, help="address to listen on")
        web_like.add_argument("--port", type=int, default=settings.port)
        web_like.add_argument("--workers", type=int, default=settings.web_concurrency, help="gunicorn workers")
    up_parser.add_argument("--worker-concurrency", type=int, default=settings.worker_concurrency)
    argv = sys.argv[1:]
    if argv[:1] == ["test"]:
        # Everything after "test" is pytest's, options included (argparse would claim those).
        return test(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "up":
        return up(host=args.host, port=args.port, workers=args.workers, worker_concurrency=args.worker_concurrency)
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
