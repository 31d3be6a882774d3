from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from eventflow.errors import DomainError
from streams.models import SchemaMode, Stream
from streams.services import stream_create


class Command(BaseCommand):
    help = "Create a stream. Prints its slug."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--description", default="")
        parser.add_argument("--schema-mode", choices=SchemaMode.values, default=SchemaMode.WARN)
        parser.add_argument("--retention-days", type=int, default=30)
        parser.add_argument("--keep-ip", action="store_true", help="store whole IP addresses (default: anonymise)")
        parser.add_argument("--starter-schemas", action="store_true", help="register the five starter schemas")

    def handle(self, *args: Any, **options: Any) -> None:
        slug = options["slug"]
        if Stream.objects.filter(slug=slug).exists():
            raise CommandError(f"A stream named {slug!r} already exists.")
        try:
            stream = stream_create(
                slug=slug,
                name=options["name"],
                description=options["description"],
                schema_mode=options["schema_mode"],
                retention_days=options["retention_days"],
                anonymize_ip=not options["keep_ip"],
                with_starter_schemas=options["starter_schemas"],
            )
        except DomainError as exc:
            fields = "; ".join(f"{name}: {' '.join(map(str, errors))}" for name, errors in exc.details.items())
            raise CommandError(f"{exc.message} {fields}".strip()) from None
        self.stdout.write(stream.slug)
