"""The dashboard's pages of consumer groups and webhooks.

Thin, as consumers/api.py: the same access (consumer groups: ``consume``;
webhooks: ``manage``), the same selectors and services. Every change is asked
for on a confirmation page first (GET shows it, POST does it).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from eventflow import conf
from eventflow.dashboard import cursor_page, page, submit
from streams.access import Action, Caller
from streams.event_types import EVENT_TYPE_MAX_LENGTH, is_event_type
from streams.selectors import StreamInfo

from .models import GroupKind
from .selectors import (
    Position,
    consumer_group_dead_letters,
    consumer_group_get,
    consumer_group_state,
    consumer_groups_of_stream,
    webhook_deliveries,
    webhook_get,
    webhooks_of_stream,
)
from .services import consumer_group_pause, consumer_group_resume, consumer_group_seek
from .webhook_services import MAX_EVENT_TYPES, webhook_create, webhook_enable, webhook_send_test, webhook_update

DELIVERIES_PAGE = 25
MAX_OFFSET = 2**63 - 1


def _lookup(stream: StreamInfo, name: str) -> dict[str, Any]:
    return {"stream_id": stream.id, "name": name, "kind": GroupKind.PULL}


# --- consumer groups -----------------------------------------------------------------------------


@page(Action.CONSUME, section="streams")
def groups_page(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    groups = [consumer_group_state(g) for g in consumer_groups_of_stream(stream_id=stream.id).order_by("name")]
    return render(request, "consumers/groups.html", {"stream": stream, "groups": groups})


class SeekForm(forms.Form):
    to = forms.ChoiceField(
        choices=[
            ("earliest", "The earliest event still in the log (read everything again)"),
            ("latest", "The head (skip everything not yet read)"),
            ("offset", "An offset"),
            ("timestamp", "The first event at or after a time"),
        ],
        widget=forms.RadioSelect,
        initial="earliest",
        label="Move the position to",
    )
    offset = forms.IntegerField(min_value=0, max_value=MAX_OFFSET, required=False)
    timestamp = forms.DateTimeField(
        required=False, label="Time (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("to")
        if kind == "offset" and data.get("offset") is None:
            self.add_error("offset", "Give the offset to move to.")
        if kind == "timestamp" and data.get("timestamp") is None:
            self.add_error("timestamp", "Give the time to move to.")
        return data

    def position(self) -> Position:
        data = self.cleaned_data
        kind = data["to"]
        return Position(
            kind=kind,
            offset=data.get("offset") if kind == "offset" else None,
            timestamp=data.get("timestamp") if kind == "timestamp" else None,
        )


@page(Action.CONSUME, methods=("GET", "POST"), section="streams")
def group_seek(request: HttpRequest, caller: Caller, stream: StreamInfo, group: str) -> HttpResponse:
    state = consumer_group_state(consumer_group_get(stream_id=stream.id, name=group))
    form = SeekForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        done = submit(form, lambda: consumer_group_seek(lookup=_lookup(stream, group), position=form.position()))
        if done is not None:
            messages.success(request, f"{group} now reads from offset {done.committed_offset}.")
            return redirect("groups", slug=stream.slug)
    return render(request, "consumers/group_seek.html", {"stream": stream, "group": state, "form": form})


def _group_toggle(request: HttpRequest, stream: StreamInfo, group: str, *, pausing: bool) -> HttpResponse:
    found = consumer_group_get(stream_id=stream.id, name=group)
    if request.method == "POST":
        if pausing:
            consumer_group_pause(lookup=_lookup(stream, group), reason="Paused in the dashboard.")
            messages.success(request, f"{group} is paused: polls get no records until it is resumed.")
        else:
            consumer_group_resume(lookup=_lookup(stream, group))
            messages.success(request, f"{group} is delivering again.")
        return redirect("groups", slug=stream.slug)
    context = {
        "stream": stream,
        "group": consumer_group_state(found),
        "pausing": pausing,
        "letters": consumer_group_dead_letters(group=found),
    }
    return render(request, "consumers/group_confirm.html", context)


@page(Action.CONSUME, methods=("GET", "POST"), section="streams")
def group_pause(request: HttpRequest, caller: Caller, stream: StreamInfo, group: str) -> HttpResponse:
    return _group_toggle(request, stream, group, pausing=True)


@page(Action.CONSUME, methods=("GET", "POST"), section="streams")
def group_resume(request: HttpRequest, caller: Caller, stream: StreamInfo, group: str) -> HttpResponse:
    return _group_toggle(request, stream, group, pausing=False)


# --- webhooks ------------------------------------------------------------------------------------


class EventTypesField(forms.CharField):
    """Event types, comma-separated (empty: every type): at most ``max_types``, as the API of what it edits takes."""

    def __init__(self, *, max_types: int, **kwargs: Any) -> None:
        # Room for as many of the longest types as are allowed and one more, with their separators:
        # one too many is told so by its count, not by a length.
        super().__init__(max_length=(max_types + 1) * (EVENT_TYPE_MAX_LENGTH + 2), **kwargs)
        self.max_types = max_types

    def clean(self, value: Any) -> list[str]:
        text = super().clean(value) or ""
        types = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in types if not is_event_type(t)]
        if bad:
            raise forms.ValidationError(f"Not an event type: {bad[0]!r}.")
        if len(types) > self.max_types:
            raise forms.ValidationError(f"At most {self.max_types} types.")
        return types


class WebhookForm(forms.Form):
    url = forms.URLField(
        max_length=2000,
        label="URL",
        assume_scheme="https",
        help_text="HTTPS, on a public address. Each delivery is a signed POST of a JSON batch.",
    )
    event_types = EventTypesField(
        max_types=MAX_EVENT_TYPES,
        required=False,
        label="Event types",
        help_text="Comma-separated. Left empty: every type.",
    )
    description = forms.CharField(required=False, max_length=500)
    batch_size = forms.IntegerField(min_value=1, max_value=1000, initial=500, label="Events per delivery")


@page(Action.MANAGE, section="streams")
def webhooks_page(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    hooks = list(webhooks_of_stream(stream_id=stream.id).order_by("id"))
    rows = [{"hook": h, "lag": max(0, h.group.stream.head.next_offset - h.group.committed_offset)} for h in hooks]
    return render(request, "consumers/webhooks.html", {"stream": stream, "rows": rows})


@page(Action.MANAGE, methods=("GET", "POST"), section="streams")
def webhook_new(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    form = WebhookForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        created = submit(
            form,
            lambda: webhook_create(
                stream_id=stream.id,
                url=data["url"],
                event_types=data["event_types"],
                description=data["description"],
                batch_size=data["batch_size"],
            ),
        )
        if created is not None:
            # The secret is in this answer only: never stored in the session, never cached.
            context = {"stream": stream, "hook": created.webhook, "secret": created.secret}
            response = render(request, "consumers/webhook_created.html", context)
            response["Cache-Control"] = "no-store"
            return response
    return render(request, "consumers/webhook_form.html", {"stream": stream, "form": form, "creating": True})


@page(Action.MANAGE, section="streams")
def webhook_page(request: HttpRequest, caller: Caller, stream: StreamInfo, webhook_id: int) -> HttpResponse:
    hook = webhook_get(stream_id=stream.id, webhook_id=webhook_id)
    attempts = cursor_page(request, webhook_deliveries(webhook=hook), "-id", size=DELIVERIES_PAGE)
    context = {
        "stream": stream,
        "hook": hook,
        "page": attempts,
        "lag": max(0, hook.group.stream.head.next_offset - hook.group.committed_offset),
        "keep": conf.get().webhook_keep_attempts,
    }
    return render(request, "consumers/webhook.html", context)


@page(Action.MANAGE, methods=("GET", "POST"), section="streams")
def webhook_edit(request: HttpRequest, caller: Caller, stream: StreamInfo, webhook_id: int) -> HttpResponse:
    hook = webhook_get(stream_id=stream.id, webhook_id=webhook_id)
    initial = {
        "url": hook.url,
        "event_types": ", ".join(hook.event_types),
        "description": hook.description,
        "batch_size": hook.batch_size,
    }
    form = WebhookForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        changes = dict(form.cleaned_data)
        if "event_types" not in form.changed_data:
            # Shown comma-separated, a type holding a comma would come back split: left untouched, it is kept.
            del changes["event_types"]
        if submit(form, lambda: webhook_update(webhook=hook, **changes)) is not None:
            messages.success(request, "Webhook saved.")
            return redirect("webhook", slug=stream.slug, webhook_id=hook.pk)
    context = {"stream": stream, "form": form, "hook": hook, "creating": False}
    return render(request, "consumers/webhook_form.html", context)


@page(Action.MANAGE, methods=("POST",), section="streams")
def webhook_test(request: HttpRequest, caller: Caller, stream: StreamInfo, webhook_id: int) -> HttpResponse:
    """POST one signed test event now and say how it went (it is in the delivery log too)."""
    hook = webhook_get(stream_id=stream.id, webhook_id=webhook_id)
    attempt = webhook_send_test(webhook=hook)
    if attempt.outcome == "success":
        messages.success(request, f"Test event delivered: HTTP {attempt.status_code} in {attempt.latency_ms} ms.")
    else:
        shown = f"HTTP {attempt.status_code}" if attempt.status_code else (attempt.error or attempt.outcome)
        messages.error(request, f"The test event was not delivered: {shown}.")
    return redirect("webhook", slug=stream.slug, webhook_id=hook.pk)


@page(Action.MANAGE, methods=("GET", "POST"), section="streams")
def webhook_enable_page(request: HttpRequest, caller: Caller, stream: StreamInfo, webhook_id: int) -> HttpResponse:
    hook = webhook_get(stream_id=stream.id, webhook_id=webhook_id)
    if request.method == "POST":
        # The confirmation says which way it goes: sent again (a double click, a reload), it must not undo itself.
        wanted = request.POST.get("active")
        if wanted is not None and (wanted == "1") == hook.is_active:
            messages.info(request, f"Webhook {'enabled' if hook.is_active else 'disabled'} already: nothing changed.")
        elif hook.is_active:
            webhook_update(webhook=hook, is_active=False)
            messages.success(request, "Webhook disabled: nothing is delivered until it is enabled again.")
        else:
            webhook_enable(webhook=hook)
            messages.success(request, "Webhook enabled: delivery resumes where it stopped.")
        return redirect("webhook", slug=stream.slug, webhook_id=hook.pk)
    return render(request, "consumers/webhook_enable.html", {"stream": stream, "hook": hook, "now": timezone.now()})
