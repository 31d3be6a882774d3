"""The move of dead letters to streams keeps every row, and links old letters to their groups by name."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [
    ("streams", "0003_roles"),
    ("ingestion", "0004_inbox_first_failed_at"),
    ("consumers", "0002_webhook_group_cascade"),
]
AFTER = [("streams", "0005_deadletter_group"), ("ingestion", "0005_deadletter_to_streams")]


def migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_rows_stay_and_letters_find_their_group():
    old = migrate(BEFORE)
    Stream = old.get_model("streams", "Stream")
    ConsumerGroup = old.get_model("consumers", "ConsumerGroup")
    DeadLetter = old.get_model("ingestion", "DeadLetter")
    ContentType = old.get_model("contenttypes", "ContentType")
    shop = Stream.objects.create(slug="mig-shop", name="Shop")
    blog = Stream.objects.create(slug="mig-blog", name="Blog")
    billing = ConsumerGroup.objects.create(stream=shop, name="billing")
    ConsumerGroup.objects.create(stream=blog, name="billing")
    now = timezone.now()

    def letter(stream: Any, event_id: str, stage: str, subscriber: str = "") -> None:
        DeadLetter.objects.create(
            stream=stream,
            event_id=event_id,
            event={"event_id": event_id},
            stage=stage,
            subscriber=subscriber,
            error_class="E",
            first_failed_at=now,
            last_failed_at=now,
        )

    letter(shop, "consumed", "consume", "billing")
    letter(shop, "gone", "consume", "deleted-group")
    letter(shop, "poison", "validate")
    assert ContentType.objects.filter(app_label="ingestion", model="deadletter").exists()

    new = migrate(AFTER)
    moved = {row.event_id: row.group_id for row in new.get_model("streams", "DeadLetter").objects.all()}
    assert moved == {"consumed": billing.pk, "gone": None, "poison": None}
    ContentType = new.get_model("contenttypes", "ContentType")
    assert ContentType.objects.filter(app_label="streams", model="deadletter").exists()
    assert not ContentType.objects.filter(app_label="ingestion", model="deadletter").exists()
    # Back to where the suite expects the database.
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
