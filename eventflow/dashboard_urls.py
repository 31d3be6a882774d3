"""The dashboard's pages (the API's routes are in each app's urls.py). Every view here goes through ``@page``."""

from django.urls import URLPattern, URLResolver, path

from eventflow import views
from streams import dead_letter_views, people_views
from streams import views as stream_views

_S = "streams/<slug:slug>"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.overview, name="overview"),
    # signing in and passwords
    path("login/", views.login, name="login"),
    path("logout/", views.logout, name="logout"),
    path("account/password/", views.password_change, name="password-change"),
    path("account/password/done/", views.password_change_done, name="password-change-done"),
    path("accounts/password-reset/", views.password_reset, name="password-reset"),
    path("accounts/password-reset/sent/", views.password_reset_sent, name="password-reset-sent"),
    # streams
    path("streams/", stream_views.streams_list, name="streams"),
    path("streams/new/", stream_views.stream_new, name="stream-new"),
    path(f"{_S}/", stream_views.stream_detail, name="stream"),
    path(f"{_S}/edit/", stream_views.stream_edit, name="stream-edit"),
    path(f"{_S}/archive/", stream_views.stream_archive_page, name="stream-archive"),
    path(f"{_S}/tail/", stream_views.stream_tail, name="stream-tail"),
    # API keys
    path("keys/", stream_views.keys_list, name="keys"),
    path("keys/new/", stream_views.key_new, name="key-new"),
    path("keys/<int:key_id>/revoke/", stream_views.key_revoke, name="key-revoke"),
    # dead letters
    path("dead-letters/", dead_letter_views.dead_letters, name="dead-letters"),
    path("dead-letters/selected/", dead_letter_views.dead_letters_bulk, name="dead-letters-bulk"),
    path("dead-letters/<int:letter_id>/", dead_letter_views.dead_letter_detail, name="dead-letter"),
    path(
        "dead-letters/<int:letter_id>/replay/",
        dead_letter_views.dead_letter_act,
        {"action": "replay"},
        name="dead-letter-replay",
    ),
    path(
        "dead-letters/<int:letter_id>/discard/",
        dead_letter_views.dead_letter_act,
        {"action": "discard"},
        name="dead-letter-discard",
    ),
    # people and teams
    path("people/", people_views.people_page, name="people"),
    path("people/invite/", people_views.person_invite, name="person-invite"),
    path("people/<str:username>/", people_views.person_page, name="person"),
    path("people/<str:username>/active/", people_views.person_active, name="person-active"),
    path("teams/", people_views.teams_page, name="teams"),
    path("teams/new/", people_views.team_new, name="team-new"),
    path("teams/<slug:team>/", people_views.team_page, name="team"),
    path(
        "teams/<slug:team>/members/<str:username>/remove/", people_views.team_member_remove, name="team-member-remove"
    ),
    path("teams/<slug:team>/streams/<slug:stream>/revoke/", people_views.team_stream_revoke, name="team-stream-revoke"),
    # audit log
    path("audit/", views.audit_log, name="audit"),
]
