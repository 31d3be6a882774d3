"""audit_security: one row in the caller's transaction; audit rows are append-only."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError, transaction

from eventflow.audit import (
    RequestContext,
    audit_security,
    request_context_reset,
    request_context_set,
)
from eventflow.models import AuditEntry, AuditKind
from streams.access import Caller, caller_for_user


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
