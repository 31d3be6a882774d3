"""The dashboard's template filters and tags: counts as people read them, JSON as it was sent, a stream's tabs."""

from __future__ import annotations

from typing import Any

import orjson
from django import template

from eventflow.dashboard import ANALYTICS_TABS, page_caller, page_opens_named, stream_tabs

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


@register.inclusion_tag("partials/stream_tabs.html", takes_context=True)
def stream_tab_bar(context: template.Context, stream: Any, active: str) -> dict[str, Any]:
    """The stream's tab bar, ``active`` marked: ``{% stream_tab_bar stream "schemas" %}``.

    Which tabs show is ``eventflow.dashboard.stream_tabs``'s to say, for the page's caller.
    """
    caller = page_caller(context["request"])
    return {"tabs": stream_tabs(caller, stream.id, stream.slug, active), "label": "This stream", "level": "stream-tabs"}


@register.inclusion_tag("partials/stream_tabs.html", takes_context=True)
def analytics_tab_bar(context: template.Context, stream: Any, active: str) -> dict[str, Any]:
    """The analytics pages' own row of tabs, below the stream's: those the page's caller may open."""
    caller = page_caller(context["request"])
    tabs = stream_tabs(caller, stream.id, stream.slug, active, ANALYTICS_TABS)
    # A row of one tab (an Operator's processing) says nothing the stream's row does not.
    return {"tabs": tabs if len(tabs) > 1 else [], "label": "Analytics"}


@register.simple_tag(takes_context=True)
def opens(context: template.Context, stream: Any, url_name: str) -> bool:
    """Whether the page's caller may open the stream's page ``url_name``: ``{% opens stream "explorer" as can %}``."""
    return page_opens_named(page_caller(context["request"]), url_name, stream.id)
