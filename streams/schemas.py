"""JSON Schema (draft 2020-12) compilation and validation, compiled once per schema row."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin

import jsonschema_rs
import orjson

from eventflow import conf
from eventflow.db import holds_nul, within_depth

logger = logging.getLogger(__name__)

STARTER_SCHEMA_DIR = Path(__file__).parent / "starter_schemas"
STARTER_TYPES = ("login", "logout", "page_view", "button_click", "form_submit")
MAX_ERRORS_PER_EVENT = 10
# The deepest a schema may nest: room for payloads described some 60 levels down (each of
# their levels is two of the schema's: "properties", then the field's subschema), and well
# under the 255 levels orjson writes (a schema nested deeper was saved, then every answer
# that showed it was a 500).
MAX_SCHEMA_DEPTH = 128
# The most subschema evaluations a schema may cause at one place in an event (see schema_cost). The
# starter schemas need 1 to 5, a tree whose children refer back to the node 2 at any depth; a schema
# made to stall the workers needs millions: allOf of two $refs to the level below, 20 levels deep, is
# 2**20 and took 80 s to report one invalid event (README, "What a schema may hold").
MAX_SCHEMA_EVALUATIONS = 1_000
# unevaluatedProperties and unevaluatedItems make jsonschema_rs (0.60) evaluate the schema's in-place
# subschemas again to learn what they evaluated: a chain of allOf with unevaluatedProperties grew about
# 3x per level when measured (20 levels: 43 s for one valid event), so that subtree counts three times.
UNEVALUATED_FACTOR = 3


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
    # Checked here, once, rather than timed during processing: a worker can't stop a validation midway.
    cost = schema_cost(schema, max_depth=conf.get().max_json_depth)
    if cost > MAX_SCHEMA_EVALUATIONS:
        raise InvalidSchema(
            f"It could apply more than {MAX_SCHEMA_EVALUATIONS} subschemas to one value of an event "
            "(counting every $ref, allOf, anyOf, oneOf, not, if/then/else and dependentSchemas along every "
            "path), which would take too long to validate. Refer to a shared subschema fewer times."
        )


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


@functools.lru_cache(maxsize=4096)
def _refusal(schema_id: int, schema_json: bytes) -> str | None:
    try:
        schema_check(orjson.loads(schema_json))
    except InvalidSchema as exc:
        # Once per version and process (memoized), not once per event or batch.
        logger.warning("schema %s is refused and not applied to events (register a new version): %s", schema_id, exc)
        return str(exc)
    return None


def stored_schema_refusal(schema_id: int, schema: Any) -> str | None:
    """Why a stored schema version is not applied to events; None when it is.

    A version saved before a rule of ``schema_check`` existed (the complexity limit
    came late) may break it; it is checked again, once per process, wherever stored
    schemas are loaded for validation, and the type is then treated as having no
    schema until a new version is registered. Checked, not trusted: the limit also
    depends on EVENTFLOW_MAX_JSON_DEPTH, so a flag saved in the row could go stale.
    """
    return _refusal(schema_id, orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))


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


# --- how much work a schema can cause ---------------------------------------------------------------
#
# jsonschema_rs evaluates a subschema once for every path that leads to it: it remembers nothing. Twenty
# $defs, each an allOf of two $refs to the one before, make 2**20 evaluations of the first, at one place
# in the event. So the registry counts, before it saves a schema, the evaluations one value of an event
# can cost: at its own place (the in-place applicators below) and at every place below it (properties,
# items and the rest move to a child value, and what a parent applies there adds up too).

_BASE_URI = "https://schemas.eventflow.invalid/root.json"
# Values of these keywords are data, not subschemas: an "$id" or "$anchor" inside them names nothing.
_DATA_KEYWORDS = frozenset({"const", "enum", "examples", "default"})
_IN_PLACE_ONE = ("not", "if")
_IN_PLACE_LIST = ("allOf", "anyOf", "oneOf")
# "dependencies" is the draft 7 spelling; counted too, to be safe.
_IN_PLACE_MAP = ("dependentSchemas", "dependencies")


class _Node:
    """One subschema: what it applies at its own place, and what to the values inside it."""

    __slots__ = (
        "factor",
        "in_place",
        "item_extras",
        "items",
        "names",
        "other_props",
        "patterns",
        "prop_extras",
        "props",
    )

    def __init__(self) -> None:
        self.factor = 1
        # Each entry is evaluated; of its alternatives ($dynamicRef targets, then/else) only one.
        self.in_place: list[list[int]] = []
        self.props: list[int] = []  # at most one of these applies to a member…
        self.patterns: list[int] = []  # …with every pattern that matches its name…
        self.other_props: list[int] = []  # …or else additionalProperties.
        self.prop_extras: list[int] = []  # unevaluatedProperties
        self.items: list[int] = []  # prefixItems, items, additionalItems: one applies to an item
        self.item_extras: list[int] = []  # contains, unevaluatedItems
        self.names: list[int] = []  # propertyNames: applied to each member's name, a string

    def below(self, before: list[int], depth: int) -> int:
        """Evaluations at one value one level below, given each subschema's count there (``before``)."""

        def most(ids: list[int]) -> int:
            return max((before[i] for i in ids), default=0)

        def total(ids: list[int]) -> int:
            return sum(before[i] for i in ids)

        member = max(most(self.props) + total(self.patterns), most(self.other_props)) + total(self.prop_extras)
        item = most(self.items) + total(self.item_extras)
        name = total(self.names) if depth == 1 else 0
        return max(member, item, name)


class _Document:
    """Where each "$ref" of one schema leads: its resources ("$id"), pointers and anchors, all offline."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.resources: dict[str, Any] = {_BASE_URI: schema}
        self.anchors: dict[tuple[str, str], Any] = {}
        self.dynamic: dict[str, list[Any]] = {}
        self.recursive: list[Any] = []
        self.base_of: dict[int, str] = {}
        stack: list[tuple[Any, str]] = [(schema, _BASE_URI)]
        while stack:
            value, base = stack.pop()
            if isinstance(value, list):
                stack.extend((item, base) for item in value)
            if not isinstance(value, dict):
                continue
            if isinstance(value.get("$id"), str):
                base = urldefrag(urljoin(base, value["$id"]))[0]
                self.resources.setdefault(base, value)
            self.base_of.setdefault(id(value), base)
            if isinstance(value.get("$anchor"), str):
                self.anchors.setdefault((base, value["$anchor"]), value)
            if isinstance(value.get("$dynamicAnchor"), str):
                self.anchors.setdefault((base, value["$dynamicAnchor"]), value)
                self.dynamic.setdefault(value["$dynamicAnchor"], []).append(value)
            if value.get("$recursiveAnchor") is True:
                self.recursive.append(value)
            stack.extend((child, base) for key, child in value.items() if key not in _DATA_KEYWORDS)

    def resolve(self, ref: str, base: str) -> tuple[Any, str]:
        uri, fragment = urldefrag(urljoin(base, ref))
        target = self.resources.get(uri)
        if target is not None and fragment and not fragment.startswith("/"):
            target = self.anchors.get((uri, fragment))
        elif target is not None:
            for token in unquote(fragment).split("/")[1:]:
                token = token.replace("~1", "/").replace("~0", "~")
                if isinstance(target, dict):
                    target = target.get(token)
                elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
                    target = target[int(token)]
                else:
                    target = None
        if target is None:
            raise InvalidSchema(f'Its reference "{ref}" could not be followed within the schema.')
        return target, self.base_of.get(id(target), uri)

    def alternatives(self, keyword: str, ref: str, base: str) -> Iterator[tuple[Any, str]]:
        """Where a reference may lead: a $dynamicRef to any $dynamicAnchor of its name, to be safe."""
        yield self.resolve(ref, base)
        if keyword == "$dynamicRef" and ref.startswith("#") and "/" not in ref:
            for target in self.dynamic.get(ref[1:], []):
                yield target, self.base_of[id(target)]
        elif keyword == "$recursiveRef":
            for target in self.recursive:
                yield target, self.base_of[id(target)]


def _schema_graph(schema: dict[str, Any]) -> tuple[list[_Node], list[str]]:
    """Every subschema an evaluation of ``schema`` can reach (node 0 stands for true, false and the root
    is node 1), and where each was first found, for messages."""
    document = _Document(schema)
    nodes, where = [_Node()], ["true/false"]
    numbers: dict[int, int] = {}
    pending: list[tuple[int, dict[str, Any], str]] = []

    def node(value: Any, base: str, path: str) -> int:
        if not isinstance(value, dict):
            return 0
        if id(value) not in numbers:
            numbers[id(value)] = len(nodes)
            nodes.append(_Node())
            where.append(path)
            if isinstance(value.get("$id"), str):
                base = urldefrag(urljoin(base, value["$id"]))[0]
            pending.append((len(nodes) - 1, value, document.base_of.get(id(value), base)))
        return numbers[id(value)]

    def each(value: Any, base: str, path: str) -> list[int]:
        """The subschemas of a keyword's value: one schema, a list of them or a map of them."""
        if isinstance(value, list):
            return [node(item, base, f"{path}/{i}") for i, item in enumerate(value)]
        if isinstance(value, dict) and path.rsplit("/", 1)[-1] in {"properties", "patternProperties", *_IN_PLACE_MAP}:
            return [node(item, base, f"{path}/{key}") for key, item in value.items() if isinstance(item, dict | bool)]
        return [node(value, base, path)]

    node(schema, _BASE_URI, "#")
    while pending:
        number, value, base = pending.pop()
        this, at = nodes[number], where[number]
        for keyword in ("$ref", "$dynamicRef", "$recursiveRef"):
            if isinstance(value.get(keyword), str):
                targets = document.alternatives(keyword, value[keyword], base)
                this.in_place.append([node(target, target_base, value[keyword]) for target, target_base in targets])
        for keyword in (*_IN_PLACE_ONE, *_IN_PLACE_LIST, *_IN_PLACE_MAP):
            if keyword in value:
                this.in_place.extend([child] for child in each(value[keyword], base, f"{at}/{keyword}"))
        if "then" in value or "else" in value:
            this.in_place.append([node(value.get(k, True), base, f"{at}/{k}") for k in ("then", "else")])
        if "unevaluatedProperties" in value or "unevaluatedItems" in value:
            this.factor = UNEVALUATED_FACTOR
        for keyword, into in (
            ("properties", this.props),
            ("patternProperties", this.patterns),
            ("additionalProperties", this.other_props),
            ("unevaluatedProperties", this.prop_extras),
            ("prefixItems", this.items),
            ("items", this.items),
            ("additionalItems", this.items),
            ("contains", this.item_extras),
            ("unevaluatedItems", this.item_extras),
            ("propertyNames", this.names),
        ):
            if keyword in value:
                into.extend(each(value[keyword], base, f"{at}/{keyword}"))
    return nodes, where


def _in_place_order(nodes: list[_Node], where: list[str]) -> list[int]:
    """The nodes, each after all it applies in place; InvalidSchema if that goes round in a loop."""
    state = [0] * len(nodes)  # 0 unseen, 1 on the path, 2 done
    order: list[int] = []
    for start in range(len(nodes)):
        if state[start]:
            continue
        state[start] = 1
        stack = [(start, iter([t for alts in nodes[start].in_place for t in alts]))]
        while stack:
            number, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                state[number] = 2
                order.append(number)
            elif state[child] == 1:
                raise InvalidSchema(
                    f"The subschema at {where[child]} applies itself again at the same place in the event "
                    "(a reference loop that never moves into a property or item), so validation would never end."
                )
            elif state[child] == 0:
                state[child] = 1
                stack.append((child, iter([t for alts in nodes[child].in_place for t in alts])))
    return order


def schema_cost(schema: dict[str, Any], *, max_depth: int, limit: int = MAX_SCHEMA_EVALUATIONS + 1) -> int:
    """The most subschema evaluations validating an event can cost at any one value of it, at most ``limit``.

    Counted for every value down to ``max_depth`` levels below the payload, each subschema once
    (memoized), following the in-place applicators ($ref, $dynamicRef, allOf, anyOf, oneOf, not,
    if/then/else, dependentSchemas) at a value's own place and properties, items and the others one
    level down. An upper bound: of properties only one applies to a member, of then/else only one,
    but every anyOf branch counts. InvalidSchema for a loop of in-place references.
    """
    nodes, where = _schema_graph(schema)
    order = _in_place_order(nodes, where)
    worst = 0
    before: list[int] = []
    for depth in range(max_depth + 1):
        here = [0] * len(nodes)
        for number in order:
            this = nodes[number]
            own = 1 if depth == 0 else this.below(before, depth)
            inner = sum(max(here[t] for t in alternatives) for alternatives in this.in_place)
            here[number] = min(limit, own + this.factor * inner)
        worst = max(worst, here[1])
        if worst >= limit or here[1] == 0:
            break
        before = here
    return worst
