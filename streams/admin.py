from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import ApiKey, EventSchema, Stream
from .services import api_key_revoke


class EventSchemaInline(admin.TabularInline):
    model = EventSchema
    extra = 0
    fields = ("event_type", "version", "created_at")
    readonly_fields = ("event_type", "version", "created_at")
    can_delete = False
    show_change_link = True


@admin.register(Stream)
class StreamAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "schema_mode", "retention_days", "anonymize_ip", "created_at", "archived_at")
    list_filter = ("schema_mode", "archived_at")
    search_fields = ("slug", "name")
    readonly_fields = ("created_at",)
    inlines = [EventSchemaInline]


@admin.register(EventSchema)
class EventSchemaAdmin(admin.ModelAdmin):
    list_display = ("stream", "event_type", "version", "created_at")
    list_filter = ("stream", "event_type")
    readonly_fields = ("created_at",)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "kind", "expires_at", "revoked_at", "last_used_at", "created_at")
    list_filter = ("kind", "revoked_at")
    search_fields = ("prefix", "name")
    filter_horizontal = ("streams",)
    readonly_fields = ("prefix", "hashed_key", "last_used_at", "revoked_at", "created_at", "created_by")
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Keys are issued by `create_api_key` (or the dashboard), which shows the key once.
        return False

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key)
            count += 1
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        from .auth import api_key_cache_forget

        api_key_cache_forget(form.instance.hashed_key)
