"""The dashboard's pages of streams and API keys.

Thin, as the REST views are: ``@page`` asks the access rule (and hands over the
stream), a form parses the input, one service does the work (``submit`` puts
its refusals on the form), and a template renders the answer.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from analytics.filters import EventFilter
from analytics.page_selectors import minute_chart, top_types
from analytics.query import events_page
from consumers.selectors import consumer_group_state, consumer_groups_of_stream, webhooks_of_stream
from eventflow import conf
from eventflow.dashboard import cursor_page, page, submit

from .access import REACH, Action, Caller, stream_ids_for, streams_for, streams_reached
from .log_selectors import log_counts
from .models import ApiKeyKind, SchemaMode, Stream, Team
from .selectors import StreamInfo, api_key_get, api_keys_for, schemas_of_stream, stream_get, teams_for_new_stream
from .services import api_key_create, api_key_revoke, stream_archive, stream_create, stream_unarchive, stream_update

# The live tail shows this many of the newest log entries.
TAIL_EVENTS = 20


def _base_url(request: HttpRequest) -> str:
    return (conf.get().base_url or request.build_absolute_uri("/")).rstrip("/")


# --- streams -------------------------------------------------------------------------------------


class StreamSettingsForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))
    schema_mode = forms.ChoiceField(
        choices=SchemaMode.choices,
        initial=SchemaMode.WARN,
        help_text="What happens to an event that breaks its type's schema.",
    )
    retention_days = forms.IntegerField(
        min_value=1, max_value=36500, initial=30, help_text="Logged events older than this are deleted."
    )
    anonymize_ip = forms.BooleanField(required=False, initial=True, label="Anonymise IP addresses")


class StreamCreateForm(StreamSettingsForm):
    slug = forms.RegexField(
        regex=r"^[a-z0-9][a-z0-9-]{0,63}$",
        max_length=64,
        help_text="Lowercase letters, digits and -. It is part of the intake URL and never changes.",
        error_messages={"invalid": "Use lowercase letters, digits and - (starting with a letter or digit)."},
    )
    teams = forms.ModelMultipleChoiceField(
        queryset=Team.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Who reaches the new stream. Left empty: your only team.",
    )
    starter_schemas = forms.BooleanField(
        required=False,
        initial=True,
        label="Register the starter event types",
        help_text="login, logout, page_view, button_click, form_submit",
    )

    field_order = ["slug", "name", "description", "teams", "schema_mode", "retention_days", "anonymize_ip"]

    def __init__(self, *args: Any, caller: Caller, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        teams = Team.objects.order_by("slug")
        self.fields["teams"].queryset = teams if caller.is_superuser else teams.filter(members=caller.user)  # type: ignore[attr-defined]


@page(REACH, section="streams")
def streams_list(request: HttpRequest, caller: Caller) -> HttpResponse:
    streams = streams_reached(caller).prefetch_related("teams")
    found = cursor_page(request, streams, "slug")
    counts = log_counts(stream_ids=[stream.id for stream in found.items])
    return render(request, "streams/list.html", {"page": found, "counts": counts})


@page(Action.MANAGE, methods=("GET", "POST"), section="streams")
def stream_new(request: HttpRequest, caller: Caller) -> HttpResponse:
    form = StreamCreateForm(request.POST or None, caller=caller)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data

        def create() -> Stream:
            teams = teams_for_new_stream(caller=caller, slugs=[t.slug for t in data["teams"]] or None)
            return stream_create(
                slug=data["slug"],
                name=data["name"],
                description=data["description"],
                schema_mode=data["schema_mode"],
                retention_days=data["retention_days"],
                anonymize_ip=data["anonymize_ip"],
                with_starter_schemas=data["starter_schemas"],
                teams=teams,
            )

        stream = submit(form, create)
        if stream is not None:
            messages.success(request, f"Stream “{stream.name}” created. Create a key to send it events.")
            return redirect("stream", slug=stream.slug)
    return render(request, "streams/form.html", {"form": form, "creating": True})


@page(REACH, section="streams")
def stream_detail(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    found = stream_get(stream_id=stream.id)
    context: dict[str, Any] = {
        "stream": found,
        "counts": log_counts(stream_ids=[stream.id])[stream.id],
        "schemas": schemas_of_stream(stream_id=stream.id),
        "intake_url": f"{_base_url(request)}/api/v1/streams/{found.slug}/events",
    }
    if caller.holds(Action.MANAGE):
        keys = api_keys_for(manageable=stream_ids_for(caller, Action.MANAGE)).filter(streams=stream.id)
        context["keys"] = list(keys.order_by("-created_at")[:20])
        context["webhooks"] = list(webhooks_of_stream(stream_id=stream.id).order_by("id"))
    if caller.holds(Action.CONSUME):
        context["groups"] = [consumer_group_state(g) for g in consumer_groups_of_stream(stream_id=stream.id)]
    if caller.holds(Action.READ):
        now = timezone.now()
        context["per_minute"] = minute_chart(stream_id=stream.id, now=now)
        context["top_types"] = top_types(stream_id=stream.id, start=now - timedelta(hours=24), end=now)
    return render(request, "streams/detail.html", context)


@page(Action.READ)
def stream_tail(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    """The newest log entries (the live tail polls this every 2 s)."""
    events = events_page(stream_id=stream.id, event_filter=EventFilter(), order="newest", limit=TAIL_EVENTS).events
    response = render(request, "streams/_tail.html", {"events": events, "slug": stream.slug, "now": timezone.now()})
    response["Cache-Control"] = "no-store"
    return response


@page(Action.MANAGE, methods=("GET", "POST"), section="streams")
def stream_edit(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    found = stream_get(stream_id=stream.id)
    initial = {name: getattr(found, name) for name in StreamSettingsForm.base_fields}
    form = StreamSettingsForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        if submit(form, lambda: stream_update(stream=found, **form.cleaned_data)) is not None:
            messages.success(request, "Settings saved.")
            return redirect("stream", slug=found.slug)
    return render(request, "streams/form.html", {"form": form, "stream": found, "creating": False})


@page(Action.MANAGE, methods=("GET", "POST"), section="streams")
def stream_archive_page(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    found = stream_get(stream_id=stream.id)
    archiving = found.archived_at is None
    if request.method == "POST":
        # The confirmation says which way it goes: sent again (a double click, a reload), it must not undo itself.
        wanted = request.POST.get("archive")
        if wanted is not None and (wanted == "1") != archiving:
            state = "archived" if found.archived_at else "taking events"
            messages.info(request, f"“{found.name}” is {state} already: nothing changed.")
        elif archiving:
            stream_archive(stream=found)
            messages.success(request, f"“{found.name}” is archived: it takes no new events.")
        else:
            stream_unarchive(stream=found)
            messages.success(request, f"“{found.name}” takes events again.")
        return redirect("stream", slug=found.slug)
    return render(request, "streams/archive.html", {"stream": found, "archiving": archiving})


# --- API keys ------------------------------------------------------------------------------------


class KeyCreateForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="Where it is used, e.g. “web tracker” or “billing consumer”.")
    kind = forms.ChoiceField(
        choices=[
            (ApiKeyKind.INGEST, "Ingest: sends events only (safe in a browser or app)"),
            (ApiKeyKind.SECRET, "Secret: sends, reads and consumes (keep it on a server)"),
        ],
        initial=ApiKeyKind.INGEST,
        widget=forms.RadioSelect,
    )
    streams = forms.ModelMultipleChoiceField(
        queryset=Stream.objects.none(), widget=forms.CheckboxSelectMultiple, help_text="The streams it may use."
    )
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Left empty, the key works until it is revoked.",
    )
    rate_limit_per_minute = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=10_000_000,
        label="Requests a minute",
        help_text="Left empty: the installation's default.",
    )

    def __init__(self, *args: Any, caller: Caller, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only streams the caller manages can be granted; any other is not a choice at all.
        self.fields["streams"].queryset = streams_for(caller, Action.MANAGE).order_by("slug")  # type: ignore[attr-defined]

    def clean_expires_at(self) -> datetime | None:
        value: datetime | None = self.cleaned_data.get("expires_at")
        if value is not None and value <= timezone.now():
            raise forms.ValidationError("Must be in the future.")
        return value


@page(Action.MANAGE, section="keys")
def keys_list(request: HttpRequest, caller: Caller) -> HttpResponse:
    keys = api_keys_for(manageable=stream_ids_for(caller, Action.MANAGE))
    return render(request, "streams/keys.html", {"page": cursor_page(request, keys, "-created_at")})


@page(Action.MANAGE, methods=("GET", "POST"), section="keys")
def key_new(request: HttpRequest, caller: Caller) -> HttpResponse:
    initial = {"streams": streams_for(caller, Action.MANAGE).filter(slug=request.GET.get("stream", ""))}
    form = KeyCreateForm(request.POST or None, caller=caller, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        issued = submit(
            form,
            lambda: api_key_create(
                kind=data["kind"],
                streams=list(data["streams"]),
                name=data["name"],
                expires_at=data["expires_at"],
                rate_limit_per_minute=data["rate_limit_per_minute"],
                created_by=caller.user,
            ),
        )
        if issued is not None:
            # The key is in this answer only: never stored, never redirected to, never cached.
            response = render(request, "streams/key_created.html", {"key": issued.api_key, "raw_key": issued.raw_key})
            response["Cache-Control"] = "no-store"
            return response
    return render(request, "streams/key_form.html", {"form": form})


@page(Action.MANAGE, methods=("GET", "POST"), section="keys")
def key_revoke(request: HttpRequest, caller: Caller, key_id: int) -> HttpResponse:
    key = api_key_get(manageable=stream_ids_for(caller, Action.MANAGE), key_id=key_id)
    if request.method == "POST":
        api_key_revoke(api_key=key)
        messages.success(request, f"Key {key.prefix}… is revoked. Requests with it now fail.")
        return redirect("keys")
    return render(request, "streams/key_revoke.html", {"key": key})
