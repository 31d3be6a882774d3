"""The dashboard's page of a stream's erasures: who was erased when, and a form to erase a person.

Admins only, as over the API (streams/erasure_api.py): ``@page`` asks ADMINISTER on the stream.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from eventflow.dashboard import page, submit

from .access import Action, Caller
from .erasure import MAX_SUBJECT_CHARS, erasure_request, erasures_of_stream
from .models import ErasureBy
from .selectors import StreamInfo, stream_get

# The page shows this many of the newest erasures (the API lists them all).
RECENT_ERASURES = 50


class ErasureForm(forms.Form):
    by = forms.ChoiceField(choices=ErasureBy.choices, label="Find the person's events by")
    subject = forms.CharField(max_length=MAX_SUBJECT_CHARS, label="Their id", strip=False)
    confirm = forms.BooleanField(
        label="I understand that their events are redacted for good: this cannot be undone.",
        error_messages={"required": "Tick the box to confirm."},
    )


@page(Action.ADMINISTER, methods=("GET", "POST"), section="streams")
def erasures_page(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    form = ErasureForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        erasure = submit(
            form,
            lambda: erasure_request(caller=caller, stream_id=stream.id, by=data["by"], subject=data["subject"]),
        )
        if erasure is not None:
            messages.success(request, f"Erasure {erasure.pk} is under way: its events are redacted in the background.")
            return redirect("stream-erasures", slug=stream.slug)
    context = {
        "stream": stream_get(stream_id=stream.id),
        "form": form,
        "erasures": list(erasures_of_stream(stream_id=stream.id)[:RECENT_ERASURES]),
    }
    return render(request, "streams/erasures.html", context)
