"""What alert rules cost the processor: the in-process drain of bench/process.py with and without rules.

    python -m launcher.devservices python bench/alerts.py [--events 30000] [--rounds 2]

Each round drains the same realistic inbox (bench/process.py's events) three
times, from empty tables: with no rules; with the starter rule (failed logins
per user, which matches no event of this mix: the cost of looking); and with
four rules that match about 1.2 events in every event (logins per user, page
views per session, button clicks on the whole stream, an absence rule on page
views), so each batch upserts thousands of bucket rows and checks the windows
of every group it touched. Prints events/s and µs per event; writes nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness
from bench import process as bench_process

STARTER = [
    {
        "name": "failed logins",
        "event_types": ["login"],
        "conditions": [{"property": "payload.success", "values": ["false"]}],
        "threshold": 5,
        "window_seconds": 300,
        "group_by": "user_id",
    }
]
BUSY = [
    {"name": "logins per user", "event_types": ["login"], "threshold": 5, "window_seconds": 300, "group_by": "user_id"},
    {
        "name": "page views per session",
        "event_types": ["page_view"],
        "threshold": 50,
        "window_seconds": 60,
        "group_by": "session_id",
    },
    {"name": "clicks", "event_types": ["button_click"], "threshold": 10**6, "window_seconds": 60},
    {"name": "no page views", "kind": "absence", "event_types": ["page_view"], "window_seconds": 600},
]


def _rules(stream_id: int, rules: list[dict[str, Any]]) -> None:
    from django.db import connection

    from analytics.alerts import alert_rule_create, alert_rules_cache_clear

    for rule in rules:
        alert_rule_create(stream_id=stream_id, **rule)
    alert_rules_cache_clear()
    connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    slot = harness.RedisSlot.claim()
    try:
        setup = bench_process.prepare(slot)
        envelopes = list(bench_process.events(args.events, seed=1, start=time.time() - 600))
        results: dict[str, list[float]] = {"no rules": [], "starter rule": [], "four busy rules": []}
        plans = [("no rules", []), ("starter rule", STARTER), ("four busy rules", BUSY)]
        for _ in range(args.rounds):
            for name, rules in plans:
                bench_process.reset(setup.db_url)
                with harness.connect(setup.db_url, autocommit=True) as conn:
                    conn.execute("TRUNCATE analytics_alert_bucket, analytics_alert_cooldown")
                stream_id = bench_process.new_stream(name.replace(" ", "-"))
                _rules(stream_id, rules)
                bench_process.fill_inbox(setup.db_url, stream_id, envelopes)
                drain = bench_process.drain_in_process(setup, stream_id, args.events)
                results[name].append(drain.rate)
                print(f"  {name:18} {drain.rate:9,.0f} events/s  ({1e6 / drain.rate:6.1f} µs an event)", flush=True)
        print()
        base = statistics.median(results["no rules"])
        for name, rates in results.items():
            rate = statistics.median(rates)
            print(
                f"{name:18} median {rate:9,.0f} events/s  {1e6 / rate:6.1f} µs/event  "
                f"{1e6 / rate - 1e6 / base:+6.1f} µs/event vs no rules"
            )
        bench_process.reset(setup.db_url)
    finally:
        slot.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
