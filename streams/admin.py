from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from eventflow.errors import DomainError

from . import people
from .access import Action, caller_of, stream_ids_for
from .models import ApiKey, EventSchema, Stream, Team
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


# --- people and teams: saved through streams.people, so admin gets the API's checks and audit rows ---


def _administers_people(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_active and user.has_perm("streams.administer_people"))


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")
    filter_horizontal = ("members", "streams")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # The slug names the team in URLs and in the audit log: set once.
        return ("slug", "created_at") if obj is not None else ("created_at",)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _administers_people(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _administers_people(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _administers_people(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _administers_people(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _administers_people(request)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "streams":
            # Only streams the admin reaches are offered; people.team_set leaves the others alone.
            ids = stream_ids_for(caller_of(request), Action.ADMINISTER)
            kwargs["queryset"] = Stream.objects.all() if ids is None else Stream.objects.filter(pk__in=ids)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Team, form: Any, change: bool) -> None:
        caller = caller_of(request)
        if change:
            people.team_rename(caller=caller, team=Team.objects.get(pk=obj.pk), name=obj.name)
        else:
            created = people.team_create(caller=caller, slug=obj.slug, name=obj.name)
            # The form's instance stands for the saved team from here on (related fields, admin's log).
            obj.pk, obj.created_at = created.pk, created.created_at
            obj._state.adding, obj._state.db = False, created._state.db

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        people.team_set(
            caller=caller_of(request),
            team=form.instance,
            members=form.cleaned_data.get("members", []),
            streams=form.cleaned_data.get("streams", []),
        )
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request: HttpRequest, obj: Team) -> None:
        people.team_delete(caller=caller_of(request), team=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Team]) -> None:
        for team in queryset:
            people.team_delete(caller=caller_of(request), team=team)


User = get_user_model()


class PersonAdmin(UserAdmin):
    """Django's user admin, with role and active-state changes made by streams.people (checks and audit)."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        wanted_active = obj.is_active
        if change:
            obj.is_active = User.objects.values_list("is_active", flat=True).get(pk=obj.pk)
        super().save_model(request, obj, form, change)
        if not change or wanted_active == obj.is_active:
            return
        try:
            people.person_update(caller=caller_of(request), user=obj, is_active=wanted_active)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        chosen = list(form.cleaned_data.get("groups", []))
        roles = [group.name for group in chosen if group.name in people.ROLE_NAMES]
        # Django's form sets the groups that are not roles; the roles keep their state until set_roles runs.
        held_roles = list(form.instance.groups.filter(name__in=people.ROLE_NAMES))
        form.cleaned_data["groups"] = [g for g in chosen if g.name not in people.ROLE_NAMES] + held_roles
        super().save_related(request, form, formsets, change)
        try:
            people.person_set_roles(caller=caller_of(request), user=form.instance, roles=roles)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)


admin.site.unregister(User)
admin.site.register(User, PersonAdmin)
