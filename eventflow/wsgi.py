import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "eventflow.settings")

application = get_wsgi_application()

# Only a serving process writes buffered audit rows in the background (and at
# exit); Django's test client never imports this module, so tests flush themselves.
from eventflow.audit import audit_flusher_start  # noqa: E402

audit_flusher_start()
