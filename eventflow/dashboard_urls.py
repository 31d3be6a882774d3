"""The dashboard's pages (the API's routes are in each app's urls.py). Every view here goes through ``@page``."""

from django.urls import URLPattern, URLResolver, path

from analytics import alert_views
from analytics import views as analytics_views
from consumers import kafka_views
from consumers import views as consumer_views
from eventflow import views
from streams import dead_letter_views, erasure_views, people_views, schema_views
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
    path(f"{_S}/erasures/", erasure_views.erasures_page, name="stream-erasures"),
    # a stream's events and analytics
    path(f"{_S}/events/", analytics_views.explorer, name="explorer"),
    path(f"{_S}/events/<path:event_id>/", analytics_views.event_detail, name="event"),
    path(f"{_S}/analytics/", analytics_views.analytics_page, name="analytics"),
    path(f"{_S}/analytics/breakdown/", analytics_views.analytics_breakdown, name="trends-breakdown"),
    path(f"{_S}/analytics/funnel/", analytics_views.funnel_page, name="funnel"),
    path(f"{_S}/analytics/retention/", analytics_views.retention_page, name="retention"),
    path(f"{_S}/analytics/paths/", analytics_views.paths_page, name="paths"),
    path(f"{_S}/analytics/processing/", analytics_views.processing_page, name="processing"),
    path(f"{_S}/alerts/", alert_views.alerts_page, name="alerts"),
    path(f"{_S}/alerts/new/", alert_views.alert_rule_new, name="alert-rule-new"),
    path(f"{_S}/alerts/<int:rule_id>/edit/", alert_views.alert_rule_edit, name="alert-rule-edit"),
    path(f"{_S}/alerts/<int:rule_id>/mute/", alert_views.alert_rule_mute_page, name="alert-rule-mute"),
    path(f"{_S}/alerts/<int:rule_id>/unmute/", alert_views.alert_rule_unmute_page, name="alert-rule-unmute"),
    path(f"{_S}/alerts/<int:rule_id>/delete/", alert_views.alert_rule_delete_page, name="alert-rule-delete"),
    # schema registry
    path(f"{_S}/schemas/", schema_views.schemas_page, name="schemas"),
    path(f"{_S}/schemas/<str:event_type>/", schema_views.schema_type_page, name="schema-type"),
    path(f"{_S}/schemas/<str:event_type>/try/", schema_views.schema_try, name="schema-try"),
    path(f"{_S}/schemas/<str:event_type>/new/", schema_views.schema_new, name="schema-new"),
    # consumer groups and webhooks
    path(f"{_S}/groups/", consumer_views.groups_page, name="groups"),
    path(f"{_S}/groups/<slug:group>/seek/", consumer_views.group_seek, name="group-seek"),
    path(f"{_S}/groups/<slug:group>/pause/", consumer_views.group_pause, name="group-pause"),
    path(f"{_S}/groups/<slug:group>/resume/", consumer_views.group_resume, name="group-resume"),
    path(f"{_S}/webhooks/", consumer_views.webhooks_page, name="webhooks"),
    path(f"{_S}/webhooks/new/", consumer_views.webhook_new, name="webhook-new"),
    path(f"{_S}/webhooks/<int:webhook_id>/", consumer_views.webhook_page, name="webhook"),
    path(f"{_S}/webhooks/<int:webhook_id>/edit/", consumer_views.webhook_edit, name="webhook-edit"),
    path(f"{_S}/webhooks/<int:webhook_id>/test/", consumer_views.webhook_test, name="webhook-test"),
    path(f"{_S}/webhooks/<int:webhook_id>/enable/", consumer_views.webhook_enable_page, name="webhook-enable"),
    # the Kafka bridge
    path(f"{_S}/kafka/", kafka_views.kafka_page, name="kafka"),
    path(f"{_S}/kafka/sinks/new/", kafka_views.kafka_sink_new, name="kafka-sink-new"),
    path(f"{_S}/kafka/sources/new/", kafka_views.kafka_source_new, name="kafka-source-new"),
    path(
        f"{_S}/kafka/sinks/<int:sink_id>/toggle/",
        kafka_views.kafka_sink_action,
        {"action": "toggle"},
        name="kafka-sink-toggle",
    ),
    path(
        f"{_S}/kafka/sinks/<int:sink_id>/delete/",
        kafka_views.kafka_sink_action,
        {"action": "delete"},
        name="kafka-sink-delete",
    ),
    path(
        f"{_S}/kafka/sources/<int:source_id>/toggle/",
        kafka_views.kafka_source_action,
        {"action": "toggle"},
        name="kafka-source-toggle",
    ),
    path(
        f"{_S}/kafka/sources/<int:source_id>/delete/",
        kafka_views.kafka_source_action,
        {"action": "delete"},
        name="kafka-source-delete",
    ),
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
    path("people/<str:username>/invitation/", people_views.person_invitation, name="person-invitation"),
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
