from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from .dead_letters import REPLAYABLE_STAGES, dead_letters_discard, dead_letters_replay
from .models import DeadLetter, DeadLetterStatus


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ("event_id", "stream", "stage", "error_class", "short_error", "attempts", "status", "last_failed_at")
    list_filter = ("status", "stage", "stream", "error_class", ("last_failed_at", admin.DateFieldListFilter))
    search_fields = ("event_id",)
    date_hierarchy = "last_failed_at"
    list_select_related = ("stream",)
    actions = ["replay", "discard"]
    readonly_fields = (
        "stream",
        "event_id",
        "stage",
        "subscriber",
        "log_offset",
        "error_class",
        "error_message",
        "pretty_event",
        "pretty_traceback",
        "attempts",
        "first_failed_at",
        "last_failed_at",
        "status",
        "acted_by",
        "acted_at",
        "created_at",
    )
    exclude = ("event", "traceback")

    @admin.display(description="error")
    def short_error(self, obj: DeadLetter) -> str:
        return obj.error_message[:80]

    @admin.display(description="event")
    def pretty_event(self, obj: DeadLetter) -> str:
        return format_html(
            "<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(obj.event, indent=2, sort_keys=True)
        )

    @admin.display(description="traceback")
    def pretty_traceback(self, obj: DeadLetter) -> str:
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", obj.traceback or "—")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    @admin.action(description="Replay selected dead letters", permissions=["change"])
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        skipped = queryset.exclude(status=DeadLetterStatus.OPEN, stage__in=REPLAYABLE_STAGES).count()
        count = dead_letters_replay(ids=queryset.values_list("pk", flat=True), user=request.user)
        self.message_user(request, f"Replayed {count} dead letter(s).", messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"Skipped {skipped}: only open letters of processing stages can be replayed here.",
                messages.WARNING,
            )

    @admin.action(description="Discard selected dead letters", permissions=["change"])
    def discard(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        count = dead_letters_discard(ids=queryset.values_list("pk", flat=True), user=request.user)
        self.message_user(request, f"Discarded {count} dead letter(s).", messages.SUCCESS)
