from django.contrib import admin
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from analytics.urls import urlpatterns as analytics_urls
from consumers.urls import urlpatterns as consumer_urls
from eventflow.audit_urls import urlpatterns as audit_urls
from eventflow.auth_views import TokenObtainView, TokenRefreshLimitedView, admin_login
from eventflow.dashboard_urls import urlpatterns as dashboard_urls
from eventflow.health import health
from eventflow.metrics_http import metrics_view
from eventflow.readiness import ready
from ingestion.api import events_send, events_send_batch
from ingestion.compat_urls import urlpatterns as compat_urls
from streams.dead_letter_urls import urlpatterns as dead_letter_urls
from streams.people_urls import urlpatterns as people_urls
from streams.urls import urlpatterns as stream_urls

api_v1 = [
    path("api/v1/streams/<slug:slug>/events", events_send, name="events-send"),
    path("api/v1/streams/<slug:slug>/events/batch", events_send_batch, name="events-send-batch"),
    path("api/v1/auth/token", TokenObtainView.as_view(), name="auth-token"),
    path("api/v1/auth/token/refresh", TokenRefreshLimitedView.as_view(), name="auth-token-refresh"),
    *stream_urls,
    *consumer_urls,
    *analytics_urls,
    *people_urls,
    *dead_letter_urls,
    *audit_urls,
]

urlpatterns = [
    path("health", health, name="health"),
    path("ready", ready, name="ready"),
    path("metrics", metrics_view, name="metrics"),
    # Ahead of admin.site.urls: the admin's login page, rate-limited (eventflow/auth_views.py).
    path("admin/login/", admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file: no inline script under the Content-Security-Policy.
    # No metadata: DRF's answer to OPTIONS cannot be rendered by the page's template (it was a 500); now a 405.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="schema", template_name="eventflow/swagger_ui.html", metadata_class=None
        ),
        name="swagger-ui",
    ),
    *api_v1,
    *dashboard_urls,
    # Other products' SDKs (Segment, RudderStack, PostHog, Snowplow, Mixpanel, Plausible), at their own paths.
    *compat_urls,
]

handler400 = "eventflow.views.bad_request"
handler403 = "eventflow.views.permission_denied"
handler404 = "eventflow.views.not_found"
handler500 = "eventflow.views.server_error"
