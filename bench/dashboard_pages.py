"""Server time of each dashboard page against a loaded benchmark database.

    DATABASE_URL=postgres://…/eventflow_bench_analytics python -m bench.dashboard_pages [--stream bench]

Each page through Django's test client (view, SQL, template; no HTTP server),
signed in as a superuser made for the run, one warm-up and five timed calls;
the analytics answers' Redis cache is off, so every call computes. With
``--kept`` answers are kept as a deployment keeps them
(``EVENTFLOW_ANALYTICS_CACHE_SECONDS``): the warm-up computes and keeps, and the
timed calls are the same question asked again. Everything the run writes (the
person) is rolled back at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stream", default="bench")
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--kept", action="store_true", help="keep answers in Redis: time questions asked again")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "eventflow.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.db import connection, transaction
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from streams.models import LogEntry, Stream

    if not args.kept:
        settings.EVENTFLOW_CONF = dataclasses.replace(settings.EVENTFLOW_CONF, analytics_cache_seconds=0)
    settings.ALLOWED_HOSTS = ["*"]
    stream = Stream.objects.get(slug=args.stream)
    first = LogEntry.objects.filter(stream=stream).order_by("-offset").values_list("event_id", "event_time").first()
    assert first is not None, "the stream's log is empty"
    event_id, newest = first
    day = newest.strftime("%Y-%m-%d")
    week_ago = newest.date().toordinal() - 7
    from datetime import date

    start = date.fromordinal(week_ago).isoformat()
    s = f"/streams/{stream.slug}"
    window = f"range=custom&from={start}T00:00&to={day}T00:00"
    pages = [
        ("overview", "/"),
        ("stream", f"{s}/"),
        ("explorer (newest 50)", f"{s}/events/"),
        ("explorer, type + payload property", f"{s}/events/?type=page_view&p=payload.page&op=eq&v=/pricing"),
        ("event", f"{s}/events/{event_id}/"),
        ("trends, 7 days by hour + breakdown by browser", f"{s}/analytics/?{window}&dimension=browser"),
        ("trends, 7 days by day, one type", f"{s}/analytics/?{window}&interval=day&type=page_view"),
        # What that page fetches after it: users per browser among the type's events, counted from the log.
        ("  its breakdown's users per value (fetched after)", f"{s}/analytics/breakdown/?{window}&type=page_view"),
        ("funnel, 2 steps, 7 days", f"{s}/analytics/funnel/?step=page_view&step=button_click&window=1d&{window}"),
        ("retention, 8 weeks", f"{s}/analytics/retention/?period=week&periods=8"),
        ("paths, next 3 from page_view, 7 days", f"{s}/analytics/paths/?start=page_view&{window}"),
        ("processing, 24 hours", f"{s}/analytics/processing/?range=24h"),
        ("alerts", f"{s}/alerts/"),
        ("schemas", f"{s}/schemas/"),
        ("consumer groups", f"{s}/groups/"),
        ("webhooks", f"{s}/webhooks/"),
    ]
    rows = []
    with transaction.atomic():
        user = User.objects.create_superuser("bench-pages", "bench@example.com", None)
        client = Client()
        client.force_login(user)
        for name, path in pages:
            try:
                with transaction.atomic():  # a savepoint: a page that fails leaves the run going
                    response = client.get(path)
            except Exception as exc:  # noqa: BLE001 - reported, the other pages still measured
                print(f"{name}: not measured ({type(exc).__name__}: {str(exc).splitlines()[0]})", file=sys.stderr)
                continue
            if response.status_code != 200:
                print(f"{name}: {response.status_code}", file=sys.stderr)
                continue
            times = []
            queries = 0
            for _ in range(args.calls):
                with CaptureQueriesContext(connection) as captured:
                    started = time.perf_counter()
                    client.get(path)
                    times.append((time.perf_counter() - started) * 1000)
                queries = len(captured)
            rows.append((name, path, statistics.median(times), max(times), queries))
            print(
                f"{name}: p50 {statistics.median(times):.0f} ms, max {max(times):.0f} ms, {queries} queries", flush=True
            )
        transaction.set_rollback(True)
    events = LogEntry.objects.filter(stream=stream).count()
    print(f"\n{events:,} events in the stream's log; newest event {newest:%Y-%m-%d %H:%M} UTC\n")
    print("| page | p50 ms | max ms | queries |")
    print("|---|---:|---:|---:|")
    for name, _path, p50, worst, queries in rows:
        print(
            f"| {name} | {'**' if p50 > 300 else ''}{p50:,.0f}{'**' if p50 > 300 else ''} | {worst:,.0f} | {queries} |"
        )


if __name__ == "__main__":
    main()
