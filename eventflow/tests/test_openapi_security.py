import pytest
import yaml

pytestmark = pytest.mark.django_db


def test_stream_endpoints_declare_the_api_key_scheme(client):
    schema = yaml.safe_load(client.get("/api/schema/").content)
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schema["components"]["securitySchemes"]["ApiKeyAuth"]["description"],
    }
    send = schema["paths"]["/api/v1/streams/{slug}/events"]["post"]
    assert {"ApiKeyAuth": []} in send["security"]
    poll = schema["paths"]["/api/v1/streams/{slug}/consumer-groups/{group}/poll"]["post"]
    assert {"ApiKeyAuth": []} in poll["security"] and {"jwtAuth": []} in poll["security"]
