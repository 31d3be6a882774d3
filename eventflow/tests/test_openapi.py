"""OpenAPI schema and the offline Swagger UI."""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.django_db

INTAKE = {
    "/api/v1/streams/{slug}/events": ("EventIn", "type", "EventResult"),
    "/api/v1/streams/{slug}/events/batch": ("BatchIn", "events", "BatchResult"),
}


@pytest.fixture
def schema(client) -> dict[str, Any]:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return response.json()


def _ref(content: dict[str, Any]) -> str:
    return content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]


def test_schema_is_openapi_3(client, schema):
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "EventFlow API"
    assert client.get("/api/schema/").status_code == 200


@pytest.mark.parametrize("path", sorted(INTAKE))
def test_intake_endpoints_document_request_202_and_errors(schema, path):
    request_name, required_field, result_name = INTAKE[path]
    operation = schema["paths"][path]["post"]

    assert [p["name"] for p in operation["parameters"] if p["in"] == "path"] == ["slug"]
    request_ref = _ref(operation["requestBody"]["content"])
    assert request_ref in (request_name, f"{request_name}Request")
    assert required_field in schema["components"]["schemas"][request_ref]["required"]
    responses = operation["responses"]
    assert _ref(responses["202"]["content"]) == result_name
    for status in ("400", "401", "404", "413", "415", "422"):
        assert _ref(responses[status]["content"]) == "Error", status
        assert responses[status]["description"]


def test_event_results_document_the_three_statuses(schema):
    components = schema["components"]["schemas"]
    status = components["EventResult"]["properties"]["status"]
    enum = components[status["$ref"].rsplit("/", 1)[-1]]["enum"] if "$ref" in status else status["enum"]
    assert set(enum) == {"accepted", "duplicate", "rejected"}
    error_body = components["ErrorBody"]["properties"]
    assert set(error_body) == {"code", "message", "details"}


def test_swagger_ui_uses_only_local_assets(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert assets, html
    # The start-up script is a file of its own (the Content-Security-Policy allows no inline script).
    assert all(asset.startswith(("/static/", "/api/docs/?script")) for asset in assets), assets
    assert not re.search(r"https?://|//cdn|unpkg|jsdelivr|cdnjs|<script>|<style", html)
    served_assets = {}
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset
        served_assets[asset] = b"".join(served.streaming_content if served.streaming else [served.content])
        assert served_assets[asset]
    assert b'url: "/api/schema/"' in served_assets["/api/docs/?script="]


def test_every_api_operation_documents_the_people_limits(schema):
    operations = [
        (path, method, op)
        for path, ops in schema["paths"].items()
        if path.startswith("/api/v1/")
        for method, op in ops.items()
        if isinstance(op, dict) and "responses" in op
    ]
    assert len(operations) > 40
    for path, method, op in operations:
        for code in ("429", "503"):
            assert _ref(op["responses"][code]["content"]) == "Error", (method, path, code)
