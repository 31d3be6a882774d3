"""The API key that sent each accepted event, carried into the log by the processor."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ingestion", "0005_deadletter_to_streams"),
    ]

    operations = [
        migrations.AddField(
            model_name="inboxevent",
            name="api_key_id",
            field=models.BigIntegerField(blank=True, null=True),
        ),
    ]
