"""Dead letters of consumer groups and webhooks link to their group, found by the name they kept."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def group_backfill(apps, schema_editor):
    DeadLetter = apps.get_model("streams", "DeadLetter")
    ConsumerGroup = apps.get_model("consumers", "ConsumerGroup")
    group = ConsumerGroup.objects.filter(stream_id=OuterRef("stream_id"), name=OuterRef("subscriber")).values("pk")[:1]
    DeadLetter.objects.filter(group__isnull=True, stage__in=["consume", "deliver"]).exclude(subscriber="").update(
        group=Subquery(group)
    )


class Migration(migrations.Migration):
    dependencies = [
        ("streams", "0004_deadletter_from_ingestion"),
        ("ingestion", "0005_deadletter_to_streams"),
        ("consumers", "0003_consumergroup_redeliveries"),
    ]

    operations = [
        migrations.AddField(
            model_name="deadletter",
            name="group",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="dead_letters",
                to="consumers.consumergroup",
            ),
        ),
        migrations.RunPython(group_backfill, migrations.RunPython.noop),
    ]
