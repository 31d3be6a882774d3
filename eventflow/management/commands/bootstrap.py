"""First-run setup for `make run`: an admin user and a demo stream with an ingest key and a starter alert rule.

Safe to run on every start: it creates what is missing and reports what exists.
The admin password is printed only when this run made it up. The demo ingest key
is kept in ``.eventflow/demo-ingest-key`` so it can be shown again; a new one is
issued when that file is missing or its key no longer works for the demo stream
(another database, revoked, expired).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from analytics.alerts import alert_rule_create
from analytics.models import AlertRule
from eventflow import conf
from streams.auth import api_key_principal
from streams.models import ApiKeyKind, Stream
from streams.services import api_key_create, stream_create

DEMO_SLUG = "demo"
DEMO_ALERT_RULE = "failed logins"
DEMO_KEY_FILE = conf.at_start().state_path / "demo-ingest-key"


@dataclass(frozen=True)
class BootstrapResult:
    admin_username: str
    # Set only when this run created the admin with a password it made up.
    admin_password: str | None
    admin_created: bool
    admin_password_from_env: bool
    demo_stream: str
    demo_stream_created: bool
    demo_key: str
    demo_key_created: bool
    # The starter alert rule of the demo stream (failed logins), made by this run.
    demo_alert_rule_created: bool = False


def _admin_ensure() -> tuple[str, str | None, bool, bool]:
    user_model = get_user_model()
    existing = user_model.objects.filter(is_superuser=True).order_by("pk").first()
    if existing is not None:
        return existing.get_username(), None, False, False
    settings = conf.get()
    username = settings.admin_user
    env_password = settings.admin_password
    password = env_password or secrets.token_urlsafe(12)
    email = settings.admin_email
    if env_password:
        # As `createsuperuser` and the password forms do: AUTH_PASSWORD_VALIDATORS, against this user's name and
        # e-mail, before anything is written. (A made-up password is long and random enough.)
        try:
            validate_password(env_password, user=user_model(username=username, email=email))
        except ValidationError as exc:
            raise ImproperlyConfigured(
                f"EVENTFLOW_ADMIN_PASSWORD is refused by the password validators: {' '.join(exc.messages)}"
            ) from exc
    user_model.objects.create_superuser(username=username, email=email, password=password)
    return username, None if env_password else password, True, bool(env_password)


def _stored_key_works(stream: Stream) -> str | None:
    try:
        key = DEMO_KEY_FILE.read_text().strip()
    except OSError:
        return None
    principal = api_key_principal(key) if key else None
    if principal is None or not principal.usable() or stream.pk not in principal.stream_ids:
        return None
    return key


def _demo_ensure() -> tuple[Stream, bool, str, bool]:
    with transaction.atomic():
        stream = Stream.objects.filter(slug=DEMO_SLUG).first()
        stream_created = stream is None
        if stream is None:
            stream = stream_create(
                slug=DEMO_SLUG,
                name="Demo",
                description="Example stream with the five starter event types.",
                with_starter_schemas=True,
            )
    key = _stored_key_works(stream)
    if key is not None:
        return stream, stream_created, key, False
    issued = api_key_create(kind=ApiKeyKind.INGEST, streams=[stream], name="demo ingest key")
    DEMO_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    DEMO_KEY_FILE.touch(mode=0o600)
    DEMO_KEY_FILE.write_text(issued.raw_key + "\n")
    DEMO_KEY_FILE.chmod(0o600)
    return stream, stream_created, issued.raw_key, True


def _demo_alert_rule_ensure(stream: Stream) -> bool:
    """The starter rule: 5 or more failed logins (``payload.success`` false) for one user within 5 minutes."""
    if AlertRule.objects.filter(stream=stream, name=DEMO_ALERT_RULE).exists():
        return False
    alert_rule_create(
        stream_id=stream.pk,
        name=DEMO_ALERT_RULE,
        event_types=["login"],
        conditions=[{"property": "payload.success", "op": "eq", "values": ["false"]}],
        threshold=5,
        window_seconds=300,
        group_by="user_id",
        cooldown_seconds=900,
    )
    return True


def bootstrap() -> BootstrapResult:
    username, password, admin_created, from_env = _admin_ensure()
    stream, stream_created, key, key_created = _demo_ensure()
    rule_created = _demo_alert_rule_ensure(stream)
    return BootstrapResult(
        admin_username=username,
        admin_password=password,
        admin_created=admin_created,
        admin_password_from_env=from_env,
        demo_stream=stream.slug,
        demo_stream_created=stream_created,
        demo_key=key,
        demo_key_created=key_created,
        demo_alert_rule_created=rule_created,
    )


class Command(BaseCommand):
    help = "Create the first admin user and a demo stream with an ingest key (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Base URL used in the printed examples.")
        parser.add_argument("--json", action="store_true", help="Print the result as one JSON object.")
        parser.add_argument("--migrate", action="store_true", help="Apply migrations first.")
        parser.add_argument("--collectstatic", action="store_true", help="Collect static files first.")

    def _progress(self, message: str) -> None:
        # Plain, not in the error colour Django gives stderr.
        self.stderr.write(f"eventflow: {message}", style_func=str)

    def handle(self, *args: Any, **options: Any) -> None:
        # Progress goes to stderr, so that stdout stays the result alone.
        if options["migrate"]:
            self._progress("applying migrations …")
            call_command("migrate", interactive=False, verbosity=0)
        if options["collectstatic"]:
            self._progress("collecting static files …")
            call_command("collectstatic", interactive=False, verbosity=0)
        try:
            result = bootstrap()
        except ImproperlyConfigured as exc:
            # One line naming the setting, as a bad setting at start-up (eventflow.conf.at_start_or_exit).
            raise SystemExit(f"eventflow: {exc}") from None
        if options["json"]:
            self.stdout.write(json.dumps(asdict(result)))
            return
        url = options["url"].rstrip("/")
        if result.admin_created:
            self.stdout.write(self.style.SUCCESS("Created the first admin user:"))
            if result.admin_password is not None:
                self.stdout.write(f"    username: {result.admin_username}\n    password: {result.admin_password}")
                self.stdout.write("    (the password is shown only this once)")
            else:
                self.stdout.write(f"    username: {result.admin_username}, password from EVENTFLOW_ADMIN_PASSWORD")
        else:
            self.stdout.write(f"Admin user: {result.admin_username}")
        if result.demo_stream_created:
            self.stdout.write(self.style.SUCCESS(f"Created the demo stream '{result.demo_stream}'."))
        if result.demo_alert_rule_created:
            self.stdout.write(
                f"Created the alert rule '{DEMO_ALERT_RULE}': 5 login events with payload.success=false"
                " for one user_id within 5 minutes."
            )
        self.stdout.write(
            f"Demo ingest key: {result.demo_key}\nTry it:\n"
            f"    curl -X POST {url}/api/v1/streams/{result.demo_stream}/events -H 'X-API-Key: {result.demo_key}' \\\n"
            "         -H 'Content-Type: application/json' "
            '-d \'{"type": "page_view", "user_id": "u1", "payload": {"page": "/home"}}\''
        )
