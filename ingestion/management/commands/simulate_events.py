"""Send realistic usage traffic to a stream over the real HTTP API.

Simulated people open sessions (login, page views, clicks, form submits,
logout) from desktop, mobile and tablet browsers, and a crawler wanders
through pages without signing in. Events carry the full envelope (event_id,
timestamp, user_id, session_id) and a context with user agent, IP (v4 and v6),
page URL, referrer and, for some visits, utm_ campaign parameters.

    python manage.py simulate_events --stream demo --key ef_ingest_... --rate 50 --duration 30
"""

from __future__ import annotations

import math
import queue
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
import requests
from django.core.management.base import BaseCommand, CommandError, CommandParser

LIBRARY = {"name": "eventflow-simulator", "version": "1.0"}
MAX_SENDERS = 32
SITE = "https://shop.example.com"

# (kind, device, user agent)
AGENTS: list[tuple[str, str, str]] = [
    (
        "desktop",
        "desktop",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
    ),
    (
        "desktop",
        "desktop",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
    ),
    (
        "desktop",
        "desktop",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4.1 Safari/605.1.15",
    ),
    ("desktop", "desktop", "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"),
    (
        "mobile",
        "mobile",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4.1 Mobile/15E148 Safari/604.1",
    ),
    (
        "mobile",
        "mobile",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36",
    ),
    (
        "mobile",
        "mobile",
        "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    ),
    (
        "tablet",
        "tablet",
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Mobile/15E148 Safari/604.1",
    ),
    (
        "tablet",
        "tablet",
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Safari/537.36",
    ),
    (
        "bot",
        "bot",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    ),
]
AGENT_WEIGHTS = [22, 8, 10, 5, 18, 14, 6, 7, 4, 6]

PAGES = [
    "/",
    "/products",
    "/products/espresso-machine",
    "/products/grinder",
    "/products/milk-frother",
    "/search?q=beans",
    "/cart",
    "/checkout",
    "/account",
    "/blog/latte-art",
    "/pricing",
    "/help",
]
# page -> buttons and forms found on it
BUTTONS = {
    "/": ["hero-cta", "nav-products", "newsletter-open"],
    "/products": ["filter-price", "sort-popular", "load-more"],
    "/products/espresso-machine": ["add-to-cart", "gallery-next", "reviews-tab"],
    "/products/grinder": ["add-to-cart", "compare"],
    "/products/milk-frother": ["add-to-cart", "size-large"],
    "/search?q=beans": ["filter-roast", "result-1"],
    "/cart": ["checkout", "remove-item", "apply-coupon"],
    "/checkout": ["pay-now", "back-to-cart"],
    "/account": ["edit-profile", "logout-link"],
    "/blog/latte-art": ["share", "read-more"],
    "/pricing": ["choose-pro", "choose-basic"],
    "/help": ["contact-support", "faq-expand"],
}
FORMS: dict[str, tuple[str, list[str]]] = {
    "/": ("newsletter", ["email"]),
    "/search?q=beans": ("search", ["q"]),
    "/cart": ("coupon", ["code"]),
    "/checkout": ("checkout", ["name", "email", "address", "city", "postcode", "card"]),
    "/account": ("profile", ["name", "email", "phone"]),
    "/help": ("contact", ["email", "subject", "message"]),
}
REFERRERS = [
    None,
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://duckduckgo.com/",
    "https://t.co/x1y2z3",
    "https://www.facebook.com/",
    "https://news.ycombinator.com/",
]
CAMPAIGNS = [
    {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring_sale"},
    {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "brand", "utm_term": "espresso machine"},
    {"utm_source": "facebook", "utm_medium": "social", "utm_campaign": "launch_grinder", "utm_content": "video"},
    {"utm_source": "partner_blog", "utm_medium": "referral", "utm_campaign": "affiliates"},
]
IPV6_PREFIXES = ["2001:db8:85a3", "2a02:8108:1140", "2600:1700:3e4", "2c0f:f248:10"]


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.3:
        # A /48 prefix, then subnet and interface groups: eight groups in all.
        groups = [f"{rng.randrange(1 << 16):x}" for _ in range(5)]
        return ":".join([rng.choice(IPV6_PREFIXES), *groups])
    first = rng.choice([31, 62, 81, 92, 151, 176, 185, 203, 212, 213])
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _now_iso(lag_seconds: float = 0.0) -> str:
    moment = datetime.now(UTC) - timedelta(seconds=lag_seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Visitor:
    """One person (or crawler) with a device; runs sessions one after another."""

    rng: random.Random
    number: int
    kind: str = ""
    device: str = ""
    user_agent: str = ""
    ip: str = ""
    user_id: str | None = None
    anonymous_id: str = ""
    session_id: str = ""
    session_started: float = 0.0
    send_delay: float = 0.0
    page: str | None = None
    referrer: str | None = None
    campaign: dict[str, str] | None = None
    steps: Iterator[str] = field(default_factory=lambda: iter(()))

    def __post_init__(self) -> None:
        self.kind, self.device, self.user_agent = self.rng.choices(AGENTS, weights=AGENT_WEIGHTS)[0]
        self.anonymous_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        if self.kind != "bot":
            self.user_id = f"u{self.number:05d}"
        self._new_session()

    def _new_session(self) -> None:
        self.ip = _ip(self.rng)
        self.session_id = f"s_{uuid.UUID(int=self.rng.getrandbits(128), version=4).hex[:20]}"
        self.session_started = time.time()
        # Mobile apps buffer events and send them a little after they happen.
        self.send_delay = self.rng.uniform(0.1, 2.0) if self.kind == "mobile" else 0.0
        self.page = None
        self.referrer = self.rng.choice(REFERRERS)
        self.campaign = self.rng.choice(CAMPAIGNS) if self.rng.random() < 0.25 else None
        self.steps = self._bot_steps() if self.kind == "bot" else self._steps()

    def _steps(self) -> Iterator[str]:
        yield "login"
        for _ in range(self.rng.randint(2, 8)):
            yield "page_view"
            roll = self.rng.random()
            if roll < 0.5:
                yield "button_click"
            if self.page in FORMS and roll < 0.35:
                yield "form_submit"
        yield "logout"

    def _bot_steps(self) -> Iterator[str]:
        for _ in range(self.rng.randint(3, 10)):
            yield "page_view"

    def next_event(self) -> dict[str, Any]:
        step = next(self.steps, None)
        if step is None:
            self._new_session()
            step = next(self.steps)
        return getattr(self, f"_{step}")()

    # --- one method per event type -------------------------------------------------

    def _envelope(self, event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        page_url = f"{SITE}{self.page or '/'}"
        if self.campaign:
            page_url += ("&" if "?" in page_url else "?") + urlencode(self.campaign)
        context: dict[str, Any] = {
            "user_agent": self.user_agent,
            "ip": self.ip,
            "locale": self.rng.choice(["en-US", "en-GB", "de-DE", "fr-FR", "es-ES"]),
            "page": {"url": page_url, "path": (self.page or "/").split("?")[0], "referrer": self.referrer},
            "library": LIBRARY,
        }
        if self.campaign:
            context["campaign"] = {key.removeprefix("utm_"): value for key, value in self.campaign.items()}
        event: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "type": event_type,
            "timestamp": _now_iso(self.send_delay),
            "anonymous_id": self.anonymous_id,
            "session_id": self.session_id,
            "payload": payload,
            "context": context,
        }
        if self.user_id is not None:
            event["user_id"] = self.user_id
        return event

    def _login(self) -> dict[str, Any]:
        assert self.user_id is not None
        return self._envelope("login", {"user_id": self.user_id, "ip": self.ip, "device": self.device})

    def _logout(self) -> dict[str, Any]:
        assert self.user_id is not None
        duration = round(time.time() - self.session_started + self.rng.uniform(5, 900), 1)
        return self._envelope("logout", {"user_id": self.user_id, "duration": duration, "ip": self.ip})

    def _page_view(self) -> dict[str, Any]:
        previous = f"{SITE}{self.page}" if self.page else self.referrer
        self.referrer = previous
        self.page = self.rng.choice(PAGES)
        payload: dict[str, Any] = {"page": self.page, "referrer": previous, "device": self.device}
        if self.user_id is not None:
            payload["user_id"] = self.user_id
        return self._envelope("page_view", payload)

    def _button_click(self) -> dict[str, Any]:
        page = self.page or "/"
        payload = {"button_id": self.rng.choice(BUTTONS[page]), "page": page}
        if self.user_id is not None:
            payload["user_id"] = self.user_id
        return self._envelope("button_click", payload)

    def _form_submit(self) -> dict[str, Any]:
        page = self.page or "/"
        form_id, fields = FORMS.get(page, ("feedback", ["rating", "comment"]))
        payload = {"form_id": form_id, "fields": fields}
        if self.user_id is not None:
            payload["user_id"] = self.user_id
        return self._envelope("form_submit", payload)


class Traffic:
    """Events from a crowd of visitors, interleaved as real traffic is."""

    def __init__(self, *, visitors: int, seed: int | None, duplicate_rate: float) -> None:
        self.rng = random.Random(seed)  # noqa: S311 (simulated traffic, reproducible by seed)
        self.visitors = [Visitor(random.Random(self.rng.getrandbits(64)), number) for number in range(1, visitors + 1)]  # noqa: S311
        self.duplicate_rate = duplicate_rate
        self.recent: list[dict[str, Any]] = []

    def next_event(self) -> dict[str, Any]:
        # Producers retry when they miss an answer: resend an earlier event as is.
        if self.recent and self.rng.random() < self.duplicate_rate:
            return self.rng.choice(self.recent)
        event = self.rng.choice(self.visitors).next_event()
        self.recent.append(event)
        if len(self.recent) > 200:
            del self.recent[:100]
        return event


@dataclass
class Counts:
    sent: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    errors: int = 0
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **deltas: int) -> None:
        with self.lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def snapshot(self) -> tuple[int, int, int, int, int]:
        with self.lock:
            return self.sent, self.accepted, self.duplicate, self.rejected, self.errors


class Sender(threading.Thread):
    def __init__(
        self,
        *,
        work: queue.Queue[list[dict[str, Any]] | None],
        url: str,
        key: str,
        counts: Counts,
        batch: bool,
        errors: list[str],
    ) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.url = url
        self.batch = batch
        self.counts = counts
        self.errors = errors
        self.session = requests.Session()
        self.session.headers.update(
            {"X-API-Key": key, "Content-Type": "application/json", "User-Agent": "eventflow-simulator/1.0"}
        )

    def run(self) -> None:
        while True:
            events = self.work.get()
            if events is None:
                return
            body = orjson.dumps({"events": events} if self.batch else events[0])
            try:
                response = self.session.post(self.url, data=body, timeout=30)
            except requests.RequestException as exc:
                self._error(len(events), f"{type(exc).__name__}: {exc}")
                continue
            self.counts.add(requests=1)
            self._count(response, len(events))

    def _count(self, response: requests.Response, sent: int) -> None:
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code == 202 and isinstance(data, dict):
            if self.batch:
                self.counts.add(accepted=data["accepted"], duplicate=data["duplicates"], rejected=data["rejected"])
            elif data.get("status") == "duplicate":
                self.counts.add(duplicate=1)
            else:
                self.counts.add(accepted=1)
        elif response.status_code in (400, 422) and isinstance(data, dict):
            self.counts.add(rejected=sent)
            self._note(f"{response.status_code} {data.get('error', {}).get('code')}")
        else:
            self._error(sent, f"HTTP {response.status_code} {response.text[:200]}")

    def _error(self, sent: int, message: str) -> None:
        self.counts.add(errors=sent)
        self._note(message)

    def _note(self, message: str) -> None:
        if len(self.errors) < 5:
            self.errors.append(message)


class Command(BaseCommand):
    help = "Send realistic events (sessions of the five starter types) to a stream over the HTTP API."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--stream", required=True, help="Slug of the stream to send to.")
        parser.add_argument("--key", required=True, help="An ingest (or secret) API key granted to the stream.")
        parser.add_argument("--rate", type=float, default=50.0, help="Events per second (default 50).")
        parser.add_argument("--duration", type=float, default=30.0, help="Seconds to run (default 30).")
        parser.add_argument("--batch", type=int, default=1, help="Events per request; >1 uses the batch endpoint.")
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Base URL of EventFlow.")
        parser.add_argument("--visitors", type=int, default=200, help="Simulated people browsing at once.")
        parser.add_argument(
            "--concurrency", type=int, default=0, help="Sending threads (default: enough for the rate)."
        )
        parser.add_argument("--duplicate-rate", type=float, default=0.01, help="Share of events resent as retries.")
        parser.add_argument("--seed", type=int, default=None, help="Random seed for repeatable traffic.")

    def handle(self, *args: Any, **options: Any) -> None:
        rate: float = options["rate"]
        duration: float = options["duration"]
        batch: int = options["batch"]
        if not (0 < rate < math.inf and 0 < duration < math.inf):
            raise CommandError("--rate and --duration must be positive numbers.")
        if options["concurrency"] < 0:
            raise CommandError("--concurrency must be 0 (enough for the rate) or more.")
        if not 1 <= batch <= 1000:
            raise CommandError("--batch must be between 1 and 1000.")
        if not 0 <= options["duplicate_rate"] < 1:
            raise CommandError("--duplicate-rate must be between 0 and 1.")
        base = options["url"].rstrip("/")
        endpoint = f"{base}/api/v1/streams/{options['stream']}/events" + ("/batch" if batch > 1 else "")
        # With --concurrency the number of connections is fixed; without, a connection
        # is added whenever the ones open fall behind the rate.
        max_senders = options["concurrency"] or MAX_SENDERS

        traffic = Traffic(
            visitors=max(1, options["visitors"]), seed=options["seed"], duplicate_rate=options["duplicate_rate"]
        )
        counts = Counts()
        notes: list[str] = []
        # Small, so that a backlog shows at once that the senders are behind.
        work: queue.Queue[list[dict[str, Any]] | None] = queue.Queue(maxsize=2)
        senders: list[Sender] = []

        def add_sender() -> None:
            sender = Sender(work=work, url=endpoint, key=options["key"], counts=counts, batch=batch > 1, errors=notes)
            sender.start()
            senders.append(sender)

        # A keep-alive request takes a few milliseconds: start with a connection per
        # hundred requests a second.
        for _ in range(options["concurrency"] or min(max_senders, math.ceil(rate / batch / 100))):
            add_sender()
        shape = f"batches of {batch}" if batch > 1 else "one event per request"
        self.stdout.write(
            f"Sending {rate:g} events/s for {duration:g}s to {endpoint} ({shape}, up to {max_senders} connection(s))"
        )

        started = time.monotonic()
        deadline = started + duration
        next_report = started + 1.0
        last_accepted = 0
        total = int(rate * duration)
        produced = 0
        while produced < total:
            size = min(batch, total - produced)
            # Pace by schedule, not by sleeping a fixed gap, so slow moments are caught up;
            # a batch leaves when its last event is due.
            due = started + (produced + size - 1) / rate
            now = time.monotonic()
            while now >= next_report:
                last_accepted = self._progress(counts, next_report - started, last_accepted)
                next_report += 1.0
            if now >= deadline:
                break
            if due > now:
                time.sleep(min(due, next_report) - now)
                continue
            events = [traffic.next_event() for _ in range(size)]
            while True:
                try:
                    work.put(events, timeout=0.05)
                    break
                except queue.Full:
                    if len(senders) < max_senders:
                        add_sender()
                    if time.monotonic() >= next_report:
                        last_accepted = self._progress(counts, next_report - started, last_accepted)
                        next_report += 1.0
            produced += size
            counts.add(sent=size)
        for _ in senders:
            work.put(None)
        for sender in senders:
            while sender.is_alive():
                sender.join(timeout=max(0.01, next_report - time.monotonic()))
                if time.monotonic() >= next_report:
                    last_accepted = self._progress(counts, next_report - started, last_accepted)
                    next_report += 1.0
        elapsed = time.monotonic() - started

        sent, accepted, duplicate, rejected, errors = counts.snapshot()
        self.stdout.write(
            f"Done in {elapsed:.1f}s: sent {sent} events in {counts.requests} requests over"
            f" {len(senders)} connection(s); accepted rate {accepted / elapsed:.1f} events/s"
        )
        self.stdout.write(f"accepted={accepted} duplicate={duplicate} rejected={rejected} errors={errors}")
        for note in notes:
            self.stderr.write(f"  e.g. {note}")
        if errors and not accepted:
            raise CommandError("No event was accepted.")

    def _progress(self, counts: Counts, at: float, last_accepted: int) -> int:
        sent, accepted, duplicate, rejected, errors = counts.snapshot()
        self.stdout.write(
            f"[{at:5.0f}s] sent={sent} accepted={accepted} duplicate={duplicate} rejected={rejected}"
            f" errors={errors} ({accepted - last_accepted}/s)"
        )
        return accepted
