"""Raw SQL for the hot paths, on Django's own connection and inside its transactions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import psycopg
from django.db import connection
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
