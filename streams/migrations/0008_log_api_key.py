"""The API key that sent each event, for analytics by key (a nullable column: no rewrite, no backfill)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("streams", "0007_log_reader_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="logentry",
            name="api_key_id",
            field=models.BigIntegerField(blank=True, null=True),
        ),
    ]
