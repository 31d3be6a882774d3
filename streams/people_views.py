"""The dashboard's people and teams pages (Admins): invite, resend, roles, deactivate; teams, members, stream grants."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from eventflow.dashboard import cursor_page, page, submit
from eventflow.errors import Conflict
from eventflow.roles import ROLE_PERMISSIONS

from . import people
from .access import Action, Caller, streams_for
from .models import Stream, Team
from .people_selectors import (
    people_list,
    person_get,
    role_names,
    stream_of_team,
    team_detail,
    team_get,
    teams_list,
)

User = get_user_model()

ROLE_CHOICES = [(name, name) for name in ROLE_PERMISSIONS]
ROLE_HELP = {
    "Admin": "everything, including people, teams and the audit log",
    "Developer": "streams, schemas, keys, consumer groups and webhooks",
    "Analyst": "events and analytics",
    "Operator": "processing health and dead letters",
    "Consumer": "reading streams through consumer groups",
}


# --- people --------------------------------------------------------------------------------------


class PeopleFilterForm(forms.Form):
    team = forms.SlugField(required=False)
    role = forms.ChoiceField(choices=[("", "Any role"), *ROLE_CHOICES], required=False)
    state = forms.ChoiceField(
        choices=[("", "Active and deactivated"), ("active", "Active"), ("inactive", "Deactivated")], required=False
    )


class InviteForm(forms.Form):
    username = forms.RegexField(
        regex=r"^[\w.@+-]{1,150}$",
        max_length=150,
        help_text="Letters, digits and @ . + - _",
        error_messages={"invalid": "Use letters, digits and @ . + - _ only."},
    )
    email = forms.EmailField(help_text="The invitation with a one-time link to choose a password goes here.")
    roles = forms.MultipleChoiceField(choices=ROLE_CHOICES, required=False, widget=forms.CheckboxSelectMultiple)
    teams = forms.ModelMultipleChoiceField(
        queryset=Team.objects.order_by("slug"), required=False, widget=forms.CheckboxSelectMultiple
    )


class RolesForm(forms.Form):
    roles = forms.MultipleChoiceField(choices=ROLE_CHOICES, required=False, widget=forms.CheckboxSelectMultiple)


@page(Action.ADMINISTER, section="people")
def people_page(request: HttpRequest, caller: Caller) -> HttpResponse:
    form = PeopleFilterForm(request.GET or None)
    query = form.cleaned_data if form.is_valid() else {}
    state = query.get("state")
    found = people_list(
        team=query.get("team") or None,
        role=query.get("role") or None,
        is_active=None if not state else state == "active",
    )
    listing = cursor_page(request, found, "username")
    rows = [{"user": user, "roles": role_names(user)} for user in listing.items]
    return render(request, "streams/people.html", {"form": form, "page": listing, "rows": rows})


@page(Action.ADMINISTER, methods=("GET", "POST"), section="people")
def person_invite(request: HttpRequest, caller: Caller) -> HttpResponse:
    form = InviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        invitation = submit(
            form,
            lambda: people.person_invite(
                caller=caller,
                username=data["username"],
                email=data["email"],
                roles=data["roles"],
                teams=list(data["teams"]),
                base_url=request.build_absolute_uri("/"),
            ),
        )
        if invitation is not None:
            # The link is in this answer only (and in the mail).
            response = render(request, "streams/person_invited.html", {"invitation": invitation})
            response["Cache-Control"] = "no-store"
            return response
    return render(request, "streams/person_invite.html", {"form": form, "role_help": ROLE_HELP})


@page(Action.ADMINISTER, methods=("GET", "POST"), section="people")
def person_page(request: HttpRequest, caller: Caller, username: str) -> HttpResponse:
    person = person_get(username=username)
    form = RolesForm(request.POST or None, initial={"roles": role_names(person)})
    if request.method == "POST" and form.is_valid():
        roles = form.cleaned_data["roles"]
        if submit(form, lambda: people.person_set_roles(caller=caller, user=person, roles=roles)) is not None:
            messages.success(request, f"Roles of {person.username} saved.")
            return redirect("person", username=person.username)
    return render(
        request,
        "streams/person.html",
        {"person": person, "roles": role_names(person), "form": form, "role_help": ROLE_HELP},
    )


@page(Action.ADMINISTER, methods=("GET", "POST"), section="people")
def person_active(request: HttpRequest, caller: Caller, username: str) -> HttpResponse:
    person = person_get(username=username)
    deactivating = person.is_active
    if request.method == "POST":
        if deactivating:
            people.person_deactivate(caller=caller, user=person)
            messages.success(request, f"{person.username} is deactivated: they can no longer sign in.")
        else:
            people.person_reactivate(caller=caller, user=person)
            messages.success(request, f"{person.username} can sign in again.")
        return redirect("person", username=person.username)
    return render(request, "streams/person_active.html", {"person": person, "deactivating": deactivating})


@page(Action.ADMINISTER, methods=("GET", "POST"), section="people")
def person_invitation(request: HttpRequest, caller: Caller, username: str) -> HttpResponse:
    person = person_get(username=username)
    if request.method == "POST":
        try:
            invitation = people.person_invitation_resend(
                caller=caller, user=person, base_url=request.build_absolute_uri("/")
            )
        except Conflict as exc:
            # Back to the person, whose page says why (a password chosen since, or deactivated).
            messages.error(request, exc.message)
            return redirect("person", username=person.username)
        response = render(request, "streams/person_invited.html", {"invitation": invitation, "resent": True})
        response["Cache-Control"] = "no-store"
        return response
    return render(request, "streams/person_invitation.html", {"person": person})


# --- teams ---------------------------------------------------------------------------------------


class TeamCreateForm(forms.Form):
    slug = forms.SlugField(max_length=64, help_text="Lowercase letters, digits and -.")
    name = forms.CharField(max_length=200)


class MemberForm(forms.Form):
    username = forms.ModelChoiceField(
        queryset=User.objects.none(), to_field_name="username", label="Person", empty_label="Choose a person…"
    )

    def __init__(self, *args: Any, team: Team, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        active = User.objects.filter(is_active=True).exclude(teams=team).order_by("username")
        self.fields["username"].queryset = active  # type: ignore[attr-defined]


class GrantForm(forms.Form):
    stream = forms.ModelChoiceField(
        queryset=Stream.objects.none(), to_field_name="slug", empty_label="Choose a stream…"
    )

    def __init__(self, *args: Any, streams: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["stream"].queryset = streams  # type: ignore[attr-defined]


@page(Action.ADMINISTER, section="teams")
def teams_page(request: HttpRequest, caller: Caller) -> HttpResponse:
    return render(request, "streams/teams.html", {"page": cursor_page(request, teams_list(caller=caller), "slug")})


@page(Action.ADMINISTER, methods=("GET", "POST"), section="teams")
def team_new(request: HttpRequest, caller: Caller) -> HttpResponse:
    form = TeamCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        team = submit(form, lambda: people.team_create(caller=caller, slug=data["slug"], name=data["name"]))
        if team is not None:
            messages.success(request, f"Team “{team.name}” created. Add its members and streams.")
            return redirect("team", team=team.slug)
    return render(request, "streams/team_form.html", {"form": form})


def _grantable(caller: Caller, team: Team) -> Any:
    return streams_for(caller, Action.ADMINISTER).exclude(teams=team).order_by("slug")


@page(Action.ADMINISTER, methods=("GET", "POST"), section="teams")
def team_page(request: HttpRequest, caller: Caller, team: str) -> HttpResponse:
    found = team_detail(caller=caller, slug=team)
    member_form = MemberForm(prefix="member", team=found)
    grant_form = GrantForm(prefix="grant", streams=_grantable(caller, found))
    if request.method == "POST":
        what = request.POST.get("what")
        if what == "member":
            member_form = MemberForm(request.POST, prefix="member", team=found)
            if member_form.is_valid():
                person = member_form.cleaned_data["username"]
                if (
                    submit(member_form, lambda: people.team_members_add(caller=caller, team=found, users=[person]))
                    is not None
                ):
                    messages.success(request, f"{person.username} added to {found.name}.")
                    return redirect("team", team=found.slug)
        elif what == "grant":
            grant_form = GrantForm(request.POST, prefix="grant", streams=_grantable(caller, found))
            if grant_form.is_valid():
                stream = grant_form.cleaned_data["stream"]
                if (
                    submit(grant_form, lambda: people.team_streams_grant(caller=caller, team=found, streams=[stream]))
                    is not None
                ):
                    messages.success(request, f"{found.name} now reaches {stream.slug}.")
                    return redirect("team", team=found.slug)
    return render(request, "streams/team.html", {"team": found, "member_form": member_form, "grant_form": grant_form})


@page(Action.ADMINISTER, methods=("GET", "POST"), section="teams")
def team_member_remove(request: HttpRequest, caller: Caller, team: str, username: str) -> HttpResponse:
    found = team_get(slug=team)
    person = person_get(username=username)
    if request.method == "POST":
        people.team_member_remove(caller=caller, team=found, user=person)
        messages.success(request, f"{person.username} removed from {found.name}.")
        return redirect("team", team=found.slug)
    return render(request, "streams/team_confirm.html", {"team": found, "person": person})


@page(Action.ADMINISTER, methods=("GET", "POST"), section="teams")
def team_stream_revoke(request: HttpRequest, caller: Caller, team: str, stream: str) -> HttpResponse:
    found = team_get(slug=team)
    granted = stream_of_team(caller=caller, team=found, slug=stream)
    if request.method == "POST":
        people.team_stream_revoke(caller=caller, team=found, stream=granted)
        messages.success(request, f"{found.name} no longer reaches {granted.slug}.")
        return redirect("team", team=found.slug)
    return render(request, "streams/team_confirm.html", {"team": found, "stream": granted})
