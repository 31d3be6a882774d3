"""Running EventFlow as a real child process (manage.py), against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


def current_database_url() -> str:
    """A DATABASE_URL for the database the tests run against (the test database, once set up).

    Every part is quoted: the host may be a socket directory (the embedded server), as
    dj-database-url expects, and a name or password may hold any character.
    """
    db = connection.settings_dict
    user = quote(db["USER"] or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    host = quote(db["HOST"] or "", safe="")
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{user}{password}@{host}{port}/{quote(db['NAME'], safe='')}"


@contextmanager
def scratch_database(suffix: str) -> Iterator[str]:
    """A database of its own beside the test database, empty, dropped afterwards: its URL.

    For tests that migrate a database themselves (a live-sized table, migrations back and forth).
    """
    base = urlsplit(current_database_url())
    name = f"{base.path.lstrip('/')}_{suffix}"
    admin = urlunsplit(base._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(base._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def child_env(**overrides: str | None) -> dict[str, str]:
    """This process's environment pointed at the test database; a None value removes a variable."""
    env = dict(os.environ)
    env["DATABASE_URL"] = current_database_url()
    env.pop("DJANGO_SETTINGS_MODULE", None)
    # Set by the browser tests for this process only: a server or a production check must not inherit it.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def manage(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        cwd=BASE_DIR,
        env=env if env is not None else child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def python(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=timeout
    )
