"""Multiprocess mode: values written by separate processes add up in one /metrics answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from eventflow import __main__ as launcher
from eventflow.__main__ import metrics_dir_prepare
from tests.subprocesses import child_env, python

pytestmark = pytest.mark.django_db

COUNT_IN_CHILD = """
import os, sys
from eventflow.metrics import AUDIT_BUFFER_DEPTH, EVENTS_ACCEPTED, HTTP_LATENCY
EVENTS_ACCEPTED.labels("mp").inc(int(sys.argv[1]))
HTTP_LATENCY.labels("events-send", "POST").observe(float(sys.argv[1]) / 1000)
AUDIT_BUFFER_DEPTH.set(int(sys.argv[1]))
print(os.getpid())
"""

SCRAPE_IN_CHILD = """
import django, json, sys
django.setup()
from django.test import Client
from types import SimpleNamespace
from eventflow.gunicorn_conf import child_exit
for pid in sys.argv[1:]:
    child_exit(None, SimpleNamespace(pid=int(pid)))
response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer mp-token")
print(json.dumps({"status": response.status_code, "text": response.content.decode()}))
"""


def _run(code: str, env: dict[str, str], *args: str) -> str:
    result = python(f"import sys; sys.argv[1:] = {list(args)!r}\n{code}", env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_two_processes_counters_add_up_and_a_dead_process_gauge_leaves(tmp_path: Path):
    env = child_env(
        DJANGO_SETTINGS_MODULE="eventflow.settings", PROMETHEUS_MULTIPROC_DIR=str(tmp_path), METRICS_TOKEN="mp-token"
    )
    first = _run(COUNT_IN_CHILD, env, "3")
    _run(COUNT_IN_CHILD, env, "4")
    assert len(list(tmp_path.glob("counter_*.db"))) == 2

    both = json.loads(_run(SCRAPE_IN_CHILD, env))
    assert both["status"] == 200
    samples = _samples(both["text"])
    assert samples[("eventflow_events_accepted_total", (("stream", "mp"),))] == 7
    timed = (("method", "POST"), ("route", "events-send"))
    assert samples[("eventflow_http_request_duration_seconds_count", timed)] == 2
    assert samples[("eventflow_http_request_duration_seconds_sum", timed)] == pytest.approx(0.007)
    assert samples[("eventflow_audit_buffer_rows", ())] == 7
    # The collectors read the database in the scraping process beside the files.
    assert samples[("eventflow_scrape_database_up", ())] == 1

    after = _samples(json.loads(_run(SCRAPE_IN_CHILD, env, first))["text"])
    # The first process is gone (gunicorn's child_exit): its live gauge leaves, its counts stay.
    assert after[("eventflow_audit_buffer_rows", ())] == 4
    assert after[("eventflow_events_accepted_total", (("stream", "mp"),))] == 7


def test_up_gives_the_group_an_emptied_metrics_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(launcher, "STATE_DIR", tmp_path / "state")
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_old-1.db").write_bytes(b"an earlier run's counts")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory)}

    assert metrics_dir_prepare(env, clean=False) == directory
    assert (directory / "counter_old-1.db").exists()
    metrics_dir_prepare(env, clean=True)
    assert list(directory.iterdir()) == []

    unset: dict[str, str] = {}
    made = metrics_dir_prepare(unset, clean=True)
    assert made == tmp_path / "state" / "metrics" and made.is_dir()
    assert unset["PROMETHEUS_MULTIPROC_DIR"] == str(made)
