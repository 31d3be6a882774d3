"""Django admin for dead letters: operators find, inspect, replay and discard the letters of their streams.

The list holds only letters of streams the signed-in person may operate
(``streams.access``), and the actions call the same services as the API.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from .access import Action, caller_for_user, stream_ids_for
from .dead_letters import (
    SKIP_REASONS,
    ActionOutcome,
    dead_letters_delete,
    dead_letters_discard,
    dead_letters_replay,
)
from .models import DeadLetter


def _operated(request: HttpRequest) -> frozenset[int] | None:
    return stream_ids_for(caller_for_user(request.user), Action.OPERATE)


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ("event_id", "stream", "stage", "error_class", "short_error", "attempts", "status", "last_failed_at")
    list_filter = (
        "status",
        "stage",
        ("stream", admin.RelatedOnlyFieldListFilter),
        "error_class",
        ("last_failed_at", admin.DateFieldListFilter),
    )
    search_fields = ("event_id",)
    date_hierarchy = "last_failed_at"
    list_select_related = ("stream",)
    actions = ["replay", "discard"]
    readonly_fields = (
        "stream",
        "event_id",
        "stage",
        "group",
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

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeadLetter]:
        letters = super().get_queryset(request)
        stream_ids = _operated(request)
        return letters if stream_ids is None else letters.filter(stream_id__in=stream_ids)

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

    # Deleted by the service, so each deletion has its security event, as replay and discard do.
    def delete_model(self, request: HttpRequest, obj: DeadLetter) -> None:
        self.delete_queryset(request, DeadLetter.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        caller = caller_for_user(request.user)
        dead_letters_delete(
            ids=queryset.values_list("pk", flat=True),
            stream_ids=stream_ids_for(caller, Action.OPERATE),
            acted_by=request.user,
            caller=caller,
        )

    def _report(self, request: HttpRequest, outcome: ActionOutcome, done: str) -> None:
        """A success message for the letters acted on, if any, and a warning naming how many were skipped and why.

        ``done`` is the past tense of the action ("Replayed"); when every letter was skipped, the warning
        says so instead of a success that acted on nothing.
        """
        if outcome.count:
            self.message_user(request, f"{done} {outcome.count} dead letter(s).", messages.SUCCESS)
        if not outcome.skipped:
            if not outcome.count:
                self.message_user(request, f"No dead letter {done.lower()}.", messages.WARNING)
            return
        reasons = Counter(skipped.reason for skipped in outcome.skipped)
        why = "; ".join(f"{SKIP_REASONS[reason].rstrip('.').lower()} ({n})" for reason, n in reasons.items())
        nothing = "" if outcome.count else f"No dead letter {done.lower()}. "
        self.message_user(request, f"{nothing}Skipped {len(outcome.skipped)}: {why}.", messages.WARNING)

    @admin.action(description="Replay selected dead letters", permissions=["change"])
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        caller = caller_for_user(request.user)
        outcome = dead_letters_replay(
            ids=queryset.values_list("pk", flat=True),
            stream_ids=stream_ids_for(caller, Action.OPERATE),
            acted_by=request.user,
            caller=caller,
        )
        self._report(request, outcome, "Replayed")

    @admin.action(description="Discard selected dead letters", permissions=["change"])
    def discard(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        caller = caller_for_user(request.user)
        outcome = dead_letters_discard(
            ids=queryset.values_list("pk", flat=True),
            stream_ids=stream_ids_for(caller, Action.OPERATE),
            acted_by=request.user,
            caller=caller,
        )
        self._report(request, outcome, "Discarded")
