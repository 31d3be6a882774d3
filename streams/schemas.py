"""JSON Schema (draft 2020-12) compilation and validation, compiled once per schema row."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson

from eventflow.db import holds_nul, within_depth

STARTER_SCHEMA_DIR = Path(__file__).parent / "starter_schemas"
STARTER_TYPES = ("login", "logout", "page_view", "button_click", "form_submit")
MAX_ERRORS_PER_EVENT = 10
# The deepest a schema may nest: room for payloads described some 60 levels down (each of
# their levels is two of the schema's: "properties", then the field's subschema), and well
# under the 255 levels orjson writes (a schema nested deeper was saved, then every answer
# that showed it was a 500).
MAX_SCHEMA_DEPTH = 128


class InvalidSchema(ValueError):
    pass


# Schemas are typed by people: a "$ref" or "$schema" that names a URL or a file is never
# fetched (the server would call any address, or read its own files, for whoever may add a
# schema). A schema is whole in itself; such a reference is an error. A populated registry,
# even an empty one, makes the meta-schema check look nowhere else.
_NO_REMOTE_META = jsonschema_rs.Registry([])


def schema_validator(schema: dict[str, Any]) -> jsonschema_rs.Draft202012Validator:
    """A validator of ``schema`` that resolves references only inside it."""
    return jsonschema_rs.Draft202012Validator(schema, offline=True)


def starter_schemas() -> dict[str, dict[str, Any]]:
    return {name: json.loads((STARTER_SCHEMA_DIR / f"{name}.json").read_text()) for name in STARTER_TYPES}


def schema_check(schema: Any) -> None:
    """Raise InvalidSchema unless ``schema`` is a valid draft 2020-12 schema."""
    if not isinstance(schema, dict):
        raise InvalidSchema("A schema must be a JSON object.")
    if holds_nul(schema):
        raise InvalidSchema("Strings may not contain NUL (\\u0000).")
    if not within_depth(schema, MAX_SCHEMA_DEPTH):
        raise InvalidSchema(f"A schema may nest at most {MAX_SCHEMA_DEPTH} levels.")
    try:
        jsonschema_rs.meta.validate(schema, registry=_NO_REMOTE_META)
        schema_validator(schema)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        raise InvalidSchema(str(exc).splitlines()[0]) from exc


def schemas_same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two schemas are the same JSON, whatever the order of their keys.

    Compared as JSON text, not with ``==``: Python takes ``1``, ``1.0`` and ``true`` for one
    another, and a schema's ``const`` or ``enum`` does not take ``true`` for ``1``.
    """
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)


@functools.lru_cache(maxsize=4096)
def _compiled(schema_id: int, schema_json: bytes) -> jsonschema_rs.Draft202012Validator:
    return schema_validator(orjson.loads(schema_json))


def compiled_validator(schema_id: int, schema: dict[str, Any]) -> jsonschema_rs.Draft202012Validator:
    # Schema rows are immutable (a change is a new version), so the row id is a
    # sound cache key; the JSON text guards against a reused id in tests.
    return _compiled(schema_id, orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))


def validation_errors(validator: jsonschema_rs.Draft202012Validator, instance: Any) -> list[dict[str, str]]:
    if validator.is_valid(instance):
        return []
    errors = []
    for error in validator.iter_errors(instance):
        path = "/".join(str(p) for p in error.instance_path)
        errors.append({"field": f"payload/{path}" if path else "payload", "code": "schema", "message": error.message})
        if len(errors) >= MAX_ERRORS_PER_EVENT:
            break
    return errors
