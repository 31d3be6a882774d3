from django.urls import URLPattern, URLResolver, path

from .alerts_api import (
    AlertListView,
    AlertRuleDetailView,
    AlertRuleListView,
    AlertRuleMuteView,
    AlertRuleUnmuteView,
)
from .api import ActiveUsersView, BreakdownView, CountByTypeView, GroupByKeyAndTypeView, TimeseriesView
from .journeys_api import (
    FunnelView,
    PathsView,
    ProcessingView,
    RetentionView,
    SegmentDetailView,
    SegmentListView,
)
from .page_performance_api import PagePerformanceView
from .query_api import EventDetailView, EventExportView

# The event query and export (analytics/query_api.py) and the analytics endpoints (analytics/api.py).
# GET /api/v1/streams/<slug>/events itself is answered by the intake's view (ingestion/api.py),
# which hands GET to analytics.query_api.EventQueryView.
_S = "api/v1/streams/<slug:slug>"

urlpatterns: list[URLPattern | URLResolver] = [
    # Ahead of the event lookup, whose id may be any text: "export" is this endpoint, never an id.
    path(f"{_S}/events/export", EventExportView.as_view(), name="events-export"),
    # path: an event id may hold a "/" (sent URL-encoded, decoded before routing).
    path(f"{_S}/events/<path:event_id>", EventDetailView.as_view(), name="events-show"),
    # Counts, time series, breakdowns and active users (analytics/api.py).
    path(f"{_S}/analytics/count-by-type", CountByTypeView.as_view(), name="analytics-count-by-type"),
    path(
        f"{_S}/analytics/group-by-key-and-type", GroupByKeyAndTypeView.as_view(), name="analytics-group-by-key-and-type"
    ),
    path(f"{_S}/analytics/timeseries", TimeseriesView.as_view(), name="analytics-timeseries"),
    path(f"{_S}/analytics/breakdown", BreakdownView.as_view(), name="analytics-breakdown"),
    path(f"{_S}/analytics/active-users", ActiveUsersView.as_view(), name="analytics-active-users"),
    # Funnels, paths, retention, processing health and saved segments (analytics/journeys_api.py).
    path(f"{_S}/analytics/funnel", FunnelView.as_view(), name="analytics-funnel"),
    path(f"{_S}/analytics/paths", PathsView.as_view(), name="analytics-paths"),
    path(f"{_S}/analytics/retention", RetentionView.as_view(), name="analytics-retention"),
    path(f"{_S}/analytics/processing", ProcessingView.as_view(), name="analytics-processing"),
    # The browser tracker's page measurements (analytics/page_performance_api.py).
    path(f"{_S}/analytics/page-performance", PagePerformanceView.as_view(), name="analytics-page-performance"),
    path(f"{_S}/segments", SegmentListView.as_view(), name="segments"),
    path(f"{_S}/segments/<slug:segment>", SegmentDetailView.as_view(), name="segments-show"),
    # Alert rules and alerts (analytics/alerts_api.py).
    path(f"{_S}/alert-rules", AlertRuleListView.as_view(), name="alert-rules"),
    path(f"{_S}/alert-rules/<int:rule_id>", AlertRuleDetailView.as_view(), name="alert-rules-show"),
    path(f"{_S}/alert-rules/<int:rule_id>/mute", AlertRuleMuteView.as_view(), name="alert-rules-mute"),
    path(f"{_S}/alert-rules/<int:rule_id>/unmute", AlertRuleUnmuteView.as_view(), name="alert-rules-unmute"),
    path(f"{_S}/alerts", AlertListView.as_view(), name="alerts"),
]
