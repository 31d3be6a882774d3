"""The dashboard's alert pages: a stream's rules and the alerts they raised; create, edit, mute and delete a rule.

Thin, as analytics/alerts_api.py: the same access (reading ``read``; changing a
rule ``manage``, since a rule sends data to a URL), the same selectors and
services (``alert_rule_create``, ``alert_rule_update``, ``alert_rule_mute``,
``alert_rule_delete``). A rule's conditions are written one a line in the event
query's own words (``payload.success = false``); what the services refuse is
shown on the form's fields. Deleting asks on a confirmation page first.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from consumers.views import EventTypesField
from eventflow.dashboard import cursor_page, page, submit
from streams.access import Action, Caller
from streams.selectors import StreamInfo

from .alerts import (
    alert_rule_create,
    alert_rule_delete,
    alert_rule_get,
    alert_rule_mute,
    alert_rule_update,
    alert_rules_of_stream,
    alerts_of_stream,
)
from .alerts_api import MAX_MUTE_MINUTES
from .filters import MAX_CONDITIONS, MAX_TYPES
from .models import (
    ALERT_MAX_COOLDOWN_SECONDS,
    ALERT_MAX_THRESHOLD,
    ALERT_MAX_WINDOW_SECONDS,
    ALERT_MIN_WINDOW_SECONDS,
    AlertKind,
    AlertRule,
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_RE = re.compile(r"^\s*(\d{1,9})\s*([smhd]?)\s*$")
# ``payload.plan = pro``, ``payload.plan != free``, ``payload.coupon exists``, ``payload.coupon missing``.
# A property may hold spaces (``payload.Product Name``, analytics/filters.py): it runs to the first sign,
# or to a closing `` exists``/`` missing``; no property holds "=" or "!".
_CONDITION_RE = re.compile(r"^\s*(\S.*?)\s*(?:(!=|=)\s*(.*?)|\s(exists|missing))\s*$")
MUTE_CHOICES = [(60, "1 hour"), (8 * 60, "8 hours"), (24 * 60, "1 day"), (7 * 24 * 60, "7 days")]


def duration_text(seconds: int) -> str:
    """Seconds in the largest unit that divides them: 300 -> ``5m``."""
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


class DurationField(forms.CharField):
    """``30s``, ``5m``, ``2h``, ``1d`` (a bare number is seconds), as seconds."""

    def __init__(self, *, min_seconds: int, max_seconds: int, **kwargs: Any) -> None:
        self.min_seconds, self.max_seconds = min_seconds, max_seconds
        super().__init__(max_length=20, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        return duration_text(value) if isinstance(value, int) else value

    def clean(self, value: Any) -> int | None:  # type: ignore[override]
        text = super().clean(value)
        if not text:
            return None
        found = _DURATION_RE.match(text)
        if found is None:
            raise forms.ValidationError("A number and a unit: 30s, 5m, 2h or 1d.")
        seconds = int(found[1]) * _UNITS[found[2] or "s"]
        if not self.min_seconds <= seconds <= self.max_seconds:
            raise forms.ValidationError(f"From {duration_text(self.min_seconds)} to {duration_text(self.max_seconds)}.")
        return seconds


def value_text(value: str) -> str:
    """A condition's value as written on its line: as it is where it reads back the same, else as a JSON string.

    The REST API keeps values exactly (" locked ", "a\\nb", ""), while a line loses the spaces around its
    value and cannot hold a line break: such values, and any that is itself in double quotes, are quoted.
    """
    plain = bool(value) and value == value.strip() and len(value.splitlines()) == 1
    if plain and not (value.startswith('"') and value.endswith('"')):
        return value
    quoted = json.dumps(value, ensure_ascii=False)
    # json.dumps escapes the control characters; these three also break a line (str.splitlines).
    return quoted.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def value_read(written: str, number: int) -> str:
    """The value ``value_text`` wrote: one in double quotes is a JSON string, any other is taken as it is."""
    if not (len(written) >= 2 and written.startswith('"') and written.endswith('"')):
        return written
    try:
        value = json.loads(written, strict=False)
    except ValueError:
        value = None
    if not isinstance(value, str):
        raise forms.ValidationError(
            f'Line {number}: a value in double quotes is a JSON string: write \\" for a quote, \\\\ for a '
            "backslash, \\n for a line break."
        )
    return value


class ConditionsField(forms.CharField):
    """Property conditions, one a line, in the event query's words, as the services take them.

    Several ``=`` lines for one property mean any of their values (as repeated
    ``payload.page=`` parameters of the event query do); ``!=`` lines, none of them.
    """

    widget = forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "mono"})

    def __init__(self, **kwargs: Any) -> None:
        # Each line is read on its own; stripping the whole text would only ever touch the first and last.
        super().__init__(strip=False, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        lines = []
        for condition in value:
            if condition["op"] in ("exists", "missing"):
                lines.append(f"{condition['property']} {condition['op']}")
            else:
                sign = "=" if condition["op"] == "eq" else "!="
                lines += [f"{condition['property']} {sign} {value_text(v)}" for v in condition["values"]]
        return "\n".join(lines)

    def clean(self, value: Any) -> list[dict[str, Any]]:  # type: ignore[override]
        text = super().clean(value) or ""
        grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            found = _CONDITION_RE.match(line)
            if found is None:
                raise forms.ValidationError(
                    f"Line {number}: write property = value, property != value, property exists or property missing."
                )
            prop, sign, written, existence = found.groups()
            if existence:
                grouped[(prop, existence)]
            else:
                grouped[(prop, "eq" if sign == "=" else "ne")].append(value_read(written, number))
        if len(grouped) > MAX_CONDITIONS:
            raise forms.ValidationError(f"At most {MAX_CONDITIONS} conditions.")
        return [{"property": p, "op": op, "values": values} for (p, op), values in grouped.items()]


class ThresholdField(forms.IntegerField):
    """Left blank only by an absence rule (the form's ``clean`` asks a threshold rule for one): not labelled optional."""

    shows_optional = False


class AlertRuleForm(forms.Form):
    name = forms.CharField(max_length=200, label="Name", help_text="Shown on each alert, e.g. “failed logins”.")
    kind = forms.ChoiceField(
        choices=[
            (AlertKind.THRESHOLD, "Too many: enough matching events within the window"),
            (AlertKind.ABSENCE, "None at all: no matching event within the window"),
        ],
        widget=forms.RadioSelect,
        initial=AlertKind.THRESHOLD,
        label="Fires on",
    )
    event_types = EventTypesField(
        max_types=MAX_TYPES,
        required=False,
        label="Event types",
        help_text="Comma-separated. Left empty: every type.",
    )
    conditions = ConditionsField(
        required=False,
        max_length=20_000,
        label="Conditions",
        help_text="One per line: <code>payload.success = false</code>, <code>payload.plan != free</code>, "
        "<code>payload.coupon exists</code>, <code>payload.coupon missing</code>. To match a value that starts or "
        "ends with a space, or holds a line break, write it in double quotes as in JSON: "
        '<code>payload.reason = " locked "</code>.',
    )
    threshold = ThresholdField(
        required=False,
        min_value=1,
        max_value=ALERT_MAX_THRESHOLD,
        initial=5,
        label="Threshold",
        help_text="How many matching events within the window fire the rule. Used by “too many” rules; an "
        "absence rule keeps it in case the rule is switched back.",
    )
    window_seconds = DurationField(
        min_seconds=ALERT_MIN_WINDOW_SECONDS,
        max_seconds=ALERT_MAX_WINDOW_SECONDS,
        initial="5m",
        label="Window",
        help_text="Of event time: 30s, 5m, 2h, 1d (up to 7d).",
    )
    group_by = forms.CharField(
        required=False,
        max_length=300,
        label="Count per",
        help_text="user_id, anonymous_id, session_id or a property such as payload.account. "
        "Left empty: the whole stream (absence rules always).",
    )
    cooldown_seconds = DurationField(
        min_seconds=0,
        max_seconds=ALERT_MAX_COOLDOWN_SECONDS,
        initial="10m",
        label="Quiet after an alert",
        help_text="No second alert for the same group within this time.",
    )
    url = forms.CharField(
        required=False,
        max_length=2000,
        label="Also POST alerts to",
        help_text="HTTPS, on a public address; signed like a webhook delivery. Every alert is logged as an "
        "<code>alert</code> event for the stream's webhooks in any case.",
    )
    is_active = forms.BooleanField(required=False, initial=True, label="Active")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("cooldown_seconds") is None and "cooldown_seconds" in data:
            data["cooldown_seconds"] = 0
        if data.get("kind") == AlertKind.THRESHOLD and "threshold" in data and data["threshold"] is None:
            self.add_error("threshold", "How many events fire the rule?")
        return data

    def changes(self) -> dict[str, Any]:
        """The rule's fields as the services take them (an absence rule's threshold left empty: unchanged)."""
        data = dict(self.cleaned_data)
        if data.get("threshold") is None:
            data.pop("threshold", None)
        return data

    @classmethod
    def of(cls, rule: AlertRule, data: Any = None) -> AlertRuleForm:
        initial = {
            "name": rule.name,
            "kind": rule.kind,
            "event_types": ", ".join(rule.event_types),
            "conditions": rule.conditions,
            "threshold": rule.threshold,
            "window_seconds": rule.window_seconds,
            "group_by": rule.group_by,
            "cooldown_seconds": rule.cooldown_seconds,
            "url": rule.url,
            "is_active": rule.is_active,
        }
        return cls(data, initial=initial)


class MuteForm(forms.Form):
    minutes = forms.TypedChoiceField(
        choices=MUTE_CHOICES, coerce=int, initial=60, widget=forms.RadioSelect, label="Mute for"
    )

    def clean_minutes(self) -> int:
        minutes = int(self.cleaned_data["minutes"])
        if not 1 <= minutes <= MAX_MUTE_MINUTES:
            raise forms.ValidationError("Choose one of the durations.")
        return minutes


# --- pages -----------------------------------------------------------------------------------------------------


@page(Action.READ, section="streams")
def alerts_page(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    """The stream's alert rules, with what a Developer may do to them, and the alerts they raised."""
    rules = list(alert_rules_of_stream(stream_id=stream.id))
    shown = ConditionsField()
    for rule in rules:
        rule.condition_lines = shown.prepare_value(rule.conditions).splitlines()  # type: ignore[attr-defined]
    raised = cursor_page(request, alerts_of_stream(stream_id=stream.id), ("-fired_at", "-id"))
    context = {"stream": stream, "tab": "alerts", "rules": rules, "page": raised}
    return render(request, "analytics/alerts.html", context)


@page(Action.MANAGE, methods=("GET", "POST"), section="streams")
def alert_rule_new(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    form = AlertRuleForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        rule = submit(form, lambda: alert_rule_create(stream_id=stream.id, created_by=caller.user, **form.changes()))
        if rule is not None:
            if not rule.url:
                messages.success(request, f"Alert rule “{rule.name}” is watching from now on.")
                return redirect("alerts", slug=stream.slug)
            return _secret_shown(request, stream, rule, created=True)
    return render(request, "analytics/alert_rule_form.html", {"stream": stream, "form": form, "rule": None})


def _secret_shown(request: HttpRequest, stream: StreamInfo, rule: AlertRule, *, created: bool) -> HttpResponse:
    # The signing secret is in this answer only: never stored in the session, never cached.
    context = {"stream": stream, "rule": rule, "created": created}
    response = render(request, "analytics/alert_rule_created.html", context)
    response["Cache-Control"] = "no-store"
    return response


@page(Action.MANAGE, methods=("GET", "POST"), section="streams")
def alert_rule_edit(request: HttpRequest, caller: Caller, stream: StreamInfo, rule_id: int) -> HttpResponse:
    rule = alert_rule_get(stream_id=stream.id, rule_id=rule_id)
    form = AlertRuleForm.of(rule, request.POST or None)
    if request.method == "POST" and form.is_valid():
        saved = submit(form, lambda: alert_rule_update(stream_id=stream.id, rule_id=rule.pk, **form.changes()))
        if saved is not None:
            if saved.url and not rule.url:
                # Its alerts are signed from now on: the secret, never shown for a rule without a URL, is shown here.
                return _secret_shown(request, stream, saved, created=False)
            messages.success(request, f"Alert rule “{saved.name}” saved.")
            return redirect("alerts", slug=stream.slug)
    return render(request, "analytics/alert_rule_form.html", {"stream": stream, "form": form, "rule": rule})


@page(Action.MANAGE, methods=("GET", "POST"), section="streams")
def alert_rule_mute_page(request: HttpRequest, caller: Caller, stream: StreamInfo, rule_id: int) -> HttpResponse:
    rule = alert_rule_get(stream_id=stream.id, rule_id=rule_id)
    form = MuteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        muted = alert_rule_mute(stream_id=stream.id, rule_id=rule.pk, minutes=form.cleaned_data["minutes"])
        until = muted.muted_until.strftime("%b %-d, %H:%M UTC") if muted.muted_until else ""
        messages.success(request, f"“{muted.name}” is muted until {until}: it still counts, but fires nothing.")
        return redirect("alerts", slug=stream.slug)
    return render(request, "analytics/alert_rule_mute.html", {"stream": stream, "rule": rule, "form": form})


@page(Action.MANAGE, methods=("POST",), section="streams")
def alert_rule_unmute_page(request: HttpRequest, caller: Caller, stream: StreamInfo, rule_id: int) -> HttpResponse:
    rule = alert_rule_mute(stream_id=stream.id, rule_id=rule_id, minutes=None)
    messages.success(request, f"“{rule.name}” is no longer muted.")
    return redirect("alerts", slug=stream.slug)


@page(Action.MANAGE, methods=("GET", "POST"), section="streams")
def alert_rule_delete_page(request: HttpRequest, caller: Caller, stream: StreamInfo, rule_id: int) -> HttpResponse:
    rule = alert_rule_get(stream_id=stream.id, rule_id=rule_id)
    if request.method == "POST":
        alert_rule_delete(stream_id=stream.id, rule_id=rule.pk)
        messages.success(request, f"Alert rule “{rule.name}” and its alerts are deleted.")
        return redirect("alerts", slug=stream.slug)
    raised = alerts_of_stream(stream_id=stream.id, rule_id=rule.pk).count()
    return render(request, "analytics/alert_rule_delete.html", {"stream": stream, "rule": rule, "raised": raised})
