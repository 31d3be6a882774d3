from . import conf

# Every process (manage.py, python -m eventflow, gunicorn, Celery, the launcher) imports this package first:
# a bad setting ends it here with one line naming the variable, not a traceback.
conf.at_start_or_exit()

from .celery import app as celery_app  # noqa: E402 - after the settings check

__all__ = ["celery_app"]
