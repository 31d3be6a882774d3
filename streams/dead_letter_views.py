"""The dashboard's dead letter pages: list with filters, one letter, replay and discard (one or many).

Every page needs ``operate``; letters of streams the caller does not operate
are never listed and answer 404, as the REST API's do.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from eventflow.dashboard import cursor_page, page

from .access import Action, Caller, stream_ids_for, streams_for
from .dead_letters import (
    MAX_BULK_IDS,
    ActionOutcome,
    DeadLetterFilters,
    dead_letter_discard,
    dead_letter_get,
    dead_letter_replay,
    dead_letters_discard,
    dead_letters_list,
    dead_letters_replay,
)
from .models import DeadLetterStage, DeadLetterStatus, Stream

ACTIONS = {"replay": "Replay", "discard": "Discard"}


def _operated(caller: Caller) -> frozenset[int] | None:
    return stream_ids_for(caller, Action.OPERATE)


class DeadLetterFilterForm(forms.Form):
    stream = forms.ChoiceField(required=False)
    group = forms.CharField(required=False, max_length=200, label="Consumer group")
    stage = forms.ChoiceField(choices=[("", "Any stage"), *DeadLetterStage.choices], required=False)
    status = forms.ChoiceField(choices=[("", "Any status"), *DeadLetterStatus.choices], required=False)
    q = forms.CharField(required=False, max_length=200, label="Error or event id")
    since = forms.DateTimeField(
        required=False, label="Failed from", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    until = forms.DateTimeField(
        required=False, label="Failed before", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )

    def __init__(self, *args: Any, caller: Caller, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The same one query gives the choices and the filtered stream's tab bar and crumbs.
        self.streams = {s.slug: s for s in streams_for(caller, Action.OPERATE).order_by("slug").only("slug", "name")}
        self.fields["stream"].choices = [("", "Every stream"), *((slug, slug) for slug in self.streams)]  # type: ignore[attr-defined]

    def filtered_stream(self) -> Stream | None:
        """The one stream the list is filtered to, when the filter is valid (one of the caller's streams)."""
        slug = getattr(self, "cleaned_data", {}).get("stream")
        return self.streams.get(slug) if slug else None


class LetterIdsField(forms.Field):
    """The selected letters' ids, at most ``MAX_BULK_IDS``; the service skips (and names) those not the caller's."""

    widget = forms.MultipleHiddenInput
    default_error_messages = {
        "required": "Select at least one dead letter first.",
        "too_many": "At most {most:,} dead letters can be replayed or discarded at once; {count:,} were selected.",
        "invalid": "{value} is not a dead letter.",
    }

    def to_python(self, value: Any) -> list[int]:
        values = [str(v) for v in value] if isinstance(value, list | tuple) else [] if value in (None, "") else [value]
        if not values:
            return []
        if len(values) > MAX_BULK_IDS:
            message = self.error_messages["too_many"].format(most=MAX_BULK_IDS, count=len(values))
            raise forms.ValidationError(message, code="too_many")
        for v in values:
            # No id has 19 digits (bigint), and str.isdigit() takes some that int() refuses ("²").
            if not (v.isascii() and v.isdigit() and len(v) < 19):
                raise forms.ValidationError(self.error_messages["invalid"].format(value=v[:40]), code="invalid")
        return [int(v) for v in values]


class BulkForm(forms.Form):
    ids = LetterIdsField()
    action = forms.ChoiceField(choices=list(ACTIONS.items()))


@page(Action.OPERATE, section="dead-letters")
def dead_letters(request: HttpRequest, caller: Caller) -> HttpResponse:
    # Open letters unless a status is asked for: they are the ones that need someone.
    data = request.GET.copy()
    if "status" not in data:
        data["status"] = DeadLetterStatus.OPEN
    form = DeadLetterFilterForm(data, caller=caller)
    # A filter that is not valid is shown as the form's error beside it; the others still apply.
    form.is_valid()
    query: dict[str, Any] = form.cleaned_data
    filters = DeadLetterFilters(
        stream=query.get("stream") or None,
        group=query.get("group") or None,
        stage=query.get("stage") or None,
        status=query.get("status", DeadLetterStatus.OPEN) or None,
        q=query.get("q") or None,
        since=query.get("since"),
        until=query.get("until"),
    )
    letters = dead_letters_list(stream_ids=_operated(caller), filters=filters)
    context = {"form": form, "page": cursor_page(request, letters, "-id"), "stream": form.filtered_stream()}
    return render(request, "streams/dead_letters.html", context)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@page(Action.OPERATE, section="dead-letters")
def dead_letter_detail(request: HttpRequest, caller: Caller, letter_id: int) -> HttpResponse:
    letter = dead_letter_get(stream_ids=_operated(caller), letter_id=letter_id)
    event = letter.event if isinstance(letter.event, dict) else {}
    context: dict[str, Any] = {
        "letter": letter,
        "payload": _pretty(event.get("payload")),
        "event": _pretty(letter.event),
    }
    if letter.stage == DeadLetterStage.SOURCE:
        # A Kafka message the intake refused: where it sits, and its value as sent (indented where it is JSON).
        value, binary = event.get("value"), event.get("value_base64")
        try:
            shown = _pretty(json.loads(value)) if isinstance(value, str) else binary
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python's recursion limit
            shown = value
        context.update(kafka=event.get("kafka") or {}, message=shown, binary=binary is not None)
    return render(request, "streams/dead_letter.html", context)


@page(Action.OPERATE, methods=("GET", "POST"), section="dead-letters")
def dead_letter_act(request: HttpRequest, caller: Caller, letter_id: int, action: str) -> HttpResponse:
    letter = dead_letter_get(stream_ids=_operated(caller), letter_id=letter_id)
    if request.method == "POST":
        act = dead_letter_replay if action == "replay" else dead_letter_discard
        act(letter_id=letter.pk, stream_ids=_operated(caller), acted_by=caller.user, caller=caller)
        messages.success(request, f"Dead letter {letter.pk} {'replayed' if action == 'replay' else 'discarded'}.")
        return redirect("dead-letter", letter_id=letter.pk)
    return render(request, "streams/dead_letter_confirm.html", {"letters": [letter], "action": action})


def _outcome_messages(request: HttpRequest, action: str, outcome: ActionOutcome) -> None:
    done = "replayed" if action == "replay" else "discarded"
    if outcome.count:
        messages.success(request, f"{outcome.count} dead letter{'s' if outcome.count != 1 else ''} {done}.")
    for skipped in outcome.skipped[:10]:
        messages.warning(request, f"Letter {skipped.id} left alone: {skipped.message}")
    if len(outcome.skipped) > 10:
        messages.warning(request, f"…and {len(outcome.skipped) - 10} more left alone.")


@page(Action.OPERATE, methods=("POST",), section="dead-letters")
def dead_letters_bulk(request: HttpRequest, caller: Caller) -> HttpResponse:
    """Selected letters: the first POST asks to confirm, the confirmed one acts."""
    form = BulkForm(request.POST)
    if not form.is_valid():
        for problems in form.errors.values():
            messages.error(request, str(problems[0]))
        return redirect("dead-letters")
    ids, action = form.cleaned_data["ids"], form.cleaned_data["action"]
    if request.POST.get("confirmed") != "yes":
        letters = list(dead_letters_list(stream_ids=_operated(caller), filters=DeadLetterFilters()).filter(pk__in=ids))
        if not letters:
            messages.error(request, "None of the selected dead letters is there any more.")
            return redirect("dead-letters")
        return render(request, "streams/dead_letter_confirm.html", {"letters": letters, "action": action, "bulk": True})
    act = dead_letters_replay if action == "replay" else dead_letters_discard
    outcome = act(ids=ids, stream_ids=_operated(caller), acted_by=caller.user, caller=caller)
    _outcome_messages(request, action, outcome)
    return redirect("dead-letters")
