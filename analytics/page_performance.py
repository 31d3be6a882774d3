"""Page performance: percentiles of the browser tracker's measurements per page.

The tracker sends one ``page_performance`` event per page view (ingestion/tracker.py)
with numeric properties: ``ttfb``, ``dom_content_loaded``, ``load``, ``lcp``, ``inp``
(milliseconds) and ``cls`` (a score). This reads them from the log: per page
(``payload.page``, else ``context.page.path``, without query or fragment, as the
rollups' page dimension), the 50th, 75th and 95th percentiles of each, and the
same over all pages.

One statement: ``percentile_cont`` over ``GROUPING SETS ((page), ())`` gives the
pages and the total in one scan of the range's ``page_performance`` events
(the ``log_stream_type_time`` index); the ORM has no ordered-set aggregates.
A measurement that is not a number in range (other senders may write this type
too) counts as missing, never as an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection

from .filters import EventFilter
from .rollups import dimension_sql

PAGE_PERFORMANCE = "page_performance"
METRICS = ("ttfb", "dom_content_loaded", "load", "lcp", "cls", "inp")
PERCENTILES = (0.5, 0.75, 0.95)
MAX_MEASUREMENT = 1e9
MAX_TOP = 100


def _measurement(name: str) -> str:
    # The name is one of METRICS, never input.
    value = f"l.payload -> '{name}'"
    return (
        f"CASE WHEN jsonb_typeof({value}) = 'number' AND ({value})::numeric BETWEEN 0 AND {MAX_MEASUREMENT:.0f} "
        f"THEN ({value})::numeric::float8 END"
    )


def _statement(where: str) -> str:
    columns = ",\n       ".join(f"{_measurement(name)} AS {name}" for name in METRICS)
    aggregates = ",\n       ".join(
        f"count({name}), percentile_cont(ARRAY{list(PERCENTILES)}) WITHIN GROUP (ORDER BY {name})" for name in METRICS
    )
    return f"""
WITH m AS (
  SELECT {dimension_sql("page", "l")} AS page,
       {columns}
  FROM streams_log l
  WHERE l.stream_id = %s AND l.type = %s AND {where}
)
SELECT grouping(page) AS total, page, count(*) AS views,
       {aggregates}
FROM m
GROUP BY GROUPING SETS ((page), ())
ORDER BY grouping(page) DESC, count(*) DESC, page
LIMIT %s
"""


@dataclass
class Metric:
    count: int
    p50: float | None
    p75: float | None
    p95: float | None


@dataclass
class PagePerformance:
    page: str | None
    views: int
    metrics: dict[str, Metric]


@dataclass
class PagePerformanceResult:
    all: PagePerformance
    pages: list[PagePerformance]


def _round(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    return round(value, 4) if name == "cls" else round(value, 1)


def _row(row: tuple[Any, ...]) -> PagePerformance:
    metrics = {}
    for index, name in enumerate(METRICS):
        count, percentiles = row[3 + 2 * index], row[4 + 2 * index]
        p50, p75, p95 = percentiles if percentiles is not None else (None, None, None)
        metrics[name] = Metric(count=count, p50=_round(name, p50), p75=_round(name, p75), p95=_round(name, p95))
    return PagePerformance(page=row[1], views=row[2], metrics=metrics)


def page_performance(*, stream_id: int, event_filter: EventFilter, top: int) -> PagePerformanceResult:
    """p50/p75/p95 of each measurement, per page (the ``top`` pages by page views measured) and over all."""
    where, params = event_filter.to_sql("l")
    with connection.cursor() as cursor:
        cursor.execute(_statement(where), [stream_id, PAGE_PERFORMANCE, *params, top + 1])
        rows = cursor.fetchall()
    total = next((_row(row) for row in rows if row[0]), None)
    if total is None:
        empty = {name: Metric(count=0, p50=None, p75=None, p95=None) for name in METRICS}
        total = PagePerformance(page=None, views=0, metrics=empty)
    else:
        total.page = None
    return PagePerformanceResult(all=total, pages=[_row(row) for row in rows if not row[0]])
