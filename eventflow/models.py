"""The audit log: who did what, when, from where. Rows are only ever added, and removed by retention."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class AuditKind(models.TextChoices):
    REQUEST = "request", "Request"
    SECURITY = "security", "Security event"


class AuditEntry(models.Model):
    """One API request or page action (``request``), or one security event (``security``).

    Append-only: nothing edits or deletes these rows but the retention task
    (``eventflow.audit_retention``). Request rows of the intake are written in
    bulk by a background flusher (eventflow/audit.py), so neither the user nor
    the stream is a database foreign key: a row must never fail to insert
    because a person or stream was deleted while it sat in the buffer. The
    caller's label keeps the name either way.
    """

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(default=timezone.now)
    request_id = models.CharField(max_length=64, blank=True, default="")
    kind = models.CharField(max_length=16, choices=AuditKind.choices)
    # What a security event was ("key.create", "login.failure"); empty for requests.
    action = models.CharField(max_length=64, blank=True, default="")
    method = models.CharField(max_length=16, blank=True, default="")
    path = models.CharField(max_length=512, blank=True, default="")
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    # The key's prefix or the person's username, as it was at the time.
    caller = models.CharField(max_length=150, blank=True, default="")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    key_prefix = models.CharField(max_length=32, blank=True, default="")
    stream_id = models.BigIntegerField(null=True, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    # What a security event acted on ("key:12", "stream:shop", a username).
    target = models.CharField(max_length=200, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        # One index per filter of GET /api/v1/audit, each ending in the time so
        # that "newest first" within a filter is an index scan. Retention and the
        # unfiltered list use the first one.
        indexes = [
            models.Index(fields=["at", "id"], name="ef_audit_at"),
            models.Index(fields=["caller", "at"], name="ef_audit_caller_at"),
            models.Index(fields=["user", "at"], name="ef_audit_user_at"),
            models.Index(fields=["stream_id", "at"], name="ef_audit_stream_at"),
            models.Index(fields=["status", "at"], name="ef_audit_status_at"),
            # Path prefixes (LIKE '…%') need the pattern operator class whatever the collation.
            models.Index(
                fields=["path", "at"], opclasses=["varchar_pattern_ops", "timestamptz_ops"], name="ef_audit_path_at"
            ),
            # Security events are few among many requests: a small partial index.
            models.Index(fields=["action", "at"], name="ef_audit_security_at", condition=Q(kind="security")),
        ]

    def __str__(self) -> str:
        what = self.action or f"{self.method} {self.path}"
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.caller or '-'} {what}"
