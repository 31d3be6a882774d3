"""The filter language every question of the log speaks, parsed once and turned into SQL in one place.

Query parameters (the event query, the export and every analytics endpoint):

- ``type`` (repeatable, or comma-separated): any of these event types;
- ``user_id``, ``anonymous_id``, ``session_id``: equality;
- ``from``, ``to``: event time, ISO 8601 with zone, ``from`` inclusive, ``to`` exclusive;
- ``offset_from``, ``offset_to``: log offsets, inclusive / exclusive;
- property conditions on ``payload``, ``context`` or ``enrichment``, nested with dots:
  ``payload.page=/dashboard`` (equality; repeated: any of the values),
  ``payload.plan!=free`` (inequality: the property is missing or differs),
  ``exists=payload.coupon`` and ``missing=payload.coupon`` (existence);
- ``segment=<name>``: the conditions of a saved segment of the stream.

Values compare as text (``payload.n=5`` matches ``5`` and ``"5"``). Anything
malformed is ``Invalid`` (a 400 at the API), never a 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils.dateparse import parse_datetime

from eventflow.errors import Invalid
from streams.event_types import is_event_type
from streams.log import logged_at_floor

ROOTS = ("payload", "context", "enrichment")
Op = Literal["eq", "ne", "exists", "missing"]
MAX_TYPES = 50
MAX_CONDITIONS = 20
MAX_VALUE_CHARS = 1000
MAX_OFFSET = 2**63 - 1
# Times a filter may name: far enough inside Python's calendar (years 1 to 9999) for the day, zone and
# partition arithmetic done on them (a client's DateTime.MinValue, 0001-01-01, made a 500).
MIN_TIME = datetime(1000, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(9000, 1, 1, tzinfo=UTC)
# A property: a root, then up to 8 names of up to 100 characters, each anything but a dot (the
# nesting), "!" and "=" (which end a query parameter's name: payload.plan!=free) and control
# characters: "Product Name" and "prénom" are keys people send. The names go to SQL as parameters.
_PATH_RE = re.compile(r"(payload|context|enrichment)((?:\.[^.!=\x00-\x1f\x7f]{1,100}){1,8})")
# Parameters that are not filters: each endpoint reads its own.
NOT_FILTERS = frozenset(
    {
        "cursor",
        "limit",
        "order",
        "format",
        "tz",
        "interval",
        "per_type",
        "dimension",
        "top",
        "steps",
        "window",
        "breakdown",
        "direction",
        "start",
        "depth",
        "period",
        "periods",
        "event",
        "returning_event",
        "fields",
    }
)


@dataclass(frozen=True)
class Condition:
    root: str
    path: tuple[str, ...]
    op: Op
    values: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return ".".join((self.root, *self.path))

    def as_dict(self) -> dict[str, Any]:
        return {"property": self.name, "op": self.op, "values": list(self.values)}

    def matches(self, document: Any) -> bool:
        """The condition on one event's ``payload``, ``context`` or ``enrichment`` (its root), in Python.

        The same answer as ``EventFilter.to_sql`` gives in PostgreSQL (``#>>`` text,
        ``#>`` existence), for the evaluators that see events before any query does.
        """
        found, value = json_path_get(document, self.path)
        if self.op == "exists":
            return found
        if self.op == "missing":
            return not found
        text = json_text(value) if found else None
        if self.op == "eq":
            return text is not None and text in self.values
        return text is None or text not in self.values


@dataclass(frozen=True)
class EventFilter:
    types: tuple[str, ...] = ()
    user_id: str | None = None
    anonymous_id: str | None = None
    session_id: str | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None
    offset_from: int | None = None
    offset_to: int | None = None
    conditions: tuple[Condition, ...] = field(default_factory=tuple)

    @property
    def only_types_and_time(self) -> bool:
        """True when rollups can answer: nothing but types and an event-time range."""
        return not (
            self.user_id
            or self.anonymous_id
            or self.session_id
            or self.offset_from is not None
            or self.offset_to is not None
            or self.conditions
        )

    def with_time(self, time_from: datetime | None, time_to: datetime | None) -> EventFilter:
        return replace(self, time_from=time_from, time_to=time_to)

    def to_sql(self, alias: str = "l") -> tuple[str, list[Any]]:
        """A WHERE fragment (without the stream) over the log table ``alias``, and its parameters."""
        parts: list[str] = []
        params: list[Any] = []
        if self.types:
            parts.append(f"{alias}.type = ANY(%s)")
            params.append(list(self.types))
        for column in ("user_id", "anonymous_id", "session_id"):
            value = getattr(self, column)
            if value is not None:
                parts.append(f"{alias}.{column} = %s")
                params.append(value)
        if self.time_from is not None:
            parts.append(f"{alias}.event_time >= %s")
            params.append(self.time_from)
            # Not a condition on the events: it lets the plan skip the log's partitions
            # of days before any such event was logged (docs/SCALING.md).
            parts.append(f"{alias}.logged_at >= %s")
            params.append(logged_at_floor(self.time_from))
        if self.time_to is not None:
            parts.append(f"{alias}.event_time < %s")
            params.append(self.time_to)
        if self.offset_from is not None:
            parts.append(f'{alias}."offset" >= %s')
            params.append(self.offset_from)
        if self.offset_to is not None:
            parts.append(f'{alias}."offset" < %s')
            params.append(self.offset_to)
        for condition in self.conditions:
            # The root is one of three fixed column names; the path goes as a parameter.
            target = f"{alias}.{condition.root} #>> %s"
            path = list(condition.path)
            if condition.op == "eq":
                parts.append(f"{target} = ANY(%s)")
                params.extend([path, list(condition.values)])
            elif condition.op == "ne":
                parts.append(f"NOT COALESCE({target} = ANY(%s), false)")
                params.extend([path, list(condition.values)])
            elif condition.op == "exists":
                parts.append(f"{alias}.{condition.root} #> %s IS NOT NULL")
                params.append(path)
            else:
                parts.append(f"{alias}.{condition.root} #> %s IS NULL")
                params.append(path)
        return (" AND ".join(parts) or "TRUE"), params

    def as_dict(self) -> dict[str, Any]:
        return {
            "types": list(self.types),
            "user_id": self.user_id,
            "anonymous_id": self.anonymous_id,
            "session_id": self.session_id,
            # As instants: the same range written in another zone is the same question (analytics/cache.py).
            "from": self.time_from.astimezone(UTC).isoformat() if self.time_from else None,
            "to": self.time_to.astimezone(UTC).isoformat() if self.time_to else None,
            "offset_from": self.offset_from,
            "offset_to": self.offset_to,
            "conditions": [c.as_dict() for c in self.conditions],
        }


_MISSING = object()


# A key that ``#>`` takes as an array's index: a whole number, negative from the end.
_INDEX_RE = re.compile(r"-?[0-9]+")


def json_path_get(document: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    """(found, value) at ``path`` inside a JSON document, as ``#>`` walks it (objects by key, arrays by index)."""
    value = document
    for key in path:
        if isinstance(value, list):
            if not _INDEX_RE.fullmatch(key):
                return False, None
            index = int(key)
            if not -len(value) <= index < len(value):
                return False, None
            value = value[index]
            continue
        if not isinstance(value, dict):
            return False, None
        value = value.get(key, _MISSING)
        if value is _MISSING:
            return False, None
    return True, value


def json_text(value: Any) -> str | None:
    """A JSON value as PostgreSQL's ``#>>`` gives it: strings bare, null as NULL, the rest as JSON text."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # PostgreSQL's numeric prints no exponent: 1e-05 is "0.00001", 1e+16 "10000000000000000";
        # and it has no negative zero.
        return format(Decimal(repr(abs(value) if value == 0 else value)), "f")
    return _jsonb_text(value)


def _jsonb_text(value: Any) -> str:
    """An object or array as jsonb writes it: keys by length then bytes, ", " and ": " between items."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda key: (len(key.encode()), key.encode()))
        return "{" + ", ".join(f"{_jsonb_text(key)}: {_jsonb_text(value[key])}" for key in keys) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_jsonb_text(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json_text(value) or "null"


def parse_zone(name: str | None) -> ZoneInfo:
    """The IANA time zone named by a ``tz`` parameter (UTC when absent), or ``Invalid``."""
    name = name or "UTC"
    try:
        if "\x00" in name or len(name) > 64:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid("invalid_parameter", "tz is an IANA time zone name, e.g. Europe/Berlin.", {"tz": name}) from None


def parse_whole(raw: str, name: str, low: int, high: int) -> int:
    """A query parameter that is a whole number from ``low`` to ``high``, or ``Invalid``.

    ASCII digits only (``isdigit`` also takes "²"), and few of them: ``int`` refuses more than 4,300.
    """
    if len(raw) > len(str(high)) or not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise Invalid("invalid_parameter", f"{name} is a whole number from {low} to {high}.", {name: raw})
    return int(raw)


def parse_time(value: str, name: str) -> datetime:
    parsed = None
    try:
        parsed = parse_datetime(value.strip().replace(" ", "+"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise Invalid("invalid_filter", f"{name} must be an ISO 8601 time with a zone.", {name: value})
    if not MIN_TIME <= parsed <= MAX_TIME:
        raise Invalid("invalid_filter", f"{name} must lie between the years 1000 and 9000.", {name: value})
    return parsed


def _int(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise Invalid("invalid_filter", f"{name} must be a whole number.", {name: value}) from None
    if not 0 <= number <= MAX_OFFSET:
        raise Invalid("invalid_filter", f"{name} is out of range.", {name: value})
    return number


def _text(value: str, name: str) -> str:
    if "\x00" in value or len(value) > MAX_VALUE_CHARS:
        raise Invalid("invalid_filter", f"{name} is not a usable value.", {"parameter": name})
    return value


def parse_path(name: str) -> tuple[str, tuple[str, ...]]:
    """``payload.a.b`` → ("payload", ("a", "b")), or ``Invalid``."""
    match = _PATH_RE.fullmatch(name)
    if not match:
        raise Invalid(
            "invalid_filter",
            f"{name!r} is not a property: write payload.…, context.… or enrichment.… (dots for nesting).",
            {"parameter": name},
        )
    return match.group(1), tuple(match.group(2)[1:].split("."))


def condition_from(name: str, op: Op, values: list[str]) -> Condition:
    root, path = parse_path(name)
    return Condition(root=root, path=path, op=op, values=tuple(_text(v, name) for v in values))


def parse_conditions(raw: list[dict[str, Any]]) -> tuple[Condition, ...]:
    """Conditions written as JSON (saved segments, funnel steps): ``{"property", "op", "values"|"value"}``."""
    if not isinstance(raw, list) or len(raw) > MAX_CONDITIONS:
        raise Invalid("invalid_filter", f"Conditions are a list of at most {MAX_CONDITIONS}.")
    conditions = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("property"), str):
            raise Invalid("invalid_filter", 'A condition is {"property": "payload.x", "op": "eq", "values": [...]}.')
        op = item.get("op", "eq")
        if op not in ("eq", "ne", "exists", "missing"):
            raise Invalid("invalid_filter", "op is one of eq, ne, exists, missing.", {"op": op})
        values = item.get("values", [item["value"]] if "value" in item else [])
        if not isinstance(values, list) or not all(isinstance(v, str | int | float | bool) for v in values):
            raise Invalid("invalid_filter", "values are a list of strings or numbers.")
        if op in ("eq", "ne") and not values:
            raise Invalid("invalid_filter", f"op {op} needs at least one value.")
        # As the event's own values read as text, so a saved 1e-05 matches the payload's 1e-05.
        texts = [json_text(v) or "" for v in values]
        conditions.append(condition_from(item["property"], op, texts))
    return tuple(conditions)


def parse_filter(
    params: Mapping[str, Any],
    *,
    segment_conditions: Any = None,
    ignore: frozenset[str] = NOT_FILTERS,
) -> EventFilter:
    """An ``EventFilter`` from query parameters (a ``QueryDict`` or a dict of lists).

    ``segment_conditions(name)`` returns the saved conditions of a segment of the
    stream (or raises ``NotFound``); it is asked only when ``segment`` is given.
    Unknown parameters are refused, so a typo never silently widens a question.
    """
    getlist = params.getlist if hasattr(params, "getlist") else (lambda k: list(params.get(k) or []))
    values: dict[str, Any] = {}
    conditions: list[Condition] = []
    eq: dict[str, list[str]] = {}
    ne: dict[str, list[str]] = {}
    for key in params:
        items = [v for v in getlist(key) if isinstance(v, str)]
        if key in ignore:
            continue
        if key == "type":
            types = [t.strip() for item in items for t in item.split(",") if t.strip()]
            if len(types) > MAX_TYPES or not all(is_event_type(t) for t in types):
                raise Invalid("invalid_filter", f"type takes up to {MAX_TYPES} event types.", {"type": items})
            values["types"] = tuple(dict.fromkeys(types))
        elif key in ("user_id", "anonymous_id", "session_id"):
            values[key] = _text(items[-1], key)
        elif key in ("from", "to"):
            values[f"time_{key}"] = parse_time(items[-1], key)
        elif key in ("offset_from", "offset_to"):
            values[key] = _int(items[-1], key)
        elif key in ("exists", "missing"):
            for item in items:
                conditions.append(condition_from(item, key, []))  # type: ignore[arg-type]
        elif key == "segment":
            if segment_conditions is None:
                raise Invalid("invalid_filter", "This endpoint takes no segment.")
            for name in items:
                conditions.extend(segment_conditions(name))
        elif key.endswith("!"):
            ne.setdefault(key[:-1], []).extend(items)
        elif key.split(".", 1)[0] in ROOTS:
            eq.setdefault(key, []).extend(items)
        else:
            raise Invalid("unknown_parameter", f"Unknown parameter {key!r}.", {"parameter": key})
    conditions.extend(condition_from(name, "eq", items) for name, items in eq.items())
    conditions.extend(condition_from(name, "ne", items) for name, items in ne.items())
    if len(conditions) > MAX_CONDITIONS:
        raise Invalid("invalid_filter", f"At most {MAX_CONDITIONS} property conditions.")
    result = EventFilter(conditions=tuple(conditions), **values)
    if result.time_from and result.time_to and result.time_from >= result.time_to:
        raise Invalid("invalid_filter", "from must be before to.")
    return result
