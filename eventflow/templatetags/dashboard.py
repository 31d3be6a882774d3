"""The dashboard's template filters: counts as people read them, JSON as it was sent."""

from __future__ import annotations

from typing import Any

import orjson
from django import template

register = template.Library()


@register.filter
def compact(value: int | None) -> str:
    """1,234 and 12.3k and 4.5M."""
    if value is None:
        return "—"
    number = int(value)
    for limit, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (10_000, "k")):
        # From where the smaller unit would round up to 1000 of itself (999,950 is "1M", not "1000k").
        if abs(number) >= limit - (limit // 20_000 if suffix != "k" else 0):
            shown = number / (limit if suffix != "k" else 1_000)
            return f"{shown:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{number:,}"


@register.filter
def json_compact(value: Any) -> str:
    """One line of JSON (autoescaped by the template like any text)."""
    if value is None:
        return ""
    return orjson.dumps(value, default=str).decode()
