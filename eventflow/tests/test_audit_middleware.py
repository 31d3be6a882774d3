"""AuditMiddleware: which requests are recorded, with what; the request id; the client's address."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, RequestFactory

from eventflow.audit import audit_buffer, audit_flush
from eventflow.middleware import AuditMiddleware, client_ip
from eventflow.models import AuditEntry, AuditKind
from streams.models import Stream
from tests.fixtures import conf_overridden

pytestmark = pytest.mark.usefixtures("empty_audit_buffer")


@conf_overridden(trusted_proxies=("127.0.0.1/32",))
def test_intake_request_is_buffered_then_written(client: Client, stream: Stream, ingest_key: str) -> None:
    response = client.post(
        "/api/v1/streams/shop/events",
        data={"type": "page_view"},
        content_type="application/json",
        HTTP_X_API_KEY=ingest_key,
        HTTP_X_REQUEST_ID="trace-42",
    )
    assert response.status_code == 202
    assert response["X-Request-ID"] == "trace-42"
    assert not AuditEntry.objects.filter(kind=AuditKind.REQUEST).exists()
    assert audit_flush() == 1
    entry = AuditEntry.objects.get(kind=AuditKind.REQUEST)
    assert (entry.kind, entry.method, entry.path, entry.status, entry.stream_id) == (
        AuditKind.REQUEST,
        "POST",
        "/api/v1/streams/shop/events",
        202,
        stream.pk,
    )
    assert (entry.request_id, entry.caller, entry.key_prefix, entry.client_ip) == (
        "trace-42",
        ingest_key[: len(entry.key_prefix)],
        entry.caller,
        "127.0.0.1",
    )
    assert entry.key_prefix and ingest_key.startswith(entry.key_prefix)
    assert entry.duration_ms is not None and entry.duration_ms > 0


def test_failed_intake_is_recorded_without_a_stream(client: Client, stream: Stream) -> None:
    response = client.post(
        "/api/v1/streams/shop/events", data={}, content_type="application/json", HTTP_X_API_KEY="ef_ingest_nope"
    )
    assert response.status_code == 401
    audit_flush()
    entry = AuditEntry.objects.get(kind=AuditKind.REQUEST)
    assert (entry.status, entry.caller, entry.stream_id) == (401, "", None)


@conf_overridden(trusted_proxies=("127.0.0.1/32",))
@pytest.mark.parametrize("given", ["", "has spaces", "x" * 65, "<script>", "-leading-dash"])
def test_an_insane_request_id_is_replaced(client: Client, db: Any, given: str) -> None:
    response = client.get("/api/v1/audit", HTTP_X_REQUEST_ID=given)
    assert len(response["X-Request-ID"]) == 32 and response["X-Request-ID"] != given


@conf_overridden(trusted_proxies=("10.0.0.0/8",))
def test_a_request_id_is_kept_only_from_a_trusted_proxy(client: Client, db: Any) -> None:
    proxied = client.get("/api/v1/audit", HTTP_X_REQUEST_ID="lb-7f3a", REMOTE_ADDR="10.1.2.3")
    assert proxied["X-Request-ID"] == "lb-7f3a"
    direct = client.get("/api/v1/audit", HTTP_X_REQUEST_ID="lb-7f3a", REMOTE_ADDR="192.0.2.1")
    assert len(direct["X-Request-ID"]) == 32 and direct["X-Request-ID"] != "lb-7f3a"
    # A trusted proxy's forwarded chain does not make the client trusted for its own header either.
    forwarded = client.get(
        "/api/v1/audit", HTTP_X_REQUEST_ID="mine", HTTP_X_FORWARDED_FOR="10.9.9.9", REMOTE_ADDR="192.0.2.1"
    )
    assert forwarded["X-Request-ID"] != "mine"


def test_page_reads_and_health_are_not_recorded_but_page_actions_are(client: Client, db: Any) -> None:
    client.get("/admin/login/")
    client.get("/health")
    client.post("/admin/login/", {"username": "nobody", "password": "wrong"})
    audit_flush()
    rows = list(AuditEntry.objects.filter(kind=AuditKind.REQUEST).values_list("method", "path", "status"))
    assert rows == [("POST", "/admin/login/", 200)]


def test_a_persons_api_request_names_them(client: Client, db: Any, django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("bob", password="pw-bob-123456")
    client.force_login(user)
    client.get("/api/v1/audit")
    audit_flush()
    entry = AuditEntry.objects.get(kind=AuditKind.REQUEST)
    assert (entry.caller, entry.user_id, entry.status) == ("bob", user.pk, 403)


def test_the_intake_path_does_no_audit_query(
    client: Client, stream: Stream, ingest_key: str, django_assert_num_queries: Any
) -> None:
    def send() -> None:
        response = client.post(
            "/api/v1/streams/shop/events",
            data={"type": "page_view"},
            content_type="application/json",
            HTTP_X_API_KEY=ingest_key,
        )
        assert response.status_code == 202

    send()
    with django_assert_num_queries(1):
        send()
    assert len(audit_buffer()) == 2


@conf_overridden(trusted_proxies=("10.0.0.0/8",))
def test_forwarded_for_counts_only_from_a_trusted_proxy() -> None:
    factory = RequestFactory()
    trusted = AuditMiddleware(lambda request: None).trusted  # type: ignore[arg-type, return-value]
    via_proxy = factory.get("/", REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="198.51.100.7, 203.0.113.5, 10.9.9.9")
    assert client_ip(via_proxy, trusted) == "203.0.113.5"
    direct = factory.get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert client_ip(direct, trusted) == "192.0.2.1"
    garbage = factory.get("/", REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="not-an-ip")
    assert client_ip(garbage, trusted) == "10.1.2.3"
    assert client_ip(factory.get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="203.0.113.5"), ()) == "192.0.2.1"
