"""``GET /api/v1/streams/{slug}/analytics/page-performance``: the tracker's page measurements, p50/p75/p95 per page."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from eventflow.api import ApiView
from eventflow.errors import Invalid
from eventflow.openapi import error_responses
from streams.access import Action
from streams.selectors import StreamInfo

from .journeys_api import _SLUG, FILTERS_NOTE, RANGE_PARAMETERS, _filter, _int, _q
from .page_performance import MAX_TOP, METRICS, PAGE_PERFORMANCE, page_performance

DEFAULT_TOP = 20


class MetricOut(serializers.Serializer):
    count = serializers.IntegerField(help_text="Page views that measured it.")
    p50 = serializers.FloatField(allow_null=True)
    p75 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)


class MetricsOut(serializers.Serializer):
    ttfb = MetricOut(help_text="Time to first byte, ms from the navigation's start.")
    dom_content_loaded = MetricOut(help_text="DOMContentLoaded handled, ms.")
    load = MetricOut(help_text="The load event handled, ms.")
    lcp = MetricOut(help_text="Largest Contentful Paint, ms.")
    cls = MetricOut(help_text="Cumulative Layout Shift (a score: 0.1 good, 0.25 poor).")
    inp = MetricOut(help_text="Interaction to Next Paint, ms: the page view's longest interaction.")


class PageOut(serializers.Serializer):
    page = serializers.CharField(allow_null=True, help_text="The path; null on the total over all pages.")
    views = serializers.IntegerField(help_text="Page views with a page_performance event.")
    metrics = MetricsOut()


class PagePerformanceOut(serializers.Serializer):
    all = PageOut(help_text="Over every page of the range.")
    pages = PageOut(many=True, help_text="The pages with the most measured views, most first.")


def _metric_example(p50: float, p75: float, p95: float, count: int = 120) -> dict[str, float | int]:
    return {"count": count, "p50": p50, "p75": p75, "p95": p95}


_EXAMPLE_METRICS = {
    "ttfb": _metric_example(85.0, 140.0, 410.0),
    "dom_content_loaded": _metric_example(420.0, 610.0, 1250.0),
    "load": _metric_example(900.0, 1300.0, 2600.0),
    "lcp": _metric_example(1100.0, 1600.0, 3100.0),
    "cls": _metric_example(0.01, 0.04, 0.18),
    "inp": _metric_example(64.0, 112.0, 280.0, count=75),
}


class PagePerformanceView(ApiView):
    access = Action.READ
    stream: StreamInfo

    @extend_schema(
        operation_id="analytics_page_performance",
        summary="Page performance: p50, p75 and p95 of TTFB, DOMContentLoaded, load, LCP, CLS and INP per page",
        description=(
            f"Read from the `{PAGE_PERFORMANCE}` events the browser tracker sends once per page view (numeric "
            f"payload properties {', '.join(METRICS)}; times in milliseconds, CLS a score). Per page "
            "(payload.page, else context.page.path, without query or fragment) and over all pages: page views "
            "measured, and for each measurement how many views measured it and its 50th, 75th and 95th "
            "percentiles (continuous; null when none did). A value that is not a number from 0 to 10^9 counts "
            "as not measured. The `top` pages by views measured; range (default: the last 7 days) and filters "
            "as for the other analytics; `type` is fixed." + FILTERS_NOTE
        ),
        tags=["analytics"],
        parameters=[
            _SLUG,
            _q("top", OpenApiTypes.INT, f"Pages listed, 1 to {MAX_TOP} (default {DEFAULT_TOP})."),
            *[parameter for parameter in RANGE_PARAMETERS if parameter.name != "tz"],
        ],
        responses={200: PagePerformanceOut, **error_responses(400, 401, 403, 404)},
        examples=[
            OpenApiExample(
                "an answer",
                response_only=True,
                value={
                    "all": {"page": None, "views": 120, "metrics": _EXAMPLE_METRICS},
                    "pages": [{"page": "/pricing", "views": 120, "metrics": _EXAMPLE_METRICS}],
                },
            )
        ],
    )
    def get(self, request: Request, slug: str) -> Response:
        event_filter = _filter(request, self.stream, frozenset({"top"}))
        if event_filter.types:
            raise Invalid("unknown_parameter", f"The type is {PAGE_PERFORMANCE}: type is not a filter here.")
        top = _int(request, "top", DEFAULT_TOP, 1, MAX_TOP)
        result = page_performance(stream_id=self.stream.id, event_filter=event_filter, top=top)
        return Response(PagePerformanceOut(result).data)
