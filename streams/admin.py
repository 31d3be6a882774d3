from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from eventflow.errors import DomainError

from . import (
    dead_letter_admin,  # noqa: F401  (registers the dead letter admin)
    people,
)
from .access import Action, Caller, caller_for_user, caller_of, may, stream_ids_for, streams_for, streams_reached
from .models import ApiKey, EventSchema, Stream, Team
from .schemas import stored_schema_refusal
from .selectors import api_keys_for, teams_for_new_stream
from .services import (
    KEY_UPDATABLE,
    STREAM_UPDATABLE,
    api_key_create,
    api_key_revoke,
    api_key_update,
    schema_version_add,
    stream_archive,
    stream_create,
    stream_unarchive,
    stream_update,
)


def _caller(request: HttpRequest) -> Caller:
    caller = caller_for_user(request.user)
    # Kept on the request: services that take no caller (revoke, archive) name it in the audit log.
    request.ef_caller = caller  # type: ignore[attr-defined]
    return caller


def _may(request: HttpRequest, action: Action, stream_id: int | None) -> bool:
    return stream_id is None or may(_caller(request), action, stream_id)


def _managed_streams(request: HttpRequest) -> QuerySet[Stream]:
    return streams_for(_caller(request), Action.MANAGE)


def _adopt(obj: Any, created: Any) -> None:
    """The admin form's unsaved instance stands for the row a service created (related fields, admin's log)."""
    obj.pk = created.pk
    obj._state.adding, obj._state.db = False, created._state.db
    for field in ("created_at", "prefix", "hashed_key", "version"):
        if hasattr(created, field):
            setattr(obj, field, getattr(created, field))


class EventSchemaInline(admin.TabularInline):
    model = EventSchema
    extra = 0
    fields = ("event_type", "version", "created_at", "refused")
    readonly_fields = ("event_type", "version", "created_at", "refused")
    can_delete = False
    show_change_link = True

    @admin.display(description="Refused (not applied)")
    def refused(self, obj: EventSchema) -> str:
        return (stored_schema_refusal(obj.pk, obj.schema) or "") if obj.pk else ""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class StreamAdminForm(forms.ModelForm):
    # Set by StreamAdmin.get_form: who is saving, for the teams a new stream is granted to.
    caller: Caller | None = None

    class Meta:
        model = Stream
        fields = ["slug", "name", "description", "schema_mode", "retention_days", "anonymize_ip"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.instance.pk is None and self.caller is not None:
            try:
                self.teams = teams_for_new_stream(caller=self.caller, slugs=None)
            except DomainError as exc:
                raise forms.ValidationError(f"{exc.message} Create it through the API or add it to a team.") from None
        return data


@admin.register(Stream)
class StreamAdmin(admin.ModelAdmin):
    """Streams the person reaches; saved by streams.services (same checks, cache invalidation and audit as the API)."""

    form = StreamAdminForm
    list_display = ("slug", "name", "schema_mode", "retention_days", "anonymize_ip", "created_at", "archived_at")
    list_filter = ("schema_mode", "archived_at")
    search_fields = ("slug", "name")
    inlines = [EventSchemaInline]
    actions = ["archive", "unarchive"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Stream]:
        return streams_reached(_caller(request))

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.caller = _caller(request)  # type: ignore[attr-defined]
        return form

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # The slug names the stream in keys, URLs and SDK settings: set once.
        return ("slug", "created_at", "archived_at") if obj is not None else ("created_at", "archived_at")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and _may(request, Action.MANAGE, obj and obj.pk)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and _caller(request).holds(Action.MANAGE)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A stream is archived, never deleted here: its log, offsets and audit trail stay.
        return False

    def save_model(self, request: HttpRequest, obj: Stream, form: Any, change: bool) -> None:
        data = {name: form.cleaned_data[name] for name in form.changed_data if name in STREAM_UPDATABLE}
        if change:
            stream_update(stream=Stream.objects.get(pk=obj.pk), **data)
            return
        data.pop("slug", None)
        _adopt(obj, stream_create(slug=obj.slug, teams=getattr(form, "teams", []), **data))

    @admin.action(description="Archive selected streams (they take no new events)")
    def archive(self, request: HttpRequest, queryset: QuerySet[Stream]) -> None:
        done = [stream_archive(stream=s) for s in queryset if _may(request, Action.MANAGE, s.pk)]
        self.message_user(request, f"Archived {len(done)} stream(s).", messages.SUCCESS)

    @admin.action(description="Unarchive selected streams")
    def unarchive(self, request: HttpRequest, queryset: QuerySet[Stream]) -> None:
        done = [stream_unarchive(stream=s) for s in queryset if _may(request, Action.MANAGE, s.pk)]
        self.message_user(request, f"Unarchived {len(done)} stream(s).", messages.SUCCESS)


class EventSchemaAdminForm(forms.ModelForm):
    force = forms.BooleanField(
        required=False, help_text="Save even though the schema would have rejected some of the newest logged events."
    )

    class Meta:
        model = EventSchema
        fields = ["stream", "event_type", "schema"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        stream, event_type, schema = data.get("stream"), data.get("event_type"), data.get("schema")
        if stream is None or not event_type or schema is None:
            return data
        try:
            outcome = schema_version_add(stream=stream, event_type=event_type, schema=schema, dry_run=True)
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from None
        if outcome.unchanged is not None:
            raise forms.ValidationError(
                f"This schema is the same as {event_type} v{outcome.unchanged.version}: saving it adds no version."
            )
        report = outcome.dry_run
        if report.rejected and not data.get("force"):
            reasons = "; ".join(f"{r['field']}: {r['message']} ({r['events']})" for r in report.reasons[:3])
            raise forms.ValidationError(
                f"This schema would have rejected {report.rejected} of the newest {report.checked} logged "
                f"{event_type} events ({reasons}). Tick “force” to save it anyway."
            )
        return data


@admin.register(EventSchema)
class EventSchemaAdmin(admin.ModelAdmin):
    """Schema versions: a new version is added (after a dry run on logged events), an old one never changes."""

    form = EventSchemaAdminForm
    list_display = ("stream", "event_type", "version", "created_at")
    list_filter = ("event_type",)
    search_fields = ("event_type", "stream__slug")
    list_select_related = ("stream",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[EventSchema]:
        return super().get_queryset(request).filter(stream__in=streams_reached(_caller(request)))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("stream", "event_type", "schema", "version", "created_at") if obj is not None else ()

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return (
            ["stream", "event_type", "version", "schema", "created_at"]
            if obj
            else ["stream", "event_type", "schema", "force"]
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and _caller(request).holds(Action.MANAGE)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "stream":
            kwargs["queryset"] = _managed_streams(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: EventSchema, form: Any, change: bool) -> None:
        data = form.cleaned_data
        outcome = schema_version_add(
            stream=data["stream"], event_type=data["event_type"], schema=data["schema"], force=True
        )
        # Unchanged only when the same schema was saved since the form's check: the admin shows that version.
        _adopt(obj, outcome.created or outcome.unchanged)


class ApiKeyAdminForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["name", "kind", "streams", "expires_at", "rate_limit_per_minute"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys of streams the person manages; issued and changed by streams.services, the key shown once."""

    form = ApiKeyAdminForm
    list_display = ("prefix", "name", "kind", "expires_at", "revoked_at", "last_used_at", "created_at")
    list_filter = ("kind", "revoked_at")
    search_fields = ("prefix", "name")
    filter_horizontal = ("streams",)
    actions = ["revoke"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiKey]:
        return api_keys_for(manageable=stream_ids_for(_caller(request), Action.MANAGE))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        shown = ("prefix", "last_used_at", "revoked_at", "created_at", "created_by")
        return ("kind", *shown) if obj is not None else ()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and _caller(request).holds(Action.MANAGE)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A revoked key can't be changed (api_key_update refuses it): shown read-only.
        return super().has_change_permission(request, obj) and (obj is None or obj.revoked_at is None)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Keys are revoked, never deleted: the record stays for the audit trail.
        return False

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "streams":
            kwargs["queryset"] = _managed_streams(request)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            changes = {n: data[n] for n in form.changed_data if n in KEY_UPDATABLE}
            api_key_update(api_key=ApiKey.objects.get(pk=obj.pk), **changes)
            return
        issued = api_key_create(
            kind=data["kind"],
            streams=list(data["streams"]),
            name=data.get("name") or "",
            expires_at=data.get("expires_at"),
            created_by=request.user,
        )
        if data.get("rate_limit_per_minute"):
            api_key_update(api_key=issued.api_key, rate_limit_per_minute=data["rate_limit_per_minute"])
        _adopt(obj, issued.api_key)
        self.message_user(
            request,
            f"The new key is {issued.raw_key} — copy it now: it is shown only this once.",
            messages.WARNING,
        )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # The streams were set by the service on creation; a change goes through it too.
        if change and "streams" in form.changed_data:
            api_key_update(api_key=ApiKey.objects.get(pk=form.instance.pk), streams=list(form.cleaned_data["streams"]))

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key)
            count += 1
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)


# --- people and teams: saved through streams.people, so admin gets the API's checks and audit rows ---


def _administers_people(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_active and user.has_perm("streams.administer_people"))


class TeamAdminForm(forms.ModelForm):
    # Set by TeamAdmin.get_form: who is saving, asked whether they may change the members.
    caller: Caller | None = None

    class Meta:
        model = Team
        fields = ["slug", "name", "members", "streams"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.instance.pk is not None and "members" in self.changed_data:
            if not people.team_within_reach(self.caller, self.instance):
                raise forms.ValidationError(
                    "This team holds streams you don't reach: only a superuser may change its members."
                )
        return data


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    form = TeamAdminForm
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
        return _administers_people(request) and (obj is None or people.team_within_reach(caller_of(request), obj))

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.caller = caller_of(request)  # type: ignore[attr-defined]
        return form

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
