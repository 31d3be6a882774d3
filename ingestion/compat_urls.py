"""The paths other products' SDKs send to, at the root and under a stream (``/s/{slug}/…``).

Each path also takes a key in the URL (``…/k/{ingest key}/…``) for senders
that have nowhere else to put one (Snowplow, Plausible). The trailing slash
is optional everywhere, as the SDKs differ on it.
"""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path, re_path

from ingestion import tracker
from ingestion.compat import mixpanel, plausible, posthog, segment, snowplow

# Optional stream and key segments ahead of every path.
PREFIX = r"^(?:s/(?P<slug>[a-z0-9][a-z0-9-]{0,63})/)?(?:k/(?P<url_key>[A-Za-z0-9_-]{1,200})/)?"

ROUTES: list[tuple[str, Any, str]] = [
    ("v1/batch", segment.batch_view, "compat-segment-batch"),
    *((f"v1/{call}", view, f"compat-segment-{call}") for call, view in segment.call_views.items()),
    ("batch", posthog.capture_view, "compat-posthog-batch"),
    ("capture", posthog.capture_view, "compat-posthog-capture"),
    ("e", posthog.capture_view, "compat-posthog-e"),
    ("i/v0/e", posthog.capture_view, "compat-posthog-i-v0-e"),
    ("track", mixpanel.track_view, "compat-track"),
    ("engage", mixpanel.engage_view, "compat-mixpanel-engage"),
    ("com.snowplowanalytics.snowplow/tp2", snowplow.tp2_view, "compat-snowplow-tp2"),
    ("i", snowplow.pixel_view, "compat-snowplow-pixel"),
    ("api/event", plausible.event_view, "compat-plausible-event"),
    # The browser tracker's own intake (ingestion/tracker.py).
    ("tracker", tracker.event_view, "tracker-event"),
]

urlpatterns: list[URLPattern] = [
    re_path(PREFIX + route.replace(".", r"\.") + r"/?$", view, name=name) for route, view, name in ROUTES
]
# The tracker's script: /t.js follows upgrades, /t.{version}.js is one version for good (for integrity="…").
urlpatterns += [
    path("t.js", tracker.script_view, name="tracker-script"),
    re_path(r"^t\.(?P<version>[0-9a-f]{12})\.js$", tracker.script_view, name="tracker-script-version"),
]
