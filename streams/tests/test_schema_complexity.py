"""A schema whose validation would take exponential time is refused when it is registered.

jsonschema_rs evaluates a subschema once per path to it: twenty $defs, each an allOf of two $refs to
the one before, took 80 s to report one invalid event. The registry counts the work first
(streams.schemas.schema_cost) and refuses more than MAX_SCHEMA_EVALUATIONS at one value of an event.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from eventflow.errors import Invalid
from streams.models import EventSchema, Stream
from streams.schemas import (
    MAX_SCHEMA_EVALUATIONS,
    InvalidSchema,
    compiled_validator,
    schema_check,
    schema_cost,
    starter_schemas,
    validation_errors,
)
from streams.services import schema_register
from tests.intake import assert_api_error

pytestmark = pytest.mark.django_db

SCHEMAS = "/api/v1/streams/shop/schemas"


def doubling(levels: int) -> dict[str, Any]:
    """a1 is allOf [a0, a0], a2 allOf [a1, a1], …: 2**levels evaluations of a0 at the payload itself."""
    defs: dict[str, Any] = {"a0": {"type": "object"}}
    for i in range(1, levels + 1):
        defs[f"a{i}"] = {"allOf": [{"$ref": f"#/$defs/a{i - 1}"}, {"$ref": f"#/$defs/a{i - 1}"}]}
    return {"$defs": defs, "$ref": f"#/$defs/a{levels}"}


def doubling_downwards(levels: int) -> dict[str, Any]:
    """Two ways into property x at every level: each level applies twice as many subschemas as the one above."""
    defs: dict[str, Any] = {"c0": {"type": "string"}}
    for i in range(1, levels + 1):
        step = {"properties": {"x": {"$ref": f"#/$defs/c{i - 1}"}}}
        defs[f"c{i}"] = {"allOf": [step, step]}
    return {"$defs": defs, "$ref": f"#/$defs/c{levels}"}


def unevaluated_chain(levels: int) -> dict[str, Any]:
    """One $ref per level, but unevaluatedProperties makes the validator run the level below again."""
    defs: dict[str, Any] = {"a0": {"type": "object", "properties": {"p": {"type": "string"}}}}
    for i in range(1, levels + 1):
        defs[f"a{i}"] = {"allOf": [{"$ref": f"#/$defs/a{i - 1}"}], "unevaluatedProperties": False}
    return {"$defs": defs, "$ref": f"#/$defs/a{levels}"}


TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["name"],
        }
    },
    "$ref": "#/$defs/node",
}


def _tree(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"name": "leaf"}
    for i in range(depth):
        node = {"name": f"n{i}", "children": [node, {"name": "x"}]}
    return node


@pytest.mark.parametrize("dry_run", [False, True], ids=["save", "dry-run"])
def test_the_doubling_schema_is_refused_with_a_400_in_milliseconds(admin_api, stream: Stream, dry_run):
    response = admin_api.post(f"{SCHEMAS}/bomb", {"schema": doubling(20), "dry_run": dry_run})

    assert_api_error(response, 400, "invalid_schema")
    assert f"more than {MAX_SCHEMA_EVALUATIONS} subschemas to one value" in response.json()["error"]["message"]
    assert not EventSchema.objects.filter(stream=stream, event_type="bomb").exists()
    # The check alone takes a few ms (README: "What a schema may hold"); validating one event took 80 s.
    started = time.perf_counter()
    with pytest.raises(InvalidSchema):
        schema_check(doubling(30))
    assert time.perf_counter() - started < 1


def test_the_count_is_exact_for_the_doubling_schema():
    # The root and a_n, 2 $ref wrappers and a_{n-1} per level: a_n = 3 + 2 a_{n-1}, a_0 = 1.
    for levels in (1, 5, 8, 20, 30):
        assert schema_cost(doubling(levels), max_depth=32, limit=2**40) == 4 * 2**levels - 2


def test_the_bound_is_where_the_docs_say(stream: Stream):
    assert schema_cost(doubling(7), max_depth=32) == 510
    schema_register(stream=stream, event_type="seven", schema=doubling(7))

    assert schema_cost(doubling(8), max_depth=32) > MAX_SCHEMA_EVALUATIONS  # 1022
    with pytest.raises(Invalid) as refused:
        schema_register(stream=stream, event_type="eight", schema=doubling(8))
    assert refused.value.code == "invalid_schema"
    assert EventSchema.objects.filter(stream=stream, event_type="seven").count() == 1
    assert not EventSchema.objects.filter(stream=stream, event_type="eight").exists()


@pytest.mark.parametrize(
    "schema",
    [
        doubling_downwards(20),
        unevaluated_chain(20),
        {"properties": {"deep": {"$ref": "#/$defs/a30"}}, "$defs": doubling(30)["$defs"]},
        {"type": "array", "items": {"$ref": "#/$defs/a12"}, "$defs": doubling(12)["$defs"]},
    ],
    ids=["twice-per-level-below", "unevaluated-chain", "under-a-property", "under-items"],
)
def test_a_schema_that_multiplies_elsewhere_is_refused(stream: Stream, schema):
    with pytest.raises(Invalid, match="more than 1000 subschemas"):
        schema_register(stream=stream, event_type="bomb", schema=schema)


@pytest.mark.parametrize(
    "schema",
    [
        {"$defs": {"l": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/l"}]}}, "$ref": "#/$defs/l"},
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"not": {"$ref": "#/$defs/a"}}}, "$ref": "#/$defs/a"},
        {"if": {"$ref": "#"}, "then": {"type": "object"}},
    ],
    ids=["anyOf-itself", "a-b-a", "if-root"],
)
def test_an_in_place_reference_loop_is_refused(admin_api, stream: Stream, schema):
    response = admin_api.post(f"{SCHEMAS}/bomb", {"schema": schema})

    assert_api_error(response, 400, "invalid_schema")
    assert "never moves into a property or item" in response.json()["error"]["message"]


BINARY = {  # left and right never both apply to one member, so this is one subschema per level too
    "type": "object",
    "properties": {"name": {"type": "string"}, "left": {"$ref": "#"}, "right": {"$ref": "#"}},
    "additionalProperties": {"$ref": "#"},
    "required": ["name"],
}
DYNAMIC_TREE = {
    "$dynamicAnchor": "node",
    "type": "object",
    "properties": {"name": {"type": "string"}, "children": {"items": {"$dynamicRef": "#node"}}},
    "required": ["name"],
}


@pytest.mark.parametrize(
    ("schema", "good", "bad"),
    [
        (TREE, _tree(20), {"name": "a", "children": [{"children": []}]}),
        (DYNAMIC_TREE, _tree(20), {"name": "a", "children": [{"name": 1}]}),
        (BINARY, {"name": "a", "left": {"name": "b", "right": {"name": "c"}}}, {"name": "a", "left": {}}),
    ],
    ids=["ref", "dynamicRef", "binary"],
)
def test_a_tree_whose_children_refer_to_the_node_is_taken(admin_api, stream: Stream, schema, good, bad):
    response = admin_api.post(f"{SCHEMAS}/tree", {"schema": schema})
    assert response.status_code == 201, response.content
    assert schema_cost(schema, max_depth=32) <= 5

    validator = compiled_validator(0, schema)
    assert validation_errors(validator, good) == []
    assert validation_errors(validator, bad) != []


def test_the_starter_schemas_pass_easily():
    costs = {name: schema_cost(schema, max_depth=32) for name, schema in starter_schemas().items()}

    assert max(costs.values()) <= MAX_SCHEMA_EVALUATIONS // 100, costs
