from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from streams.models import ApiKeyKind, Stream
from streams.services import api_key_create

# A hundred years (far enough; a count near a few million days overflows the date).
MAX_EXPIRY_DAYS = 36500


class Command(BaseCommand):
    help = "Create an API key granted to one or more streams. Prints the key alone on stdout (shown once)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--stream", action="append", required=True, help="stream slug; repeat for more")
        parser.add_argument("--kind", choices=ApiKeyKind.values, required=True)
        parser.add_argument("--name", default="")
        parser.add_argument("--expires-in-days", type=int, default=None, help=f"1 to {MAX_EXPIRY_DAYS}")

    def handle(self, *args: Any, **options: Any) -> None:
        slugs = options["stream"]
        streams = list(Stream.objects.filter(slug__in=slugs))
        missing = set(slugs) - {s.slug for s in streams}
        if missing:
            raise CommandError(f"No such stream: {', '.join(sorted(missing))}")
        days = options["expires_in_days"]
        # 0 would mean "never" below, and a negative count a key that has expired already.
        if days is not None and not 1 <= days <= MAX_EXPIRY_DAYS:
            raise CommandError(f"--expires-in-days must be between 1 and {MAX_EXPIRY_DAYS}, got {days}")
        issued = api_key_create(
            kind=options["kind"],
            streams=streams,
            name=options["name"],
            expires_at=timezone.now() + timedelta(days=days) if days else None,
        )
        self.stdout.write(issued.raw_key)
