from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import ConsumerGroup, DeliveryAttempt, WebhookSubscription
from .services import consumer_group_pause, consumer_group_resume
from .webhook_services import webhook_delete, webhook_disable, webhook_enable


@admin.register(ConsumerGroup)
class ConsumerGroupAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "stream",
        "kind",
        "committed_offset",
        "paused",
        "max_deliver",
        "on_max_deliver",
        "updated_at",
    )
    list_filter = ("kind", "paused", "stream")
    search_fields = ("name", "stream__slug")
    readonly_fields = (
        "stream",
        "name",
        "kind",
        "committed_offset",
        "deliveries",
        "lease_id",
        "lease_start",
        "lease_end",
        "lease_expires_at",
        "paused",
        "paused_reason",
        "created_at",
        "updated_at",
    )
    fields = (*readonly_fields[:3], "max_deliver", "on_max_deliver", *readonly_fields[3:])
    actions = ["pause", "resume"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Groups are created through the API, which resolves the start position.
        return False

    def save_model(self, request: HttpRequest, obj: ConsumerGroup, form: Any, change: bool) -> None:
        # Only the policy: a full save could move the position back under a live consumer.
        obj.save(update_fields=["max_deliver", "on_max_deliver", "updated_at"])

    @admin.action(description="Pause selected groups")
    def pause(self, request: HttpRequest, queryset: QuerySet[ConsumerGroup]) -> None:
        for group in queryset.filter(paused=False):
            consumer_group_pause(lookup={"pk": group.pk}, reason=f"Paused by {request.user} in admin.")
        self.message_user(request, "Paused.", messages.SUCCESS)

    @admin.action(description="Resume selected groups")
    def resume(self, request: HttpRequest, queryset: QuerySet[ConsumerGroup]) -> None:
        for group in queryset.filter(paused=True):
            consumer_group_resume(lookup={"pk": group.pk})
        self.message_user(request, "Resumed.", messages.SUCCESS)


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("created_at", "outcome", "status_code", "latency_ms", "first_offset", "end_offset", "attempt", "error")
    readonly_fields = fields
    ordering = ("-id",)
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeliveryAttempt]:
        return super().get_queryset(request).order_by("-id")


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "stream",
        "url",
        "is_active",
        "disabled_reason",
        "consecutive_failures",
        "next_attempt_at",
        "last_success_at",
    )
    list_filter = ("is_active", "stream")
    search_fields = ("url", "description", "stream__slug")
    # The URL is changed through the API, which checks where it points.
    readonly_fields = (
        "stream",
        "group",
        "url",
        "is_active",
        "disabled_reason",
        "disabled_at",
        "consecutive_failures",
        "next_attempt_at",
        "last_success_at",
        "last_failure_at",
        "created_at",
        "updated_at",
    )
    exclude = ("secret",)
    actions = ["enable", "disable"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Subscriptions are created through the API, which checks the URL and shows the secret once.
        return False

    def save_model(self, request: HttpRequest, obj: WebhookSubscription, form: Any, change: bool) -> None:
        # Only what the form edits: delivery keeps writing the failure counts and backoff meanwhile.
        obj.save(update_fields=[*form.changed_data, "updated_at"])

    @admin.action(description="Re-enable selected subscriptions")
    def enable(self, request: HttpRequest, queryset: QuerySet[WebhookSubscription]) -> None:
        count = 0
        for webhook in queryset.filter(is_active=False):
            webhook_enable(webhook=webhook)
            count += 1
        self.message_user(request, f"Re-enabled {count} subscription(s).", messages.SUCCESS)

    @admin.action(description="Disable selected subscriptions")
    def disable(self, request: HttpRequest, queryset: QuerySet[WebhookSubscription]) -> None:
        count = 0
        for webhook in queryset.filter(is_active=True):
            webhook_disable(webhook=webhook, reason=f"Disabled by {request.user} in admin.")
            count += 1
        self.message_user(request, f"Disabled {count} subscription(s).", messages.SUCCESS)

    def get_inlines(self, request: HttpRequest, obj: WebhookSubscription | None = None) -> list[type]:
        return [DeliveryAttemptInline]

    # A subscription goes together with its consumer group.
    def delete_model(self, request: HttpRequest, obj: WebhookSubscription) -> None:
        webhook_delete(webhook=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[WebhookSubscription]) -> None:
        for webhook in queryset:
            webhook_delete(webhook=webhook)


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "subscription",
        "outcome",
        "status_code",
        "latency_ms",
        "event_count",
        "attempt",
        "is_test",
    )
    list_filter = ("outcome", "is_test")
    search_fields = ("delivery_id", "error")
    list_select_related = ("subscription",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: DeliveryAttempt | None = None) -> bool:
        return False
