"""audit_security: one row in the caller's transaction; audit rows are append-only."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, transaction

from eventflow.audit import (
    RequestContext,
    audit_retention_run,
    audit_security,
    request_context_reset,
    request_context_set,
)
from eventflow.models import AuditEntry, AuditKind
from eventflow.tasks import audit_retention
from streams.access import Caller, caller_for_user
from tests.fixtures import conf_override


@pytest.fixture
def alice(db: Any) -> Any:
    return get_user_model().objects.create_user("alice", password="pw-not-used-9")


def test_security_event_records_caller_and_request(alice: Any) -> None:
    token = request_context_set(RequestContext("req-1", "203.0.113.9", "POST", "/api/v1/keys"))
    try:
        audit_security(
            action="key.create", caller=caller_for_user(alice), stream_id=7, target="key:3", details={"kind": "ingest"}
        )
    finally:
        request_context_reset(token)
    entry = AuditEntry.objects.get()
    assert (entry.kind, entry.action, entry.caller, entry.user_id, entry.stream_id, entry.target) == (
        AuditKind.SECURITY,
        "key.create",
        "alice",
        alice.pk,
        7,
        "key:3",
    )
    assert (entry.request_id, entry.client_ip, entry.method, entry.path) == (
        "req-1",
        "203.0.113.9",
        "POST",
        "/api/v1/keys",
    )
    assert entry.details == {"kind": "ingest"}


def test_security_event_rolls_back_with_the_change(alice: Any) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_security(action="key.revoke", user=alice, target="key:1")
        raise RuntimeError("the change failed")
    assert not AuditEntry.objects.exists()


def test_security_event_without_anyone(db: Any) -> None:
    audit_security(action="login.failure", caller=Caller(), target="mallory")
    entry = AuditEntry.objects.get()
    assert (entry.caller, entry.user_id, entry.target, entry.request_id) == ("", None, "mallory", "")


def test_audit_rows_cannot_be_edited_or_deleted(alice: Any) -> None:
    audit_security(action="key.create", user=alice)
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEntry.objects.update(action="key.revoke")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.get().action == "key.create"


def test_deleting_a_person_keeps_their_rows(alice: Any) -> None:
    audit_security(action="key.create", user=alice)
    alice.delete()
    entry = AuditEntry.objects.get()
    assert (entry.user_id, entry.caller) == (None, "alice")


def _old_row(days: int) -> None:
    audit_security(action="key.create")
    # Only the test can backdate a row: the trigger refuses updates to anything else.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("ALTER TABLE eventflow_auditentry DISABLE TRIGGER eventflow_audit_append_only")
        cursor.execute(
            "UPDATE eventflow_auditentry SET at = now() - make_interval(days => %s) WHERE id = "
            "(SELECT max(id) FROM eventflow_auditentry)",
            [days],
        )
        cursor.execute("ALTER TABLE eventflow_auditentry ENABLE TRIGGER eventflow_audit_append_only")


def test_retention_deletes_old_rows_in_chunks(db: Any, settings: Any) -> None:
    for days in (200, 120, 91, 10, 0):
        _old_row(days)
    conf_override(settings, audit_retention_days=90)
    assert audit_retention_run(days=90, chunk=2) == 3
    assert AuditEntry.objects.count() == 2
    assert audit_retention() == 0


def test_admin_shows_the_log_read_only(client: Any, db: Any, django_user_model: Any) -> None:
    from django.contrib.auth.models import Group

    audit_security(action="key.create")
    entry = AuditEntry.objects.get()
    admin_person = django_user_model.objects.create_user("boss", password="pw-boss-123456", is_staff=True)
    admin_person.groups.add(Group.objects.get(name="Admin"))
    developer = django_user_model.objects.create_user("dev", password="pw-dev-1234567", is_staff=True)
    developer.groups.add(Group.objects.get(name="Developer"))
    client.force_login(admin_person)
    assert client.get("/admin/eventflow/auditentry/").status_code == 200
    assert client.get(f"/admin/eventflow/auditentry/{entry.pk}/change/").status_code == 200
    assert client.get("/admin/eventflow/auditentry/add/").status_code == 403
    assert client.post(f"/admin/eventflow/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    client.force_login(developer)
    assert client.get("/admin/eventflow/auditentry/").status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()
