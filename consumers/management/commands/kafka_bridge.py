"""Run the Kafka bridge: every active sink and source, in one loop, until SIGTERM or SIGINT.

    python manage.py kafka_bridge

Safe to run more than once: each sink and source is held by one process at a
time, and another takes it over when that one stops (consumers/kafka_bridge.py).
With nothing configured it only looks for new sinks and sources every few seconds.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from consumers.kafka_bridge import Bridge


class Command(BaseCommand):
    help = "Run the Kafka bridge: publish streams to Kafka topics (sinks) and take topics into streams (sources)."

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()

        def stopping(signum: int, frame: Any) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, stopping)
        signal.signal(signal.SIGINT, stopping)
        Bridge().run(stop)
