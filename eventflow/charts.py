"""Chart data for the dashboard's pages: buckets and series in the shape static/eventflow/charts.js draws.

A chart is rendered as a JSON data block (``json_script``), never as code, so the
Content-Security-Policy holds; its numbers are also in a table on the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Series beyond this many are summed into one "other" line: a chart of 30 lines is not read.
MAX_SERIES = 8


@dataclass(frozen=True)
class Series:
    label: str
    values: list[float | int | None]
    colour: str = ""


@dataclass
class Chart:
    """x: bucket starts; series: one value per bucket each; unit, zone and interval label the axes and tooltip."""

    x: list[datetime]
    series: list[Series]
    unit: str = "events"
    tz: str = "UTC"
    interval: str = "hour"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.x or not any(v for s in self.series for v in s.values)

    @property
    def data(self) -> dict[str, Any]:
        return {
            "x": [int(at.timestamp()) for at in self.x],
            "series": [
                {"label": s.label, "values": s.values, **({"colour": s.colour} if s.colour else {})}
                for s in self.series
            ],
            "unit": self.unit,
            "tz": self.tz,
            "interval": self.interval,
        }

    @property
    def rows(self) -> list[tuple[datetime, list[float | int | None]]]:
        """The numbers beside the chart: one row per bucket, one column per series."""
        return [(at, [s.values[i] for s in self.series]) for i, at in enumerate(self.x)]

    @property
    def filled_rows(self) -> list[tuple[datetime, list[float | int | None]]]:
        """The rows with something in them: a table of 1,440 empty minutes says nothing."""
        return [row for row in self.rows if any(row[1])]


def top_series(
    starts: Sequence[datetime], per_label: dict[str, dict[datetime, int]], *, limit: int = MAX_SERIES
) -> list[Series]:
    """One series per label, the largest ``limit - 1`` by total and the rest summed as "other"."""
    ranked = sorted(per_label, key=lambda label: (-sum(per_label[label].values()), label))
    shown, rest = (ranked, []) if len(ranked) <= limit else (ranked[: limit - 1], ranked[limit - 1 :])
    series = [Series(label, [per_label[label].get(at, 0) for at in starts]) for label in shown]
    if rest:
        series.append(Series("other", [sum(per_label[label].get(at, 0) for label in rest) for at in starts]))
    return series
