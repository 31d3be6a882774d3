"""``python -m eventflow up`` runs everything; ``python -m eventflow test`` runs the suite.

Both start embedded PostgreSQL and Redis when DATABASE_URL / REDIS_URL are unset.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

from eventflow.devservices import BASE_DIR, STATE_DIR, services


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), *args], check=True, cwd=BASE_DIR)


def up(port: int, workers: int, worker_concurrency: int) -> int:
    from honcho.manager import Manager
    from honcho.printer import Printer

    with services():
        print("eventflow: applying migrations …", flush=True)
        _manage("migrate", "--noinput", "-v", "0")
        _manage("collectstatic", "--noinput", "-v", "0")
        _manage("bootstrap", "--url", f"http://127.0.0.1:{port}")
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        bin_dir = os.path.dirname(sys.executable)
        beat_schedule = STATE_DIR / "celerybeat-schedule"
        manager = Manager(Printer(sys.stdout, colour=sys.stdout.isatty(), prefix=True))
        manager.add_process(
            "web",
            f"{shlex.quote(os.path.join(bin_dir, 'gunicorn'))} eventflow.wsgi:application"
            f" --bind 0.0.0.0:{port} --workers {workers} --worker-class gthread --threads 8"
            " --access-logfile - --access-logformat '%(h)s \"%(r)s\" %(s)s %(b)s %(M)sms'"
            " --graceful-timeout 10",
            env=env,
            cwd=str(BASE_DIR),
        )
        manager.add_process(
            "worker",
            f"{shlex.quote(os.path.join(bin_dir, 'celery'))} -A eventflow worker --loglevel INFO"
            f" --concurrency {worker_concurrency} --without-gossip --without-mingle",
            env=env,
            cwd=str(BASE_DIR),
        )
        manager.add_process(
            "beat",
            f"{shlex.quote(os.path.join(bin_dir, 'celery'))} -A eventflow beat --loglevel INFO"
            f" --schedule {shlex.quote(str(beat_schedule))}",
            env=env,
            cwd=str(BASE_DIR),
        )
        print(
            f"\neventflow: open http://127.0.0.1:{port}/ (admin: /admin/, API docs: /api/docs/, health: /health)."
            " Ctrl-C stops everything.\n",
            flush=True,
        )
        manager.loop()
        return int(manager.returncode or 0)


def test(pytest_args: list[str]) -> int:
    with services(announce=False):
        return subprocess.call([sys.executable, "-m", "pytest", *pytest_args], cwd=BASE_DIR)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m eventflow")
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="run web, worker and beat with everything they need")
    up_parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    up_parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    up_parser.add_argument("--worker-concurrency", type=int, default=int(os.environ.get("WORKER_CONCURRENCY", "2")))
    test_parser = sub.add_parser("test", help="run the test suite")
    test_parser.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.command == "up":
        return up(args.port, args.workers, args.worker_concurrency)
    return test(args.pytest_args)


if __name__ == "__main__":
    sys.exit(main())
