"""JSON Schema (draft 2020-12) compilation and validation, compiled once per schema row."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson

STARTER_SCHEMA_DIR = Path(__file__).parent / "starter_schemas"
STARTER_TYPES = ("login", "logout", "page_view", "button_click", "form_submit")
MAX_ERRORS_PER_EVENT = 10


class InvalidSchema(ValueError):
    pass


def starter_schemas() -> dict[str, dict[str, Any]]:
    return {name: json.loads((STARTER_SCHEMA_DIR / f"{name}.json").read_text()) for name in STARTER_TYPES}


def schema_check(schema: Any) -> None:
    """Raise InvalidSchema unless ``schema`` is a valid draft 2020-12 schema."""
    if not isinstance(schema, dict):
        raise InvalidSchema("A schema must be a JSON object.")
    try:
        jsonschema_rs.meta.validate(schema)
        jsonschema_rs.Draft202012Validator(schema)
    except (jsonschema_rs.ValidationError, ValueError) as exc:
        raise InvalidSchema(str(exc).splitlines()[0]) from exc


@functools.lru_cache(maxsize=4096)
def _compiled(schema_id: int, schema_json: bytes) -> jsonschema_rs.Draft202012Validator:
    return jsonschema_rs.Draft202012Validator(orjson.loads(schema_json))


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
