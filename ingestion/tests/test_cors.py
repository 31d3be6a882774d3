"""Ingest keys are used from browsers: the intake answers CORS preflights and carries CORS headers."""

from __future__ import annotations

import pytest

from tests.intake import batch_url, events_url, post_event

pytestmark = pytest.mark.django_db


def _names(header: str) -> set[str]:
    return {part.strip().lower() for part in header.split(",")}


@pytest.mark.parametrize("url", [events_url("shop"), batch_url("shop")], ids=["events", "batch"])
def test_preflight_allows_a_browser_to_post_json_with_a_key(api, stream, url):
    response = api.options(
        url,
        HTTP_ORIGIN="https://app.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type, x-api-key, content-encoding",
    )

    assert response.status_code in (200, 204)
    assert response["Access-Control-Allow-Origin"] in ("*", "https://app.example.com")
    assert "post" in _names(response["Access-Control-Allow-Methods"])
    assert {"content-type", "x-api-key", "content-encoding"} <= _names(response["Access-Control-Allow-Headers"])
    assert int(response["Access-Control-Max-Age"]) > 0


def test_preflight_needs_no_key(api, stream):
    response = api.options(events_url("no-such-stream"), HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert response.status_code in (200, 204)
    assert "Access-Control-Allow-Origin" in response


def test_accepted_and_refused_posts_carry_the_allow_origin_header(api, stream, ingest_key):
    accepted = post_event(api, stream.slug, {"type": "logout"}, key=ingest_key, HTTP_ORIGIN="https://app.example.com")
    refused = post_event(api, stream.slug, {"type": "logout"}, key=None, HTTP_ORIGIN="https://app.example.com")

    assert accepted.status_code == 202
    assert refused.status_code == 401
    for response in (accepted, refused):
        assert response["Access-Control-Allow-Origin"] in ("*", "https://app.example.com")
