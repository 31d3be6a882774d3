"""The dashboard shell's pages: sign-in and passwords, the overview, the audit log, and the error pages.

The error handlers answer JSON under /api/ (the API's error body) and a page
in the dashboard's look everywhere else.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import TooManyFieldsSent
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template import loader
from django.urls import reverse_lazy
from django.utils import timezone

from analytics.page_selectors import activity_of_streams
from consumers.selectors import consumers_of_streams
from eventflow import conf
from eventflow.audit import audit_entries
from eventflow.dashboard import cursor_page, error_page, page
from eventflow.dashboard_selectors import overview as overview_of
from eventflow.errors import RateLimited, Unavailable, error_body, json_response
from eventflow.health import worker_state
from eventflow.models import AuditKind
from eventflow.ratelimit import login_rate_limited
from streams.access import AUTHENTICATED, Action, Caller, stream_ids_for, streams_for

# --- errors ------------------------------------------------------------------------------------


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return json_response(error_body("not_found", "No such endpoint."), 404)
    return error_page(request, 404)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return json_response(error_body("permission_denied", "You may not do this."), 403)
    return error_page(request, 403)


def bad_request(request: HttpRequest, exception: Exception | None = None, *, message: str = "") -> HttpResponse:
    """The 400 answer; ``message`` says what was wrong (never an exception's text, which may show internals)."""
    if not message and isinstance(exception, TooManyFieldsSent):
        message = f"The form sent more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:,} fields; send fewer at a time."
    if _is_api(request):
        return json_response(error_body("bad_request", message or "The request could not be understood."), 400)
    return error_page(request, 400, message=message)


# Seconds a client is asked to wait while PostgreSQL is away (a restart takes a few).
DATABASE_RETRY_AFTER = 5


def _database_away() -> bool:
    """Whether the exception being handled says PostgreSQL could not be reached or went away.

    Django's OperationalError and InterfaceError wrap psycopg's: refused or timed-out
    connections, a server shutting down or starting up, a connection cut mid-request
    (its next request reconnects: Django closes a connection that failed).
    """
    exc = sys.exc_info()[1]
    return isinstance(exc, OperationalError | InterfaceError)


def server_error(request: HttpRequest) -> HttpResponse:
    if _database_away():
        # DESIGN.md's error table: a dependency that is down is a 503 with Retry-After, never a 500.
        message = "The database is not reachable right now; nothing was changed. Try again shortly."
        if _is_api(request) or "text/html" not in request.headers.get("Accept", ""):
            return json_response(
                error_body("database_unavailable", message),
                503,
                headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
            )
        return error_page(None, 503, message=message, retry_after=DATABASE_RETRY_AFTER)
    if _is_api(request):
        return json_response(error_body("server_error", "Something went wrong on our side."), 500)
    # No request context: whatever failed (the database, a context processor) must not fail this page too.
    return HttpResponse(loader.get_template("errors/500.html").render(), status=500)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if _is_api(request):
        return json_response(error_body("csrf_failed", "CSRF check failed."), 403)
    return error_page(
        request, 403, message="The form had expired or came from elsewhere. Reload the page and try again."
    )


def _view(view: Any) -> Callable[..., HttpResponse]:
    """A class-based view's function, typed as the login guard takes it."""
    return view  # type: ignore[no-any-return]


def _refused(exc: RateLimited | Unavailable) -> HttpResponse:
    status = 429 if isinstance(exc, RateLimited) else 503
    return error_page(None, status, message=exc.message, retry_after=exc.retry_after)


# --- signing in ----------------------------------------------------------------------------------


class SignInForm(AuthenticationForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update({"autocomplete": "username", "autofocus": True})
        self.fields["password"].widget.attrs.update({"autocomplete": "current-password"})


# Each POST passes the login guard (per address and username, growing waits after failures).
login = login_rate_limited(
    _view(
        auth_views.LoginView.as_view(
            template_name="registration/login.html", authentication_form=SignInForm, redirect_authenticated_user=True
        )
    ),
    refused=_refused,
)
logout = auth_views.LogoutView.as_view()
password_change = auth_views.PasswordChangeView.as_view(
    template_name="registration/password_change.html", success_url=reverse_lazy("password-change-done")
)
password_change_done = auth_views.PasswordChangeDoneView.as_view(template_name="registration/password_change_done.html")


class PasswordResetView(auth_views.PasswordResetView):
    """Mails a one-time link to the address's account. The link names ``EVENTFLOW_BASE_URL`` when set
    (as invitations do), never a Host header someone else chose."""

    template_name = "registration/password_reset.html"
    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"
    success_url = reverse_lazy("password-reset-sent")

    def form_valid(self, form: Any) -> HttpResponse:
        base = urlsplit(conf.get().base_url or "")
        if base.netloc:
            self.domain_override = base.netloc
            self.extra_email_context = {"protocol": base.scheme or "https"}
            self.use_https = base.scheme == "https"
        return super().form_valid(form)


# A reset request mails someone: each counts against the address (and the email) as a login attempt would.
password_reset = login_rate_limited(_view(PasswordResetView.as_view()), username_field="email", refused=_refused)
password_reset_sent = auth_views.PasswordResetDoneView.as_view(template_name="registration/password_reset_sent.html")


# --- overview ------------------------------------------------------------------------------------


@page(AUTHENTICATED, section="overview")
def overview(request: HttpRequest, caller: Caller) -> HttpResponse:
    base_url = (conf.get().base_url or request.build_absolute_uri("/")).rstrip("/")
    found = overview_of(caller=caller)
    ids = [row.stream.pk for row in found.streams]
    activity = activity_of_streams(stream_ids=ids, now=timezone.now())
    consumers = consumers_of_streams(stream_ids=ids)
    rows = [
        {
            "summary": row,
            "activity": activity.streams[row.stream.pk],
            "chart": activity.chart(row.stream.pk),
            "spark_id": f"spark-{row.stream.slug}",
            "consumers": consumers[row.stream.pk],
        }
        for row in found.streams
    ]
    context = {
        "overview": found,
        "rows": rows,
        "base_url": base_url,
        "activity": activity,
        "total": activity.total,
        "chart": activity.chart(),
        "lag": sum(c.lag for c in consumers.values()),
        "webhooks": {
            "count": sum(c.webhooks for c in consumers.values()),
            "failing": sum(c.failing for c in consumers.values()),
            "disabled": sum(c.disabled for c in consumers.values()),
        },
        "worker": worker_state(),
    }
    return render(request, "eventflow/overview.html", context)


# --- audit log -----------------------------------------------------------------------------------


class AuditFilterForm(forms.Form):
    kind = forms.ChoiceField(choices=[("", "Any kind"), *AuditKind.choices], required=False)
    action = forms.CharField(required=False, max_length=64, label="Security event")
    user = forms.CharField(required=False, max_length=150, label="Person")
    stream = forms.SlugField(required=False, max_length=64)
    status = forms.IntegerField(required=False, min_value=100, max_value=599, label="HTTP status")
    path = forms.CharField(required=False, max_length=200, label="Path starts with")
    since = forms.DateTimeField(
        required=False, label="From", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    until = forms.DateTimeField(
        required=False, label="To", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )


@page(Action.ADMINISTER, section="audit")
def audit_log(request: HttpRequest, caller: Caller) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    query = form.cleaned_data if form.is_valid() else {}
    stream_id = None
    if query.get("stream"):
        # A stream the caller does not reach lists nothing, as one that does not exist.
        found = streams_for(caller, Action.ADMINISTER).filter(slug=query["stream"]).values_list("pk", flat=True)
        stream_id = next(iter(found), -1)
    rows = audit_entries(
        stream_ids=stream_ids_for(caller, Action.ADMINISTER),
        kind=query.get("kind") or None,
        action=query.get("action") or None,
        username=query.get("user") or None,
        stream_id=stream_id,
        status=query.get("status"),
        path_prefix=query.get("path") or None,
        since=query.get("since"),
        until=query.get("until"),
    )
    listing = cursor_page(request, rows, ("-at", "-id"), size=50)
    return render(request, "eventflow/audit.html", {"form": form, "page": listing})
