"""Filters of the analytics pages: shares as SVG widths, heat-map steps, percentages, durations."""

from __future__ import annotations

from typing import Any

import orjson
from django import template

register = template.Library()


@register.filter
def share(part: float | int | None, whole: float | int | None) -> float:
    """``part`` as a percentage of ``whole`` (0-100, for an SVG bar's width)."""
    if not part or not whole:
        return 0.0
    return round(max(0.0, min(100.0, 100.0 * float(part) / float(whole))), 2)


@register.filter
def heat(fraction: float | None) -> str:
    """The heat-map class of a share from 0 to 1: h0 … h10, or na when there is none yet."""
    if fraction is None:
        return "na"
    return f"h{max(0, min(10, round(float(fraction) * 10)))}"


@register.filter
def percent(fraction: float | None, digits: int = 1) -> str:
    if fraction is None:
        return "—"
    return f"{100 * float(fraction):.{digits}f}%"


@register.filter
def duration(seconds: float | None) -> str:
    """42 s, 3.5 min, 2.1 h, 1.5 d."""
    if seconds is None:
        return "—"
    value = float(seconds)
    for limit, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if value >= limit:
            return f"{value / limit:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{value:.1f}".rstrip("0").rstrip(".") + " s"


@register.filter
def pretty_json(value: Any) -> str:
    """Indented JSON with sorted keys (autoescaped by the template like any text)."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str).decode()


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    try:
        return mapping[key]
    except (KeyError, IndexError, TypeError):
        return None


@register.filter
def bar_h(fraction: float | None) -> float:
    """A vertical bar's height in a 0-100 box for a share from 0 to 1."""
    return round(max(0.0, min(1.0, float(fraction or 0))) * 100, 2)


@register.filter
def bar_y(fraction: float | None) -> float:
    """Where that bar starts, so it stands on the box's bottom."""
    return round(100 - bar_h(fraction), 2)
