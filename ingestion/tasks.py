"""Celery entry points for processing. Thin: they take ids and call services."""

from __future__ import annotations

from celery import shared_task

from .processing import processing_request_clear


@shared_task(name="ingestion.process_stream", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def process_stream(stream_id: int) -> None:
    processing_request_clear(stream_id)
