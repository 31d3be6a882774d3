"""The dashboard's schema registry: each event type's versions, a diff against the version before,
an editor for a new version (tried on the logged events first) and a box that checks a sample payload.

Thin, as streams/api.py's schema views: the same selectors (``schemas_of_stream``,
``schema_version_get``, ``payload_check``) and the one service
(``schema_version_add`` with its dry run and ``force``).
"""

from __future__ import annotations

import difflib
from typing import Any

import orjson
from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from eventflow.dashboard import page, submit
from eventflow.errors import Conflict, Invalid
from streams.event_types import is_event_type

from .access import REACH, Action, Caller
from .models import EventSchema
from .schemas import stored_schema_refusal
from .selectors import DryRun, StreamInfo, payload_check, schema_version_get, schemas_of_stream, stream_get
from .services import schema_version_add

# A schema or sample payload typed into the page: the API's body limit is far larger; a page needs less.
MAX_JSON_CHARS = 200_000
STARTER = {
    "type": "object",
    "properties": {"page": {"type": "string"}},
    "required": [],
    "additionalProperties": True,
}


def pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def schema_diff(old: Any, new: Any) -> list[tuple[str, str]]:
    """The unified diff of two schemas as pretty JSON: (kind, line) with kind add, del, hunk or ''."""
    lines = difflib.unified_diff(
        pretty(old).splitlines(), pretty(new).splitlines(), "before", "after", lineterm="", n=3
    )
    out = []
    for line in list(lines)[2:]:
        kind = "hunk" if line.startswith("@@") else "add" if line[:1] == "+" else "del" if line[:1] == "-" else ""
        out.append((kind, line))
    return out


class JsonField(forms.CharField):
    """JSON typed into a textarea: parsed here, so a typo is an error on the field, not a 500."""

    def __init__(self, *, not_an_object: str = "A JSON Schema here is an object: {…}.", **kwargs: Any) -> None:
        kwargs.setdefault("max_length", MAX_JSON_CHARS)
        kwargs.setdefault("widget", forms.Textarea(attrs={"class": "code", "spellcheck": "false", "rows": 16}))
        super().__init__(**kwargs)
        self.not_an_object = not_an_object

    def clean(self, value: Any) -> Any:
        text = super().clean(value)
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise forms.ValidationError(self.not_an_object)
        return parsed


class SchemaForm(forms.Form):
    schema = JsonField(label="JSON Schema (draft 2020-12)")
    force = forms.BooleanField(required=False, widget=forms.HiddenInput)


class TryForm(forms.Form):
    payload = JsonField(
        # As the intake refuses any other payload: "valid" must mean an event with it would pass.
        not_an_object="An event's payload is a JSON object: {…}.",
        label="Sample payload",
        widget=forms.Textarea(attrs={"class": "code", "spellcheck": "false", "rows": 8}),
    )
    version = forms.IntegerField(min_value=1, max_value=2**31 - 1, required=False, widget=forms.HiddenInput)


class NewTypeForm(forms.Form):
    event_type = forms.CharField(max_length=200, label="Event type")

    def clean_event_type(self) -> str:
        value: str = self.cleaned_data["event_type"].strip()
        if not is_event_type(value) or "/" in value:
            raise forms.ValidationError("1 to 200 characters, no control characters and no /.")
        return value


@page(REACH, section="streams")
def schemas_page(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    form = NewTypeForm(request.GET or None)
    if request.GET and form.is_valid():
        return redirect("schema-new", slug=stream.slug, event_type=form.cleaned_data["event_type"])
    types = schemas_of_stream(stream_id=stream.id)
    for versions in types.values():
        _warn_if_refused(request, versions[0])
    context = {"stream": stream, "types": types, "form": form}
    return render(request, "streams/schemas.html", context)


def _warn_if_refused(request: HttpRequest, newest: EventSchema) -> None:
    """Say so when the version in force is refused now (saved before a rule existed): it is not applied."""
    refusal = stored_schema_refusal(newest.pk, newest.schema)
    if refusal is not None:
        messages.warning(
            request,
            f"{newest.event_type} v{newest.version} is refused and not applied: events of this type are "
            f"accepted unvalidated until you save a new version. {refusal}",
        )


def _version_context(stream: StreamInfo, event_type: str, raw_version: str | None) -> dict[str, Any]:
    versions = schemas_of_stream(stream_id=stream.id).get(event_type)
    if not versions:
        schema_version_get(stream_id=stream.id, event_type=event_type)  # not found
    assert versions is not None
    chosen = versions[0]
    # isdigit() alone takes "²" and 5,000 digits, which int() refuses (it was a 500).
    if raw_version and len(raw_version) <= 9 and raw_version.isascii() and raw_version.isdigit():
        chosen = next((v for v in versions if v.version == int(raw_version)), chosen)
    previous = next((v for v in versions if v.version < chosen.version), None)
    return {
        "stream": stream,
        "event_type": event_type,
        "versions": versions,
        "chosen": chosen,
        "chosen_json": pretty(chosen.schema),
        "previous": previous,
        "diff": schema_diff(previous.schema, chosen.schema) if previous else None,
    }


@page(REACH, section="streams")
def schema_type_page(request: HttpRequest, caller: Caller, stream: StreamInfo, event_type: str) -> HttpResponse:
    context = _version_context(stream, event_type, request.GET.get("version"))
    _warn_if_refused(request, context["versions"][0])
    context["try_form"] = TryForm(initial={"payload": "{\n  \n}", "version": context["chosen"].version})
    return render(request, "streams/schema_type.html", context)


@page(REACH, methods=("POST",), section="streams")
def schema_try(request: HttpRequest, caller: Caller, stream: StreamInfo, event_type: str) -> HttpResponse:
    """Check a sample payload against a version (the newest unless one is named): the errors an event would get."""
    form = TryForm(request.POST)
    version = request.POST.get("version")
    context = _version_context(stream, event_type, version)
    context["try_form"] = form
    if form.is_valid():
        try:
            errors = payload_check(schema=context["chosen"], payload=form.cleaned_data["payload"])
        except Conflict as exc:  # the version is refused now: not tried, as events are not validated by it
            messages.warning(request, exc.message)
        else:
            context["tried"] = {"valid": not errors, "errors": errors}
    return render(request, "streams/schema_type.html", context)


@page(Action.MANAGE, methods=("GET", "POST"), section="streams")
def schema_new(request: HttpRequest, caller: Caller, stream: StreamInfo, event_type: str) -> HttpResponse:
    """A new version: checked as JSON, tried on the newest logged events (dry run), saved only when asked.

    "Check" runs the dry run and shows its report; "Save" saves unless the
    schema would have rejected logged events, when the report is shown with a
    "save anyway" button (``force``).
    """
    if not is_event_type(event_type):
        schema_version_get(stream_id=stream.id, event_type=event_type)  # not found
    current = schemas_of_stream(stream_id=stream.id).get(event_type)
    base = current[0].schema if current else STARTER
    form = SchemaForm(request.POST or None, initial={"schema": pretty(base)})
    context: dict[str, Any] = {"stream": stream, "event_type": event_type, "form": form, "current": current}
    if request.method == "POST" and form.is_valid():
        schema = form.cleaned_data["schema"]
        context["diff"] = schema_diff(base, schema) if current else None
        found = stream_get(stream_id=stream.id)
        if request.POST.get("action") == "check":
            outcome = submit(
                form, lambda: schema_version_add(stream=found, event_type=event_type, schema=schema, dry_run=True)
            )
            if outcome is not None:
                context["report"] = outcome.dry_run
                context["unchanged"] = outcome.unchanged
        else:
            try:
                outcome = schema_version_add(
                    stream=found, event_type=event_type, schema=schema, force=bool(form.cleaned_data["force"])
                )
            except Conflict as exc:
                # It would have rejected logged events: show what, and offer to save it anyway.
                context["report"] = DryRun(**exc.details)
                context["would_reject"] = True
            except Invalid as exc:
                form.add_error("schema", exc.message)
            else:
                if outcome.created is not None:
                    messages.success(request, f"{event_type} v{outcome.created.version} saved.")
                else:
                    assert outcome.unchanged is not None
                    version = outcome.unchanged.version
                    messages.info(request, f"Not saved: this schema is the same as {event_type} v{version}.")
                return redirect(reverse("schema-type", args=[stream.slug, event_type]))
    return render(request, "streams/schema_new.html", context)
