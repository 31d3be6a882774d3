"""``python -m launcher up`` runs everything; ``python -m launcher test`` runs the suite.

The development launcher (``make run``, ``make test``; ``python -m eventflow up|test``
pass on to it). Both start embedded PostgreSQL and Redis when DATABASE_URL /
REDIS_URL are unset (see launcher/devservices.py). ``up`` applies migrations,
makes sure there is an admin user and a demo stream, then runs the web server,
the Celery workers (processing and webhooks) and Celery beat as one group, with
the command lines of ``python -m eventflow web|worker|webhooks|beat``
(eventflow/__main__.py): their output is prefixed with their names, and when
one of them stops, or on Ctrl-C, all of them and the embedded servers stop.

Nothing in the application imports this package (eventflow/tests/test_layout.py).
"""

from __future__ import annotations

import argparse
import errno
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
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from eventflow import conf
from eventflow.__main__ import (
    STATE_DIR,
    beat_command,
    kafka_bridge_command,
    metrics_dir_prepare,
    web_command,
    webhook_worker_command,
    worker_command,
)
from launcher.devservices import (
    BASE_DIR,
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


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("LOG_FORMAT", CHILD_LOG_FORMAT)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Celery warns at length about root; on a development machine that is noise.
        quiet_root = "ignore:You're running the worker with superuser privileges"
        env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), quiet_root]))
    return env


def _listen_problem(host: str, port: int) -> str | None:
    """Why the web server could not listen on ``host:port`` (a port in use, a host that is not this
    machine's), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror as exc:
            return f"HOST {host!r} is not an address of this machine ({exc.strerror})"
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} is in use on {host}; choose another one, e.g. `PORT={port + 1} make run`"
            return f"cannot listen on {host}:{port} ({exc.strerror}); check HOST and PORT"
    return None


def _bounded(name: str, minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer within the bounds its setting has in eventflow/conf.py."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            raise argparse.ArgumentTypeError(f"{name} must be {bounds}, got {value}")
        return value

    return parse


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

    problem = _listen_problem(host, port)
    if problem:
        say(problem)
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
            # Always: with no sink or source configured it only looks for one every few seconds.
            "kafka": kafka_bridge_command(),
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


def main() -> int:
    settings = conf.at_start()
    parser = argparse.ArgumentParser(prog="python -m launcher")
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="run web, workers and beat with everything they need")
    test_parser = sub.add_parser("test", help="run the test suite (arguments go to pytest)")
    test_parser.add_argument("pytest_args", nargs=argparse.REMAINDER)
    up_parser.add_argument("--host", default=settings.host, help="address to listen on")
    up_parser.add_argument("--port", type=_bounded("--port", 1, 65535), default=settings.port)
    up_parser.add_argument(
        "--workers", type=_bounded("--workers", 1), default=settings.web_concurrency, help="web server workers"
    )
    up_parser.add_argument(
        "--worker-concurrency", type=_bounded("--worker-concurrency", 1), default=settings.worker_concurrency
    )
    argv = sys.argv[1:]
    if argv[:1] == ["test"]:
        # Everything after "test" is pytest's, options included (argparse would claim those).
        return test(argv[1:])
    args = parser.parse_args(argv)
    return up(host=args.host, port=args.port, workers=args.workers, worker_concurrency=args.worker_concurrency)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
