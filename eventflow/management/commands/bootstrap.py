"""First-run setup for `make run`: an admin user and a demo stream with an ingest key."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from eventflow.devservices import STATE_DIR
from streams.models import ApiKeyKind, Stream
from streams.services import api_key_create, stream_create

DEMO_SLUG = "demo"
DEMO_KEY_FILE = STATE_DIR / "demo-ingest-key"


class Command(BaseCommand):
    help = "Create the first admin user and a demo stream with an ingest key (idempotent)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        url = options["url"].rstrip("/")
        user_model = get_user_model()
        if not user_model.objects.filter(is_superuser=True).exists():
            username = os.environ.get("EVENTFLOW_ADMIN_USER", "admin")
            password = os.environ.get("EVENTFLOW_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            email = os.environ.get("EVENTFLOW_ADMIN_EMAIL", "admin@example.com")
            user_model.objects.create_superuser(username=username, email=email, password=password)
            self.stdout.write(self.style.SUCCESS("Created the first admin user (shown once):"))
            self.stdout.write(f"    username: {username}\n    password: {password}\n")

        if not Stream.objects.filter(slug=DEMO_SLUG).exists():
            stream = stream_create(
                slug=DEMO_SLUG,
                name="Demo",
                description="Example stream with the five starter event types.",
                with_starter_schemas=True,
            )
            issued = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream], name="demo ingest key")
            STATE_DIR.mkdir(parents=True, exist_ok=True)
            DEMO_KEY_FILE.write_text(issued.raw_key + "\n")
            DEMO_KEY_FILE.chmod(0o600)
            self.stdout.write(self.style.SUCCESS(f"Created the demo stream '{DEMO_SLUG}' with an ingest key."))

        if DEMO_KEY_FILE.exists():
            key = DEMO_KEY_FILE.read_text().strip()
            self.stdout.write(
                f"Demo ingest key: {key}\nTry it:\n"
                f"    curl -X POST {url}/api/v1/streams/{DEMO_SLUG}/events -H 'X-API-Key: {key}' \\\n"
                "         -H 'Content-Type: application/json' "
                "-d '{\"type\": \"page_view\", \"user_id\": \"u1\", \"payload\": {\"page\": \"/home\"}}'\n"
                f"    python manage.py simulate_events --stream {DEMO_SLUG} --key {key} --rate 50 --duration 30"
                f" --url {url}"
            )
