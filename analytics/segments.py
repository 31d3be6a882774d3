"""Saved segments: named property conditions of a stream that every analytics endpoint takes as ``segment=``.

Writes validate the conditions with ``parse_conditions`` (the same parser the
filters use when the segment is applied) and are audited as security events in
their transaction. The lookup the filters ask is ``analytics.selectors.segment_lookup``.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from eventflow.audit import audit_security
from eventflow.errors import Conflict, Invalid, NotFound

from .filters import parse_conditions
from .models import Segment

NAME_RE = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")


def segments_of_stream(*, stream_id: int) -> QuerySet[Segment]:
    return Segment.objects.filter(stream_id=stream_id).order_by("name")


def segment_get(*, stream_id: int, name: str) -> Segment:
    segment = Segment.objects.filter(stream_id=stream_id, name=name).first() if NAME_RE.match(name) else None
    if segment is None:
        raise NotFound("segment_not_found", f"The stream has no segment {name!r}.", {"segment": name})
    return segment


def _conditions(raw: Any) -> list[dict[str, Any]]:
    """The conditions as they are saved: parsed (so a bad one is refused now, not when used) and normalised."""
    parsed = parse_conditions(raw)
    if not parsed:
        raise Invalid("invalid_segment", "A segment has at least one condition.")
    return [condition.as_dict() for condition in parsed]


def segment_create(*, stream_id: int, name: str, conditions: Any, description: str = "") -> Segment:
    if not NAME_RE.match(name):
        raise Invalid("invalid_segment", "A segment's name is 1 to 64 letters, digits, - or _.", {"name": name})
    saved = _conditions(conditions)
    try:
        with transaction.atomic():
            segment = Segment.objects.create(stream_id=stream_id, name=name, description=description, conditions=saved)
            audit_security(action="segment.create", stream_id=stream_id, target=name, details={"conditions": saved})
    except IntegrityError:
        raise Conflict("segment_exists", f"The stream already has a segment {name!r}.", {"name": name}) from None
    return segment


def segment_update(*, stream_id: int, name: str, conditions: Any = None, description: str | None = None) -> Segment:
    changes: dict[str, Any] = {}
    if conditions is not None:
        changes["conditions"] = _conditions(conditions)
    if description is not None:
        changes["description"] = description
    with transaction.atomic():
        segment = segment_get(stream_id=stream_id, name=name)
        segment = Segment.objects.select_for_update().get(pk=segment.pk)
        for key, value in changes.items():
            setattr(segment, key, value)
        if changes:
            segment.save(update_fields=list(changes))
            audit_security(action="segment.update", stream_id=stream_id, target=name, details=changes)
    return segment


def segment_delete(*, stream_id: int, name: str) -> None:
    with transaction.atomic():
        segment = segment_get(stream_id=stream_id, name=name)
        segment.delete()
        audit_security(
            action="segment.delete", stream_id=stream_id, target=name, details={"conditions": segment.conditions}
        )
