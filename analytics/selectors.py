"""Reads of the analytics app's own models: saved segments."""

from __future__ import annotations

import re
from collections.abc import Callable

from eventflow.errors import NotFound

from .filters import Condition, parse_conditions
from .models import Segment

# A segment's name is a slug: anything else (a NUL character included) names no segment.
_NAME_RE = re.compile(r"[-a-zA-Z0-9_]{1,64}")


def segment_conditions(*, stream_id: int, name: str) -> tuple[Condition, ...]:
    """The property conditions of the stream's segment ``name``; ``NotFound`` when it has none of that name."""
    saved = None
    if _NAME_RE.fullmatch(name):
        saved = Segment.objects.filter(stream_id=stream_id, name=name).values_list("conditions", flat=True).first()
    if saved is None:
        raise NotFound("segment_not_found", f"The stream has no segment {name!r}.", {"segment": name})
    return parse_conditions(saved)


def segment_lookup(stream_id: int) -> Callable[[str], tuple[Condition, ...]]:
    """``segment_conditions`` for one stream, as ``parse_filter(segment_conditions=…)`` asks it."""

    def lookup(name: str) -> tuple[Condition, ...]:
        return segment_conditions(stream_id=stream_id, name=name)

    return lookup
