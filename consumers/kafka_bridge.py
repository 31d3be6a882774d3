"""The bridge process (``manage.py kafka_bridge``): one loop that runs every sink and source it holds.

Every few seconds it renews its hold on the sinks and sources it runs and
takes those no live process holds (kafka_services.kafka_runner_claim): a second
bridge runs what the first does not hold (new ones go to whichever scans first)
and takes over the first's once they lapse; a sink or source whose settings
changed is started afresh. Between those scans each
runner takes one step: a sink publishes a batch, a source takes one. When no
step moved anything the loop sleeps EVENTFLOW_KAFKA_IDLE_SECONDS, so a bridge
with nothing configured costs two small queries per scan.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Protocol

from django.db import DatabaseError, close_old_connections

from eventflow import conf

from .kafka_services import BrokerUnconfigured, kafka_runner_claim, kafka_runner_release
from .kafka_sink import SinkRunner
from .kafka_source import SourceRunner
from .models import KafkaSink, KafkaSource

logger = logging.getLogger(__name__)

SCAN_MAX_SECONDS = 5.0
SCAN_RETRY_SECONDS = 1.0


class Runner(Protocol):
    settings_version: object

    def due(self) -> bool: ...
    def step(self) -> int: ...
    def close(self) -> None: ...


def runner_name() -> str:
    """Who holds a sink or source, as the API shows it: host, pid and a random part (pids repeat in containers)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Bridge:
    def __init__(self, name: str | None = None) -> None:
        self.name = name or runner_name()
        self.sinks: dict[int, Runner] = {}
        self.sources: dict[int, Runner] = {}
        self._next_scan = 0.0

    @property
    def lease_seconds(self) -> float:
        return conf.get().kafka_runner_lease_seconds

    def scan(self) -> None:
        """Renew and take holds, start what is new or changed, stop what is no longer ours."""
        close_old_connections()
        self._sync(
            self.sinks, kafka_runner_claim(model=KafkaSink, runner=self.name, seconds=self.lease_seconds), SinkRunner
        )
        self._sync(
            self.sources,
            kafka_runner_claim(model=KafkaSource, runner=self.name, seconds=self.lease_seconds),
            SourceRunner,
        )
        self._next_scan = time.monotonic() + min(SCAN_MAX_SECONDS, self.lease_seconds / 3)

    def _sync(self, running: dict[int, Runner], held: list, make: type) -> None:  # type: ignore[type-arg]
        held_by_id = {row.pk: row for row in held}
        for pk in list(running):
            row = held_by_id.get(pk)
            if row is None or row.updated_at != running[pk].settings_version:
                self._stop(running, pk)
        for pk, row in held_by_id.items():
            if pk in running:
                continue
            try:
                running[pk] = make(row)
            except BrokerUnconfigured:
                logger.error("kafka bridge: %s has no broker address (set KAFKA_BOOTSTRAP_SERVERS)", row)
            else:
                logger.info("kafka bridge %s runs %s", self.name, row)

    def _stop(self, running: dict[int, Runner], pk: int) -> None:
        runner = running.pop(pk)
        try:
            runner.close()
        except Exception:
            logger.exception("kafka bridge: closing %s", pk)

    def run_once(self) -> int:
        """One pass: a scan when due, then one step of each runner. Returns how many messages moved."""
        if time.monotonic() >= self._next_scan:
            try:
                self.scan()
            except DatabaseError:
                # PostgreSQL is away: the runners keep what they hold until their lease lapses; try again soon.
                logger.exception("kafka bridge: scan failed; retrying")
                close_old_connections()
                self._next_scan = time.monotonic() + SCAN_RETRY_SECONDS
                return 0
        moved = 0
        for running in (self.sinks, self.sources):
            for pk, runner in list(running.items()):
                if not runner.due():
                    continue
                try:
                    moved += runner.step()
                except Exception:
                    logger.exception(
                        "kafka bridge: step of %s %s failed; it is started afresh", type(runner).__name__, pk
                    )
                    self._stop(running, pk)
                    close_old_connections()
        return moved

    def run(self, stop: threading.Event) -> None:
        idle = conf.get().kafka_idle_seconds
        logger.info("kafka bridge %s started", self.name)
        try:
            while not stop.is_set():
                if not self.run_once():
                    stop.wait(idle)
        finally:
            self.close()

    def close(self) -> None:
        """Stop every runner and give back the holds, so another bridge takes over at once."""
        for running in (self.sinks, self.sources):
            for pk in list(running):
                self._stop(running, pk)
        close_old_connections()
        kafka_runner_release(model=KafkaSink, runner=self.name)
        kafka_runner_release(model=KafkaSource, runner=self.name)
        logger.info("kafka bridge %s stopped", self.name)
