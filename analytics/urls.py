from django.urls import URLPattern, URLResolver, path

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
]
