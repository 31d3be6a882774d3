import os

from django.core.wsgi import get_wsgi_application

from eventflow.tracing import tracing_setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "eventflow.settings")

# Before the application loads its middleware: the Django instrumentation adds one (when tracing is on).
tracing_setup()

# POST of events skips the rest of Django's request cycle (ingestion/wsgi.py); everything else is Django's.
from ingestion.wsgi import IntakeDispatcher  # noqa: E402

application = IntakeDispatcher(get_wsgi_application())

# Only a serving process writes buffered audit rows in the background (and at
# exit); Django's test client never imports this module, so tests flush themselves.
from eventflow.audit import audit_flusher_start  # noqa: E402

audit_flusher_start()

# Likewise, the intake's processing kicks go out from a background thread (ingestion/processing.py).
from ingestion.processing import kicker_start  # noqa: E402

kicker_start()

# Last: what loading made is kept out of the collector's full passes, and /ready answers 200 from here on.
from eventflow.readiness import loaded_objects_freeze, process_started  # noqa: E402

loaded_objects_freeze()
process_started()
