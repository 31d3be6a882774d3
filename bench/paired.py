"""The analytics reads of two checkouts, asked in turn: a before/after the machine's drift cannot fake.

    python -m bench.paired --before ../before [--after .] [--cases "Berlin|per type"] [--calls 40] [--no-write]

Single runs on a 2-core machine move by 20-30 % from one minute to the next (docs/BENCHMARKS.md), so a
before measured now and an after measured in ten minutes say little. Here each checkout answers in a process
of its own (Django set up from that checkout's code, on the database ``bench/analytics.py --keep`` loaded, the
answer cache off), and the runner asks the same question of each in turn, alternating which goes first, after
three warm-ups each: both sides see the same minutes. It reports p50 / p95 ms of each side and the ratio of
the p50s, for every case of ``bench/analytics.py`` whose name matches ``--cases`` (``|`` between
alternatives; every case when none is given).

The before checkout is usually a worktree: ``git worktree add ../before <commit>``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess  # nosec B404: the runner starts its own two servers, with fixed arguments
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import BASE_DIR, write_section

DATABASE = "eventflow_bench10m"
# Run in each checkout (its code first on the path): one timed call per line read, the ms written back.
# Only names that bench/analytics.py has long had, so an older checkout serves as well.
_SERVER = """
import sys, time
sys.path.insert(0, ".")
from datetime import timedelta
from urllib.parse import urlencode
from bench.harness import RedisSlot, django_setup
from bench.analytics import CASES, END
slot = RedisSlot.claim()
try:
    django_setup(slot, sys.argv[1], EVENTFLOW_ANALYTICS_CACHE_SECONDS="0")
    from django.contrib.auth.models import User
    from django.test import Client
    from rest_framework_simplejwt.tokens import RefreshToken
    root = User.objects.get(username="bench-root")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(root).access_token}")
    urls = {}
    for case in CASES:
        for days in case.ranges:
            lo, hi = END - timedelta(days=days), END
            urls[f"{case.name}, {days} d"] = f"/api/v1/streams/bench/analytics/{case.path}?" + urlencode(case.params(lo, hi))
    print("cases\\t" + "\\t".join(urls), flush=True)
    for line in sys.stdin:
        url = urls[line.strip()]
        started = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, response.content[:300]
        print(f"{elapsed:.3f}", flush=True)
finally:
    slot.cleanup()
"""


class Side:
    """One checkout's server."""

    def __init__(self, name: str, root: Path, database: str) -> None:
        self.name = name
        self.commit = subprocess.run(  # nosec B603 B607: git, fixed arguments
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(  # nosec B603 B607: git, fixed arguments
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        if changed:
            self.commit += " with uncommitted changes"
        self.process = subprocess.Popen(  # nosec B603: this interpreter, the server above
            [sys.executable, "-c", _SERVER, database],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        # Its first line of its own names the cases (anything Django printed on the way comes before).
        for line in self.process.stdout:
            if line.startswith("cases\t"):
                self.cases = line.rstrip("\n").split("\t")[1:]
                break
        else:
            raise RuntimeError(f"the {name} server in {root} did not start")

    def call(self, case: str) -> float:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(case + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the {self.name} server stopped on {case!r}")
        return float(answer)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def _p(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="the checkout to compare against")
    parser.add_argument("--after", type=Path, default=BASE_DIR, help="the changed checkout (default: this one)")
    parser.add_argument("--database", default=DATABASE, help=f"a database bench/analytics.py loaded ({DATABASE})")
    parser.add_argument("--cases", default="", help="names of bench/analytics.py cases to run, | between")
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    sides = [Side("before", args.before.resolve(), args.database), Side("after", args.after.resolve(), args.database)]
    try:
        wanted = [w.strip() for w in args.cases.split("|") if w.strip()]
        cases = [c for c in sides[1].cases if c in sides[0].cases and (not wanted or any(w in c for w in wanted))]
        rows = []
        for case in cases:
            times: dict[str, list[float]] = {side.name: [] for side in sides}
            for side in sides:
                for _ in range(3):
                    side.call(case)
            for i in range(args.calls):
                for side in sides if i % 2 == 0 else reversed(sides):
                    times[side.name].append(side.call(case))
            before, after = times["before"], times["after"]
            row = (
                f"| {case} | {_p(before, 0.5):.1f} / {_p(before, 0.95):.1f} | {_p(after, 0.5):.1f} / "
                f"{_p(after, 0.95):.1f} | {statistics.median(after) / statistics.median(before):.2f} |"
            )
            rows.append(row)
            print(row, flush=True)
    finally:
        for side in sides:
            side.close()
    body = (
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m bench.paired`: before {sides[0].commit}, "
        f"after {sides[1].commit}, on `{args.database}`; each case asked of the two checkouts in turn, "
        f"{args.calls} calls each after 3 warm-ups, the answer cache off. p50 / p95 ms.\n\n"
        "| endpoint (from rollups) | before | after | after / before (p50) |\n|---|---:|---:|---:|\n" + "\n".join(rows)
    )
    print(body)
    if not args.no_write:
        write_section("paired", "Analytics reads of two checkouts, asked in turn", body)


if __name__ == "__main__":
    main()
