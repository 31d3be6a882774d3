from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from streams.models import ApiKeyKind, Stream
from streams.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key granted to one or more streams. Prints the key alone on stdout (shown once)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--stream", action="append", required=True, help="stream slug; repeat for more")
        parser.add_argument("--kind", choices=ApiKeyKind.values, required=True)
        parser.add_argument("--name", default="")
        parser.add_argument("--expires-in-days", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        slugs = options["stream"]
        streams = list(Stream.objects.filter(slug__in=slugs))
        missing = set(slugs) - {s.slug for s in streams}
        if missing:
            raise CommandError(f"No such stream: {', '.join(sorted(missing))}")
        days = options["expires_in_days"]
        issued = api_key_create(
            kind=options["kind"],
            streams=streams,
            name=options["name"],
            expires_at=timezone.now() + timedelta(days=days) if days else None,
        )
        self.stdout.write(issued.raw_key)
