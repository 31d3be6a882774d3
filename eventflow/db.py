"""Raw SQL for the hot paths, on Django's own connection and inside its transactions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import psycopg
from django.db import connection
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from psycopg.types.json import set_json_dumps, set_json_loads


@contextmanager
def bound_cursor() -> Iterator[psycopg.Cursor[Any]]:
    """A psycopg cursor that binds its parameters on the server.

    Django's cursors bind on the client: a list of a thousand ids becomes a
    literal that the server parses element by element, which cost the
    processor more than its index lookups. Here such a list travels as one
    binary array, a statement run again is prepared once (``prepare_threshold``),
    results asked for with ``binary=True`` load timestamps in C, and JSON is
    loaded and dumped by orjson. Errors surface as Django's database exceptions, as they
    do from Django's cursors; the statements don't appear in Django's query log.
    """
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        set_json_loads(orjson.loads, cursor)
        set_json_dumps(orjson.dumps, cursor)
        yield cursor


def prepared_cursor() -> CursorWrapper:
    """A Django cursor that binds its parameters on the server, for a statement run on every request.

    Run ``prepare_threshold`` times on a connection, the statement is prepared:
    PostgreSQL stops parsing and planning it, and a large parameter travels as
    is instead of being quoted into the SQL text. Unlike ``bound_cursor`` this
    is a Django cursor: the connection health check, error wrapping and the
    query log (which query-count tests read) all apply.
    """
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        cursor = psycopg.Cursor(connection.connection)
    if connection.queries_logged:
        return _BoundDebugWrapper(cursor, connection)
    return CursorWrapper(cursor, connection)


class _BoundDebugWrapper(CursorDebugWrapper):
    # A prepared statement has no client-side text with the values in it: log it as written.
    def execute(self, sql: Any, params: Any = None) -> Any:
        with self.debug_sql(sql, params):
            return CursorWrapper.execute(self, sql, params)


def holds_nul(value: Any) -> bool:
    """Whether a string or key anywhere in a JSON value holds NUL, which PostgreSQL's text and jsonb refuse."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def within_depth(value: dict[str, Any] | list[Any], max_depth: int, depth: int = 1) -> bool:
    """Whether a JSON object or array nests at most ``max_depth`` levels (orjson writes 255 at most)."""
    if depth > max_depth:
        return False
    for child in value.values() if type(value) is dict else value:
        if (type(child) is dict or type(child) is list) and not within_depth(child, max_depth, depth + 1):
            return False
    return True
