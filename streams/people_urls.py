from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, path

from . import people_api as api

_TEAM = "api/v1/teams/<slug:team>"

urlpatterns: list[URLPattern | URLResolver] = [
    path("api/v1/teams", api.TeamListView.as_view(), name="teams"),
    path(_TEAM, api.TeamDetailView.as_view(), name="team"),
    path(f"{_TEAM}/members", api.TeamMembersView.as_view(), name="team-members"),
    path(f"{_TEAM}/members/<str:username>", api.TeamMemberView.as_view(), name="team-member"),
    path(f"{_TEAM}/streams", api.TeamStreamsView.as_view(), name="team-streams"),
    path(f"{_TEAM}/streams/<slug:stream>", api.TeamStreamView.as_view(), name="team-stream"),
    path("api/v1/people", api.PeopleListView.as_view(), name="people"),
    path("api/v1/people/<str:username>", api.PersonView.as_view(), name="person"),
    path("api/v1/people/<str:username>/invitation", api.PersonInvitationView.as_view(), name="api-person-invitation"),
    path("api/v1/me", api.MeView.as_view(), name="me"),
    # Where an invitation's one-time link leads: the person chooses a first password.
    path(
        "accounts/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("accounts/reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
]
