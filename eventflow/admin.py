"""The audit log in Django admin: read-only, for people who administer people (and superusers)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from streams.access import ACTION_PERMISSIONS, Action, caller_for_user, stream_ids_for

from .audit import audit_entries
from .models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "at",
        "kind",
        "action",
        "method",
        "path",
        "status",
        "duration_ms",
        "caller",
        "stream_id",
        "client_ip",
    )
    list_filter = ("kind", "action", "method", "status")
    search_fields = ("=caller", "=request_id", "=key_prefix", "path", "target")
    date_hierarchy = "at"
    ordering = ("-at", "-id")
    show_full_result_count = False
    readonly_fields = [field.name for field in AuditEntry._meta.fields]

    def _may_read(self, request: HttpRequest) -> bool:
        user: Any = request.user
        return bool(user.is_active and (user.is_superuser or user.has_perm(ACTION_PERMISSIONS[Action.ADMINISTER])))

    def get_queryset(self, request: HttpRequest) -> Any:
        # The rows the audit API shows: those of the streams the person reaches, and of no stream.
        return audit_entries(stream_ids=stream_ids_for(caller_for_user(request.user), Action.ADMINISTER))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._may_read(request)

    def has_view_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return self._may_read(request)

    # Append-only: nobody adds, changes or deletes audit rows here (retention alone deletes).
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False
